"""Least privilege and hostile input against the real Docker engine and libvirtd.

- Docker is only ever sent GET requests: densityd reaches the engine through a recording proxy
  on a Unix socket, and every request it made is checked (the paths are the README's list).
- Container environment variables and labels outside ``--docker-label-allowlist`` never reach
  ``/metrics`` or ``/api/v1/plan``; allowlisted ones do.
- Label values and VM names with quotes, backslashes, newlines and non-ASCII give an
  exposition ``promtool check metrics`` accepts and that parses back to the same strings.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.backends import Containers, Daemon, VMs, promtool, value_of
from tests.integration.engine_proxy import RecordingProxy

pytestmark = pytest.mark.integration

SECRET = "hunter2-densityd-secret"
HOSTILE_LABEL = 'a"b\\c\nd é 名 🐳'
HOSTILE_VM_NAME = "densityd-test-\"q\\é'名 x"


@pytest.fixture
def proxy(docker_cli: object) -> Iterator[RecordingProxy]:
    """A recording proxy to the local engine, on a socket in a fresh directory."""
    directory = Path(tempfile.mkdtemp(prefix="densityd-proxy-"))
    recorder = RecordingProxy(directory / "docker.sock")
    try:
        yield recorder
    finally:
        recorder.close()
        (directory / "docker.sock").unlink(missing_ok=True)
        directory.rmdir()


def info_samples(text: str) -> list[dict[str, str]]:
    """The label sets of ``densityd_workload_info`` in one exposition."""
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        if family.name == "densityd_workload_info"
        for sample in family.samples
    ]


def check_metrics(text: str) -> None:
    """Fail unless ``promtool check metrics`` accepts ``text`` without a complaint."""
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (0, "", ""), (
        result.stdout + result.stderr
    )


def test_docker_is_only_sent_get_requests(
    proxy: RecordingProxy,
    containers: Containers,
    start_daemon: Callable[..., Daemon],
) -> None:
    """A daemon (stats API, disk scans, events) and ``densityd sample`` send GETs only."""
    running = containers.run("--label", "team=a")
    stopped = containers.run()
    containers.docker("stop", "-t", "0", stopped)
    daemon = start_daemon(
        "--no-libvirt",
        "--docker-host",
        proxy.url,
        "--docker-stats-mode",
        "api",
        "--disk-interval",
        "1",
        "--docker-label-allowlist",
        "team",
    )
    daemon.wait_for(
        lambda s: (
            value_of(s, "densityd_workload_memory_bytes", id=running) is not None
            and value_of(s, "densityd_workload_disk_bytes", id=running) is not None
        ),
        what="the container's memory and disk",
    )
    containers.docker("rename", running, f"densityd-test-renamed-{running[:8]}")
    daemon.wait_for(
        lambda s: (
            value_of(s, "densityd_workload_info", name=f"densityd-test-renamed-{running[:8]}")
            is not None
        ),
        what="the rename (events, then a new inspect)",
    )
    one_shot = subprocess.run(
        [sys.executable, "-m", "densityd", "sample", "--no-libvirt", "--docker-host", proxy.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert one_shot.returncode == 0, one_shot.stderr

    assert proxy.methods() == {"GET"}, proxy.requests
    endpoints = proxy.endpoints()
    # What the README's docker-socket-proxy section grants; a new endpoint must be added there.
    assert endpoints == {
        "/version",
        "/info",
        "/events",
        "/containers/json",
        "/containers/{id}/json",
        "/containers/{id}/stats",
    }, sorted(endpoints)


def test_environment_and_unlisted_labels_are_never_exported(
    containers: Containers, start_daemon: Callable[..., Daemon]
) -> None:
    """``-e SECRET=...`` and a label outside the allowlist appear in no output; listed ones do."""
    container_id = containers.run(
        "-e",
        f"SECRET={SECRET}",
        "--label",
        f"secret={SECRET}",
        "--label",
        "team=payments",
    )
    daemon = start_daemon("--no-libvirt", "--docker-label-allowlist", "team")
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_bytes", id=container_id) is not None,
        what="the container",
    )
    text = daemon.metrics_text()
    plan = requests.get(f"{daemon.url}/api/v1/plan", timeout=30)
    assert plan.status_code == 200, plan.text
    sample = subprocess.run(
        [
            *(sys.executable, "-m", "densityd", "sample", "--no-libvirt", "-o", "json"),
            *("--docker-label-allowlist", "team"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sample.returncode == 0, sample.stderr

    for output in (text, plan.text, sample.stdout):
        assert SECRET not in output
        assert "label_secret" not in output
    info = [s for s in info_samples(text) if s["id"] == container_id]
    assert len(info) == 1
    assert info[0]["label_team"] == "payments"
    listed = [w for w in json.loads(sample.stdout)["workloads"] if w["id"] == container_id]
    assert listed[0]["labels"] == {"team": "payments"}


def test_hostile_label_values_and_vm_names_give_valid_exposition(
    containers: Containers,
    vms: VMs,
    libvirt_ready: str,
    start_daemon: Callable[..., Daemon],
) -> None:
    """Quotes, backslashes, newlines and non-ASCII pass promtool and round-trip exactly."""
    hostile = containers.run(
        "--label", f"team={HOSTILE_LABEL}", "--label", f'com.example/owner.{"x" * 3}=o"k'
    )
    plain = containers.run()
    vm_uuid = vms.define(memory_mib=64, disks_mib=(8,), name=HOSTILE_VM_NAME)
    daemon = start_daemon(
        "--libvirt-uri",
        libvirt_ready,
        "--docker-label-allowlist",
        "team",
        "--docker-label-allowlist",
        "com.example/owner.xxx",
    )
    daemon.wait_for(
        lambda s: all(
            value_of(s, "densityd_workload_info", id=workload) is not None
            for workload in (hostile, plain, vm_uuid)
        ),
        what="both containers and the VM",
    )
    text = daemon.metrics_text()
    check_metrics(text)

    info = {s["id"]: s for s in info_samples(text)}
    assert info[hostile]["label_team"] == HOSTILE_LABEL
    assert info[hostile]["label_com_example_owner_xxx"] == 'o"k'
    assert info[plain]["label_team"] == info[plain]["label_com_example_owner_xxx"] == ""
    assert info[vm_uuid]["name"] == HOSTILE_VM_NAME
    assert info[vm_uuid]["label_team"] == ""
    names = {
        sample.labels["name"]
        for family in text_string_to_metric_families(text)
        if family.name == "densityd_workload_cpu_limit_cores"
        for sample in family.samples
    }
    assert HOSTILE_VM_NAME in names


def test_the_recording_proxy_would_see_a_write(proxy: RecordingProxy) -> None:
    """The proxy records a POST, so the GET-only test can fail."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(proxy.path))
        # Starting a container that does not exist: a write the engine refuses with 404.
        sock.sendall(
            b"POST /containers/densityd-test-no-such-container/start HTTP/1.1\r\n"
            b"Host: docker\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 404 ")
    assert proxy.methods() == {"POST"}
