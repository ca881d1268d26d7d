"""Docker faults: not running at start, restarted mid-run, containers vanishing mid-pass.

The restart test runs its own dockerd (its own data root, exec root and socket) so that it can
stop and start an engine without disturbing the one the other tests use.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from densityd.collect.sources.docker import DockerSource
from tests.integration.backends import (
    TINY_IMAGE,
    Containers,
    DockerCLI,
    PrivateDockerd,
    assert_back_within_two_intervals,
    assert_served_while_down,
    value_of,
)
from tests.integration.data_age import assert_restarts_never_stall
from tests.integration.engine_proxy import RecordingProxy

pytestmark = pytest.mark.integration


def test_docker_not_running_at_start(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """The daemon serves, reports docker down with one clear log line, and keeps retrying."""
    socket_path = Path(tempfile.mkdtemp(prefix="densityd-")) / "absent.sock"
    daemon = start_daemon("--docker-host", f"unix://{socket_path}")
    series = daemon.wait_for(
        lambda s: value_of(s, "densityd_source_errors_total", source="docker") >= 3,  # type: ignore[operator]
        what="three failed docker passes",
    )
    assert value_of(series, "densityd_source_up", source="docker") == 0
    assert value_of(series, "densityd_source_up", source="host") == 1
    assert value_of(series, "densityd_host_memory_bytes") is not None
    log = daemon.log()
    docker_lines = [line for line in log.splitlines() if "docker" in line and "WARNING" in line]
    assert any(f"cannot reach Docker at unix://{socket_path}" in line for line in docker_lines)
    # One line when the source is found missing, one when the first pass fails: no per-pass spam.
    assert len(docker_lines) <= 2, log


def test_dockerd_restart_mid_run(start_daemon, private_dockerd: PrivateDockerd) -> None:  # type: ignore[no-untyped-def]
    """After dockerd restarts, densityd has its containers back within two intervals."""
    interval = 1.0
    container = private_dockerd.cli(
        "run", "-d", "--name", "survivor", TINY_IMAGE, "sh", "-c", "sleep 3600"
    )
    daemon = start_daemon(
        "--docker-host", private_dockerd.socket, "--source-timeout", "0.8", interval=interval
    )
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_bytes", id=container) is not None,
        what="the container before the restart",
    )
    private_dockerd.stop()
    daemon.wait_for(
        lambda s: value_of(s, "densityd_source_up", source="docker") == 0,
        what="docker reported down",
    )
    series = daemon.scrape()
    assert value_of(series, "densityd_workload_memory_bytes", id=container) is None
    assert value_of(series, "densityd_source_up", source="host") == 1

    private_dockerd.start()
    assert_back_within_two_intervals(daemon, "docker", container, time.monotonic(), interval)


def _racing_client(source: DockerSource, on_list: Any) -> None:
    """Wrap the source's real API client so ``on_list`` runs right after the list call."""
    client = source._connect()
    real_containers = client.containers

    def containers(*args: Any, **kwargs: Any) -> Any:
        listed = real_containers(*args, **kwargs)
        on_list()
        return listed

    client.containers = containers


@pytest.mark.parametrize("stats_mode", ["cgroup", "api"])
@pytest.mark.parametrize("seen_before", [True, False])
def test_container_removed_between_list_and_read_is_skipped(
    containers: Containers, docker_cli: DockerCLI, stats_mode: str, seen_before: bool
) -> None:
    """A container removed after the list call is left out of the pass, without an error.

    Every pass lists here (a resync interval of 1 ns), so the removal can be made to fall
    between the list and the reads; the table still holds the victim when it is read."""
    survivor = containers.run()
    victim = containers.run()
    source = DockerSource(stats_mode=stats_mode, api_workers=4, resync_interval=1e-9)  # type: ignore[arg-type]
    try:
        if seen_before:  # its metadata (and cgroup path) is cached: the read itself must cope
            assert victim in {w.id for w in source.sample().workloads}
        removed = threading.Event()

        def remove_victim() -> None:
            if not removed.is_set():
                docker_cli("rm", "-f", victim)
                removed.set()

        _racing_client(source, remove_victim)
        reading = source.sample()
    finally:
        source.close()
    assert removed.is_set()
    ids = {w.id for w in reading.workloads}
    assert survivor in ids
    assert victim not in ids


def test_churn_while_sampling_raises_no_errors(  # type: ignore[no-untyped-def]
    start_daemon, containers: Containers
) -> None:
    """Containers coming and going every few hundred ms never fail a docker pass."""
    daemon = start_daemon("--disk-interval", "0.5", interval=0.25)
    deadline = time.monotonic() + 8
    created = 0
    while time.monotonic() < deadline:
        short_lived = containers.run(command="sleep 0.3")
        created += 1
        if created % 2 == 0:
            containers.docker("rm", "-f", short_lived)
    series = daemon.scrape()
    assert created >= 5
    assert value_of(series, "densityd_source_errors_total", source="docker") == 0, daemon.log()
    assert value_of(series, "densityd_source_errors_total", source="docker_disk") == 0
    assert value_of(series, "densityd_source_up", source="docker") == 1
    assert "Traceback" not in daemon.log()


def test_frozen_dockerd_hits_the_deadline_and_recovers(  # type: ignore[no-untyped-def]
    start_daemon, private_dockerd: PrivateDockerd
) -> None:
    """SIGSTOPped dockerd: the pass gives up at its deadline, scrapes stay fast, then recovery."""
    assert private_dockerd.process is not None
    container = private_dockerd.cli(
        "run", "-d", "--name", "frozen-test", TINY_IMAGE, "sh", "-c", "sleep 3600"
    )
    # The API timeout is far beyond the source deadline: only the deadline can end the pass.
    # A steady pass makes no Engine call (the event stream stays open, silent): a frozen
    # engine is found by the next resync's list, here every 2 s.
    daemon = start_daemon(
        "--docker-host", private_dockerd.socket, "--source-timeout", "1",
        "--docker-timeout", "120", "--docker-resync-interval", "2",
    )  # fmt: skip
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_bytes", id=container) is not None,
        what="the container before the freeze",
    )
    private_dockerd.process.send_signal(signal.SIGSTOP)
    try:
        assert_served_while_down(daemon, "docker")
    finally:
        private_dockerd.process.send_signal(signal.SIGCONT)
    daemon.wait_for(
        lambda s: (
            value_of(s, "densityd_source_up", source="docker") == 1
            and value_of(s, "densityd_workload_memory_bytes", id=container) is not None
        ),
        timeout=15,
        what="recovery after SIGCONT",
    )


def test_sigterm_and_sigint_stop_cleanly_even_with_a_frozen_backend(  # type: ignore[no-untyped-def]
    start_daemon, private_dockerd: PrivateDockerd
) -> None:
    """Both signals end the daemon with status 0, promptly, stuck backend call or not."""
    assert private_dockerd.process is not None
    plain = start_daemon("--docker-host", private_dockerd.socket)
    plain.process.send_signal(signal.SIGINT)
    assert plain.process.wait(timeout=10) == 0
    assert "received SIGINT, stopping" in plain.log()

    stuck = start_daemon(
        "--docker-host", private_dockerd.socket, "--source-timeout", "1",
        "--docker-timeout", "120", "--docker-resync-interval", "2",
    )  # fmt: skip
    private_dockerd.process.send_signal(signal.SIGSTOP)
    try:
        stuck.wait_for(
            lambda s: value_of(s, "densityd_source_up", source="docker") == 0,
            timeout=10,
            what="docker down while frozen",
        )
        started = time.monotonic()
        stuck.process.send_signal(signal.SIGTERM)
        assert stuck.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        private_dockerd.process.send_signal(signal.SIGCONT)


@pytest.fixture
def slow_engine(
    docker_cli: DockerCLI,
) -> Iterator[Callable[[Callable[[str], float]], RecordingProxy]]:
    """A proxy to the local engine that holds requests for as long as ``delay(path)`` says."""
    directory = Path(tempfile.mkdtemp(prefix="densityd-slow-engine-"))
    proxies: list[RecordingProxy] = []

    def make(delay: Callable[[str], float]) -> RecordingProxy:
        proxies.append(RecordingProxy(directory / f"docker-{len(proxies)}.sock", delay=delay))
        return proxies[-1]

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.close()
        shutil.rmtree(directory, ignore_errors=True)


def _is_size_scan(path: str) -> bool:
    return "size=1" in path.partition("?")[2].split("&")


WRITTEN = "dd if=/dev/zero of=/data/blob bs=1M count=3 2>/dev/null && exec sleep 3600"


def test_a_slow_writable_layer_scan_has_disk_timeout_not_the_api_timeout(  # type: ignore[no-untyped-def]
    start_daemon, containers: Containers, slow_engine
) -> None:
    """An engine that takes 3 s to walk the layers: the scan, bounded by --disk-timeout, gets
    its answer, although every other call has a 1 s --docker-timeout."""
    container = containers.run(command=WRITTEN)
    proxy = slow_engine(lambda path: 3.0 if _is_size_scan(path) else 0.0)
    daemon = start_daemon(
        "--docker-host", proxy.url, "--docker-timeout", "1", "--disk-timeout", "30",
        "--no-libvirt",
    )  # fmt: skip
    series = daemon.wait_for(
        lambda s: (value_of(s, "densityd_workload_disk_bytes", id=container) or 0) >= 3 * 2**20,
        timeout=20,
        what="the container's writable layer from the slow scan",
    )
    assert value_of(series, "densityd_source_up", source="docker_disk") == 1
    assert value_of(series, "densityd_source_errors_total", source="docker_disk") == 0
    assert value_of(series, "densityd_source_up", source="docker") == 1
    assert any(_is_size_scan(path) for _, path in proxy.requests)


def test_a_failed_writable_layer_scan_is_retried_at_the_next_pass(  # type: ignore[no-untyped-def]
    start_daemon, containers: Containers, slow_engine
) -> None:
    """A scan past its deadline is tried again a pass later, not a whole --disk-interval."""
    container = containers.run(command=WRITTEN)
    scans = 0

    def first_scan_too_slow(path: str) -> float:
        nonlocal scans
        if not _is_size_scan(path):
            return 0.0
        scans += 1
        return 4.0 if scans == 1 else 0.0

    proxy = slow_engine(first_scan_too_slow)
    daemon = start_daemon(
        "--docker-host", proxy.url, "--disk-timeout", "2", "--disk-interval", "300",
        "--no-libvirt",
    )  # fmt: skip
    started = time.monotonic()
    series = daemon.wait_for(
        lambda s: (value_of(s, "densityd_workload_disk_bytes", id=container) or 0) >= 3 * 2**20,
        timeout=20,
        what="the retried scan",
    )
    assert time.monotonic() - started < 15  # seconds, where --disk-interval is 300
    assert value_of(series, "densityd_source_errors_total", source="docker_disk") == 1
    assert value_of(series, "densityd_source_up", source="docker_disk") == 1
    assert scans == 2
    assert "source docker_disk is down: no answer within the 2s deadline" in daemon.log()


def test_dockerd_restarts_never_stall_the_other_sources(  # type: ignore[no-untyped-def]
    start_daemon, private_dockerd: PrivateDockerd, libvirt_ready: str
) -> None:
    """Three dockerd restarts at --interval 2: libvirt's and the host's data never get older
    than two intervals, and Docker is back within two intervals of dockerd answering."""
    interval = 2.0
    container = private_dockerd.cli(
        "run", "-d", "--name", "survivor", TINY_IMAGE, "sh", "-c", "sleep 3600"
    )
    daemon = start_daemon("--docker-host", private_dockerd.socket, interval=interval)
    restart = (private_dockerd.stop, private_dockerd.start)  # live-restore: containers stay
    assert_restarts_never_stall(daemon, "docker", container, restart, ("libvirt", "host"), interval)
