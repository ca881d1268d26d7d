"""The history store: every pass's workload and host numbers in SQLite, summarised for planning.

One SQLite file, ``STATE_DIR/history.sqlite3`` (WAL mode, so ``densityd plan`` reads it while
the daemon writes), holds, with integer timestamps in Unix seconds and periods aligned to UTC:

- ``workloads``: one row per container or VM (kind, ID, latest name, image and limits, first
  and last seen); the other tables name a workload by its small integer ``wid``.
- ``samples``: each pass's CPU counter (integer milliseconds), memory and disk bytes, for the
  last ``raw_seconds`` (48 h); then rolled up into ``samples_5m``: per workload and 5 minutes
  the maxima of memory and disk and the last CPU counter, kept for the retention (14 days).
- ``summary``: per workload, hour and day, updated at every pass: first and last timestamps,
  memory maximum, first and last disk bytes, and the CPU time used over the time it was
  measured across (a mean rate). Hourly rows go after ``raw_seconds``, daily rows stay for the
  retention; both are written at record time, so no compaction step is needed.
- ``cpu_hist``: per workload, hour and day, a sparse histogram of the CPU rate between
  consecutive passes in logarithmic buckets (DDSketch-style, relative accuracy
  ``RATE_ACCURACY`` = 2.5 %; rates below ``ZERO_RATE`` = 1 millicore in bucket 0, read back
  as 0), one blob of (bucket, count) pairs per row: any percentile over any window is read
  back by adding up the window's blobs. ``cpu_hist_total`` holds, per workload, the sum of
  its daily histograms, so a window covering most of the history (the planner's default:
  all of it) reads one blob per workload and takes away the few days outside the window.
- ``host`` / ``host_5m``: the host's capacity once per pass, rolled up to the worst case per
  5 minutes after ``raw_seconds``.

Measured by ``bench/planner.py`` (2 slow cores): 200 workloads x 14 days at a 15 s pass
interval take about 100 MB (70 MB of it the last 48 h of raw samples), and ``record()`` takes
about 15 ms per pass of 200 workloads. Over 2,000 workloads x 14 days, ``workload_history``
takes about 0.1 s for the 14-day window (0.1-0.3 s for shorter ones) and ``trend`` 0.015 s.

A window ``[since, until]`` is read from the summary periods overlapping it: whole days from
the daily rows, a day the window only partly covers from its hourly rows while they are kept
(the last ``raw_seconds``), else from its daily row. So the window's start is rounded down to
the hour within the last 48 h and to the day (UTC) before; ``first_timestamp`` says where the
data really starts.

Threading: one store serves the daemon's scheduler thread (``record``, ``maintain``) and its
web threads (the read methods). Writes go through one connection and reads through a second,
read-only one, each opened with ``check_same_thread=False`` and guarded by its own lock: a
read never waits for a long ``maintain``, and sees only committed passes (WAL snapshots).
One process writes a store at a time (the daemon); readers in other processes are fine.
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
import sys
import threading
import time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from densityd.model import DiskUsage, HostSample, Snapshot, WorkloadKind, WorkloadSample
from densityd.plan.core.model import Resources, TrendPoint, WorkloadHistory

HISTORY_FILE = "history.sqlite3"

HOUR = 3600
DAY = 86400
ROLLUP_SECONDS = 300

# The CPU-rate histogram: bucket k >= 1 holds rates in (ZERO_RATE * GAMMA**(k-1),
# ZERO_RATE * GAMMA**k] and reads back as the value within RATE_ACCURACY of all of them.
RATE_ACCURACY = 0.025
ZERO_RATE = 0.001
_GAMMA = (1 + RATE_ACCURACY) / (1 - RATE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)

# A rate over a gap this many times the usual pass interval (the daemon was stopped, a
# source was down) would flatten the peaks it hides into one sample: it is left out.
GAP_FACTOR = 4.0
_INTERVALS_KEPT = 5

BUSY_TIMEOUT_SECONDS = 10.0
# After a checkpoint the WAL is cut back to this size, so one big maintenance transaction
# does not leave a big file behind.
JOURNAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024
# Free pages up to this share of the file stay for reuse by the next passes; only the rest
# is handed back to the filesystem (giving back pages that are needed again is wasted I/O).
VACUUM_SLACK = 0.1
# The rollup works in slices of this length, one transaction each: the WAL stays small even
# when the daemon was down for days.
_ROLLUP_CHUNK_SECONDS = HOUR
_FOREVER = 2**62

_V1 = (
    """
    CREATE TABLE workloads (
        wid INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        ext_id TEXT NOT NULL,
        name TEXT NOT NULL,
        image TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        cpu_limit REAL,
        memory_limit INTEGER,
        disk_limit INTEGER,
        UNIQUE (kind, ext_id)
    )
    """,
    # Keyed by time first: each pass appends at the end of the b-tree (full pages, few
    # pages written), and the rollup and retention delete a range from the front.
    """
    CREATE TABLE samples (
        ts INTEGER NOT NULL,
        wid INTEGER NOT NULL,
        cpu_ms INTEGER,
        memory INTEGER,
        disk INTEGER,
        PRIMARY KEY (ts, wid)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE samples_5m (
        ts INTEGER NOT NULL,
        wid INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        cpu_ms INTEGER,
        memory INTEGER,
        disk INTEGER,
        PRIMARY KEY (ts, wid)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE summary (
        period INTEGER NOT NULL,
        period_start INTEGER NOT NULL,
        wid INTEGER NOT NULL,
        first_ts INTEGER NOT NULL,
        last_ts INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        memory_max INTEGER,
        disk_first INTEGER,
        disk_last INTEGER,
        cpu_used_ms INTEGER NOT NULL,
        cpu_span_ms INTEGER NOT NULL,
        PRIMARY KEY (period, period_start, wid)
    ) WITHOUT ROWID
    """,
    # One histogram per workload and period, as a blob of (bucket, count) pairs: a window
    # sums one row per workload and period, not one per bucket as well (5-10 times fewer).
    """
    CREATE TABLE cpu_hist (
        period INTEGER NOT NULL,
        period_start INTEGER NOT NULL,
        wid INTEGER NOT NULL,
        counts BLOB NOT NULL,
        PRIMARY KEY (period, period_start, wid)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE cpu_hist_total (
        wid INTEGER PRIMARY KEY,
        counts BLOB NOT NULL
    )
    """,
    """
    CREATE TABLE host (
        ts INTEGER PRIMARY KEY,
        cpu_cores INTEGER NOT NULL,
        memory_bytes INTEGER NOT NULL,
        memory_available_bytes INTEGER NOT NULL,
        disks TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE host_5m (
        ts INTEGER PRIMARY KEY,
        cpu_cores INTEGER NOT NULL,
        memory_bytes INTEGER NOT NULL,
        memory_available_bytes INTEGER NOT NULL,
        disks TEXT NOT NULL
    )
    """,
)

# Schema migrations, applied in order, each in one transaction; version N (``PRAGMA
# user_version``) means the first N have run. Append, never edit a released one.
MIGRATIONS: list[tuple[str, ...]] = [_V1]

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
_K = TypeVar("_K")
_Meta = tuple[str, str, float | None, int | None, int | None]


class StoreError(Exception):
    """The history cannot be read or written; the message says why (disk full, corrupt...)."""


# -- the CPU-rate histogram --------------------------------------------------------------------


def rate_bucket(rate: float) -> int:
    """The histogram bucket of a CPU rate in cores: 0 below ``ZERO_RATE``, else 1, 2, ..."""
    if not rate >= ZERO_RATE:  # also NaN
        return 0
    return max(1, math.ceil(math.log(rate / ZERO_RATE) / _LOG_GAMMA))


def bucket_rate(bucket: int) -> float:
    """The rate a bucket reads back as: within ``RATE_ACCURACY`` of every rate it holds."""
    if bucket <= 0:
        return 0.0
    return float(ZERO_RATE * 2 * _GAMMA**bucket / (_GAMMA + 1))


if array("i").itemsize != 4:  # pragma: no cover - every platform densityd runs on
    raise ImportError("densityd.history.store needs a 4-byte C int")


def _pairs(blob: bytes | None) -> array[int]:
    """A histogram blob's values: bucket, count, bucket, count... (little-endian int32)."""
    values = array("i", blob or b"")
    if sys.byteorder == "big":  # pragma: no cover
        values.byteswap()
    return values


def _blob(values: array[int]) -> bytes:
    """The blob of ``_pairs`` values."""
    if sys.byteorder == "big":  # pragma: no cover
        values = array("i", values)
        values.byteswap()
    return values.tobytes()


class _Histogram:
    """A sparse CPU-rate histogram: count per bucket.

    Its blob form (``cpu_hist.counts``, ``cpu_hist_total.counts``) is little-endian int32
    pairs ``bucket, count``, by bucket, without zero counts. A histogram read from one blob
    keeps that form until something is merged into it: a workload's totals then walk to a
    percentile without a Python loop over their buckets.
    """

    __slots__ = ("_counts", "_pairs")

    def __init__(self) -> None:
        self._pairs: array[int] | None = None
        self._counts: dict[int, int] = {}

    @classmethod
    def from_blob(cls, blob: bytes | None) -> _Histogram:
        """Decode a blob (``None`` or empty: no counts)."""
        hist = cls()
        hist.merge(blob)
        return hist

    @property
    def counts(self) -> dict[int, int]:
        """The count per bucket."""
        if self._pairs is not None:
            self._counts = dict(zip(self._pairs[0::2], self._pairs[1::2], strict=True))
            self._pairs = None
        return self._counts

    def merge(self, blob: bytes | None, sign: int = 1) -> None:
        """Add (``sign`` 1) or take away (-1) the counts of a blob."""
        values = _pairs(blob)
        if sign > 0 and self._pairs is None and not self._counts:
            self._pairs = values
            return
        counts = self.counts
        for bucket, count in zip(values[0::2], values[1::2], strict=True):
            counts[bucket] = counts.get(bucket, 0) + sign * count

    def add(self, bucket: int, count: int = 1) -> None:
        """Add ``count`` to one bucket."""
        counts = self.counts
        counts[bucket] = counts.get(bucket, 0) + count

    def to_blob(self) -> bytes:
        """The blob form (empty when every count is zero)."""
        if self._pairs is not None:
            return _blob(self._pairs)
        values: array[int] = array("i")
        for bucket in sorted(self._counts):
            if count := self._counts[bucket]:
                values.extend((bucket, count))
        return _blob(values)

    def percentile(self, fraction: float) -> float | None:
        """The nearest-rank percentile (``fraction`` in (0, 1]); ``None`` without counts."""
        pairs = self._pairs
        if pairs is not None and (not pairs or min(pairs[1::2]) > 0):
            buckets: Sequence[int] = pairs[0::2]
            counts: Iterable[int] = pairs[1::2]
        else:
            # Counts below zero could only come from totals that drifted: they count as none.
            buckets = sorted(b for b, c in self.counts.items() if c > 0)
            counts = (self._counts[b] for b in buckets)
        cumulative = list(accumulate(counts))
        if not cumulative:
            return None
        # The small epsilon keeps 0.07 x 100 (= 7.000000000000001) at rank 7, not 8.
        rank = max(1, math.ceil(fraction * cumulative[-1] - 1e-9))
        return bucket_rate(buckets[bisect_left(cumulative, rank)])


def _hist_merge(stored: bytes | None, change: bytes | None, sign: int) -> bytes:
    """SQL ``hist_merge(a, b, sign)``: the histogram blob ``a`` plus ``sign`` times ``b``."""
    values, delta = _pairs(stored), _pairs(change)
    if len(delta) == 2 and delta[1] > 0 and sign > 0:
        # The common case, per workload per pass: one bucket gains a count.
        buckets = values[0::2]
        index = bisect_left(buckets, delta[0])
        if index < len(buckets) and buckets[index] == delta[0]:
            values[2 * index + 1] += delta[1]
        else:
            values[2 * index : 2 * index] = delta
        return _blob(values)
    hist = _Histogram.from_blob(stored)
    hist.merge(change, sign)
    return hist.to_blob()


# -- windows -----------------------------------------------------------------------------------


def _floor(value: float, step: int) -> int:
    """``value`` rounded down to a multiple of ``step`` (periods start on UTC hours, days)."""
    return int(value // step * step)


@dataclass(frozen=True, slots=True)
class _Selection:
    """The summary periods one window is read from, in time order.

    ``ranges`` are ``(period, first start, last start)``, inclusive; ``days`` is the run of
    daily rows among them (``None``: none), for choosing how to sum the histograms.
    """

    ranges: tuple[tuple[int, int, int], ...]
    days: tuple[int, int] | None


def _select(since: float, until: float | None, hourly_from: int | None) -> _Selection:
    """The periods overlapping ``[since, until]``: see the module docstring for the rounding."""
    start = math.floor(since)
    end = None if until is None else math.floor(until)
    if end is not None and end < start:
        return _Selection((), None)
    first_day = _floor(start, DAY)
    last_day = None if end is None else _floor(end, DAY)

    def hourly(moment: int) -> bool:
        return hourly_from is not None and hourly_from <= _floor(moment, HOUR)

    starts_inside = start > first_day
    ends_inside = end is not None and last_day is not None and end < last_day + DAY - 1
    if end is not None and last_day == first_day:
        if (starts_inside or ends_inside) and hourly(start):
            return _Selection(((HOUR, _floor(start, HOUR), _floor(end, HOUR)),), None)
        return _Selection(((DAY, first_day, first_day),), (first_day, first_day))
    head: list[tuple[int, int, int]] = []
    tail: list[tuple[int, int, int]] = []
    day_lo, day_hi = first_day, _FOREVER if last_day is None else last_day
    if starts_inside and hourly(start):
        head.append((HOUR, _floor(start, HOUR), first_day + DAY - HOUR))
        day_lo += DAY
    if end is not None and last_day is not None and ends_inside and hourly(last_day):
        tail.append((HOUR, last_day, _floor(end, HOUR)))
        day_hi -= DAY
    if day_lo > day_hi:
        return _Selection((*head, *tail), None)
    return _Selection((*head, (DAY, day_lo, day_hi), *tail), (day_lo, day_hi))


# -- the store ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Span:
    """One workload's summary over a window, merged from its period rows."""

    first: int
    last: int
    memory: int | None
    disk_first: int | None
    disk_last: int | None


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
class _Batch:
    """What a batch of passes writes, summed per row before any of it is written.

    It also carries the in-memory state as it will be once the batch is committed (new wids
    and metadata, each workload's latest CPU sample, the pass intervals), so that a batch
    that fails leaves the store's state as it was.
    """

    intervals: deque[float]
    last_pass: float | None
    samples: list[tuple[int, int, int | None, int | None, int | None]] = field(default_factory=list)
    periods: dict[tuple[int, int, int], _Period] = field(default_factory=dict)
    hists: dict[tuple[int, int, int], _Histogram] = field(default_factory=dict)
    totals: dict[int, _Histogram] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)
    hosts: list[tuple[int, int, int, int, str]] = field(default_factory=list)
    wids: dict[Key, int] = field(default_factory=dict)
    meta: dict[int, _Meta] = field(default_factory=dict)
    previous: dict[int, tuple[float, float]] = field(default_factory=dict)


class HistoryStore:
    """The SQLite history of every pass: recorded by the daemon, read by the planner."""

    def __init__(
        self,
        path: Path,
        *,
        retention_seconds: float = 14 * 86400,
        raw_seconds: float = 48 * 3600,
        readonly: bool = False,
    ) -> None:
        if retention_seconds <= 0 or raw_seconds <= 0:
            raise ValueError("retention_seconds and raw_seconds must be positive")
        self.path = path
        self.retention_seconds = float(retention_seconds)
        # Raw samples cannot outlive the retention: what is past it goes whatever its form.
        self.raw_seconds = float(min(raw_seconds, retention_seconds))
        self.readonly = readonly
        # Reentrant: record() holds it across its transaction and the in-memory state after.
        self._write_lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        # What record() needs from earlier passes, so a pass costs no look-ups: wid and
        # metadata per workload, its previous (time, CPU seconds), recent pass intervals.
        self._wids: dict[Key, int] = {}
        self._meta: dict[int, _Meta] = {}
        self._previous: dict[int, tuple[float, float]] = {}
        self._intervals: deque[float] = deque(maxlen=_INTERVALS_KEPT)
        self._last_pass: float | None = None
        self._data_version = 0
        if readonly:
            if not path.is_file():
                raise StoreError(f"no history at {path}")
        else:
            self._writer = self._open_writer()
        try:
            self._reader = self._connect(readonly=True)
        except BaseException:
            if self._writer is not None:
                self._writer.close()
            raise
        if readonly:
            try:
                self._check_version(self._reader)
            except BaseException:
                self._reader.close()
                raise

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        retention_seconds: float = 14 * 86400,
        raw_seconds: float = 48 * 3600,
        readonly: bool = False,
    ) -> HistoryStore:
        """The store in ``state_dir`` (created with mode 0750 unless reading only)."""
        if not readonly:
            try:
                state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the state directory {state_dir}: {exc}") from exc
        return cls(
            state_dir / HISTORY_FILE,
            retention_seconds=retention_seconds,
            raw_seconds=raw_seconds,
            readonly=readonly,
        )

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close both connections; the writer last, so that it checkpoints the WAL away."""
        with self._read_lock:
            self._reader.close()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()

    # -- opening ---------------------------------------------------------------------------

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        """A connection to the file, read-only through a ``mode=ro`` URI when asked."""
        target = f"{self.path.absolute().as_uri()}?mode=ro" if readonly else str(self.path)
        action = "open history at" if readonly else "open history for writing at"
        with self._errors(action):
            conn = sqlite3.connect(
                target,
                uri=readonly,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,  # transactions are explicit: one per pass
                check_same_thread=False,  # guarded by our own locks instead
            )
            try:
                # Reading the header here turns "not a database" into an error at open.
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except BaseException:
                conn.close()
                raise
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        """The write connection: WAL, pragmas, the schema migrated, the state loaded."""
        conn = self._connect(readonly=False)
        try:
            with self._errors("open history for writing at"):
                # Must precede the first table; a no-op on an existing file.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"cannot use WAL mode for {self.path} (got {mode})")
                # NORMAL in WAL mode: a crash of the process loses nothing committed; a power
                # loss may lose the last passes, never the database.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
                conn.create_function("hist_merge", 3, _hist_merge, deterministic=True)
            self._migrate(conn)
            with self._errors("read history from"):
                self._load_state(conn)
                self._data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        except BaseException:
            conn.close()
            raise
        return conn

    def _version(self, conn: sqlite3.Connection) -> int:
        """The schema version (``PRAGMA user_version``; 0 for a new file)."""
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, conn: sqlite3.Connection) -> None:
        """Refuse a schema this code cannot read as it is (newer, older, none)."""
        with self._errors("open history at"):
            version = self._version(conn)
        known = len(MIGRATIONS)
        if version > known:
            raise StoreError(
                f"history at {self.path} has schema version {version}, newer than the "
                f"version {known} this densityd knows: upgrade densityd or move the file away"
            )
        if version == 0:
            raise StoreError(f"no history at {self.path} (the file holds no densityd schema)")
        if version < known:
            raise StoreError(
                f"history at {self.path} has schema version {version}, older than version "
                f"{known}: the daemon upgrades it when it starts"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the schema to the latest version, one transaction per migration."""
        with self._errors("open history at"):
            version = self._version(conn)
        if version > len(MIGRATIONS):
            self._check_version(conn)
        for number, statements in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            with self._errors(f"upgrade to schema version {number} the history at"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Another process may have migrated while we waited for the lock.
                    if self._version(conn) < number:
                        for statement in statements:
                            conn.execute(statement)
                        conn.execute(f"PRAGMA user_version = {number}")
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise

    def _load_state(self, conn: sqlite3.Connection) -> None:
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

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn SQLite's errors into ``StoreError("cannot ACTION PATH: why")``."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {action} {self.path}: {exc}") from exc

    @contextmanager
    def _write(self, action: str = "write history to") -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``), rolled back on error."""
        if self._writer is None:
            raise StoreError(f"cannot {action} {self.path}: opened read-only")
        conn = self._writer
        with self._write_lock, self._errors(action):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: all its queries see the same committed state."""
        conn = self._reader
        with self._read_lock, self._errors("read history from"):
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                _rollback(conn)

    # -- recording -------------------------------------------------------------------------

    def record(self, snapshot: Snapshot) -> None:
        """Write one pass in one transaction: samples, hour and day summaries, host."""
        self.record_many((snapshot,))

    def record_many(self, snapshots: Iterable[Snapshot]) -> None:
        """Write several passes in one transaction, in time order (a backfill; the benchmark).

        The rows are those ``record`` writes for each pass, summed per row before writing.
        """
        passes = sorted(snapshots, key=lambda s: s.timestamp)
        with self._write_lock:
            with self._write() as conn:
                self._follow_other_writers(conn)
                batch = _Batch(deque(self._intervals, maxlen=_INTERVALS_KEPT), self._last_pass)
                for snapshot in passes:
                    self._add_pass(conn, batch, snapshot)
                self._write_batch(conn, batch)
            # Committed: only now does the in-memory state move on, so a pass that failed
            # (disk full) leaves the next one to measure its rates from the last samples.
            self._wids.update(batch.wids)
            self._meta.update(batch.meta)
            self._previous.update(batch.previous)
            self._intervals = batch.intervals
            self._last_pass = batch.last_pass

    def _follow_other_writers(self, conn: sqlite3.Connection) -> None:
        """Reload the in-memory state if another connection wrote since our last transaction.

        Only the daemon should write a store, but a second writer (a stray second daemon)
        must not make this one write rows under wids it has since pruned.
        """
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if version != self._data_version:
            self._load_state(conn)
            self._data_version = version

    def _wid(self, conn: sqlite3.Connection, batch: _Batch, w: WorkloadSample, now: int) -> int:
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

    def _add_pass(self, conn: sqlite3.Connection, batch: _Batch, snapshot: Snapshot) -> None:
        """Add one pass's rows to the batch, with each workload's CPU rate since its last."""
        ts = snapshot.timestamp
        second = round(ts)
        hour, day = _floor(second, HOUR), _floor(second, DAY)
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
                    _histogram(batch.hists, (period, start, wid)).add(bucket)
            if bucket is not None:
                _histogram(batch.totals, wid).add(bucket)
        if snapshot.host is not None:
            batch.hosts.append(_host_row(second, snapshot.host))
        if batch.last_pass is not None and ts > batch.last_pass:
            batch.intervals.append(ts - batch.last_pass)
        batch.last_pass = ts if batch.last_pass is None else max(ts, batch.last_pass)

    def _write_batch(self, conn: sqlite3.Connection, batch: _Batch) -> None:
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

    # -- maintenance -----------------------------------------------------------------------

    def maintain(self, now: float | None = None) -> None:
        """Roll up, prune and shrink: call every few minutes (not every pass).

        Raw samples older than ``raw_seconds`` become 5-minute rows; hourly summaries older
        than that go (the daily ones already hold them); everything older than the retention
        goes; free pages beyond a slack go back to the filesystem; the WAL is truncated.
        """
        now = time.time() if now is None else now
        action = "maintain the history at"
        rollup_before = _floor(now - self.raw_seconds, ROLLUP_SECONDS)
        while True:
            with self._write(action) as conn:
                oldest = conn.execute(
                    "SELECT MIN(ts) FROM (SELECT MIN(ts) AS ts FROM samples "
                    "UNION ALL SELECT MIN(ts) FROM host)"
                ).fetchone()[0]
                if oldest is None or oldest >= rollup_before:
                    break
                chunk_end = _floor(oldest, _ROLLUP_CHUNK_SECONDS) + _ROLLUP_CHUNK_SECONDS
                self._roll_up(conn, min(rollup_before, chunk_end))
        with self._write(action) as conn:
            self._prune(conn, now)
        with self._write_lock, self._errors(action):
            assert self._writer is not None  # _write above raised otherwise
            conn = self._writer
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            surplus = free - int(pages * VACUUM_SLACK)
            if surplus > 0:
                # executescript steps the pragma to the end; execute() frees a single page.
                conn.executescript(f"PRAGMA incremental_vacuum({surplus});")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _roll_up(self, conn: sqlite3.Connection, before: int) -> None:
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
            host = _host_sample(*values)
            bucket = _floor(ts, ROLLUP_SECONDS)
            merged[bucket] = _worst(merged[bucket], host) if bucket in merged else host
        conn.executemany(
            "INSERT OR REPLACE INTO host_5m VALUES (?, ?, ?, ?, ?)",
            [_host_row(ts, host) for ts, host in merged.items()],
        )
        conn.execute("DELETE FROM host WHERE ts < ?", (before,))

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        """Drop hourly rows past ``raw_seconds``, and everything past the retention."""
        hourly_before = math.floor(now - self.raw_seconds) - HOUR
        for table in ("summary", "cpu_hist"):
            conn.execute(
                f"DELETE FROM {table} WHERE period = ? AND period_start <= ?", (HOUR, hourly_before)
            )
        keep_from = math.floor(now - self.retention_seconds)
        daily_before = keep_from - DAY
        # The totals must keep matching the daily histograms: take out what goes.
        gone: dict[int, _Histogram] = {}
        rows = conn.execute(
            "SELECT wid, counts FROM cpu_hist WHERE period = ? AND period_start <= ?",
            (DAY, daily_before),
        )
        for wid, blob in rows:
            _histogram(gone, wid).merge(blob)
        conn.executemany(
            "UPDATE cpu_hist_total SET counts = hist_merge(counts, ?, -1) WHERE wid = ?",
            [(hist.to_blob(), wid) for wid, hist in gone.items()],
        )
        conn.execute("DELETE FROM cpu_hist_total WHERE length(counts) = 0")
        for table in ("summary", "cpu_hist"):
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

    # -- reading ---------------------------------------------------------------------------

    def workload_history(
        self, since: float, percentile: float = 0.95, until: float | None = None
    ) -> dict[tuple[str, str], WorkloadHistory]:
        """Per workload (keyed ``(kind, id)``) what it used over the window ``[since, until]``.

        ``cpu_rate_percentile`` is the ``percentile`` (a fraction in (0, 1]) of the CPU rate
        between consecutive passes, within ``RATE_ACCURACY``; the window is rounded outwards
        to whole hours (last ``raw_seconds``) or days (before), see the module docstring.
        """
        if not 0 < percentile <= 1:
            raise ValueError(f"percentile must be in (0, 1], got {percentile}")
        with self._read() as conn:
            selection = _select(since, until, self._hourly_from(conn))
            spans = self._summaries(conn, selection)
            rates = self._cpu_histograms(conn, selection)
            names = self._names(conn)
        found: dict[tuple[str, str], WorkloadHistory] = {}
        for wid, span in spans.items():
            if wid not in names:
                continue
            kind, ext_id, name = names[wid]
            hist = rates.get(wid)
            found[(kind, ext_id)] = WorkloadHistory(
                kind=WorkloadKind(kind),
                id=ext_id,
                name=name,
                first_timestamp=float(span.first),
                last_timestamp=float(span.last),
                cpu_rate_percentile=None if hist is None else hist.percentile(percentile),
                memory_max=_float(span.memory),
                disk_first=_float(span.disk_first),
                disk_last=_float(span.disk_last),
            )
        return found

    def _hourly_from(self, conn: sqlite3.Connection) -> int | None:
        """The start of the oldest hourly row still kept; ``None`` when there is none."""
        row = conn.execute("SELECT MIN(period_start) FROM summary WHERE period = ?", (HOUR,))
        value = row.fetchone()[0]
        return None if value is None else int(value)

    def _names(self, conn: sqlite3.Connection) -> dict[int, tuple[str, str, str]]:
        """Every workload's kind, ID and latest name, by wid."""
        rows = conn.execute("SELECT wid, kind, ext_id, name FROM workloads")
        return {wid: (kind, ext_id, name) for wid, kind, ext_id, name in rows}

    def _summaries(self, conn: sqlite3.Connection, selection: _Selection) -> dict[int, _Span]:
        """Per wid its summary over the selected periods."""
        spans: dict[int, _Span] = {}
        # Range by range and row by row in time order, so first and last are what they say.
        for period, first, last in selection.ranges:
            rows = conn.execute(
                "SELECT wid, first_ts, last_ts, memory_max, disk_first, disk_last FROM summary "
                "WHERE period = ? AND period_start BETWEEN ? AND ? ORDER BY period_start",
                (period, first, last),
            )
            for wid, first_ts, last_ts, memory, disk_first, disk_last in rows:
                span = spans.get(wid)
                if span is None:
                    spans[wid] = _Span(first_ts, last_ts, memory, disk_first, disk_last)
                    continue
                span.last = last_ts
                if memory is not None and (span.memory is None or memory > span.memory):
                    span.memory = memory
                if span.disk_first is None:
                    span.disk_first = disk_first
                if disk_last is not None:
                    span.disk_last = disk_last
        return spans

    def _cpu_histograms(
        self, conn: sqlite3.Connection, selection: _Selection
    ) -> dict[int, _Histogram]:
        """Per wid the CPU-rate histogram over the selected periods.

        When the window leaves out fewer days than it takes in, it is read as the totals
        minus the days left out: one blob per workload instead of one per workload and day.
        """
        hists: dict[int, _Histogram] = {}
        ranges = [(period, first, last, 1) for period, first, last in selection.ranges]
        if selection.days is not None and self._mostly_inside(conn, selection.days):
            for wid, blob in conn.execute("SELECT wid, counts FROM cpu_hist_total"):
                _histogram(hists, wid).merge(blob)
            first, last = selection.days
            ranges = [r for r in ranges if r[0] == HOUR]
            ranges += [(DAY, -_FOREVER, first - DAY, -1), (DAY, last + DAY, _FOREVER, -1)]
        for period, first, last, sign in ranges:
            rows = conn.execute(
                "SELECT wid, counts FROM cpu_hist "
                "WHERE period = ? AND period_start BETWEEN ? AND ?",
                (period, first, last),
            )
            for wid, blob in rows:
                _histogram(hists, wid).merge(blob, sign)
        return hists

    def _mostly_inside(self, conn: sqlite3.Connection, days: tuple[int, int]) -> bool:
        """Whether the run of days holds more of the stored days than it leaves out."""
        # Two subqueries: SQLite answers a lone MIN or MAX from the index, not both at once.
        oldest, newest = conn.execute(
            "SELECT (SELECT MIN(period_start) FROM summary WHERE period = ?1), "
            "(SELECT MAX(period_start) FROM summary WHERE period = ?1)",
            (DAY,),
        ).fetchone()
        if oldest is None:
            return False
        stored = (newest - oldest) // DAY + 1
        inside = max(0, (min(newest, days[1]) - max(oldest, days[0])) // DAY + 1)
        return bool(inside > stored - inside)

    def trend(
        self, since: float, keys: Collection[tuple[str, str]] | None = None
    ) -> list[TrendPoint]:
        """Total demand per summary period since ``since``, over ``keys`` (all if ``None``).

        Per period (timestamp = its start): ``cpu`` the sum of the workloads' mean CPU rates,
        ``memory`` the sum of their maxima, ``disk`` the sum of their last disk bytes. Sorted
        by time. The periods are hours when the hourly rows hold all the data since ``since``
        (a window within the last 48 h, or a younger history), else days: one size for all
        points, as a daily maximum is no point on the same curve as an hourly one.
        """
        if keys is not None and not keys:
            return []
        with self._read() as conn:
            hourly_from = self._hourly_from(conn)
            start = max(since, self._oldest(conn) or since)
            period = HOUR if hourly_from is not None and hourly_from <= _floor(start, HOUR) else DAY
            condition = ""
            params: list[int | str] = [period, math.floor(since) - period]
            if keys is not None:
                wanted = {(str(kind), ext_id) for kind, ext_id in keys}
                wids = [
                    wid
                    for wid, (kind, ext_id, _name) in self._names(conn).items()
                    if (kind, ext_id) in wanted
                ]
                condition = "AND wid IN (SELECT value FROM json_each(?))"
                params.append(json.dumps(wids))
            rows = conn.execute(
                "SELECT period_start, "
                "SUM(CASE WHEN cpu_span_ms > 0 THEN CAST(cpu_used_ms AS REAL) / cpu_span_ms END), "
                "SUM(memory_max), SUM(disk_last) "
                f"FROM summary WHERE period = ? AND period_start > ? {condition} "
                "GROUP BY period_start ORDER BY period_start",
                params,
            ).fetchall()
        return [
            TrendPoint(
                timestamp=float(start),
                demand=Resources(
                    cpu=float(cpu or 0), memory=float(memory or 0), disk=float(disk or 0)
                ),
            )
            for start, cpu, memory, disk in rows
        ]

    def host_history(self, since: float) -> list[tuple[float, HostSample]]:
        """The host's capacity per pass (per 5 minutes, the worst case, past ``raw_seconds``)."""
        found: list[tuple[float, HostSample]] = []
        with self._read() as conn:
            for table in ("host_5m", "host"):
                rows = conn.execute(
                    "SELECT ts, cpu_cores, memory_bytes, memory_available_bytes, disks "
                    f"FROM {table} WHERE ts >= ? ORDER BY ts",
                    (math.floor(since),),
                )
                found.extend((float(ts), _host_sample(*values)) for ts, *values in rows)
        found.sort(key=lambda item: item[0])
        return found

    def oldest_timestamp(self) -> float | None:
        """When the oldest pass still held was recorded; ``None`` for an empty history."""
        with self._read() as conn:
            return self._oldest(conn)

    def _oldest(self, conn: sqlite3.Connection) -> float | None:
        """The first timestamp of the oldest daily row (daily rows hold every pass)."""
        value = conn.execute(
            "SELECT MIN(first_ts) FROM summary WHERE period = ?1 AND period_start = "
            "(SELECT MIN(period_start) FROM summary WHERE period = ?1)",
            (DAY,),
        ).fetchone()[0]
        return None if value is None else float(value)


def _histogram(hists: dict[_K, _Histogram], key: _K) -> _Histogram:
    """The histogram under ``key``, a new empty one if there was none."""
    hist = hists.get(key)
    if hist is None:
        hist = hists[key] = _Histogram()
    return hist


def _float(value: int | None) -> float | None:
    """``value`` as a float, ``None`` kept."""
    return None if value is None else float(value)


def _rollback(conn: sqlite3.Connection) -> None:
    """End the open transaction, if any; a failure here must not hide the first error."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _host_row(ts: int, host: HostSample) -> tuple[int, int, int, int, str]:
    """A ``host`` row: the numbers, and the disks as compact JSON ``[[path, total, free]]``."""
    disks = [[d.path, d.total_bytes, d.free_bytes] for d in host.disks]
    return (
        ts,
        host.cpu_cores,
        host.memory_bytes,
        host.memory_available_bytes,
        json.dumps(disks, separators=(",", ":")),
    )


def _host_sample(cpu_cores: int, memory: int, available: int, disks: str) -> HostSample:
    """A ``host`` row's values back as a ``HostSample``."""
    return HostSample(
        cpu_cores=cpu_cores,
        memory_bytes=memory,
        memory_available_bytes=available,
        disks=tuple(DiskUsage(path, total, free) for path, total, free in json.loads(disks)),
    )


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
