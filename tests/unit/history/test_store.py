"""The SQLite history store on real files: numbers in and out, rollup, retention, crashes."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from densityd.history.histogram import (
    RATE_ACCURACY,
    ZERO_RATE,
    RateHistogram,
    bucket_rate,
    hist_merge,
    rate_bucket,
)
from densityd.history.schema import DAY, HISTORY_FILE, HOUR, StoreError
from densityd.history.store import HistoryStore
from densityd.model import DiskUsage, HostSample, Snapshot, WorkloadKind, WorkloadSample
from tests import paths

ROOT = paths.ROOT
# A Monday 00:00 UTC, so hours and days in the tests start where they say.
T0 = 1_767_571_200
STEP = 15
MIB = 1024 * 1024
KEY = ("container", "web-id")


def container(
    name: str,
    cpu: float | None = 0.0,
    memory: int | None = 100 * MIB,
    disk: int | None = 10 * MIB,
    kind: WorkloadKind = WorkloadKind.CONTAINER,
) -> WorkloadSample:
    return WorkloadSample(
        kind=kind,
        id=f"{name}-id",
        name=name,
        image="app:1",
        cpu_seconds=cpu,
        memory_bytes=memory,
        disk_bytes=disk,
        memory_limit_bytes=512 * MIB,
    )


def snap(ts: float, *workloads: WorkloadSample, host: HostSample | None = None) -> Snapshot:
    return Snapshot(timestamp=ts, workloads=workloads, host=host)


def within(value: float | None, expected: float) -> bool:
    """Whether a histogram read-back is within the store's stated relative accuracy."""
    assert value is not None
    return abs(value - expected) <= RATE_ACCURACY * expected + 1e-12


def rows(path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """What a query returns, read with a connection of the test's own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def record_rates(store: HistoryStore, rates: list[float], start: float = T0) -> float:
    """Record "web" with the CPU rate over each interval the next of ``rates``; the last time."""
    cpu = 0.0
    store.record(snap(start, container("web", cpu)))
    for n, rate in enumerate(rates, start=1):
        cpu += rate * STEP
        store.record(snap(start + n * STEP, container("web", cpu)))
    return start + len(rates) * STEP


def record_by_time(
    store: HistoryStore, rate_at: Callable[[float], float], start: float, end: float, step: float
) -> float:
    """Record "web" from ``start`` to ``end``, its rate up to each pass ``rate_at(pass time)``.

    A rate between two passes is counted in the period of the later one. Memory is
    ``spiky_memory(time)``; disk bytes count the seconds since ``T0``.
    """
    cpu, ts = 0.0, start
    store.record(snap(ts, container("web", cpu, spiky_memory(ts), int(ts - T0))))
    while ts + step <= end:
        ts += step
        cpu += rate_at(ts) * step
        store.record(snap(ts, container("web", cpu, spiky_memory(ts), int(ts - T0))))
    return ts


def spiky_memory(ts: float) -> int:
    """100 MiB, but 500 MiB from 01:00 to 02:00 on the first day."""
    return (500 if (ts - T0) // HOUR == 1 else 100) * MIB


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore.open(tmp_path) as opened:
        yield opened


# -- numbers in, numbers out ---------------------------------------------------------------------


def test_a_steady_half_core_reads_back_as_half_a_core(store: HistoryStore) -> None:
    memory = [100, 180, 250, 120, 90]
    for n in range(40):
        store.record(
            snap(
                T0 + n * STEP, container("web", 0.5 * STEP * n, memory[n % 5] * MIB, (10 + n) * MIB)
            )
        )
    history = store.workload_history(since=T0)
    found = history[KEY]
    assert found.kind is WorkloadKind.CONTAINER and found.name == "web"
    assert within(found.cpu_rate_percentile, 0.5)
    assert found.memory_max == 250 * MIB
    assert (found.disk_first, found.disk_last) == (10 * MIB, 49 * MIB)
    assert (found.first_timestamp, found.last_timestamp) == (T0, T0 + 39 * STEP)


def test_percentiles_of_a_known_distribution(store: HistoryStore) -> None:
    # 100 rates 10 % apart (wider than the accuracy, so a rank off by one shows), shuffled.
    ordered = [0.01 * 1.1**k for k in range(100)]
    rates = ordered.copy()
    random.Random(7).shuffle(rates)
    record_rates(store, rates)
    history = store.workload_history(since=T0, percentile=0.95)
    assert within(history[KEY].cpu_rate_percentile, ordered[94])  # nearest rank: the 95th
    for fraction, rank in ((0.5, 50), (0.99, 99), (1.0, 100), (0.01, 1), (0.001, 1)):
        found = store.workload_history(T0, fraction)[KEY].cpu_rate_percentile
        assert within(found, ordered[rank - 1]), fraction
    with pytest.raises(ValueError):
        store.workload_history(T0, 95)


def test_an_idle_workload_reads_zero_and_a_busy_one_stays_accurate() -> None:
    assert rate_bucket(0.0) == rate_bucket(ZERO_RATE / 2) == 0
    assert bucket_rate(0) == 0.0
    rate = ZERO_RATE
    while rate < 2000:
        assert within(bucket_rate(rate_bucket(rate)), rate), rate
        rate *= 1.013


def test_histogram_blobs_add_and_take_away_exactly() -> None:
    rng = random.Random(5)
    expected: dict[int, int] = {}
    blob = b""
    for _ in range(500):  # one bucket at a time, as each pass adds them
        one = RateHistogram()
        bucket = rng.randrange(0, 300)
        one.add(bucket)
        blob = hist_merge(blob, one.to_blob(), 1)
        expected[bucket] = expected.get(bucket, 0) + 1
    assert RateHistogram.from_blob(blob).counts == expected
    half = RateHistogram()
    for bucket, count in expected.items():
        half.add(bucket, count // 2)
    rest = hist_merge(blob, half.to_blob(), -1)
    remaining = {b: c - c // 2 for b, c in expected.items() if c - c // 2}
    assert RateHistogram.from_blob(rest).counts == remaining
    assert hist_merge(rest, rest, -1) == b""


def test_a_restart_or_a_long_gap_adds_no_rate(store: HistoryStore) -> None:
    cpu, ts = 0.0, float(T0)
    for _ in range(20):
        store.record(snap(ts, container("web", cpu)))
        cpu, ts = cpu + 0.5 * STEP, ts + STEP
    cpu = 1.0  # restarted: the counter starts again, lower
    for _ in range(20):
        store.record(snap(ts, container("web", cpu)))
        cpu, ts = cpu + 0.5 * STEP, ts + STEP
    # The daemon was stopped for an hour; the counter moved as if at 3 cores meanwhile.
    ts, cpu = ts + HOUR, cpu + 3.0 * HOUR
    for _ in range(20):
        store.record(snap(ts, container("web", cpu)))
        cpu, ts = cpu + 0.5 * STEP, ts + STEP
    for fraction in (0.01, 1.0):
        assert within(store.workload_history(T0, fraction)[KEY].cpu_rate_percentile, 0.5)


def test_a_late_pass_adds_no_rate_and_the_next_counts_from_the_latest(
    store: HistoryStore,
) -> None:
    end = record_rates(store, [0.5] * 4)
    store.record(snap(end - 10, container("web", 1.0)))  # the clock stepped back
    store.record(snap(end + STEP, container("web", 0.5 * STEP * 5)))
    for fraction in (0.01, 1.0):
        assert within(store.workload_history(T0, fraction)[KEY].cpu_rate_percentile, 0.5)


def test_unknown_values_are_left_out_not_counted_as_zero(store: HistoryStore) -> None:
    store.record(snap(T0, container("web", None, None, None)))
    store.record(snap(T0 + STEP, container("web", 3.0, 50 * MIB, None)))
    store.record(snap(T0 + 2 * STEP, container("web", 3.0 + 0.2 * STEP, None, 7 * MIB)))
    found = store.workload_history(T0)[KEY]
    assert found.memory_max == 50 * MIB
    assert (found.disk_first, found.disk_last) == (7 * MIB, 7 * MIB)
    assert within(found.cpu_rate_percentile, 0.2)


def test_a_renamed_workload_reads_back_under_its_latest_name(store: HistoryStore) -> None:
    store.record(snap(T0, container("web", 0.0)))
    renamed = WorkloadSample(kind=WorkloadKind.CONTAINER, id="web-id", name="web-2", cpu_seconds=1)
    store.record(snap(T0 + STEP, renamed, renamed))  # listed twice: counted once
    history = store.workload_history(T0)
    assert history[KEY].name == "web-2"
    assert rows(store.path, "SELECT COUNT(*) FROM samples") == [(2,)]
    assert rows(store.path, "SELECT samples FROM summary WHERE period = ?", HOUR) == [(2,)]


def test_windows_are_rounded_to_hours_recently_and_days_before(store: HistoryStore) -> None:
    # Three days; hour i (from T0) runs at 0.01 x 1.1**i cores: each hour its own rate.
    def rate(ts: float) -> float:
        return float(0.01 * 1.1 ** ((ts - T0) // HOUR))

    now = record_by_time(store, rate, T0, T0 + 3 * DAY - 900, 900)
    store.maintain(now)  # hourly rows older than 48 h go: most of day 0 is only in its day row
    recent = store.workload_history(now - 3 * HOUR - 60, 0.01)[KEY]
    assert recent.first_timestamp == T0 + 2 * DAY + 20 * HOUR  # rounded down to 20:00
    assert within(recent.cpu_rate_percentile, rate(T0 + 2 * DAY + 20 * HOUR))
    assert recent.memory_max == 100 * MIB
    assert (recent.disk_first, recent.disk_last) == (2 * DAY + 20 * HOUR, now - T0)
    old = store.workload_history(T0 + 5 * HOUR, 0.01)[KEY]
    assert old.first_timestamp == T0  # rounded down to the day
    assert within(old.cpu_rate_percentile, rate(T0))
    assert old.memory_max == 500 * MIB
    assert (old.disk_first, old.disk_last) == (0, now - T0)
    bounded = store.workload_history(T0 + DAY + 2 * HOUR, 1.0, until=T0 + DAY + 5 * HOUR + 1)
    assert within(bounded[KEY].cpu_rate_percentile, rate(T0 + DAY + 5 * HOUR))
    assert bounded[KEY].last_timestamp == T0 + DAY + 6 * HOUR - 900
    assert store.workload_history(T0 + DAY, until=T0) == {}


def test_a_long_window_reads_the_totals_and_a_short_one_the_days(store: HistoryStore) -> None:
    # Day k runs at (k + 1) / 10 cores for 10 days; both ways of summing must agree.
    def rate(ts: float) -> float:
        return ((ts - T0) // DAY + 1) / 10

    now = record_by_time(store, rate, T0, T0 + 10 * DAY - 1800, 1800)
    store.maintain(now)
    # From day 1 the window leaves out 1 day of 10: totals minus day 0. From day 7 it
    # takes in 3: the sum of those days.
    for since, lowest in ((T0 + DAY + 60, 0.2), (T0 + 7 * DAY + 60, 0.8)):
        assert within(store.workload_history(since, 0.01)[KEY].cpu_rate_percentile, lowest)
        assert within(store.workload_history(since, 1.0)[KEY].cpu_rate_percentile, 1.0)
    # The totals hold exactly what the daily histograms hold.
    [(blob,)] = rows(store.path, "SELECT counts FROM cpu_hist_total")
    daily = RateHistogram()
    for (day,) in rows(store.path, "SELECT counts FROM cpu_hist WHERE period = ?", DAY):
        daily.merge(day)
    assert RateHistogram.from_blob(blob).counts == daily.counts
    assert sum(daily.counts.values()) == 10 * 48 - 1  # every interval, once


def test_trend_sums_the_workloads_per_period(store: HistoryStore) -> None:
    for n in range(2 * 240 + 1):  # two hours at 15 s
        ts = T0 + n * STEP
        store.record(
            snap(
                ts,
                container("web", 0.5 * STEP * n, (100 + n % 3) * MIB, n),
                container("db", 0.25 * STEP * n, 200 * MIB, 1000 + n),
            )
        )
    points = store.trend(since=T0)
    # The third hour has only begun (one pass): its maximum so far is no point of the trend.
    assert [p.timestamp for p in points] == [T0, T0 + HOUR]
    first = points[0].demand
    assert first.cpu == pytest.approx(0.75)
    assert first.memory == (102 + 200) * MIB
    assert first.disk == 239 + 1239
    only_db = store.trend(since=T0, keys=[("container", "db-id")])
    assert only_db[1].demand.cpu == pytest.approx(0.25)
    assert only_db[1].demand.memory == 200 * MIB
    assert store.trend(since=T0, keys=[]) == []
    # A window longer than the history: hours still, as they hold all of it.
    assert len(store.trend(since=T0 - 14 * DAY)) == 2
    store.record(snap(T0 + DAY, container("web", 0.5 * STEP * 481, 100 * MIB, 481)))
    store.maintain(T0 + 3 * DAY)  # the hourly rows go: days, the first one over
    daily = store.trend(since=T0 - 14 * DAY)
    assert [p.timestamp for p in daily] == [T0]
    assert daily[0].demand.memory == (102 + 200) * MIB


def test_the_host_is_recorded_and_rolled_up_to_the_worst_case(store: HistoryStore) -> None:
    for n in range(40):  # the least free is not the last in its 5 minutes
        host = HostSample(
            cpu_cores=8,
            memory_bytes=64 * 1024 * MIB,
            memory_available_bytes=(30_000 - n * 7 % 20) * MIB,
            disks=(DiskUsage("/var/lib/docker", 1000, 500 - n * 3 % 40),),
        )
        store.record(snap(T0 + n * STEP, host=host))
    raw = store.host_history(T0)
    assert [h.memory_available_bytes for _, h in raw][:2] == [30_000 * MIB, 29_993 * MIB]
    assert raw[0][1].cpu_cores == 8
    store.maintain(T0 + 3 * DAY)
    rolled = store.host_history(T0)
    assert [ts for ts, _ in rolled] == [T0, T0 + 300]
    assert rolled[0][1].memory_available_bytes == (30_000 - 19) * MIB
    assert rolled[1][1].disks == (DiskUsage("/var/lib/docker", 1000, 500 - 38),)


# -- rollup, retention, size -------------------------------------------------------------------


def test_rollup_after_48_hours_keeps_the_5_minute_maxima(store: HistoryStore) -> None:
    for n in range(240):  # one hour at 15 s; a memory spike every 7 passes
        memory = (500 if n % 7 == 3 else 100 + n % 5) * MIB
        store.record(snap(T0 + n * STEP, container("web", 0.5 * STEP * n, memory, n)))
    store.maintain(T0 + 47 * HOUR)
    assert rows(store.path, "SELECT COUNT(*) FROM samples") == [(240,)]
    store.maintain(T0 + HOUR + 48 * HOUR)
    assert rows(store.path, "SELECT COUNT(*) FROM samples") == [(0,)]
    rolled = rows(
        store.path, "SELECT ts, samples, cpu_ms, memory, disk FROM samples_5m ORDER BY ts"
    )
    assert len(rolled) == 12
    for bucket, (ts, count, cpu_ms, memory, disk) in enumerate(rolled):
        passes = range(bucket * 20, bucket * 20 + 20)
        expected_memory = max((500 if n % 7 == 3 else 100 + n % 5) * MIB for n in passes)
        assert (ts, count, memory, disk) == (T0 + bucket * 300, 20, expected_memory, passes[-1])
        assert cpu_ms == round(0.5 * STEP * passes[-1] * 1000)  # the last counter of the bucket
    assert rows(store.path, "SELECT COUNT(*) FROM summary WHERE period = ?", HOUR) == [(0,)]
    found = store.workload_history(T0)[KEY]  # from the daily rows, unchanged
    assert found.memory_max == 500 * MIB
    assert within(found.cpu_rate_percentile, 0.5)


def test_retention_deletes_what_is_older_than_14_days(store: HistoryStore) -> None:
    old = T0
    end = record_rates(store, [2.0] * 20, start=old)
    store.record(snap(end + STEP, container("web", 2.0 * STEP * 21), container("gone", 1.0)))
    new = T0 + 20 * DAY
    record_rates(store, [0.5] * 20, start=new)
    now = new + HOUR
    store.maintain(now)
    history = store.workload_history(since=0, percentile=1.0)
    assert set(history) == {KEY}
    assert history[KEY].first_timestamp == new
    assert within(history[KEY].cpu_rate_percentile, 0.5)  # the 2-core rates went, totals too
    assert store.oldest_timestamp() == new
    assert rows(store.path, "SELECT name FROM workloads") == [("web",)]
    for table, column in (
        ("samples_5m", "ts"),
        ("summary", "period_start"),
        ("cpu_hist", "period_start"),
    ):
        query = f"SELECT COUNT(*) FROM {table} WHERE {column} < ?"
        assert rows(store.path, query, now - 14 * DAY) == [(0,)], table


def test_retention_is_configurable(tmp_path: Path) -> None:
    with HistoryStore.open(tmp_path, retention_seconds=2 * DAY) as store:
        record_rates(store, [1.0] * 4, start=T0)
        record_rates(store, [1.0] * 4, start=T0 + 4 * DAY)
        store.maintain(T0 + 4 * DAY + HOUR)
        assert store.oldest_timestamp() == T0 + 4 * DAY


def test_the_file_stops_growing_once_the_retention_is_full(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path, retention_seconds=DAY, raw_seconds=2 * HOUR)
    cpu = [0.0] * 20
    sizes = []
    for hour in range(4 * 24):
        for n in range(12):
            ts = T0 + hour * HOUR + n * 300
            cpu = [c + (i + 1) * 30 for i, c in enumerate(cpu)]
            store.record(
                snap(ts, *(container(f"w{i}", cpu[i], (100 + n) * MIB, ts) for i in range(20)))
            )
        store.maintain(T0 + (hour + 1) * HOUR)
        if hour % 24 == 23:
            sizes.append(store.path.stat().st_size + Path(f"{store.path}-wal").stat().st_size)
    store.close()
    assert sizes[-1] <= sizes[1] * 1.1, sizes


def test_space_freed_by_a_shorter_retention_goes_back_to_the_filesystem(tmp_path: Path) -> None:
    with HistoryStore.open(tmp_path) as store:
        for n in range(2 * 288):  # two days at 5 minutes, 50 workloads
            workloads = (container(f"w{i}", n * 60.0, (100 + i) * MIB, n) for i in range(50))
            store.record(snap(T0 + n * 300, *workloads))
        now = T0 + 2 * DAY
        store.maintain(now)
        before = store.path.stat().st_size
    with HistoryStore.open(tmp_path, retention_seconds=HOUR) as store:
        store.maintain(now)
        after = store.path.stat().st_size
    assert after < before * 0.3, (before, after)


# -- restarts, crashes, concurrent readers -----------------------------------------------------


def test_reopening_keeps_the_data_and_the_rates_continue(tmp_path: Path) -> None:
    with HistoryStore.open(tmp_path) as store:
        end = record_rates(store, [0.1] * 10)
    assert not Path(f"{tmp_path / HISTORY_FILE}-wal").exists()  # closed cleanly
    with HistoryStore.open(tmp_path) as store:
        assert KEY in store.workload_history(T0)
        # The first pass after the restart: 2 cores since the last one before it.
        cpu = 0.1 * STEP * 10 + 2.0 * STEP
        store.record(snap(end + STEP, container("web", cpu)))
        store.record(snap(end + 2 * STEP, container("web", cpu + 0.1 * STEP)))
        found = store.workload_history(T0, 1.0)[KEY]
    assert within(found.cpu_rate_percentile, 2.0)
    assert found.last_timestamp == end + 2 * STEP


WRITER = """
import sys
from pathlib import Path
from densityd.model import Snapshot, WorkloadKind, WorkloadSample
from densityd.history.store import HistoryStore

store = HistoryStore.open(Path(sys.argv[1]))
for n in range(10**6):
    ts = {t0} + 15 * n
    workloads = tuple(
        WorkloadSample(kind=WorkloadKind.CONTAINER, id=f"c{{i}}", name=f"c{{i}}",
                       cpu_seconds=7.5 * n, memory_bytes=1000 + n, disk_bytes=n)
        for i in range(100)
    )
    store.record(Snapshot(timestamp=ts, workloads=workloads))
    if n % 10 == 9:
        store.maintain(ts)
    print(n, flush=True)
"""


def test_kill_9_while_writing_leaves_a_sound_database(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(t0=T0), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert writer.stdout is not None
    try:
        last = -1
        for line in writer.stdout:
            last = int(line)
            if last >= 60:
                break
        os.kill(writer.pid, signal.SIGKILL)  # mid-run: it writes all the time
    finally:
        writer.kill()
        writer.wait()
    assert last >= 60, "the writer did not get going"
    path = tmp_path / HISTORY_FILE
    with HistoryStore.open(tmp_path) as store:  # recovers from the WAL left behind
        assert rows(path, "PRAGMA integrity_check") == [("ok",)]
        assert rows(path, "SELECT COUNT(*) FROM samples WHERE ts <= ?", T0 + 15 * last) == [
            ((last + 1) * 100,)
        ]
        found = store.workload_history(T0, 1.0)[("container", "c0")]
        assert found.last_timestamp >= T0 + 15 * last
        assert within(found.cpu_rate_percentile, 0.5)
        n = int((found.last_timestamp - T0) // 15) + 1
        again = WorkloadSample(kind=WorkloadKind.CONTAINER, id="c0", name="c0", cpu_seconds=7.5 * n)
        store.record(snap(T0 + 15 * n, again))
        assert store.workload_history(T0)[("container", "c0")].last_timestamp == T0 + 15 * n


def test_a_reader_sees_committed_passes_while_the_writer_works(tmp_path: Path) -> None:
    writer = HistoryStore.open(tmp_path)
    record_rates(writer, [0.5] * 10)
    reader = HistoryStore.open(tmp_path, readonly=True)
    try:
        assert within(reader.workload_history(T0)[KEY].cpu_rate_percentile, 0.5)
        assert writer._writer is not None
        writer._writer.execute("BEGIN IMMEDIATE")  # a pass half-written, holding the lock
        writer._writer.execute("DELETE FROM summary")
        assert KEY in reader.workload_history(T0)  # not blocked, and sees only what committed
        writer._writer.execute("ROLLBACK")
        vm = container("db", 0.0, kind=WorkloadKind.VM)
        writer.record(snap(T0 + 11 * STEP, container("web", 0.5 * STEP * 11), vm))
        assert set(reader.workload_history(T0)) == {KEY, ("vm", "db-id")}
        assert reader.workload_history(T0)[("vm", "db-id")].kind is WorkloadKind.VM
        with pytest.raises(StoreError, match="read-only"):
            reader.record(snap(T0 + 12 * STEP, container("web", 99.0)))
    finally:
        reader.close()
        writer.close()


def test_reads_from_other_threads_while_recording(store: HistoryStore) -> None:
    failures: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                store.workload_history(T0)
                store.trend(T0)
            except BaseException as exc:  # reported below, in the test's thread
                failures.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        record_rates(store, [0.5] * 60)
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert failures == []
    assert within(store.workload_history(T0)[KEY].cpu_rate_percentile, 0.5)


# -- failures ------------------------------------------------------------------------------------


def test_a_full_disk_fails_the_pass_and_the_store_recovers(store: HistoryStore) -> None:
    end = record_rates(store, [0.5] * 5)
    cpu = 0.5 * STEP * 5
    assert store._writer is not None
    pages = store._writer.execute("PRAGMA page_count").fetchone()[0]
    store._writer.execute(f"PRAGMA max_page_count = {pages}")  # nothing more fits
    many = [container(f"new-{i}", 0.0, memory=MIB) for i in range(300)]
    full = f"cannot write history to {store.path}: database or disk is full"
    with pytest.raises(StoreError, match=full):
        store.record(snap(end + STEP, container("web", cpu + 0.5 * STEP), *many))
    assert set(store.workload_history(T0)) == {KEY}  # the failed pass left nothing
    store._writer.execute("PRAGMA max_page_count = 1073741823")  # space is back
    store.record(snap(end + 2 * STEP, container("web", cpu + 3.5 * STEP), *many))
    history = store.workload_history(T0, 1.0)
    assert len(history) == 301
    # The rate spans the failed pass, from the last sample recorded: 3.5 cores over two
    # intervals. Had the failed pass counted, it would read 3 cores.
    assert within(history[KEY].cpu_rate_percentile, 1.75)


def test_record_many_writes_what_record_writes(tmp_path: Path) -> None:
    rng = random.Random(3)
    cpu = [0.0, 0.0, 0.0]
    passes = []
    for n in range(300):
        cpu = [c + rng.uniform(0, 2) * 300 for c in cpu]
        workloads = [container(f"w{i}", cpu[i], rng.randrange(1, 9) * MIB, n) for i in range(3)]
        passes.append(snap(T0 + n * 300 + rng.uniform(-2, 2), *workloads))
    one, many = tmp_path / "one", tmp_path / "many"
    with HistoryStore.open(one) as store:
        for snapshot in passes:
            store.record(snapshot)
    with HistoryStore.open(many) as store:
        for start in range(0, len(passes), 12):
            store.record_many(reversed(passes[start : start + 12]))  # any order in a batch
    tables = rows(one / HISTORY_FILE, "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert ("cpu_hist_total",) in tables
    for (table,) in tables:
        columns = len(rows(one / HISTORY_FILE, f"PRAGMA table_info({table})"))
        order = ", ".join(str(n) for n in range(1, columns + 1))
        dump = f"SELECT * FROM {table} ORDER BY {order}"
        assert rows(one / HISTORY_FILE, dump) == rows(many / HISTORY_FILE, dump), table
