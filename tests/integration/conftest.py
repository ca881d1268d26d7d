"""Fixtures over real backends: the Docker engine, the tiny image, densityd daemons.

Nothing here is mocked. The tests need a running Docker engine (``.ci/run`` starts one) and
skip when there is none, unless ``DENSITYD_REQUIRE_BACKENDS=1`` (set by ``.ci/run``) turns a
missing backend into a failure so that CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.backends import (
    LIBVIRT_URI,
    PROMETHEUS_JOB,
    TEST_LABEL,
    TINY_IMAGE,
    Containers,
    Daemon,
    DockerCLI,
    PrivateDockerd,
    PrometheusServer,
    VMs,
    build_tiny_image,
    docker_binary,
    free_port,
    missing_backend,
    virsh,
)
from tests.integration.guest import BUSYBOX, GuestImage, guest_image


@pytest.fixture(scope="session")
def docker_cli(tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    """The local Docker engine, with the tiny image present."""
    docker = DockerCLI(docker_binary())
    if not docker.ok():
        missing_backend("no Docker engine answers (start dockerd; see .ci/run)")
    if not docker("images", "-q", TINY_IMAGE):
        build_tiny_image(docker, tmp_path_factory.mktemp("image"))
    return docker


@pytest.fixture
def containers(docker_cli: DockerCLI) -> Iterator[Containers]:
    """A per-test container factory with cleanup."""
    factory = Containers(docker_cli)
    try:
        yield factory
    finally:
        factory.remove_all()


@pytest.fixture
def network(docker_cli: DockerCLI, containers: Containers) -> Iterator[str]:
    """A user-defined bridge network (the engine in CI has no default bridge: a container
    gets an interface of its own only on one of these), removed after its containers."""
    name = f"densityd-test-net-{uuid.uuid4().hex[:8]}"
    docker_cli("network", "create", "--driver", "bridge", "--label", f"{TEST_LABEL}=1", name)
    try:
        yield name
    finally:
        containers.remove_all()
        docker_cli("network", "rm", name, check=False)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start ``densityd run`` with extra flags; every daemon is stopped after the test."""
    daemons: list[Daemon] = []

    def start(
        *args: str,
        interval: float = 1.0,
        env: dict[str, str] | None = None,
        scheme: str = "http",
        probe: dict[str, Any] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> Daemon:
        """``probe``: more ``requests.get`` arguments for the health check (TLS, auth);
        ``preexec``: run in the child before densityd starts (resource limits)."""
        port = free_port()
        log_path = tmp_path / f"densityd-{port}.log"
        command = [
            sys.executable,
            "-m",
            "densityd",
            "run",
            "--listen-address",
            f"127.0.0.1:{port}",
            "--interval",
            str(interval),
            "--state-dir",
            str(tmp_path / "state"),
            *args,
        ]
        log_file = log_path.open("w")
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec,
        )
        daemon = Daemon(process, f"{scheme}://127.0.0.1:{port}", log_path)
        daemons.append(daemon)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"densityd exited with {process.returncode}:\n{daemon.log()}")
            try:
                response = requests.get(f"{daemon.url}/healthz", timeout=2, **(probe or {}))
                if response.status_code == 200:
                    return daemon
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"densityd did not become healthy:\n{daemon.log()}")

    yield start
    for daemon in daemons:
        daemon.stop()


@pytest.fixture(scope="session")
def libvirt_ready() -> str:
    """The local libvirtd (qemu:///system) answers; returns its URI."""
    if shutil.which("virsh") is None:
        missing_backend("virsh is not installed (Debian package libvirt-clients)")
    try:
        virsh("version", timeout=20)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        missing_backend(f"libvirtd does not answer at {LIBVIRT_URI}: {exc}")
    return LIBVIRT_URI


@pytest.fixture(scope="session")
def guest(libvirt_ready: str) -> GuestImage:
    """Debian's kernel and a busybox initramfs for real guests, built once and cached."""
    if not os.path.exists(BUSYBOX) or shutil.which("apt-get") is None:
        missing_backend("a real guest needs busybox-static and apt-get (DESIGN §4.1)")
    try:
        return guest_image()
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        missing_backend(f"cannot build the guest kernel and initramfs: {exc}")
        raise


@pytest.fixture
def vms(libvirt_ready: str) -> Iterator[VMs]:
    """A per-test VM factory; QEMU runs as libvirt-qemu, so its images' directory is 0755."""
    workdir = Path(tempfile.mkdtemp(prefix="densityd-vms-", dir="/tmp"))
    workdir.chmod(0o755)
    factory = VMs(workdir)
    try:
        yield factory
    finally:
        factory.remove_all()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[Sequence[str]], PrometheusServer]]:
    """Start Prometheus scraping ``targets`` every second; stopped after the test."""
    binary = shutil.which("prometheus")
    if binary is None:
        missing_backend("prometheus is not installed (Debian package prometheus)")
    assert binary is not None
    servers: list[PrometheusServer] = []

    def start(targets: Sequence[str], job: str = PROMETHEUS_JOB) -> PrometheusServer:
        directory = tmp_path / f"prometheus-{len(servers)}"
        directory.mkdir()
        config = directory / "prometheus.yml"
        listed = ", ".join(f'"{t}"' for t in targets)
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: {job}\n"
            f"    static_configs: [{{targets: [{listed}]}}]\n"
        )
        port = free_port()
        log_path = directory / "prometheus.log"
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        server = PrometheusServer(process, f"http://127.0.0.1:{port}", log_path)
        servers.append(server)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{log_path.read_text()}")
            try:
                if requests.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                    return server
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus did not become ready:\n{log_path.read_text()}")

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def private_dockerd(docker_cli: DockerCLI) -> Iterator[PrivateDockerd]:
    """A second dockerd this test may stop and start at will."""
    if shutil.which("dockerd") is None:
        missing_backend("dockerd is not installed")
    engine = PrivateDockerd(Path(tempfile.mkdtemp(prefix="dd-", dir="/tmp")), docker_cli.binary)
    try:
        engine.start()
        build_tiny_image(engine.cli, engine.root)
        yield engine
    finally:
        engine.cli("rm", "-f", *engine.cli("ps", "-aq").split(), check=False)
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)
