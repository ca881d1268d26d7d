"""The history's SQLite schema: its tables, their migrations, and how host rows are encoded.

With integer timestamps in Unix seconds and periods aligned to UTC (see ``store`` for what
each table holds). ``PRAGMA user_version`` N means the first N ``MIGRATIONS`` have run;
``migrate`` brings a file up to date, ``check_version`` refuses one this code cannot read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from densityd.model import DiskUsage, HostSample

HISTORY_FILE = "history.sqlite3"


HOUR = 3600


DAY = 86400


ROLLUP_SECONDS = 300


BUSY_TIMEOUT_SECONDS = 10.0


# After a checkpoint the WAL is cut back to this size, so one big maintenance transaction
# does not leave a big file behind.
JOURNAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024


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
# Version 2: the number of passes per summary period, so that a trend point weighs each
# workload by the share of the period it was there (a redeployed service is one service, not
# one per container ID). Periods recorded before it get the count of their most-present
# workload, the best estimate there is.
_V2 = (
    """
    CREATE TABLE passes (
        period INTEGER NOT NULL,
        period_start INTEGER NOT NULL,
        passes INTEGER NOT NULL,
        PRIMARY KEY (period, period_start)
    ) WITHOUT ROWID
    """,
    """
    INSERT INTO passes
    SELECT period, period_start, MAX(samples) FROM summary GROUP BY period, period_start
    """,
)

MIGRATIONS: list[tuple[str, ...]] = [_V1, _V2]


class StoreError(Exception):
    """The history cannot be read or written; the message says why (disk full, corrupt...)."""


def floor_to(value: float, step: int) -> int:
    """``value`` rounded down to a multiple of ``step`` (periods start on UTC hours, days)."""
    return int(value // step * step)


def host_row(ts: int, host: HostSample) -> tuple[int, int, int, int, str]:
    """A ``host`` row: the numbers, and the disks as compact JSON ``[[path, total, free]]``."""
    disks = [[d.path, d.total_bytes, d.free_bytes] for d in host.disks]
    return (
        ts,
        host.cpu_cores,
        host.memory_bytes,
        host.memory_available_bytes,
        json.dumps(disks, separators=(",", ":")),
    )


def host_sample(cpu_cores: int, memory: int, available: int, disks: str) -> HostSample:
    """A ``host`` row's values back as a ``HostSample``."""
    return HostSample(
        cpu_cores=cpu_cores,
        memory_bytes=memory,
        memory_available_bytes=available,
        disks=tuple(DiskUsage(path, total, free) for path, total, free in json.loads(disks)),
    )


@contextmanager
def errors(path: Path, action: str) -> Iterator[None]:
    """Turn SQLite's errors into ``StoreError("cannot ACTION PATH: why")``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"cannot {action} {path}: {exc}") from exc


def rollback(conn: sqlite3.Connection) -> None:
    """End the open transaction, if any; a failure here must not hide the first error."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version (``PRAGMA user_version``; 0 for a new file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_version(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a schema this code cannot read as it is (newer, older, none)."""
    with errors(path, "open history at"):
        version = schema_version(conn)
    known = len(MIGRATIONS)
    if version > known:
        raise StoreError(
            f"history at {path} has schema version {version}, newer than the "
            f"version {known} this densityd knows: upgrade densityd or move the file away"
        )
    if version == 0:
        raise StoreError(f"no history at {path} (the file holds no densityd schema)")
    if version < known:
        raise StoreError(
            f"history at {path} has schema version {version}, older than version "
            f"{known}: the daemon upgrades it when it starts"
        )


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to the latest version, one transaction per migration."""
    with errors(path, "open history at"):
        version = schema_version(conn)
    if version > len(MIGRATIONS):
        check_version(conn, path)
    for number, statements in enumerate(MIGRATIONS, start=1):
        if number <= version:
            continue
        with errors(path, f"upgrade to schema version {number} the history at"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have migrated while we waited for the lock.
                if schema_version(conn) < number:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
