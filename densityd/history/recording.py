"""Recording passes into the history, and the roll-ups and retention that keep it small.

At every pass ``PassWriter.add_pass`` adds each workload's sample, its hour and day summary
rows and CPU-rate histogram counts to a batch, and ``write_batch`` writes the batch with one
upsert per row; ``roll_up`` turns raw samples past ``raw_seconds`` into 5-minute rows, and
``PassWriter.prune`` drops what is past the retention.
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

from densityd.history.histogram import RateHistogram, histogram_at, rate_bucket
from densityd.history.schema import DAY, HOUR, ROLLUP_SECONDS, floor_to, host_row, host_sample
from densityd.model import DiskUsage, HostSample, Snapshot, WorkloadSample

# A rate over a gap this many times the usual pass interval (the daemon was stopped, a
# source was down) would flatten the peaks it hides into one sample: it is left out.
GAP_FACTOR = 4.0


_INTERVALS_KEPT = 5


# Free pages up to this share of the file stay for reuse by the next passes; only the rest
# is handed back to the filesystem (giving back pages that are needed again is wasted I/O).
VACUUM_SLACK = 0.1


# No foreign keys: the child tables are keyed by time first, so a cascade from ``workloads``
# would scan them whole; ``maintain`` drops a workload only after its rows have aged out.
_INSERT_SAMPLE = "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?)"


# Rows are summed per batch of passes first, so each upsert adds a row's counts to the stored
# ones; the stored row is the earlier one (passes are written in time order).
_UPSERT_SUMMARY = """
    INSERT INTO summary VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (period, period_start, wid) DO UPDATE SET
        first_ts = MIN(first_ts, excluded.first_ts),
        last_ts = MAX(last_ts, excluded.last_ts),
        samples = samples + excluded.samples,
        memory_max = CASE WHEN memory_max IS NULL OR excluded.memory_max > memory_max
                          THEN excluded.memory_max ELSE memory_max END,
        disk_first = COALESCE(disk_first, excluded.disk_first),
        disk_last = COALESCE(excluded.disk_last, disk_last),
        cpu_used_ms = cpu_used_ms + excluded.cpu_used_ms,
        cpu_span_ms = cpu_span_ms + excluded.cpu_span_ms
"""


_UPSERT_HIST = """
    INSERT INTO cpu_hist VALUES (?, ?, ?, ?)
    ON CONFLICT (period, period_start, wid) DO UPDATE SET
        counts = hist_merge(counts, excluded.counts, 1)
"""


_UPSERT_TOTAL = """
    INSERT INTO cpu_hist_total VALUES (?, ?)
    ON CONFLICT (wid) DO UPDATE SET counts = hist_merge(counts, excluded.counts, 1)
"""


_INSERT_HOST = "INSERT OR REPLACE INTO host VALUES (?, ?, ?, ?, ?)"
_UPSERT_PASSES = """
    INSERT INTO passes VALUES (?, ?, ?)
    ON CONFLICT (period, period_start) DO UPDATE SET passes = passes + excluded.passes
"""


_INSERT_WORKLOAD = """
    INSERT INTO workloads
        (kind, ext_id, name, image, first_seen, last_seen, cpu_limit, memory_limit, disk_limit)
    VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)
    ON CONFLICT (kind, ext_id) DO UPDATE SET
        name = excluded.name, image = excluded.image,
        last_seen = MAX(last_seen, excluded.last_seen), cpu_limit = excluded.cpu_limit,
        memory_limit = excluded.memory_limit, disk_limit = excluded.disk_limit
"""


_UPDATE_SEEN = """
    UPDATE workloads SET last_seen = MAX(last_seen, ?) WHERE wid IN (SELECT value FROM json_each(?))
"""


_UPDATE_META = """
    UPDATE workloads SET name = ?, image = ?, cpu_limit = ?, memory_limit = ?, disk_limit = ?
    WHERE wid = ?
"""


_ROLL_UP_SAMPLES = """
    INSERT INTO samples_5m (ts, wid, samples, cpu_ms, memory, disk)
    SELECT g.bucket, g.wid, g.n, s.cpu_ms, g.memory, g.disk
    FROM (
        SELECT ts - ts % ?1 AS bucket, wid, COUNT(*) AS n, MAX(ts) AS last,
               MAX(memory) AS memory, MAX(disk) AS disk
        FROM samples WHERE ts < ?2 GROUP BY bucket, wid
    ) AS g JOIN samples AS s ON s.ts = g.last AND s.wid = g.wid
    WHERE true
    ON CONFLICT (ts, wid) DO UPDATE SET
        samples = samples + excluded.samples,
        cpu_ms = COALESCE(excluded.cpu_ms, cpu_ms),
        memory = CASE WHEN memory IS NULL OR excluded.memory > memory
                      THEN excluded.memory ELSE memory END,
        disk = CASE WHEN disk IS NULL OR excluded.disk > disk THEN excluded.disk ELSE disk END
"""


Key = tuple[str, str]


_Meta = tuple[str, str, float | None, int | None, int | None]


@dataclass(slots=True)
class _Period:
    """One summary row being built: a workload over one hour or day, within one batch."""

    first: int
    last: int
    samples: int
    memory: int | None
    disk_first: int | None
    disk_last: int | None
    used_ms: int
    span_ms: int

    def add(self, other: _Period) -> None:
        """Take in a later sample of the same period."""
        self.last = max(self.last, other.last)
        self.samples += other.samples
        if other.memory is not None and (self.memory is None or other.memory > self.memory):
            self.memory = other.memory
        if self.disk_first is None:
            self.disk_first = other.disk_first
        if other.disk_last is not None:
            self.disk_last = other.disk_last
        self.used_ms += other.used_ms
        self.span_ms += other.span_ms


@dataclass
class Batch:
    """What a batch of passes writes, summed per row before any of it is written.

    It also carries the in-memory state as it will be once the batch is committed (new wids
    and metadata, each workload's latest CPU sample, the pass intervals), so that a batch
    that fails leaves the store's state as it was.
    """

    intervals: deque[float]
    last_pass: float | None
    samples: list[tuple[int, int, int | None, int | None, int | None]] = field(default_factory=list)
    periods: dict[tuple[int, int, int], _Period] = field(default_factory=dict)
    hists: dict[tuple[int, int, int], RateHistogram] = field(default_factory=dict)
    totals: dict[int, RateHistogram] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)
    hosts: list[tuple[int, int, int, int, str]] = field(default_factory=list)
    passes: dict[tuple[int, int], int] = field(default_factory=dict)
    wids: dict[Key, int] = field(default_factory=dict)
    meta: dict[int, _Meta] = field(default_factory=dict)
    previous: dict[int, tuple[float, float]] = field(default_factory=dict)


def _worst(a: HostSample, b: HostSample) -> HostSample:
    """The larger capacity and the smaller free space of two host samples, disk by disk."""
    disks = {d.path: d for d in a.disks}
    for d in b.disks:
        seen = disks.get(d.path)
        disks[d.path] = (
            d
            if seen is None
            else DiskUsage(
                d.path, max(seen.total_bytes, d.total_bytes), min(seen.free_bytes, d.free_bytes)
            )
        )
    return HostSample(
        cpu_cores=max(a.cpu_cores, b.cpu_cores),
        memory_bytes=max(a.memory_bytes, b.memory_bytes),
        memory_available_bytes=min(a.memory_available_bytes, b.memory_available_bytes),
        disks=tuple(disks.values()),
    )


class PassWriter:
    """What recording a pass needs from the earlier ones, so that a pass costs no look-ups.

    Per workload its wid and metadata and its previous (time, CPU seconds); the recent pass
    intervals. A batch carries the state as it will be once committed (``commit``), so a
    batch that fails leaves it as it was.
    """

    def __init__(self) -> None:
        self._wids: dict[Key, int] = {}
        self._meta: dict[int, _Meta] = {}
        self._previous: dict[int, tuple[float, float]] = {}
        self._intervals: deque[float] = deque(maxlen=_INTERVALS_KEPT)
        self._last_pass: float | None = None
        self._data_version = 0

    def batch(self) -> Batch:
        """A new batch, starting from the committed state."""
        return Batch(deque(self._intervals, maxlen=_INTERVALS_KEPT), self._last_pass)

    def commit(self, batch: Batch) -> None:
        """Move the state on to a batch that was committed."""
        self._wids.update(batch.wids)
        self._meta.update(batch.meta)
        self._previous.update(batch.previous)
        self._intervals = batch.intervals
        self._last_pass = batch.last_pass

    def start(self, conn: sqlite3.Connection) -> None:
        """Load the state from the file and note its data version (``follow_other_writers``)."""
        self.load(conn)
        self._data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])

    def load(self, conn: sqlite3.Connection) -> None:
        """Pick up where the last writer stopped: wids, metadata, previous CPU samples."""
        self._wids.clear()
        self._meta.clear()
        self._previous.clear()
        rows = conn.execute(
            "SELECT wid, kind, ext_id, name, image, cpu_limit, memory_limit, disk_limit "
            "FROM workloads"
        )
        for wid, kind, ext_id, name, image, cpu_limit, memory_limit, disk_limit in rows:
            self._wids[(kind, ext_id)] = wid
            self._meta[wid] = (name, image, cpu_limit, memory_limit, disk_limit)
        # Each workload's last sample, so the first rate after a restart spans the restart.
        rows = conn.execute(
            "SELECT s.wid, s.ts, s.cpu_ms FROM workloads AS w "
            "JOIN samples AS s ON s.ts = w.last_seen AND s.wid = w.wid "
            "WHERE s.cpu_ms IS NOT NULL"
        )
        for wid, ts, cpu_ms in rows:
            self._previous[wid] = (float(ts), cpu_ms / 1000)
        times = [
            float(ts)
            for (ts,) in conn.execute(
                f"SELECT DISTINCT ts FROM samples ORDER BY ts DESC LIMIT {_INTERVALS_KEPT + 1}"
            )
        ]
        times.reverse()
        self._intervals.clear()
        self._intervals.extend(b - a for a, b in pairwise(times))
        self._last_pass = times[-1] if times else None

    def follow_other_writers(self, conn: sqlite3.Connection) -> bool:
        """Reload the in-memory state if another connection wrote since our last transaction;
        whether it did.

        Only the daemon should write a store, but a second writer (a stray second daemon)
        must not make this one write rows under wids it has since pruned.
        """
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._data_version:
            return False
        self.load(conn)
        self._data_version = version
        return True

    def _wid(self, conn: sqlite3.Connection, batch: Batch, w: WorkloadSample, now: int) -> int:
        """The workload's wid, inserting it when new; notes changed names, images, limits."""
        key = (str(w.kind), w.id)
        meta: _Meta = (
            w.name,
            w.image,
            w.cpu_limit_cores,
            w.memory_limit_bytes,
            w.disk_limit_bytes,
        )
        wid = batch.wids.get(key)
        if wid is None:
            wid = self._wids.get(key)
        if wid is None:
            conn.execute(_INSERT_WORKLOAD, (*key, w.name, w.image, now, *meta[2:]))
            row = conn.execute("SELECT wid FROM workloads WHERE kind = ? AND ext_id = ?", key)
            wid = int(row.fetchone()[0])
            batch.wids[key] = wid
            batch.meta[wid] = meta
        elif batch.meta.get(wid, self._meta.get(wid)) != meta:
            batch.meta[wid] = meta
        return wid

    def add_pass(self, conn: sqlite3.Connection, batch: Batch, snapshot: Snapshot) -> None:
        """Add one pass's rows to the batch, with each workload's CPU rate since its last."""
        ts = snapshot.timestamp
        second = round(ts)
        hour, day = floor_to(second, HOUR), floor_to(second, DAY)
        usual = statistics.median(batch.intervals) if batch.intervals else None
        done: set[int] = set()
        for w in snapshot.workloads:
            wid = self._wid(conn, batch, w, second)
            if wid in done:  # listed twice in one pass: the first one counts
                continue
            done.add(wid)
            cpu = w.cpu_seconds
            cpu_ms = None if cpu is None else round(cpu * 1000)
            batch.samples.append((second, wid, cpu_ms, w.memory_bytes, w.disk_bytes))
            batch.seen[wid] = second
            used_ms = span_ms = 0
            bucket: int | None = None
            if cpu is not None:
                previous = batch.previous.get(wid)
                if previous is None:
                    previous = self._previous.get(wid)
                if previous is not None:
                    elapsed, used = ts - previous[0], cpu - previous[1]
                    # A counter that went back is a restarted container or VM: no rate.
                    usual_gap = usual is None or elapsed <= GAP_FACTOR * usual
                    if elapsed > 0 and used >= 0 and usual_gap:
                        bucket = rate_bucket(used / elapsed)
                        used_ms, span_ms = round(used * 1000), round(elapsed * 1000)
                if previous is None or ts > previous[0]:  # a late pass moves nothing on
                    batch.previous[wid] = (ts, cpu)
            for period, start in ((HOUR, hour), (DAY, day)):
                row = _Period(
                    second, second, 1, w.memory_bytes, w.disk_bytes, w.disk_bytes, used_ms, span_ms
                )
                stored = batch.periods.get((period, start, wid))
                if stored is None:
                    batch.periods[(period, start, wid)] = row
                else:
                    stored.add(row)
                if bucket is not None:
                    histogram_at(batch.hists, (period, start, wid)).add(bucket)
            if bucket is not None:
                histogram_at(batch.totals, wid).add(bucket)
        if snapshot.host is not None:
            batch.hosts.append(host_row(second, snapshot.host))
        for period, start in ((HOUR, hour), (DAY, day)):
            batch.passes[(period, start)] = batch.passes.get((period, start), 0) + 1
        if batch.last_pass is not None and ts > batch.last_pass:
            batch.intervals.append(ts - batch.last_pass)
        batch.last_pass = ts if batch.last_pass is None else max(ts, batch.last_pass)

    def prune(
        self, conn: sqlite3.Connection, now: float, raw_seconds: float, retention_seconds: float
    ) -> None:
        """Drop hourly rows past ``raw_seconds``, and everything past the retention."""
        hourly_before = math.floor(now - raw_seconds) - HOUR
        for table in ("summary", "cpu_hist", "passes"):
            conn.execute(
                f"DELETE FROM {table} WHERE period = ? AND period_start <= ?", (HOUR, hourly_before)
            )
        keep_from = math.floor(now - retention_seconds)
        daily_before = keep_from - DAY
        # The totals must keep matching the daily histograms: take out what goes.
        gone: dict[int, RateHistogram] = {}
        rows = conn.execute(
            "SELECT wid, counts FROM cpu_hist WHERE period = ? AND period_start <= ?",
            (DAY, daily_before),
        )
        for wid, blob in rows:
            histogram_at(gone, wid).merge(blob)
        conn.executemany(
            "UPDATE cpu_hist_total SET counts = hist_merge(counts, ?, -1) WHERE wid = ?",
            [(hist.to_blob(), wid) for wid, hist in gone.items()],
        )
        conn.execute("DELETE FROM cpu_hist_total WHERE length(counts) = 0")
        for table in ("summary", "cpu_hist", "passes"):
            conn.execute(
                f"DELETE FROM {table} WHERE period = ? AND period_start <= ?", (DAY, daily_before)
            )
        for table in ("samples", "samples_5m", "host", "host_5m"):
            conn.execute(f"DELETE FROM {table} WHERE ts < ?", (keep_from,))
        # A workload unseen for the retention plus a day has no rows left in any table.
        found = conn.execute("SELECT wid FROM workloads WHERE last_seen <= ?", (daily_before,))
        dropped = {wid for (wid,) in found}
        if dropped:
            listed = json.dumps(sorted(dropped))
            for table in ("cpu_hist_total", "workloads"):
                conn.execute(
                    f"DELETE FROM {table} WHERE wid IN (SELECT value FROM json_each(?))",
                    (listed,),
                )
            # Safe before the commit: a lost wid is looked up again at the next pass.
            self._wids = {key: wid for key, wid in self._wids.items() if wid not in dropped}
            for wid in dropped:
                self._meta.pop(wid, None)
                self._previous.pop(wid, None)


def write_batch(conn: sqlite3.Connection, batch: Batch) -> None:
    """Write a batch's rows, each upsert adding to what the row held."""
    conn.executemany(_INSERT_SAMPLE, batch.samples)
    conn.executemany(
        _UPSERT_SUMMARY,
        [
            (
                *key,
                p.first,
                p.last,
                p.samples,
                p.memory,
                p.disk_first,
                p.disk_last,
                p.used_ms,
                p.span_ms,
            )
            for key, p in batch.periods.items()
        ],
    )
    conn.executemany(_UPSERT_HIST, [(*k, h.to_blob()) for k, h in batch.hists.items()])
    conn.executemany(_UPSERT_TOTAL, [(k, h.to_blob()) for k, h in batch.totals.items()])
    by_second: dict[int, list[int]] = {}
    for wid, second in batch.seen.items():
        by_second.setdefault(second, []).append(wid)
    conn.executemany(_UPDATE_SEEN, [(s, json.dumps(w)) for s, w in by_second.items()])
    conn.executemany(_UPDATE_META, [(*meta, wid) for wid, meta in batch.meta.items()])
    conn.executemany(_INSERT_HOST, batch.hosts)
    conn.executemany(_UPSERT_PASSES, [(*key, n) for key, n in batch.passes.items()])


def roll_up(conn: sqlite3.Connection, before: int) -> None:
    """Replace the raw samples and host rows before ``before`` by 5-minute rows."""
    conn.execute(_ROLL_UP_SAMPLES, (ROLLUP_SECONDS, before))
    conn.execute("DELETE FROM samples WHERE ts < ?", (before,))
    merged: dict[int, HostSample] = {}
    rows = conn.execute(
        "SELECT ts, cpu_cores, memory_bytes, memory_available_bytes, disks "
        "FROM host WHERE ts < ? ORDER BY ts",
        (before,),
    )
    for ts, *values in rows:
        host = host_sample(*values)
        bucket = floor_to(ts, ROLLUP_SECONDS)
        merged[bucket] = _worst(merged[bucket], host) if bucket in merged else host
    conn.executemany(
        "INSERT OR REPLACE INTO host_5m VALUES (?, ?, ?, ?, ?)",
        [host_row(ts, host) for ts, host in merged.items()],
    )
    conn.execute("DELETE FROM host WHERE ts < ?", (before,))
