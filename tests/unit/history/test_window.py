"""``FollowedHistory`` answers every plan read as the store does, pass after pass.

Each test records a realistic run of passes (workloads appearing, vanishing, renamed,
resized, CPU rates moving, hours and days ending, prunes, a backfill, a late pass) and after
every pass compares the followed reads with the store's own full reads of the same file.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from densityd.history.histogram import RateHistogram, RunningPercentile
from densityd.history.schema import DAY, HOUR
from densityd.history.store import HistoryStore
from densityd.history.window import FollowedHistory
from densityd.model import DiskUsage, HostSample, Snapshot, WorkloadKind, WorkloadSample

T0 = 1_767_571_200 + 22 * HOUR + 30 * 60  # 22:30 UTC: the first day ends within the run
STEP = 60
MIB = 1024 * 1024
HOST = HostSample(8, 16 << 30, 8 << 30, disks=(DiskUsage("/var/lib/docker", 1 << 40, 1 << 39),))
WINDOWS = (15 * 60, HOUR + 17, 6 * HOUR, DAY + 5, 14 * DAY)


class Run:
    """A fleet of workloads whose numbers move from pass to pass, from a fixed seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.workloads: dict[str, WorkloadSample] = {}
        self.serial = 0

    def add(self, kind: WorkloadKind = WorkloadKind.CONTAINER) -> str:
        self.serial += 1
        wid = f"w{self.serial}"
        self.workloads[wid] = WorkloadSample(
            kind=kind,
            id=wid,
            name=f"app-{self.serial}",
            cpu_seconds=self.rng.uniform(0, 100),
            memory_bytes=self.rng.randint(10, 500) * MIB,
            disk_bytes=self.rng.randint(1, 50) * MIB,
        )
        return wid

    def snapshot(self, ts: float) -> Snapshot:
        for wid, w in list(self.workloads.items()):
            rate = self.rng.choice((0.0, 0.01, 0.2, 0.5, self.rng.uniform(0, 2)))
            memory = w.memory_bytes or 0
            self.workloads[wid] = replace(
                w,
                cpu_seconds=(w.cpu_seconds or 0) + rate * STEP,
                memory_bytes=max(MIB, memory + self.rng.randint(-20, 20) * MIB),
                # Now and then a workload whose disk is not known at this pass.
                disk_bytes=None
                if self.rng.random() < 0.05
                else (w.disk_bytes or 0) + self.rng.randint(0, 3) * MIB,
            )
        return Snapshot(timestamp=ts, workloads=tuple(self.workloads.values()), host=HOST)


class Followers:
    """One ``FollowedHistory`` per window and percentile, as a live plan reads one of each."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self.each = {
            (window, percentile): FollowedHistory(store)
            for window in WINDOWS
            for percentile in (0.5, 0.95)
        }

    @property
    def reads(self) -> int:
        return sum(f.reads for f in self.each.values())

    def check(self, now: float) -> None:
        """Every read the live plan makes, followed and full."""
        store = self.store
        for (window, percentile), followed in self.each.items():
            since = now - window
            assert followed.oldest_timestamp() == store.oldest_timestamp()
            assert followed.workload_history(since, percentile) == store.workload_history(
                since, percentile
            ), (window, percentile)
            for kind in ("container", "vm", None):
                assert followed.trend(since, None, kind) == store.trend(since, None, kind)
            keys = [("container", "w1"), ("container", "w3"), ("vm", "w4")]
            assert followed.trend(since, keys, "container") == store.trend(since, keys, "container")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    # Hourly rows kept 1 h only, so that prunes drop rows within the run.
    with HistoryStore.open(tmp_path, raw_seconds=HOUR, retention_seconds=2 * DAY) as store:
        yield store


def test_followed_reads_equal_full_reads_pass_after_pass(store: HistoryStore) -> None:
    run = Run(seed=16)
    for _ in range(6):
        run.add()
    run.add(WorkloadKind.VM)
    followed = Followers(store)
    ts = float(T0)
    passes = 0
    for step in range(170):  # about 2 h 50 min: two hours and a day end, prunes come
        if step % 23 == 5:
            run.add(run.rng.choice(list(WorkloadKind)))  # appears
        if step % 31 == 9 and len(run.workloads) > 3:
            del run.workloads[run.rng.choice(sorted(run.workloads))]  # vanishes
        if step % 37 == 11:
            wid = run.rng.choice(sorted(run.workloads))
            w = run.workloads[wid]
            run.workloads[wid] = replace(w, name=w.name + "-renamed", memory_limit_bytes=1 << 30)
        snapshot = run.snapshot(ts)
        store.record(snapshot)
        if step % 20 == 19:
            store.maintain(ts)
        followed.check(ts)
        ts += STEP
        passes += 1
    assert store.changes().rewrites > 0  # prunes dropped rows: read again
    # Not a full read per pass: a few per window and percentile, at hours, days and prunes.
    assert followed.reads < len(followed.each) * passes / 10


def test_backfills_late_passes_and_other_writers_are_read_again(
    store: HistoryStore, tmp_path: Path
) -> None:
    run = Run(seed=3)
    for _ in range(4):
        run.add()
    followed = Followers(store)
    ts = float(T0)
    for _ in range(5):
        store.record(run.snapshot(ts))
        followed.check(ts)
        ts += STEP
    # A backfill of several passes at once, then a pass earlier than the latest.
    store.record_many([run.snapshot(ts), run.snapshot(ts + STEP)])
    followed.check(ts + STEP)
    store.record(run.snapshot(ts - 30))
    followed.check(ts + STEP)
    # Another writer (a stray second daemon) writes a pass of its own.
    with HistoryStore.open(tmp_path, raw_seconds=HOUR, retention_seconds=2 * DAY) as other:
        other.record(run.snapshot(ts + 2 * STEP))
    store.record(run.snapshot(ts + 3 * STEP))
    followed.check(ts + 3 * STEP)


def test_a_pass_that_failed_to_record_changes_nothing(store: HistoryStore) -> None:
    run = Run(seed=5)
    run.add()
    followed = Followers(store)
    store.record(run.snapshot(T0))
    followed.check(T0)
    changes = store.changes()
    # A late pass moves the rewrites on; nothing recorded moves nothing.
    followed.check(T0 + STEP)
    assert store.changes() == changes


def test_running_percentile_equals_the_walked_one() -> None:
    rng = random.Random(9)
    for fraction in (0.01, 0.5, 0.95, 1.0):
        hist = RateHistogram()
        running = RunningPercentile(hist, fraction)
        assert running.value() is None
        for _ in range(600):
            bucket = rng.choice((0, 1, 2, 5, 40, 41, 42, rng.randint(0, 300)))
            running.add(bucket, rng.choice((1, 1, 1, 3)))
            assert running.value() == hist.percentile(fraction)
    # Counts a drifted total left below zero count as none, as the walk says.
    hist = RateHistogram()
    hist.merge(RateHistogram.from_blob(b"").to_blob())
    hist.add(7, -2)
    running = RunningPercentile(hist, 0.5)
    assert running.value() is None
    running.add(7, 1)
    assert running.value() == hist.percentile(0.5) is None
    running.add(7, 5)
    running.add(3, 1)
    assert running.value() == hist.percentile(0.5)
