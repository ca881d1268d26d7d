"""The sampler with small fake sources: isolation, deadlines, backoff, logging, snapshots."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from densityd.collect import guarded as guarded_module
from densityd.collect.guarded import GuardedCall
from densityd.collect.sampler import Sampler, SnapshotHolder
from densityd.model import (
    HostSample,
    Snapshot,
    SourceReading,
    SourceStatus,
    WorkloadKind,
    WorkloadSample,
)
from densityd.serve.exporter import SnapshotCollector

SAMPLER_LOG = "densityd.sampler"


def workload(name: str, kind: WorkloadKind = WorkloadKind.CONTAINER) -> WorkloadSample:
    return WorkloadSample(kind=kind, id=f"id-{name}", name=name, cpu_seconds=1.0)


class FakeSource:
    """A source whose ``sample`` runs a given function and counts its calls."""

    def __init__(self, name: str, behaviour: Callable[[], SourceReading]) -> None:
        self.name = name
        self._behaviour = behaviour
        self.calls = 0
        self.closed = False

    def probe(self) -> str:
        return f"fake {self.name}"

    def sample(self) -> SourceReading:
        self.calls += 1
        return self._behaviour()

    def close(self) -> None:
        self.closed = True


def returning(*workloads: WorkloadSample, host: HostSample | None = None) -> FakeSource:
    name = workloads[0].name if workloads else "host"
    return FakeSource(name, lambda: SourceReading(workloads=workloads, host=host))


def raising(name: str, exc: BaseException) -> FakeSource:
    def fail() -> SourceReading:
        raise exc

    return FakeSource(name, fail)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event hung sources wait on; set at teardown so no thread outlives the test."""
    event = threading.Event()
    yield event
    event.set()


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def status_of(snapshot: Snapshot, name: str) -> SourceStatus:
    [status] = [s for s in snapshot.sources if s.name == name]
    return status


def test_failing_source_does_not_stop_the_others() -> None:
    host = HostSample(cpu_cores=2, memory_bytes=100, memory_available_bytes=50)
    good = returning(workload("web"), workload("db"))
    host_source = FakeSource("host", lambda: SourceReading(host=host))
    bad = raising("libvirt", RuntimeError("connection refused"))
    holder = SnapshotHolder()
    sampler = Sampler([bad, good, host_source], holder, timeout=5.0)

    snapshot = sampler.run_pass()

    assert [w.name for w in snapshot.workloads] == ["db", "web"]  # sorted by kind, name
    assert snapshot.host == host
    failed = status_of(snapshot, "libvirt")
    assert (failed.up, failed.errors_total, failed.last_error) == (False, 1, "connection refused")
    assert failed.last_success_timestamp is None
    ok = status_of(snapshot, "web")
    assert (ok.up, ok.errors_total, ok.last_error) == (True, 0, "")
    assert ok.last_success_timestamp is not None
    assert holder.latest is snapshot

    second = sampler.run_pass()
    assert status_of(second, "libvirt").errors_total == 2
    assert bad.calls == 2  # no backoff yet: a restarting backend is retried at once

    families = {m.name: m for m in SnapshotCollector(holder).collect()}
    up = {s.labels["source"]: s.value for s in families["densityd_source_up"].samples}
    errors = {s.labels["source"]: s.value for s in families["densityd_source_errors"].samples}
    assert up == {"libvirt": 0, "web": 1, "host": 1}
    assert errors == {"libvirt": 2, "web": 0, "host": 0}


def test_a_backend_timeout_is_not_mistaken_for_the_deadline() -> None:
    # concurrent.futures.TimeoutError is the builtin TimeoutError, which sockets raise.
    sources = [raising("x", TimeoutError("timed out")), raising("y", TimeoutError())]
    snapshot = Sampler(sources, SnapshotHolder(), 5.0).run_pass()
    assert snapshot.pass_duration_seconds < 2.0
    assert status_of(snapshot, "x").last_error == "timed out"
    assert status_of(snapshot, "y").last_error == "TimeoutError"  # no message: the type


def test_hung_source_is_reported_down_and_the_pass_returns_on_time(
    gate: threading.Event,
) -> None:
    started = threading.Event()

    def hang() -> SourceReading:
        started.set()
        gate.wait(30)
        return SourceReading(workloads=(workload("late"),))

    hung = FakeSource("libvirt", hang)
    quick = returning(workload("web"))
    sampler = Sampler([hung, quick], SnapshotHolder(), timeout=0.3)

    begin = time.monotonic()
    snapshot = sampler.run_pass()
    elapsed = time.monotonic() - begin

    assert started.is_set()
    assert elapsed < 2.0  # a correctness bound (deadline 0.3 s), not a benchmark
    assert elapsed >= 0.25  # it did wait for the deadline before giving up
    assert [w.name for w in snapshot.workloads] == ["web"]
    status = status_of(snapshot, "libvirt")
    assert not status.up
    assert "deadline" in status.last_error
    assert status.errors_total == 1
    assert status_of(snapshot, "web").up


def test_a_slow_source_never_holds_up_the_others() -> None:
    """A pass waits ``pass_wait`` at most; a slower answer is the next pass's, not an error."""
    calls = 0

    def slow() -> SourceReading:
        nonlocal calls
        calls += 1
        time.sleep(0.4)
        return SourceReading(workloads=(workload(f"vm{calls}", WorkloadKind.VM),))

    sampler = Sampler(
        [FakeSource("libvirt", slow), returning(workload("web"))],
        SnapshotHolder(),
        timeout=5.0,
        pass_wait=0.1,
    )
    begin = time.monotonic()
    first = sampler.run_pass()
    assert time.monotonic() - begin < 0.35  # a correctness bound (wait 0.1 s), not a benchmark
    assert [w.name for w in first.workloads] == ["web"]  # libvirt has not answered yet
    assert status_of(first, "libvirt").errors_total == 0
    time.sleep(0.5)  # its call has answered meanwhile
    second = sampler.run_pass()
    assert [w.name for w in second.workloads] == ["web", "vm1"]  # the answer, a pass later
    assert status_of(second, "libvirt").up
    assert calls == 2  # and the second pass started the next call


def test_a_stuck_call_is_not_started_again(gate: threading.Event) -> None:
    finished = threading.Event()

    def hang() -> SourceReading:
        gate.wait(30)
        finished.set()
        return SourceReading(workloads=(workload("vm1", WorkloadKind.VM),))

    hung = FakeSource("libvirt", hang)
    sampler = Sampler([hung, returning(workload("web"))], SnapshotHolder(), timeout=0.3)
    sampler.run_pass()

    for _ in range(3):
        begin = time.monotonic()
        snapshot = sampler.run_pass()
        assert time.monotonic() - begin < 0.25  # nothing new to wait for
        status = status_of(snapshot, "libvirt")
        assert not status.up
        assert "still running" in status.last_error
    assert hung.calls == 1
    assert status.errors_total == 1  # the one stuck call counts once, not once per pass

    gate.set()
    assert finished.wait(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the thread sets the future just after `finished`
        snapshot = sampler.run_pass()
        if hung.calls == 2:
            break
        time.sleep(0.01)
    assert hung.calls == 2
    assert status_of(snapshot, "libvirt").up
    assert [w.name for w in snapshot.workloads] == ["web", "vm1"]  # containers before VMs


def test_backoff_after_an_outage_lasts_long_enough() -> None:
    clock = FakeClock()
    calls = 0

    def fail() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    guarded = GuardedCall("docker", fail, timeout=5.0, clock=clock)
    after = guarded_module.BACKOFF_AFTER_SECONDS
    first = guarded_module.FIRST_BACKOFF_SECONDS
    longest = guarded_module.MAX_BACKOFF_SECONDS

    # Early in an outage every attempt is made: a restarting engine is back in seconds.
    for now in (clock.now, clock.now + 1, clock.now + after / 2, clock.now + after - 0.1):
        clock.now = now
        assert guarded.run().error == "refused"
    assert calls == 4

    # Past BACKOFF_AFTER_SECONDS, attempts are spaced out, doubling up to the maximum.
    clock.now = 1000.0 + after
    assert guarded.run().error == "refused"
    assert calls == 5
    delays = []
    delay = first
    for _ in range(8):
        delays.append(delay)
        clock.now += delay - 0.01
        assert not guarded.start()  # backing off: not called
        assert guarded.run().error == "refused"
        assert guarded.status().errors_total == calls  # skipped attempts are not errors
        clock.now += 0.01
        assert guarded.run().error == "refused"
        delay = min(longest, delay * 2)
    assert calls == 13
    assert delays[:3] == [first, 2 * first, 4 * first]
    assert max(delays) == longest
    assert not guarded.status().up


def test_success_ends_the_backoff() -> None:
    clock = FakeClock()
    healthy = False

    def call() -> str:
        if not healthy:
            raise ConnectionError("refused")
        return "ok"

    guarded = GuardedCall("docker", call, timeout=5.0, clock=clock)
    guarded.run()
    clock.now += guarded_module.BACKOFF_AFTER_SECONDS
    guarded.run()
    assert not guarded.start()  # backing off now
    clock.now += guarded_module.MAX_BACKOFF_SECONDS
    healthy = True
    assert guarded.run().value == "ok"
    status = guarded.status()
    assert (status.up, status.errors_total, status.last_error) == (True, 2, "")
    assert status.last_success_timestamp == clock.now

    # A new outage starts with immediate retries again.
    healthy = False
    guarded.run()
    assert guarded.start()


def test_down_and_recovery_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    results = iter([False, False, False, True, True, True, False])

    def flaky() -> SourceReading:
        if not next(results):
            raise ConnectionError("engine restarting")
        return SourceReading()

    sampler = Sampler([FakeSource("docker", flaky)], SnapshotHolder(), timeout=5.0)
    caplog.set_level(logging.DEBUG, logger=SAMPLER_LOG)

    for _ in range(6):
        sampler.run_pass()
    records = [r for r in caplog.records if r.name == SAMPLER_LOG and r.levelno >= logging.INFO]
    messages = [r.getMessage() for r in records]
    assert messages == [
        "source docker is down: engine restarting (retrying with backoff)",
        "source docker is back up",
    ]
    assert records[0].levelno == logging.WARNING

    caplog.clear()
    sampler.run_pass()  # a new outage is news again
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == [
        "source docker is down: engine restarting (retrying with backoff)"
    ]


def test_mark_down_logs_nothing_until_recovery(caplog: pytest.LogCaptureFixture) -> None:
    sampler = Sampler([returning(workload("web"))], SnapshotHolder(), timeout=5.0)
    caplog.set_level(logging.DEBUG, logger=SAMPLER_LOG)
    sampler.mark_down("web", "not found at start")
    assert caplog.records == []
    snapshot = sampler.run_pass()
    assert status_of(snapshot, "web").up
    assert [r.getMessage() for r in caplog.records] == ["source web is back up"]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_job_runs_beside_the_passes_on_its_period_while_its_source_is_up() -> None:
    engine_up = False

    def engine() -> SourceReading:
        if not engine_up:
            raise ConnectionError("down")
        return SourceReading()

    job_calls = 0

    def scan() -> None:
        nonlocal job_calls
        job_calls += 1

    sampler = Sampler([FakeSource("docker", engine)], SnapshotHolder(), timeout=5.0)
    sampler.add_job("docker_disk", scan, timeout=5.0, depends_on="docker", every=300.0)
    snapshot = sampler.run_pass()
    assert job_calls == 0  # skipped while its source is down
    assert status_of(snapshot, "docker_disk").last_error == "docker is down"
    assert sampler.run_job("docker_disk") is False
    engine_up = True
    assert status_of(sampler.run_pass(), "docker").up
    wait_until(lambda: job_calls == 1)  # started by the pass, not waited for
    wait_until(lambda: status_of(sampler.run_pass(), "docker_disk").up)
    for _ in range(3):
        sampler.run_pass()
    assert job_calls == 1  # not due again before its period
    assert sampler.run_job("docker_disk") is True  # one-shot: run now, and wait
    assert job_calls == 2


def test_a_failed_job_is_retried_at_the_next_pass_not_a_period_later() -> None:
    calls = 0

    def scan() -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk scan failed")

    sampler = Sampler([], SnapshotHolder(), timeout=5.0)
    sampler.add_job("docker_disk", scan, timeout=5.0, every=300.0)
    assert sampler.run_job("docker_disk") is False
    assert calls == 1
    sampler.run_pass()
    wait_until(lambda: calls == 2)  # the next pass started it again
    status = status_of(sampler.run_pass(), "docker_disk")
    assert (status.up, status.last_error) == (False, "disk scan failed")
    assert status.errors_total >= 2


def test_a_long_job_is_not_reported_down_while_it_runs(gate: threading.Event) -> None:
    """A scan that takes longer than a pass is left running until its own deadline."""
    calls = 0

    def scan() -> None:
        nonlocal calls
        calls += 1
        gate.wait(30)

    sampler = Sampler([returning(workload("web"))], SnapshotHolder(), timeout=5.0)
    sampler.add_job("docker_disk", scan, timeout=10.0, every=300.0)
    for _ in range(5):
        status = status_of(sampler.run_pass(), "docker_disk")
        assert status.errors_total == 0 and status.last_error == ""
    assert calls == 1
    gate.set()
    wait_until(lambda: status_of(sampler.run_pass(), "docker_disk").up)


def test_snapshots_are_immutable() -> None:
    snapshot = Sampler(
        [returning(workload("web"), host=HostSample(1, 2, 3))], SnapshotHolder(), timeout=5.0
    ).run_pass()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.timestamp = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.workloads[0].memory_bytes = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.sources[0].up = False  # type: ignore[misc]
    assert snapshot.host is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.host.cpu_cores = 64  # type: ignore[misc]
    assert isinstance(snapshot.workloads, tuple)
    assert isinstance(snapshot.sources, tuple)


def test_snapshots_are_published_whole(gate: threading.Event) -> None:
    second_pass = threading.Event()
    passes = 0

    def slow() -> SourceReading:
        nonlocal passes
        passes += 1
        if passes == 2:
            second_pass.set()
            gate.wait(30)
        return SourceReading(workloads=(workload(f"slow{passes}"),))

    holder = SnapshotHolder()
    sampler = Sampler(
        [returning(workload("quick")), FakeSource("slow", slow)],
        holder,
        timeout=10.0,
        disk_usage_timestamp=lambda: 123.0,
    )
    first = sampler.run_pass()
    assert holder.latest is first

    seen: list[Snapshot | None] = []
    stop_reading = threading.Event()

    def reader() -> None:
        while not stop_reading.is_set():
            seen.append(holder.latest)

    result: list[Snapshot] = []
    runner = threading.Thread(target=lambda: result.append(sampler.run_pass()))
    reading = threading.Thread(target=reader)
    reading.start()
    runner.start()
    assert second_pass.wait(5)
    time.sleep(0.05)
    assert holder.latest is first  # the quick source's new reading is not visible alone
    gate.set()
    runner.join(5)
    stop_reading.set()
    reading.join(5)

    [second] = result
    assert holder.latest is second
    assert [w.name for w in second.workloads] == ["quick", "slow2"]
    assert second.disk_usage_timestamp == 123.0
    assert {id(s) for s in seen} <= {id(first), id(second)}
    assert seen[0] is first


def test_snapshot_holder() -> None:
    holder = SnapshotHolder()
    assert holder.latest is None
    snapshot = Snapshot(timestamp=1.0)
    holder.publish(snapshot)
    assert holder.latest is snapshot


def test_a_snapshot_is_visible_only_once_its_listeners_have_run() -> None:
    """The live plan runs as a listener: a scrape that sees a pass must see its plan too."""
    holder = SnapshotHolder()
    seen_during: list[Snapshot | None] = []
    holder.subscribe(lambda snapshot: seen_during.append(holder.latest))
    first, second = Snapshot(timestamp=1.0), Snapshot(timestamp=2.0)
    holder.publish(first)
    holder.publish(second)
    assert seen_during == [None, first]  # each listener still saw the previous one
    assert holder.latest is second
