"""Run every source under a deadline, isolate failures, and publish immutable snapshots.

A pass calls each enabled source on its own worker thread and waits for all of them until the
deadline. A source that raises, or is still running at the deadline, is reported down (with
the reason) while the others' readings are published as usual; a call that hangs is never
started twice, so a frozen backend costs one stuck thread, not one per pass. A source that
fails is retried at every pass for the first 30 s of the outage, then with exponential
backoff, and its state changes are logged once each (down, with why; back up), never once
per pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Generic, TypeVar

from densityd.collect.sources.base import Source
from densityd.model import (
    HostSample,
    NodeInfo,
    Snapshot,
    SourceReading,
    SourceStatus,
    WorkloadSample,
)

log = logging.getLogger("densityd.sampler")

T = TypeVar("T")

# Retry at every pass during the first seconds of an outage (a restarting backend is back
# within them, and must be picked up within two intervals); after that, back off
# exponentially from the first delay up to the maximum between attempts.
BACKOFF_AFTER_SECONDS = 30.0
FIRST_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 60.0


class SnapshotHolder:
    """The latest snapshot, replaced atomically; readers never see a half-built one."""

    def __init__(self) -> None:
        self._latest: Snapshot | None = None
        self._listeners: list[Callable[[Snapshot], None]] = []

    @property
    def latest(self) -> Snapshot | None:
        """The most recent complete snapshot, or ``None`` before the first pass ends."""
        return self._latest

    def subscribe(self, listener: Callable[[Snapshot], None]) -> None:
        """Call ``listener`` with each new snapshot, on the publishing thread."""
        self._listeners.append(listener)

    def publish(self, snapshot: Snapshot) -> None:
        """Swap in a new snapshot (a single reference assignment), then tell the listeners."""
        self._latest = snapshot
        for listener in self._listeners:
            listener(snapshot)


@dataclass
class _Outcome(Generic[T]):
    value: T | None
    error: str


class GuardedCall(Generic[T]):
    """One backend call run on its own thread under a deadline, with status and backoff."""

    def __init__(
        self,
        name: str,
        call: Callable[[], T],
        timeout: float,
        clock: Callable[[], float] = time.time,
        *,
        retries: bool = True,
    ) -> None:
        self.name = name
        self._call = call
        self._timeout = timeout
        self._clock = clock
        # False for a one-shot command (sample, plan): nothing will try again.
        self._retries = retries
        self._in_flight: Future[T] | None = None
        self._in_flight_since = 0.0
        self._errors_total = 0
        self._down_since: float | None = None
        self._backoff = 0.0
        self._next_attempt = 0.0
        self._up: bool | None = None
        self._last_success: float | None = None
        self._last_error = ""
        self._duration = 0.0

    def start(self) -> Future[T] | None:
        """Start the call unless it is backing off or a previous call is still stuck."""
        now = self._clock()
        if self._in_flight is not None and not self._in_flight.done():
            return None
        if now < self._next_attempt:
            return None
        self._in_flight_since = now
        future: Future[T] = Future()
        # A daemon thread per call, not an executor: a call stuck in a frozen backend must
        # not keep the process from exiting on SIGTERM.
        threading.Thread(
            target=self._run_into, args=(future,), name=f"source-{self.name}", daemon=True
        ).start()
        self._in_flight = future
        return future

    def _run_into(self, future: Future[T]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(self._call())
        except BaseException as exc:  # handed to the waiting pass, which reports it
            future.set_exception(exc)

    def finish(self, future: Future[T] | None, deadline: float) -> _Outcome[T]:
        """Wait for a started call until the deadline and record how it went."""
        if future is None:
            if self._in_flight is not None and not self._in_flight.done():
                stuck = self._clock() - self._in_flight_since
                return self._failed(f"previous call still running after {stuck:.1f}s", count=False)
            return _Outcome(None, self._last_error or "backing off")
        try:
            value = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout as exc:
            self._duration = self._clock() - self._in_flight_since
            # FutureTimeout is the builtin TimeoutError (3.11+): the call may have raised it.
            if not future.done() or future.exception() is not exc:
                return self._failed(f"no answer within the {self._timeout:g}s deadline")
            return self._failed(str(exc) or type(exc).__name__)
        except Exception as exc:  # any backend failure: isolate it, report it, carry on
            self._duration = self._clock() - self._in_flight_since
            return self._failed(str(exc) or type(exc).__name__)
        self._duration = self._clock() - self._in_flight_since
        if self._up is False:
            log.info("source %s is back up", self.name)
        self._up = True
        self._down_since = None
        self._backoff = 0.0
        self._next_attempt = 0.0
        self._last_success = self._clock()
        self._last_error = ""
        return _Outcome(value, "")

    def run(self) -> _Outcome[T]:
        """Start and finish one call."""
        future = self.start()
        return self.finish(future, time.monotonic() + self._timeout)

    def _failed(self, reason: str, count: bool = True) -> _Outcome[T]:
        if count:
            self._errors_total += 1
            now = self._clock()
            if self._down_since is None:
                self._down_since = now
            if now - self._down_since >= BACKOFF_AFTER_SECONDS:
                self._backoff = min(
                    MAX_BACKOFF_SECONDS, max(FIRST_BACKOFF_SECONDS, 2 * self._backoff)
                )
                self._next_attempt = now + self._backoff
        if self._up is not False:
            retrying = " (retrying with backoff)" if self._retries else ""
            log.warning("source %s is down: %s%s", self.name, reason, retrying)
        else:
            log.debug("source %s still down: %s", self.name, reason)
        self._up = False
        self._last_error = reason
        return _Outcome(None, reason)

    def mark_down(self, reason: str) -> None:
        """Record a failure already reported elsewhere (the start-up probe): no log line."""
        self._up = False
        self._last_error = reason
        self._down_since = self._clock()

    @property
    def down(self) -> bool:
        """Whether the latest call failed (``False`` before the first call)."""
        return self._up is False

    def due(self, every: float) -> bool:
        """Whether ``every`` seconds have passed since the last success (or there was none)."""
        return self._last_success is None or self._clock() - self._last_success >= every

    def status(self) -> SourceStatus:
        """The self-monitoring view of this call."""
        return SourceStatus(
            name=self.name,
            up=bool(self._up),
            duration_seconds=self._duration,
            errors_total=self._errors_total,
            last_success_timestamp=self._last_success,
            last_error=self._last_error,
        )


class Sampler:
    """Runs the sources' passes and the slow background jobs, publishing snapshots."""

    def __init__(
        self,
        sources: Sequence[Source],
        holder: SnapshotHolder,
        timeout: float,
        disk_usage_timestamp: Callable[[], float | None] = lambda: None,
        *,
        retries: bool = True,
    ) -> None:
        self.holder = holder
        self._timeout = timeout
        self._retries = retries
        self._sources = [GuardedCall(s.name, s.sample, timeout, retries=retries) for s in sources]
        self._jobs: dict[str, GuardedCall[None]] = {}
        self._job_depends_on: dict[str, str] = {}
        self._disk_usage_timestamp = disk_usage_timestamp
        self._pass_lock = threading.Lock()

    def add_job(
        self, name: str, call: Callable[[], None], timeout: float, depends_on: str = ""
    ) -> None:
        """Register a slow background job whose health is exported like a source's.

        A job that ``depends_on`` a source is skipped while that source is down, so that one
        outage is logged once, by the source, not again by each of its jobs.
        """
        self._jobs[name] = GuardedCall(name, call, timeout, retries=self._retries)
        self._job_depends_on[name] = depends_on

    def mark_down(self, name: str, reason: str) -> None:
        """Start a source (and the jobs depending on it) as down without logging again."""
        for guarded in self._sources:
            if guarded.name == name:
                guarded.mark_down(reason)
        for job, source in self._job_depends_on.items():
            if source == name:
                self._jobs[job].mark_down(f"{name} is down")

    def run_job(self, name: str, every: float = 0.0) -> bool:
        """Run a background job under its deadline if due; tell whether it is healthy.

        The scheduler calls this every pass interval; the job only runs when ``every`` seconds
        have passed since its last success, so a job that failed, or was skipped while its
        source was down, runs again as soon as it can instead of a whole period later.
        """
        job = self._jobs[name]
        depends_on = self._job_depends_on.get(name)
        source = next((g for g in self._sources if g.name == depends_on), None)
        if source is not None and source.down:
            job.mark_down(f"{depends_on} is down")
            return False
        if not job.due(every):
            return True
        return not job.run().error

    def _statuses(self) -> tuple[SourceStatus, ...]:
        sources = tuple(guarded.status() for guarded in self._sources)
        return sources + tuple(job.status() for job in self._jobs.values())

    def run_pass(self) -> Snapshot:
        """Run every source once, in parallel, and publish what they returned."""
        with self._pass_lock:
            started = time.monotonic()
            timestamp = time.time()
            deadline = started + self._timeout
            futures = [(s, s.start()) for s in self._sources]
            workloads: list[WorkloadSample] = []
            host: HostSample | None = None
            node: NodeInfo | None = None
            for guarded, future in futures:
                outcome: _Outcome[SourceReading] = guarded.finish(future, deadline)
                if outcome.value is None:
                    continue
                workloads.extend(outcome.value.workloads)
                host = outcome.value.host or host
                node = outcome.value.node or node
            workloads.sort(key=lambda w: (w.kind, w.name, w.id))
            snapshot = Snapshot(
                timestamp=timestamp,
                workloads=tuple(workloads),
                host=host,
                node=node,
                sources=self._statuses(),
                disk_usage_timestamp=self._disk_usage_timestamp(),
                pass_duration_seconds=time.monotonic() - started,
            )
            self.holder.publish(snapshot)
            return snapshot
