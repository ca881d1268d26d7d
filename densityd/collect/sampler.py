"""Run each source on its own thread under its own deadline, and publish snapshots of them all.

A pass starts every source that is free (not still running, not backing off) and waits for
the ones it started until they all answered or the pass's wait is over (half an interval in
the daemon), then publishes a snapshot combining each source's latest current reading. A slow
source's answer that comes later is the next pass's; a source past its deadline is reported
down, without its workloads, while it carries on; so a slow, hung or reconnecting backend never
delays another's refresh. Slow background jobs (the writable-layer scan) run beside the
passes on their own period and deadline, and are retried sooner than a period when they fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from densityd.collect.guarded import GuardedCall, gather
from densityd.collect.sources.base import Source
from densityd.model import (
    ContainerEngine,
    HostSample,
    NodeInfo,
    OomKills,
    Snapshot,
    SourceReading,
    SourceStatus,
    WorkloadSample,
)


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
        """Tell the listeners (the history, the live plan), then swap in the new snapshot (a
        single reference assignment).

        In that order, so that a scrape that sees a pass also sees the plan made from it: the
        other way round, a scrape just after the first pass found its workloads in /metrics
        and "no pass has finished yet" at /api/v1/plan.
        """
        for listener in self._listeners:
            listener(snapshot)
        self._latest = snapshot


@dataclass
class _Job:
    """A background job: its guarded call, its period, and the source it needs up."""

    call: GuardedCall[None]
    every: float
    depends_on: str


class Sampler:
    """Runs the sources' passes and the slow background jobs, publishing snapshots."""

    def __init__(
        self,
        sources: Sequence[Source],
        holder: SnapshotHolder,
        timeout: float,
        disk_usage_timestamp: Callable[[], float | None] = lambda: None,
        *,
        pass_wait: float | None = None,
        retries: bool = True,
    ) -> None:
        """``pass_wait``: how long a pass waits for the sources it started (default: their
        deadline, ``timeout``, as a one-shot command needs)."""
        self.holder = holder
        self._timeout = timeout
        self._pass_wait = timeout if pass_wait is None else min(pass_wait, timeout)
        self._retries = retries
        self._sources = [GuardedCall(s.name, s.sample, timeout, retries=retries) for s in sources]
        self._jobs: dict[str, _Job] = {}
        self._disk_usage_timestamp = disk_usage_timestamp
        self._pass_lock = threading.Lock()

    def add_job(
        self,
        name: str,
        call: Callable[[], None],
        timeout: float,
        depends_on: str = "",
        every: float = 0.0,
    ) -> None:
        """Register a slow background job, run every ``every`` seconds beside the passes,
        whose health is exported like a source's.

        A job that ``depends_on`` a source is skipped while that source is down, so that one
        outage is logged once, by the source, not again by each of its jobs.
        """
        guarded: GuardedCall[None] = GuardedCall(name, call, timeout, retries=self._retries)
        self._jobs[name] = _Job(guarded, every, depends_on)

    def _source(self, name: str) -> GuardedCall[SourceReading] | None:
        return next((g for g in self._sources if g.name == name), None)

    def mark_down(self, name: str, reason: str) -> None:
        """Start a source (and the jobs depending on it) as down without logging again."""
        source = self._source(name)
        if source is not None:
            source.mark_down(reason)
        for job in self._jobs.values():
            if job.depends_on == name:
                job.call.mark_down(f"{name} is down")

    def start_jobs(self) -> None:
        """Start every job that is due, without waiting for any.

        A job is due ``every`` seconds after its last success, so one that failed, or was
        skipped while its source was down, runs again at the next pass (then with backoff)
        instead of a whole period later; one still running is left to its deadline.
        """
        for job in self._jobs.values():
            source = self._source(job.depends_on)
            if source is not None and source.down:
                if not job.call.down:
                    job.call.mark_down(f"{job.depends_on} is down")
                continue
            if job.call.due(job.every):
                job.call.start()

    def run_job(self, name: str) -> bool:
        """Run one job now and wait for it until its deadline (one-shot); tell whether it
        succeeded."""
        job = self._jobs[name]
        source = self._source(job.depends_on)
        if source is not None and source.down:
            job.call.mark_down(f"{job.depends_on} is down")
            return False
        return not job.call.run().error

    def _statuses(self) -> tuple[SourceStatus, ...]:
        sources = tuple(guarded.status() for guarded in self._sources)
        return sources + tuple(job.call.status() for job in self._jobs.values())

    def run_pass(self) -> Snapshot:
        """Start the free sources and the due jobs, wait for the sources up to the pass's
        wait, and publish what every source last returned."""
        with self._pass_lock:
            started = time.monotonic()
            timestamp = time.time()
            readings = gather(self._sources, started + self._pass_wait)
            # After the sources: a job whose source has just gone down is not started.
            self.start_jobs()
            workloads: list[WorkloadSample] = []
            host: HostSample | None = None
            node: NodeInfo | None = None
            engine: ContainerEngine | None = None
            removed_oom_kills: list[OomKills] = []
            for reading in readings:
                if reading is None:
                    continue
                workloads.extend(reading.workloads)
                removed_oom_kills.extend(reading.removed_oom_kills)
                host = reading.host or host
                node = reading.node or node
                engine = reading.engine or engine
            workloads.sort(key=lambda w: (w.kind, w.name, w.id))
            snapshot = Snapshot(
                timestamp=timestamp,
                workloads=tuple(workloads),
                host=host,
                node=node,
                engine=engine,
                sources=self._statuses(),
                disk_usage_timestamp=self._disk_usage_timestamp(),
                pass_duration_seconds=time.monotonic() - started,
                removed_oom_kills=tuple(removed_oom_kills),
            )
            self.holder.publish(snapshot)
            return snapshot
