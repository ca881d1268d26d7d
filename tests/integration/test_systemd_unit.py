"""The systemd unit starts under a real systemd on a Docker-only, a libvirt-only and a mixed host.

A Debian 12 image with systemd on top of the debootstrapped base (tagged by a hash of what it
is built from, kept and reused) runs as a container with systemd as PID 1. In it the test
creates only the groups of the scenario, installs ``config/densityd.service`` with the
README's own commands, and replaces only ``ExecStart`` (densityd is not installed there) with
a stand-in that prints its ids and sleeps. The service must be running, not failed with
216/GROUP, and its process must hold densityd's group and `docker` where it exists, no more.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.backends import TEST_LABEL, DockerCLI, missing_backend
from tests.integration.images import BASE_IMAGE, ensure_base_image

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "config" / "densityd.service"
README = REPO / "README.md"

SYSTEMD_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends systemd systemd-sysv dbus \\
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
"""

# Linux capabilities by bit number (linux/capability.h), as docker --cap-drop names them.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip

# What stands in for densityd: it shows the ids it got and keeps the service running.
STAND_IN = "/bin/sh -c 'id; exec sleep infinity'"
DROP_IN = f"[Service]\nExecStart=\nExecStart={STAND_IN}\n"
CHECKOUT = "/root/densityd"


def systemd_image(docker: DockerCLI) -> str:
    """The systemd image's tag, built unless an image from the same inputs exists."""
    ensure_base_image(docker)
    base_id = docker("images", "-q", "--no-trunc", BASE_IMAGE)
    digest = hashlib.sha256(f"{base_id}\n{SYSTEMD_DOCKERFILE}".encode()).hexdigest()[:16]
    tag = f"local/debian-systemd:{digest}"
    if docker("images", "-q", tag):
        return tag
    for stale in docker("images", "-q", "local/debian-systemd").split():
        docker("rmi", stale, check=False)  # built from inputs that have changed since
    proxies = [
        arg
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY")
        if name in os.environ
        for arg in ("--build-arg", name)
    ]
    result = subprocess.run(
        [
            *(docker.binary, "build", "--network", "host", "--force-rm"),
            *("--label", f"{TEST_LABEL}=1", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"),
            *proxies,
            *("-t", tag, "-"),
        ],
        input=SYSTEMD_DOCKERFILE,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    assert result.returncode == 0, f"build failed:\n{result.stdout[-4000:]}{result.stderr}"
    return tag


def privileges() -> list[str]:
    """``--privileged``, or every capability this host has where it lacks some.

    A host that is itself a container may lack a capability (CAP_SYS_RESOURCE here), and
    ``--privileged`` then fails with "unable to apply caps"; dropping what it lacks works.
    """
    status = Path("/proc/self/status").read_text()
    bounding = int(re.search(r"^CapBnd:\s+([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    lacking = [name for bit, name in enumerate(CAPABILITIES) if not bounding >> bit & 1]
    if not lacking:
        return ["--privileged"]
    unconfined = ["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"]
    return ["--cap-add", "ALL", *(f"--cap-drop={name}" for name in lacking), *unconfined]


def readme_install_commands() -> list[str]:
    """The README's commands that install the unit: its block in "Running under systemd"
    without the lines that install densityd itself or read the journal."""
    section = README.read_text().split("### Running under systemd", 1)[1].split("\n#", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block in the README's 'Running under systemd'"
    commands = []
    for line in block.group(1).splitlines():
        command = re.sub(r"(^|\s+)#\s.*$", "", line).strip()
        if command and "/opt/densityd" not in command and not command.startswith("journalctl"):
            commands.append(command)
    joined = "\n".join(commands)
    for needed in ("useradd ", "config/densityd.service", "systemctl daemon-reload", "--now"):
        assert needed in joined, f"the README's install commands lost {needed!r}:\n{joined}"
    return commands


class SystemdContainer:
    """A container running systemd as PID 1."""

    def __init__(self, docker: DockerCLI, image: str) -> None:
        self.docker = docker
        self.name = f"densityd-test-systemd-{uuid.uuid4().hex[:8]}"
        try:
            docker(
                "run",
                "-d",
                "--name",
                self.name,
                "--label",
                f"{TEST_LABEL}=1",
                "--network",
                "none",
                *privileges(),
                # systemd 252 on a cgroup v1 host: the host's hierarchies, writable, and tmpfs
                # where it keeps its runtime state.
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                "--tmpfs",
                "/run",
                "--tmpfs",
                "/run/lock",
                "--stop-signal",
                "SIGRTMIN+3",
                image,
                "/sbin/init",
            )
            self.wait_until_up()
        except BaseException:
            # A failed run can leave the container created; a failed boot leaves it running.
            self.remove()
            raise

    def wait_until_up(self, timeout: float = 60) -> None:
        """Wait until systemd has booted (``is-system-running`` says running or degraded)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            # Before systemd listens on its bus this fails ("offline" or an error): ask again.
            state = self.sh("systemctl is-system-running 2>&1", check=False)
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        log = self.docker("logs", self.name, check=False)
        raise AssertionError(f"systemd did not come up in {timeout:.0f} s ({state!r}):\n{log}")

    def sh(self, script: str, check: bool = True) -> str:
        """Run ``script`` with sh as root in the container; its stdout."""
        return self.docker("exec", self.name, "sh", "-c", script, check=check, timeout=120)

    def remove(self) -> None:
        """Stop systemd cleanly (SIGRTMIN+3) so it removes its cgroups, then remove."""
        self.docker("stop", "-t", "20", self.name, check=False)
        self.docker("rm", "-f", self.name, check=False)


@pytest.fixture(scope="module")
def image(docker_cli: DockerCLI) -> str:
    """The Debian 12 image with systemd, kept for the next run."""
    if os.geteuid() != 0:
        missing_backend("a container with systemd as PID 1 needs root")
    return systemd_image(docker_cli)


@pytest.fixture
def systemd(docker_cli: DockerCLI, image: str) -> Iterator[SystemdContainer]:
    """A fresh container with systemd as PID 1, removed afterwards."""
    container = SystemdContainer(docker_cli, image)
    try:
        yield container
    finally:
        container.remove()


@pytest.mark.parametrize(
    "groups",
    [
        pytest.param(("docker",), id="docker-only"),
        pytest.param(("libvirt",), id="libvirt-only"),
        pytest.param(("docker", "libvirt"), id="docker-and-libvirt"),
    ],
)
def test_unit_starts_with_the_groups_the_host_has(
    docker_cli: DockerCLI, systemd: SystemdContainer, groups: tuple[str, ...]
) -> None:
    """Installed as the README says on a host with only ``groups``, the service runs (not
    216/GROUP) and its process holds densityd's group and ``docker`` where the host has it,
    nothing more (``libvirt`` is only joined when an admin opts in)."""
    docker_cli("cp", str(UNIT), f"{systemd.name}:/tmp/densityd.service")
    dropin = "/etc/systemd/system/densityd.service.d"
    setup = [
        *(f"groupadd --system {group}" for group in groups),
        f"mkdir -p {CHECKOUT}/config {dropin}",
        f"mv /tmp/densityd.service {CHECKOUT}/config/densityd.service",
        f"printf %s {shlex.quote(DROP_IN)} > {dropin}/stand-in.conf",
    ]
    systemd.sh(" && ".join(setup))
    commands = readme_install_commands()
    # As an admin pastes them: one after another, each may fail; the state is checked below.
    script = " ; ".join(commands)
    transcript = systemd.sh(f"cd {CHECKOUT} && exec 2>&1 && set -x && {script} ; true")
    time.sleep(1)  # a start that fails goes through auto-restart: let it show
    properties = systemd.sh(
        "systemctl show -p ActiveState -p SubState -p ExecMainStatus -p NRestarts "
        "-p MainPID -p ExecStart densityd"
    )
    shown = dict(line.split("=", 1) for line in properties.splitlines())
    status = systemd.sh("systemctl status --no-pager densityd", check=False)
    context = f"{transcript}\n{status}"
    assert "exec sleep infinity" in shown["ExecStart"], context  # the stand-in, not densityd
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running"), context
    assert shown["NRestarts"] == "0", context
    # Groups: of /proc/PID/status lists the supplementary groups, the primary one among them.
    proc = systemd.sh(f"cat /proc/{shown['MainPID']}/status")
    held = {int(gid) for gid in re.search(r"^Groups:(.*)$", proc, re.M).group(1).split()}  # type: ignore[union-attr]
    names = ("densityd", *(group for group in groups if group == "docker"))  # libvirt: opt-in
    expected = {int(systemd.sh(f"getent group {name} | cut -d: -f3")) for name in names}
    assert held == expected, f"groups {held}, expected {expected} ({names})\n{context}"
