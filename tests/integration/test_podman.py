"""Podman through its Docker-compatible API, checked against its cgroup files and podman stats.

A real ``podman system service`` (``DENSITYD_TEST_PODMAN_SOCKET``, which ``.ci/run`` starts,
else one this session starts and stops) runs real containers; densityd reaches it as a Docker
host. Ground truth is read from the container's own cgroup, found through its
``/proc/PID/cgroup`` in whichever hierarchy this host has (v1 or v2), so the file also runs in
the cgroup v2 guest (DESIGN §4.2), where Podman uses the systemd manager.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.backends import (
    TEST_LABEL,
    TINY_IMAGE,
    Daemon,
    Series,
    first_reading_after,
    missing_backend,
    tiny_image_archive,
    value_of,
)
from tests.integration.engine_proxy import RecordingProxy

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
CGROUP = Path("/sys/fs/cgroup")
# Podman's default rlimits cannot be set by runc on this host kind (DESIGN §4.3).
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


@dataclass
class Podman:
    """The ``podman`` command against one service socket (``--url``)."""

    socket: str

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        command = ["podman", "--url", self.url, *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def ok(self) -> bool:
        try:
            self("version", "--format", "{{.Server.Version}}", timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            return False
        return True


def _import_tiny_image(podman: Podman, workdir: Path) -> None:
    """The tests' busybox image imported as ``tiny:latest`` (no registry is reachable)."""
    podman("import", str(tiny_image_archive(workdir)), TINY_IMAGE)


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """A Podman service with the tiny image: ``.ci/run``'s, else one started for the session."""
    if shutil.which("podman") is None:
        missing_backend("podman is not installed (Debian package podman)")
    workdir = Path(tempfile.mkdtemp(prefix="densityd-podman-"))
    started: subprocess.Popen[bytes] | None = None
    socket = os.environ.get("DENSITYD_TEST_PODMAN_SOCKET")
    if not socket:
        socket = str(workdir / "podman.sock")
        log = (workdir / "service.log").open("wb")
        started = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Podman(socket)
    deadline = time.monotonic() + 30
    while not service.ok() and time.monotonic() < deadline:
        time.sleep(0.3)
    try:
        if not service.ok():
            missing_backend(f"no Podman service answers at {service.url}")
        if not service("images", "-q", TINY_IMAGE):
            _import_tiny_image(service, workdir)
        yield service
    finally:
        if started is not None:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(timeout=20)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class PodmanContainers:
    """Runs labelled tiny containers on the Podman service; removes them afterwards."""

    podman: Podman
    started: list[str] = field(default_factory=list)

    def run(self, *args: str, command: str = "sleep 3600", name: str | None = None) -> str:
        container_id = self.podman(
            "run",
            "-d",
            "--name",
            name or f"densityd-test-{uuid.uuid4().hex[:8]}",
            "--label",
            f"{TEST_LABEL}=1",
            *ULIMITS,
            *args,
            TINY_IMAGE,
            "sh",
            "-c",
            command,
        )
        self.started.append(container_id)
        return container_id

    def remove_all(self) -> None:
        if self.started:
            self.podman("rm", "-f", "-t", "0", *self.started, check=False)
            self.started.clear()


@pytest.fixture
def pods(podman: Podman) -> Iterator[PodmanContainers]:
    factory = PodmanContainers(podman)
    try:
        yield factory
    finally:
        factory.remove_all()


def cgroup_dir(podman: Podman, container_id: str, controller: str) -> Path:
    """The container's cgroup directory for ``controller`` (v1) or its v2 directory.

    Found from its process's ``/proc/PID/cgroup`` and walked up to the ``libpod-<id>``
    directory (crun on v2 puts the process in a ``container`` child of the scope).
    """
    pid = podman("inspect", "--format", "{{.State.Pid}}", container_id)
    text = Path(f"/proc/{pid}/cgroup").read_text()
    v2 = (CGROUP / "cgroup.controllers").exists()
    path = ""
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, cgroup = rest.partition(":")
        if (v2 and hierarchy == "0") or (not v2 and controller in controllers.split(",")):
            path = cgroup.strip("/")
            break
    parts = path.split("/")
    for end in range(len(parts), 0, -1):
        if parts[end - 1].startswith(f"libpod-{container_id}"):
            path = "/".join(parts[:end])
            break
    if v2:
        return CGROUP / path
    for name in (controller, "cpu,cpuacct", "cpuacct,cpu"):
        if (CGROUP / name / path).is_dir():
            return CGROUP / name / path
    raise AssertionError(f"no {controller} cgroup for {container_id} at {path}")


def cgroup_working_set(podman: Podman, container_id: str) -> int:
    """usage - inactive file, from whichever hierarchy this host has."""
    directory = cgroup_dir(podman, container_id, "memory")
    if (directory / "memory.current").exists():
        usage = int((directory / "memory.current").read_text())
        key = "inactive_file"
    else:
        usage = int((directory / "memory.usage_in_bytes").read_text())
        key = "total_inactive_file"
    stat = dict(line.split() for line in (directory / "memory.stat").read_text().splitlines())
    return max(0, usage - int(stat[key]))


def cgroup_cpu_seconds(podman: Podman, container_id: str) -> float:
    directory = cgroup_dir(podman, container_id, "cpuacct")
    if (directory / "cpu.stat").exists() and not (directory / "cpuacct.usage").exists():
        stat = dict(line.split() for line in (directory / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6
    return int((directory / "cpuacct.usage").read_text()) / 1e9


def podman_stats_memory(podman: Podman, container_id: str) -> float:
    """``podman stats --no-stream``'s memory usage in bytes (``30.37MiB / 128MiB``)."""
    text = podman("stats", "--no-stream", "--format", "{{.MemUsageBytes}}", container_id)
    match = re.match(r"([\d.]+)\s*([KMG]iB|B)", text)
    assert match, text
    scale = {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB}
    return float(match.group(1)) * scale[match.group(2)]


def sample(podman: Podman, *args: str) -> tuple[dict[str, Any], str]:
    """``densityd sample -o json`` against the Podman service: (document, stderr)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "densityd",
            "sample",
            "-o",
            "json",
            "--docker-host",
            podman.url,
            "--no-libvirt",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def workload(document: dict[str, Any], container_id: str) -> dict[str, Any]:
    (found,) = [w for w in document["workloads"] if w["id"] == container_id]
    return found


FILLER = "dd if=/dev/zero of=/data/x bs=1M count=60 && sleep 3600"


def wait_filled(podman: Podman, container_id: str) -> None:
    """Until dd has put its 60 MiB in the tmpfs (the cgroup says so)."""
    deadline = time.monotonic() + 30
    while cgroup_working_set(podman, container_id) < 60 * MiB:
        assert time.monotonic() < deadline, "the filler never reached 60 MiB"
        time.sleep(0.3)
    time.sleep(1)  # dd exits; the container is idle and its memory steady


@pytest.mark.parametrize("stats_mode", ["cgroup", "api"])
def test_sample_lists_podman_containers_with_cgroup_memory_and_limits(
    podman: Podman, pods: PodmanContainers, stats_mode: str
) -> None:
    """Memory matches the cgroup files and podman stats; limits match what was asked."""
    filler = pods.run(
        "--memory", "128m", "--cpus", "0.5", "--tmpfs", "/data:size=200m", command=FILLER
    )
    wait_filled(podman, filler)
    document, stderr = sample(podman, "--cpu-window", "0.5", "--docker-stats-mode", stats_mode)
    truth = cgroup_working_set(podman, filler)
    found = workload(document, filler)

    assert re.search(r"source docker: found Podman \d+\.\d+\.\d+ at unix://", stderr), stderr
    how = "reading cgroup v" if stats_mode == "cgroup" else "reading the Engine stats API"
    assert how in stderr
    assert document["engine"]["name"] == "podman"
    assert found["state"] == "running" and found["name"].startswith("densityd-test-")
    assert found["memory_limit_bytes"] == 128 * MiB
    assert found["cpu_limit_cores"] == 0.5
    on_v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    if on_v2 and stats_mode == "api":
        # Seen in the cgroup v2 guest: Podman 4.3's stats (API and `podman stats`) gave about
        # 50 KiB for a container whose scope holds 60 MiB of tmpfs. densityd's default for a
        # local engine reads the cgroup files, which are right (the cgroup case below).
        pytest.xfail("Podman 4.3 on cgroup v2 reports far less memory than its cgroup holds")
    # The filler is idle: its memory is steady, and the file read after the sample agrees
    # within 1 MiB (kernel bookkeeping). On the API path Podman gives no inactive-file figure,
    # so densityd reports usage; the filler's 60 MiB are tmpfs (not inactive file): 1 MiB too.
    assert abs(found["memory_bytes"] - truth) <= 1 * MiB, (found["memory_bytes"], truth)
    if not on_v2:  # podman stats is wrong there (above); the cgroup files are the truth
        # podman stats prints four significant digits ("61.37MiB"): 1 MiB covers rounding.
        assert abs(found["memory_bytes"] - podman_stats_memory(podman, filler)) <= 1 * MiB
    assert 60 * MiB <= found["memory_bytes"] <= 70 * MiB


@pytest.mark.parametrize("stats_mode", ["cgroup", "api"])
def test_cpu_burner_held_to_half_a_core(
    podman: Podman, pods: PodmanContainers, stats_mode: str
) -> None:
    """CPU time matches the cgroup's counter; the rate over the window is the 0.5 cap."""
    burner = pods.run("--cpus", "0.5", command="yes > /dev/null")
    time.sleep(1)
    document, _ = sample(podman, "--cpu-window", "3", "--docker-stats-mode", stats_mode)
    found = workload(document, burner)
    truth = cgroup_cpu_seconds(podman, burner)
    # The file is read after the sample ends: ahead by at most a few tenths of a second at
    # 0.5 core (process exit, JSON printing); 1 s allows for a loaded 2-core host.
    assert 0 <= truth - found["cpu_seconds"] <= 1.0, (found["cpu_seconds"], truth)
    # CFS holds the burner to 0.5 core: 50 % within 12 points over a 3 s window.
    assert found["cpu_percent"] == pytest.approx(50, abs=12)


def test_api_block_devices_are_named_as_the_cgroup_numbers_them(
    podman: Podman, pods: PodmanContainers
) -> None:
    """Podman 4.3's stats swap major and minor; densityd turns them back on a local engine."""
    reader = pods.run(command="cat /bin/busybox > /dev/null; sleep 3600")
    time.sleep(1)
    by_cgroup, _ = sample(podman, "--docker-stats-mode", "cgroup", "--cpu-window", "0.2")
    by_api, _ = sample(podman, "--docker-stats-mode", "api", "--cpu-window", "0.2")
    names_cgroup = {d["name"] for d in workload(by_cgroup, reader)["block_devices"]}
    names_api = {d["name"] for d in workload(by_api, reader)["block_devices"]}
    assert names_api == names_cgroup
    # A number densityd could not name would be printed as MAJ:MIN (a swapped one is no device).
    assert not any(re.fullmatch(r"\d+:\d+", name) for name in names_api), names_api


def has(container_id: str, metric: str = "densityd_workload_info"):  # type: ignore[no-untyped-def]
    return lambda series: value_of(series, metric, id=container_id) is not None


def names_of(series: Series, container_id: str) -> set[str]:
    return {
        dict(labels)["name"]
        for (metric, labels), _ in series.items()
        if metric == "densityd_workload_info" and dict(labels).get("id") == container_id
    }


def test_daemon_follows_renames_removals_and_says_podman(
    start_daemon,  # type: ignore[no-untyped-def]
    podman: Podman,
    pods: PodmanContainers,
) -> None:
    """A container renamed or removed between passes is right at the next pass."""
    daemon: Daemon = start_daemon("--docker-host", podman.url, "--no-libvirt")
    first = pods.run("--memory", "64m")
    second = pods.run()
    series = daemon.wait_for(has(first, "densityd_workload_memory_bytes"), what="first container")
    assert "source docker: found Podman" in daemon.log()
    assert value_of(series, "densityd_source_up", source="docker") == 1
    engine = [
        dict(labels)
        for (metric, labels), _ in series.items()
        if metric == "densityd_docker_engine_info"
    ]
    assert len(engine) == 1 and engine[0]["engine"] == "podman", engine
    assert value_of(series, "densityd_workload_memory_limit_bytes", id=first) == 64 * MiB

    new_name = f"densityd-test-renamed-{uuid.uuid4().hex[:6]}"
    podman("rename", first, new_name)
    series = daemon.wait_for(
        lambda s: names_of(s, first) == {new_name}, timeout=10, what="the new name"
    )
    podman("rm", "-f", "-t", "0", second)
    daemon.wait_for(lambda s: not has(second)(s), timeout=10, what="the removed container gone")
    # Stopped and started again: running, with usage, under the same ID.
    podman("stop", "-t", "0", first)
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_bytes", id=first) is None and has(first)(s),
        timeout=10,
        what="the stopped container without usage",
    )
    podman("start", first)
    daemon.wait_for(has(first, "densityd_workload_memory_bytes"), timeout=15, what="restarted")


def test_podman_update_is_seen_through_the_cgroup(
    start_daemon,  # type: ignore[no-untyped-def]
    podman: Podman,
    pods: PodmanContainers,
) -> None:
    """Podman 4.3's ``update`` changes the cgroup but neither inspect nor the events."""
    daemon: Daemon = start_daemon("--docker-host", podman.url, "--no-libvirt")
    container = pods.run("--memory", "128m", "--cpus", "0.5")
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_limit_bytes", id=container) == 128 * MiB,
        what="the first limits",
    )
    podman("update", "--memory", "64m", "--cpus", "0.25", container)
    series = daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_limit_bytes", id=container) == 64 * MiB,
        timeout=10,
        what="the updated memory limit",
    )
    assert value_of(series, "densityd_workload_cpu_limit_cores", id=container) == 0.25


def test_steady_passes_ask_podman_nothing(
    start_daemon,  # type: ignore[no-untyped-def]
    podman: Podman,
    pods: PodmanContainers,
) -> None:
    """Through a recording proxy: one ``/events`` stream, no request at a steady pass, and a
    rename shown by the first reading begun after it."""
    directory = Path(tempfile.mkdtemp(prefix="densityd-podman-proxy-"))
    proxy = RecordingProxy(directory / "podman.sock", upstream=podman.socket)
    try:
        container = pods.run()
        daemon: Daemon = start_daemon("--docker-host", proxy.url, "--no-libvirt", interval=0.5)
        daemon.wait_for(
            lambda s: (
                value_of(s, "densityd_workload_memory_bytes", id=container) is not None
                and value_of(s, "densityd_source_up", source="docker_disk") == 1
            ),
            what="the container, and the first writable-layer scan",
        )
        time.sleep(1)
        before = len(proxy.requests)
        time.sleep(3)
        assert proxy.requests[before:] == [], "a steady pass sent a request"
        events = [path for _, path in proxy.requests if "/events" in path]
        assert len(events) == 1 and "/libpod/" not in events[0], events

        new_name = f"densityd-test-renamed-{uuid.uuid4().hex[:6]}"
        podman("rename", container, new_name)
        series = first_reading_after(daemon, time.time())
        assert names_of(series, container) == {new_name}
    finally:
        proxy.close()
        shutil.rmtree(directory, ignore_errors=True)
