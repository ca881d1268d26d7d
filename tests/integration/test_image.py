"""The container image: built from the Dockerfile and run as the README shows, it serves the
host's containers on /metrics.

No registry is reachable, so the base image is made by ``tests/integration/images.py``:
Debian's debootstrap builds a bookworm root filesystem with python3, which is imported as
``local/debian-python:bookworm`` (kept, and reused when it exists) and given to the Dockerfile
through ``BASE_IMAGE``. The package registries sit behind a TLS proxy the host trusts and the
base does not: the certificates the host trusts beyond the base's go in through
``EXTRA_CA_CERTS``.

The cgroup v2 guest (``.ci/v2-guest``) has no network to build with, so the host's run saves
the image it built to ``DENSITYD_TEST_IMAGE_ARCHIVE`` and the guest's run loads it from
there: the same image is tested on a cgroup v1 host and on a cgroup v2 + systemd host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests

from tests.integration.backends import (
    TEST_LABEL,
    Containers,
    DockerCLI,
    Series,
    free_port,
    missing_backend,
    parse_metrics,
    value_of,
)
from tests.integration.images import BASE_IMAGE, ensure_base_image
from tests.pki import make_pki

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DOCKER_SOCKET = "/var/run/docker.sock"
LIBVIRT_RO_SOCKET = "/var/run/libvirt/libvirt-sock-ro"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
# The image's own 5 s is for real hosts; in the cgroup v2 guest (QEMU without KVM) Python
# starts about twenty times slower, and one check takes several seconds.
HEALTH_TIMEOUT = "30s"
# Where the built image is saved (``docker save``) or, when the file exists, loaded from.
IMAGE_ARCHIVE = os.environ.get("DENSITYD_TEST_IMAGE_ARCHIVE", "")


def extra_ca_certs(docker: DockerCLI) -> str:
    """PEM certificates the host trusts and the base image does not (the proxy's CA)."""
    base_bundle = docker("run", "--rm", "--network", "none", BASE_IMAGE, "cat", HOST_CA_BUNDLE)
    base = set(PEM.findall(base_bundle))
    host = PEM.findall(Path(HOST_CA_BUNDLE).read_text())
    return "\n".join(cert for cert in host if cert not in base)


def libvirt_answers_non_root() -> bool:
    """Tell whether libvirtd's read-only socket answers a user who is not root."""
    if shutil.which("virsh") is None or shutil.which("setpriv") is None:
        return False
    probe = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    command = [*probe, "virsh", "-r", "-c", "qemu:///system", "version"]
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def container_log(docker: DockerCLI, name: str) -> str:
    """A container's output, stdout and stderr together."""
    result = subprocess.run(
        [docker.binary, "logs", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return result.stdout


def remove_images(docker: DockerCLI, ids: list[str], keep: set[str]) -> None:
    """Remove the build's images, newest first, sparing ``keep`` (the base)."""
    for image_id in reversed(ids):
        if not any(k.startswith(image_id) for k in keep):
            docker("rmi", image_id, check=False)


def loaded_image(docker: DockerCLI, archive: str) -> str:
    """Load an image saved by another run; its tag (the archive holds exactly one)."""
    output = docker("load", "-i", archive, timeout=900)  # TCG guest: minutes
    tags = re.findall(r"^Loaded image: (\S+)$", output, re.M)
    assert len(tags) == 1, output
    return tags[0]


@pytest.fixture(scope="module")
def image(docker_cli: DockerCLI) -> Iterator[str]:
    """The Dockerfile built on the debootstrapped base (or the image another run built,
    loaded from ``DENSITYD_TEST_IMAGE_ARCHIVE``); removed (base kept) afterwards."""
    if IMAGE_ARCHIVE and os.path.exists(IMAGE_ARCHIVE):
        tag = loaded_image(docker_cli, IMAGE_ARCHIVE)
        try:
            yield tag
        finally:
            docker_cli("rmi", tag, check=False)
        return
    ensure_base_image(docker_cli)
    base_id = docker_cli("images", "-q", "--no-trunc", BASE_IMAGE)
    tag = f"densityd-test-image:{uuid.uuid4().hex[:8]}"
    command = [
        docker_cli.binary,
        "build",
        "--network",
        "host",
        "--force-rm",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg",
        f"EXTRA_CA_CERTS={extra_ca_certs(docker_cli)}",
        "-t",
        tag,
        str(REPO),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    # Every step's image, the build stage's included (the classic builder keeps them).
    built = re.findall(r"^ ---> ([0-9a-f]{12})$", result.stdout, re.M)
    try:
        assert result.returncode == 0, f"build failed:\n{result.stdout[-4000:]}{result.stderr}"
        if IMAGE_ARCHIVE:
            docker_cli("save", "-o", IMAGE_ARCHIVE, tag, timeout=600)
        yield tag
    finally:
        docker_cli("rmi", tag, check=False)
        remove_images(docker_cli, built, {base_id.removeprefix("sha256:")})


def test_image_runs_as_non_root_with_a_healthcheck(docker_cli: DockerCLI, image: str) -> None:
    """The image's user, port, volume, entrypoint and health check are what the README says."""
    config = docker_cli("inspect", "--format", "{{json .Config}}", image)
    inspected = json.loads(config)
    assert inspected["User"] == "densityd"
    assert inspected["Entrypoint"] == ["densityd"]
    assert inspected["Cmd"] == ["run"]
    assert "9847/tcp" in inspected["ExposedPorts"]
    assert "/var/lib/densityd" in inspected["Volumes"]
    assert "DENSITYD_STATE_DIR=/var/lib/densityd" in inspected["Env"]
    assert inspected["Healthcheck"]["Test"] == ["CMD", "densityd", "healthcheck"]
    # The build tools stayed in the build stage.
    shell = ("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c")
    assert docker_cli(*shell, "id -u; command -v gcc || true") == "10001"


@pytest.mark.parametrize("cgroupns", ["host", "private"])
def test_container_serves_the_hosts_containers(
    docker_cli: DockerCLI, containers: Containers, image: str, cgroupns: str
) -> None:
    """With the README's read-only mounts the containerised daemon sees the host's containers
    and VMs, reports every source up, and turns healthy. With ``--cgroupns=host`` (the
    README's) it says nothing of namespaces; with a private cgroup namespace (Docker's default
    on cgroup v2) it says so plainly, in a log line and a metric, and still reads the cgroup
    files."""
    if not os.path.exists(DOCKER_SOCKET):
        missing_backend(f"{DOCKER_SOCKET} does not exist")
    workload = containers.run()
    port = free_port()
    docker_root = docker_cli("info", "--format", "{{.DockerRootDir}}")
    mounts = [
        f"{DOCKER_SOCKET}:{DOCKER_SOCKET}:ro",
        "/sys/fs/cgroup:/host/sys/fs/cgroup:ro",
        "/proc:/host/proc:ro",
        f"{docker_root}:{docker_root}:ro",  # the README's: densityd measures its filesystem
    ]
    libvirt = os.path.exists(LIBVIRT_RO_SOCKET)
    if libvirt:
        mounts.append(f"{LIBVIRT_RO_SOCKET}:{LIBVIRT_RO_SOCKET}:ro")
    # The daemon is not root: libvirt answers it only where libvirtd lets any user use the
    # read-only socket (polkit running, or auth_unix_ro = "none"); ask as nobody to know.
    libvirt_for_anyone = libvirt and libvirt_answers_non_root()
    libvirt_up = (1 if libvirt_for_anyone else 0) if libvirt else None
    name = f"densityd-test-{uuid.uuid4().hex[:8]}"
    docker_cli(
        "run",
        "-d",
        "--name",
        name,
        "--label",
        f"{TEST_LABEL}=1",
        "--network",
        "host",
        f"--cgroupns={cgroupns}",
        "--group-add",
        str(os.stat(DOCKER_SOCKET).st_gid),
        *[arg for mount in mounts for arg in ("-v", mount)],
        "-e",
        f"DENSITYD_LISTEN_ADDRESS=127.0.0.1:{port}",
        "--health-interval",
        "2s",
        "--health-timeout",
        HEALTH_TIMEOUT,
        image,
        "run",
        "--interval",
        "1",
        "--cgroup-root",
        "/host/sys/fs/cgroup",
        "--proc-root",
        "/host/proc",
        *([] if libvirt else ["--no-libvirt"]),
    )
    try:
        deadline = time.monotonic() + 60
        series: Series = {}
        while time.monotonic() < deadline:
            try:
                series = parse_metrics(
                    requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                )
            except requests.RequestException:
                series: Series = {}
            if (
                value_of(series, "densityd_workload_info", id=workload) == 1
                and value_of(series, "densityd_workload_memory_bytes", id=workload) is not None
                and value_of(series, "densityd_source_up", source="docker") == 1
                and value_of(series, "densityd_source_up", source="libvirt") == libvirt_up
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(
                f"no metrics of {workload} with docker up (libvirt {libvirt_for_anyone}) in 60 s:\n"
                + container_log(docker_cli, name)
                + "\n"
                + "\n".join(f"{k}: {v}" for k, v in series.items() if "source_up" in k[0])
            )
        assert value_of(series, "densityd_source_up", source="host") == 1
        # The data root's filesystem is known, so containers' disk is planned, not unknown.
        total = os.statvfs(docker_root)
        disk = value_of(series, "densityd_host_disk_bytes", path=docker_root)
        assert disk == total.f_blocks * total.f_frsize, (docker_root, disk)
        assert (
            value_of(series, "densityd_plan_capacity_bytes", kind="container", resource="disk")
            is not None
        )
        status = ""
        while time.monotonic() < deadline + 30:
            status = docker_cli("inspect", "--format", "{{.State.Health.Status}}", name)
            if status == "healthy":
                break
            time.sleep(1)
        assert status == "healthy", docker_cli("inspect", "--format", "{{json .State}}", name)
        assert docker_cli("exec", name, "id", "-un") == "densityd"
        log = container_log(docker_cli, name)
        private = cgroupns == "private"
        assert value_of(series, "densityd_host_cgroup_namespace_private") == int(private)
        assert ("private cgroup namespace" in log) is private, log
        assert ("run its container with --cgroupns=host" in log) is private, log
        assert "reading cgroup v" in log, log  # the cgroup files, not the stats API
    finally:
        docker_cli("rm", "-f", name, check=False)


def wait_for_health(docker: DockerCLI, name: str, timeout: float = 60) -> str:
    """The container's health status once it leaves "starting" (or at the deadline)."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", name)
        if status != "starting":
            break
        time.sleep(1)
    return status


def test_health_check_passes_with_tls_and_basic_auth(docker_cli: DockerCLI, image: str) -> None:
    """With the web config the daemon runs with (TLS and basic auth, from the environment)
    the image's health check turns healthy; the old plain-HTTP check got 401 or nothing."""
    with tempfile.TemporaryDirectory(prefix="densityd-web-", dir="/var/tmp") as tmp:
        # Readable by the image's user (uid 10001): a test key, nothing to protect.
        directory = Path(tmp)
        directory.chmod(0o755)
        pki = make_pki(directory / "pki")
        (directory / "pki").chmod(0o755)
        for path in (directory / "pki").iterdir():
            path.chmod(0o644)
        hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=10)).decode()
        (pki.directory / "web.yml").write_text(
            "tls_server_config: {cert_file: server.crt, key_file: server.key}\n"
            f"basic_auth_users: {{prometheus: '{hashed}'}}\n"
        )
        (pki.directory / "web.yml").chmod(0o644)
        port = free_port()
        name = f"densityd-test-{uuid.uuid4().hex[:8]}"
        docker_cli(
            "run", "-d", "--name", name, "--label", f"{TEST_LABEL}=1", "--network", "host",
            "-v", f"{pki.directory}:/etc/densityd/web:ro",
            "-e", f"DENSITYD_LISTEN_ADDRESS=0.0.0.0:{port}",
            "-e", "DENSITYD_WEB_CONFIG_FILE=/etc/densityd/web/web.yml",
            "--health-interval", "2s", "--health-timeout", HEALTH_TIMEOUT,
            "--health-start-period", "0s",
            image, "run", "--interval", "1", "--no-docker", "--no-libvirt",
        )  # fmt: skip
        try:
            status = wait_for_health(docker_cli, name)
            assert status == "healthy", container_log(docker_cli, name) + docker_cli(
                "inspect", "--format", "{{json .State.Health}}", name
            )
            response = requests.get(
                f"https://127.0.0.1:{port}/metrics",
                verify=str(pki.ca),
                auth=("prometheus", "secret"),
                timeout=10,
            )
            assert response.status_code == 200
            unauthenticated = requests.get(
                f"https://127.0.0.1:{port}/metrics", verify=str(pki.ca), timeout=10
            )
            assert unauthenticated.status_code == 401
        finally:
            docker_cli("rm", "-f", name, check=False)
