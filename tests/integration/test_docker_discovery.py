"""Discovery through the Engine's event stream: nothing missed, nothing asked at a steady pass.

Each change (a container created, renamed, updated, killed, removed) is checked at the first
scrape whose Docker reading began after the change: that reading must show it. "After" allows
``EVENT_DELIVERY`` seconds for the Engine's event to reach densityd's stream (it is sent
before the command returns; a few milliseconds here, more under TCG). A pass's start is its
docker reading's last success minus its duration.

The steady-pass test puts a ``RecordingProxy`` between densityd and the engine and checks that
passes without changes send nothing at all: no ``/containers/json``, no ``/events`` polling,
only the one stream opened at the start.

The restart test runs its own dockerd (``private_dockerd``), which it stops and starts while
densityd watches it, changing containers while the engine is down and as soon as it is back.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.backends import (
    TINY_IMAGE,
    Containers,
    Daemon,
    DockerCLI,
    PrivateDockerd,
    Series,
    first_reading_after,
    reading_started,
    value_of,
)
from tests.integration.engine_proxy import RecordingProxy

pytestmark = pytest.mark.integration

MiB = 2**20
StartDaemon = Callable[..., Daemon]


def names_of(series: Series, container_id: str) -> set[str]:
    return {
        dict(labels)["name"]
        for (metric, labels), _ in series.items()
        if metric == "densityd_workload_info" and dict(labels).get("id") == container_id
    }


def listed(series: Series, container_id: str) -> bool:
    return value_of(series, "densityd_workload_info", id=container_id) is not None


def test_each_change_is_right_at_the_first_pass_after_it(
    start_daemon: StartDaemon, containers: Containers, docker_cli: DockerCLI
) -> None:
    """Created, renamed, memory and CPU updated, killed, removed: each one shown by the first
    reading begun after it, with the default (5 min) resync: the events alone tell."""
    daemon = start_daemon("--no-libvirt", interval=1.0)
    daemon.wait_for(lambda s: reading_started(s) is not None, what="a first docker reading")

    container = containers.run("--memory", "64m", "--memory-swap", "128m")
    series = first_reading_after(daemon, time.time())
    assert listed(series, container), "created"
    assert value_of(series, "densityd_workload_memory_limit_bytes", id=container) == 64 * MiB

    new_name = f"densityd-test-renamed-{uuid.uuid4().hex[:6]}"
    docker_cli("rename", container, new_name)
    series = first_reading_after(daemon, time.time())
    assert names_of(series, container) == {new_name}, "renamed"

    docker_cli("update", "--memory", "96m", "--memory-swap", "192m", container)
    series = first_reading_after(daemon, time.time())
    assert value_of(series, "densityd_workload_memory_limit_bytes", id=container) == 96 * MiB

    docker_cli("update", "--cpus", "0.5", container)
    series = first_reading_after(daemon, time.time())
    assert value_of(series, "densityd_workload_cpu_limit_cores", id=container) == 0.5

    docker_cli("kill", container)
    series = first_reading_after(daemon, time.time())
    assert listed(series, container), "a stopped container is still listed"
    assert value_of(series, "densityd_workload_memory_bytes", id=container) is None, "killed"

    docker_cli("rm", "-f", container)
    series = first_reading_after(daemon, time.time())
    assert not listed(series, container), "removed"
    assert value_of(series, "densityd_source_errors_total", source="docker") == 0


@pytest.fixture
def proxy(docker_cli: DockerCLI) -> Iterator[RecordingProxy]:
    directory = Path(tempfile.mkdtemp(prefix="densityd-discovery-"))
    recorder = RecordingProxy(directory / "docker.sock")
    try:
        yield recorder
    finally:
        recorder.close()
        shutil.rmtree(directory, ignore_errors=True)


def _paths(proxy: RecordingProxy, start: int = 0) -> list[str]:
    return [path for _method, path in proxy.requests[start:]]


def test_steady_passes_ask_the_engine_nothing(
    start_daemon: StartDaemon, containers: Containers, proxy: RecordingProxy
) -> None:
    """Passes without changes send no request at all; a change costs its inspect, no list."""
    container = containers.run()
    daemon = start_daemon("--docker-host", proxy.url, "--no-libvirt", interval=0.5)
    daemon.wait_for(
        lambda s: (
            value_of(s, "densityd_workload_memory_bytes", id=container) is not None
            and value_of(s, "densityd_source_up", source="docker_disk") == 1
        ),
        what="the container, and the first writable-layer scan",
    )
    time.sleep(1)  # the resync that follows the stream's opening is done
    before = len(proxy.requests)
    first = daemon.scrape()
    time.sleep(4)
    steady = daemon.scrape()
    ended = "densityd_source_last_success_timestamp_seconds"
    passes = (value_of(steady, ended, source="docker") or 0) - (
        value_of(first, ended, source="docker") or 0
    )
    assert passes >= 3, "the passes went on"  # seconds of passes at 0.5 s
    assert _paths(proxy, before) == [], "a steady pass sent a request"

    events = [path for path in _paths(proxy) if "/events" in path]
    assert len(events) == 1, events  # the one stream, opened once
    assert "until=" not in events[0]
    lists = [p for p in _paths(proxy) if p.partition("?")[0].endswith("/containers/json")]
    assert len(lists) <= 3, lists  # the first list(s) and the disk scan, never one per pass

    # A change is read by what changed alone: the new container's inspect, no list.
    before = len(proxy.requests)
    added = containers.run()
    series = first_reading_after(daemon, time.time())
    assert listed(series, added)
    asked = _paths(proxy, before)
    assert asked, "the new container was not inspected"
    assert all(f"/containers/{added}/json" in path for path in asked), asked


def _pid(cli: DockerCLI, container_id: str) -> int:
    return int(cli("inspect", "--format", "{{.State.Pid}}", container_id))


def test_a_restarted_engine_is_resynchronised(
    start_daemon: StartDaemon, private_dockerd: PrivateDockerd
) -> None:
    """dockerd stopped (docker down, its containers not current), a container's process
    killed while it is down, then, as soon as it answers again, a container removed, one
    renamed and updated, one created: the first reading begun after that shows it all."""
    cli = private_dockerd.cli

    def run(name: str, *args: str) -> str:
        # No network: a live-restored container keeps no network sandbox, which rename needs.
        return cli(
            "run", "-d", "--name", name, "--network", "none", *args, TINY_IMAGE,
            "sh", "-c", "sleep 3600",
        )  # fmt: skip

    removed = run("to-remove")
    renamed = run("to-rename", "--memory", "64m", "--memory-swap", "128m")
    killed = run("to-kill")
    daemon = start_daemon("--docker-host", private_dockerd.socket, "--no-libvirt", interval=1.0)
    daemon.wait_for(
        lambda s: all(
            value_of(s, "densityd_workload_memory_bytes", id=c) is not None
            for c in (removed, renamed, killed)
        ),
        what="the three containers",
    )
    killed_pid = _pid(cli, killed)

    private_dockerd.stop()  # --live-restore: the containers keep running
    series = daemon.wait_for(
        lambda s: value_of(s, "densityd_source_up", source="docker") == 0,
        what="docker reported down",
    )
    assert not listed(series, renamed), "a down source's containers are not current"
    os.kill(killed_pid, signal.SIGKILL)  # while no engine watches

    private_dockerd.start()
    cli("rm", "-f", removed)
    cli("rename", renamed, "renamed")
    cli("update", "--memory", "96m", "--memory-swap", "192m", renamed)
    created = run("created-after")
    series = first_reading_after(daemon, time.time())

    assert not listed(series, removed)
    assert names_of(series, renamed) == {"renamed"}
    assert value_of(series, "densityd_workload_memory_limit_bytes", id=renamed) == 96 * MiB
    assert value_of(series, "densityd_workload_memory_bytes", id=renamed) is not None
    assert listed(series, killed)
    assert value_of(series, "densityd_workload_memory_bytes", id=killed) is None  # exited
    assert value_of(series, "densityd_workload_memory_bytes", id=created) is not None
    assert "source docker is back up" in daemon.log()
