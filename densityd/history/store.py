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
- ``passes``: per hour and day, how many passes were recorded: a trend point weighs each
  workload by the share of them it was in (schema version 2).

Measured by ``bench/planner.py`` (2 slow cores): 200 workloads x 14 days at a 15 s pass
interval take about 100 MB (70 MB of it the last 48 h of raw samples), and ``record()`` takes
about 15 ms per pass of 200 workloads. Over 2,000 workloads x 14 days, ``workload_history``
takes about 0.1 s for the 14-day window (0.1-0.3 s for shorter ones) and ``trend`` 0.015 s.

The schema and its migrations are in ``schema``, recording, roll-ups and retention in
``recording``, the CPU-rate histograms in ``histogram``, the reads plans make (and how a window
is rounded to the periods) in ``summaries``; this module opens the file and runs each of them
in its transaction.

Threading: one store serves the daemon's scheduler thread (``record``, ``maintain``) and its
web threads (the read methods). Writes go through one connection and reads through a second,
read-only one, each opened with ``check_same_thread=False`` and guarded by its own lock: a
read never waits for a long ``maintain``, and sees only committed passes (WAL snapshots).
One process writes a store at a time (the daemon); readers in other processes are fine.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from densityd.history import summaries
from densityd.history.histogram import hist_merge
from densityd.history.recording import VACUUM_SLACK, Batch, PassWriter, roll_up, write_batch
from densityd.history.schema import (
    BUSY_TIMEOUT_SECONDS,
    HISTORY_FILE,
    JOURNAL_SIZE_LIMIT_BYTES,
    ROLLUP_SECONDS,
    StoreError,
    check_version,
    errors,
    floor_to,
    migrate,
    rollback,
)
from densityd.model import HostSample, Snapshot
from densityd.plan.core.model import TrendPoint, WorkloadHistory

# The rollup works in slices of this length, one transaction each: the WAL stays small even
# when the daemon was down for days.
_ROLLUP_CHUNK_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Changes:
    """How far the store has moved on, for a reader that keeps its reads in memory
    (``history.window``).

    ``appends`` counts the passes recorded one at a time in time order, ``rewrites``
    everything else that can change what a read returns (a backfill, a late pass, a prune
    that dropped rows, another writer). ``last`` is the latest appended pass, as written.
    """

    rewrites: int
    appends: int
    last: Batch | None


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
        self._passes = PassWriter()
        self._rewrites = 0
        self._appends = 0
        self._last_append: Batch | None = None
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
                check_version(self._reader, self.path)
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
        with errors(self.path, action):
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
            with errors(self.path, "open history for writing at"):
                # Must precede the first table; a no-op on an existing file.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"cannot use WAL mode for {self.path} (got {mode})")
                # NORMAL in WAL mode: a crash of the process loses nothing committed; a power
                # loss may lose the last passes, never the database.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
                conn.create_function("hist_merge", 3, hist_merge, deterministic=True)
            migrate(conn, self.path)
            with errors(self.path, "read history from"):
                self._passes.start(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _write(self, action: str = "write history to") -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``), rolled back on error."""
        if self._writer is None:
            raise StoreError(f"cannot {action} {self.path}: opened read-only")
        conn = self._writer
        with self._write_lock, errors(self.path, action):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise

    def reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One read transaction on the read connection (``history.window`` reads through it)."""
        return self._read()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: all its queries see the same committed state."""
        conn = self._reader
        with self._read_lock, errors(self.path, "read history from"):
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                rollback(conn)

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
                if self._passes.follow_other_writers(conn):
                    self._rewrites += 1
                batch = self._passes.batch()
                appended = len(passes) == 1 and (
                    batch.last_pass is None or passes[0].timestamp >= batch.last_pass
                )
                for snapshot in passes:
                    self._passes.add_pass(conn, batch, snapshot)
                write_batch(conn, batch)
            # Committed: only now does the in-memory state move on, so a pass that failed
            # (disk full) leaves the next one to measure its rates from the last samples.
            self._passes.commit(batch)
            if appended:
                self._appends += 1
                self._last_append = batch
            else:
                self._rewrites += 1
                self._last_append = None

    def changes(self) -> Changes:
        """How far the store has moved on (``Changes``), as of the last committed write."""
        with self._write_lock:
            return Changes(self._rewrites, self._appends, self._last_append)

    @contextmanager
    def pinned(self) -> Iterator[Changes]:
        """Hold off writes while the caller reads: the reads see the state ``Changes`` names."""
        with self._write_lock:
            yield Changes(self._rewrites, self._appends, self._last_append)

    # -- maintenance -----------------------------------------------------------------------

    def maintain(self, now: float | None = None) -> None:
        """Roll up, prune and shrink: call every few minutes (not every pass).

        Raw samples older than ``raw_seconds`` become 5-minute rows; hourly summaries older
        than that go (the daily ones already hold them); everything older than the retention
        goes; free pages beyond a slack go back to the filesystem; the WAL is truncated.
        """
        now = time.time() if now is None else now
        action = "maintain the history at"
        rollup_before = floor_to(now - self.raw_seconds, ROLLUP_SECONDS)
        while True:
            with self._write(action) as conn:
                oldest = conn.execute(
                    "SELECT MIN(ts) FROM (SELECT MIN(ts) AS ts FROM samples "
                    "UNION ALL SELECT MIN(ts) FROM host)"
                ).fetchone()[0]
                if oldest is None or oldest >= rollup_before:
                    break
                chunk_end = floor_to(oldest, _ROLLUP_CHUNK_SECONDS) + _ROLLUP_CHUNK_SECONDS
                roll_up(conn, min(rollup_before, chunk_end))
        with self._write(action) as conn:
            before = conn.total_changes
            self._passes.prune(conn, now, self.raw_seconds, self.retention_seconds)
            pruned = conn.total_changes != before
        if pruned:
            with self._write_lock:
                self._rewrites += 1
        with self._write_lock, errors(self.path, action):
            assert self._writer is not None  # _write above raised otherwise
            conn = self._writer
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            surplus = free - int(pages * VACUUM_SLACK)
            if surplus > 0:
                # executescript steps the pragma to the end; execute() frees a single page.
                conn.executescript(f"PRAGMA incremental_vacuum({surplus});")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- reading ---------------------------------------------------------------------------

    def workload_history(
        self, since: float, percentile: float = 0.95, until: float | None = None
    ) -> dict[tuple[str, str], WorkloadHistory]:
        """Per workload (keyed ``(kind, id)``) what it used over the window ``[since, until]``.

        ``cpu_rate_percentile`` is the ``percentile`` (a fraction in (0, 1]) of the CPU rate
        between consecutive passes, within ``RATE_ACCURACY``; the window is rounded outwards
        to whole hours (last ``raw_seconds``) or days (before), see ``summaries``.
        """
        if not 0 < percentile <= 1:
            raise ValueError(f"percentile must be in (0, 1], got {percentile}")
        with self._read() as conn:
            return summaries.workload_history(conn, since, percentile, until)

    def trend(
        self,
        since: float,
        keys: Collection[tuple[str, str]] | None = None,
        kind: str | None = None,
    ) -> list[TrendPoint]:
        """Total demand per finished summary period since ``since``, over ``keys`` (all if
        ``None``) of ``kind`` (all if ``None``); ``summaries.trend`` says what a point sums.
        """
        if keys is not None and not keys:
            return []
        with self._read() as conn:
            return summaries.trend(conn, since, keys, kind)

    def host_history(self, since: float) -> list[tuple[float, HostSample]]:
        """The host's capacity per pass (per 5 minutes, the worst case, past ``raw_seconds``)."""
        with self._read() as conn:
            return summaries.host_history(conn, since)

    def oldest_timestamp(self) -> float | None:
        """When the oldest pass still held was recorded; ``None`` for an empty history."""
        with self._read() as conn:
            return summaries.oldest_timestamp(conn)
