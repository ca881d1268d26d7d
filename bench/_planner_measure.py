"""The planner benchmark's two measurements, on a temporary SQLite file.

Helpers of ``planner.py``, not a benchmark: the history's size (days of passes recorded through
the store's own code, then the file's size and rows and bytes per table) and the plan-read time
(a history copied in SQL to the wanted number of workloads, then one ``densityd plan`` minus the
sampling, timed in ``plan_step()``).
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import BenchError, percentile, progress
from _planner_simulation import DAY, GIB, Fleet

from densityd.config import load_settings
from densityd.history.schema import HISTORY_FILE
from densityd.history.store import HistoryStore
from densityd.model import DiskUsage, HostSample, Snapshot, WorkloadKind, WorkloadSample
from densityd.plan.answer import plan_document
from densityd.plan.core.model import WorkloadHistory
from densityd.plan.inputs.local import History, plan_context
from densityd.plan.request import PlanRequest

MAINTAIN_EVERY_PASSES = 20  # every 5 minutes at 15 s, as densityd.history.recorder does


# -- measurements ------------------------------------------------------------------------------


def disk_bytes(path: Path) -> dict[str, int]:
    """Sizes of the database file and its WAL and shared-memory files (0 when absent)."""
    sizes = {}
    for suffix in ("", "-wal", "-shm"):
        file = path.with_name(path.name + suffix)
        sizes[suffix.strip("-") or "db"] = file.stat().st_size if file.exists() else 0
    return sizes


def table_rows(path: Path) -> dict[str, tuple[int, int]]:
    """Rows and bytes (pages, from ``dbstat`` when SQLite has it, else 0) per table."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        try:
            pages = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
        except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            pages = {}
        return {
            t: (int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]), pages.get(t, 0))
            for t in tables
        }
    finally:
        conn.close()


def rows_line(rows: dict[str, tuple[int, int]]) -> str:
    """``table rows (MB)`` for each table, largest first."""
    ordered = sorted(rows.items(), key=lambda item: -item[1][1])
    return ", ".join(f"{t} {n} ({size / 1e6:.1f} MB)" for t, (n, size) in ordered)


@dataclass
class SizeResult:
    """Measurement 1: the history of 200 workloads over 14 days."""

    workloads: int
    days: float
    interval: float
    passes: int
    samples: int
    generate_s: float
    per_pass_hours: float
    record_ms: list[float]  # record() per pass, over the last per_pass_hours
    maintain_ms: list[float]
    final_maintain_s: float
    files: dict[str, int]
    rows: dict[str, tuple[int, int]]

    @property
    def size_bytes(self) -> int:
        return self.files["db"] + self.files["wal"]

    def summary(self) -> dict[str, Any]:
        """The numbers, for ``--json``."""
        return {
            "workloads": self.workloads,
            "days": self.days,
            "interval_s": self.interval,
            "passes": self.passes,
            "samples": self.samples,
            "generate_s": self.generate_s,
            "per_pass_hours": self.per_pass_hours,
            "record_ms_median": statistics.median(self.record_ms),
            "record_ms_p99": percentile(self.record_ms, 99),
            "maintain_ms_median": statistics.median(self.maintain_ms),
            "maintain_ms_max": max(self.maintain_ms),
            "final_maintain_s": self.final_maintain_s,
            "files": self.files,
            "size_bytes": self.size_bytes,
            "rows": self.rows,
        }


def measure_size(
    directory: Path,
    workloads: int,
    days: float,
    interval: float,
    end: float,
    seed: int,
    per_pass_hours: float,
) -> SizeResult:
    """Record ``days`` of ``workloads`` through the store's own code; measure the file."""
    fleet = Fleet(workloads, seed)
    start = end - days * DAY
    recent = end - min(2 * DAY, days * DAY)  # the last 48 h are recorded at the pass interval
    one_by_one = max(recent, end - per_pass_hours * 3600)
    store = HistoryStore.open(directory)
    record_ms: list[float] = []
    maintain_ms: list[float] = []
    passes = 0
    moment = start
    began = time.perf_counter()

    def batches(until: float, step: float, size: int) -> None:
        """record_many() ``size`` passes at a time, each batch followed by maintain()."""
        nonlocal moment, passes
        batch: list[Snapshot] = []
        while moment < until:
            batch.append(fleet.snapshot(moment, step))
            passes += 1
            moment += step
            if len(batch) == size or moment >= until:
                store.record_many(batch)
                store.maintain(batch[-1].timestamp)
                batch = []

    try:
        batches(recent, 300.0, 12)  # the older days: one transaction per simulated hour
        batches(one_by_one, interval, MAINTAIN_EVERY_PASSES)  # 15 s, one per 5 minutes
        progress(f"  {passes} passes in batches, in {time.perf_counter() - began:.0f} s")
        while moment < end:  # the daemon's way: record() every pass
            snapshot = fleet.snapshot(moment, interval)
            t0 = time.perf_counter()
            store.record(snapshot)
            record_ms.append((time.perf_counter() - t0) * 1e3)
            passes += 1
            if passes % MAINTAIN_EVERY_PASSES == 0:
                t0 = time.perf_counter()
                store.maintain(moment)
                maintain_ms.append((time.perf_counter() - t0) * 1e3)
            moment += interval
        t0 = time.perf_counter()
        store.maintain(end)
        final_maintain = time.perf_counter() - t0
        generate = time.perf_counter() - began
        path = store.path
        files = disk_bytes(path)
        rows = table_rows(path)
    finally:
        store.close()
    return SizeResult(
        workloads=workloads,
        days=days,
        interval=interval,
        passes=passes,
        samples=passes * workloads,
        generate_s=generate,
        per_pass_hours=(end - one_by_one) / 3600,
        record_ms=record_ms,
        maintain_ms=maintain_ms,
        final_maintain_s=final_maintain,
        files=files,
        rows=rows,
    )


def current_snapshot(history: Mapping[tuple[str, str], WorkloadHistory], now: float) -> Snapshot:
    """The fresh sample a plan starts from: every workload of the history, as it is now."""
    samples = tuple(
        WorkloadSample(
            kind=WorkloadKind(item.kind),
            id=item.id,
            name=item.name,
            cpu_seconds=1000.0,
            memory_bytes=int(item.memory_max or 0),
            memory_limit_bytes=2 * GIB if item.kind == WorkloadKind.VM else None,
            cpu_limit_cores=2.0 if item.kind == WorkloadKind.VM else None,
            disk_bytes=int(item.disk_last or 0),
        )
        for item in history.values()
    )
    host = HostSample(
        cpu_cores=64,
        memory_bytes=512 * GIB,
        memory_available_bytes=300 * GIB,
        disks=(
            DiskUsage("/var/lib/docker", 2 * 10**12, 10**12, device=1),
            DiskUsage("/var/lib/libvirt/images", 4 * 10**12, 3 * 10**12, device=2),
        ),
    )
    return Snapshot(timestamp=now, workloads=samples, host=host)


PLAN_DIRS = {
    WorkloadKind.CONTAINER: ("/var/lib/docker",),
    WorkloadKind.VM: ("/var/lib/libvirt/images",),
}


def plan_step(
    store: HistoryStore, now: float, snapshot: Snapshot, window: float = 14 * DAY
) -> tuple[float, float]:
    """One ``densityd plan`` minus the sampling, timed: (history reads, reads + plan) seconds.

    The same calls as the CLI: the two history reads, then ``plan_context`` (every workload's
    demand) and ``plan_document`` (each kind for its median workload, both views).
    """
    settings = load_settings({"window": f"{window:.0f}s", "state_dir": store.path.parent})
    start = time.perf_counter()
    since = now - window
    summaries = store.workload_history(since, settings.percentile_fraction)
    trend = tuple(store.trend(since))
    read = time.perf_counter() - start
    context = plan_context(
        snapshot, History(summaries, trend, "bench"), settings, data_dirs=PLAN_DIRS
    )
    document = plan_document(context, PlanRequest())
    elapsed = time.perf_counter() - start
    if not summaries or not trend or len(document["answers"]) != 4:
        raise BenchError(
            f"the plan came back short: {len(summaries)} workloads, {len(trend)} points, "
            f"{len(document['answers'])} answers"
        )
    return read, elapsed


def clone_workloads(path: Path, copies: int) -> int:
    """Copy every workload's rows ``copies`` times under new wids and IDs; the new count.

    Generic over the schema: every table with a ``wid`` column is copied with the wid
    shifted, and the copies' IDs and names get a suffix (they must stay unique).
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        top = int(conn.execute("SELECT MAX(wid) FROM workloads").fetchone()[0])
        tables = [
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        conn.execute("BEGIN")
        for copy in range(1, copies + 1):
            for table in tables:
                columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
                if "wid" not in columns:
                    continue
                exprs = [
                    f"wid + {copy * top}"
                    if c == "wid"
                    else f"{c} || '-{copy}'"
                    if table == "workloads" and c in ("ext_id", "name")
                    else c
                    for c in columns
                ]
                conn.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"SELECT {', '.join(exprs)} FROM {table} WHERE wid <= {top}"
                )
        conn.execute("COMMIT")
        return int(conn.execute("SELECT COUNT(*) FROM workloads").fetchone()[0])
    finally:
        conn.close()


@dataclass
class ReadResult:
    """Measurement 2: the reads of one plan over 2,000 workloads x 14 days."""

    workloads: int
    recorded: int
    days: float
    spacing: float
    generate_s: float
    files: dict[str, int]
    rows: dict[str, tuple[int, int]]
    cold_s: float
    plan_step_s: list[float]
    read_s: list[float]
    history_s: list[float]
    trend_s: list[float]
    history_workloads: int
    trend_points: int
    windows_s: dict[str, float]

    @property
    def plan_step_median_s(self) -> float:
        return statistics.median(self.plan_step_s)

    def summary(self) -> dict[str, Any]:
        """The numbers, for ``--json``."""
        return {
            "workloads": self.workloads,
            "recorded_distinct": self.recorded,
            "days": self.days,
            "spacing_s": self.spacing,
            "generate_s": self.generate_s,
            "files": self.files,
            "rows": self.rows,
            "cold_s": self.cold_s,
            "plan_step_s": self.plan_step_s,
            "plan_step_median_s": self.plan_step_median_s,
            "history_reads_median_s": statistics.median(self.read_s),
            "workload_history_median_s": statistics.median(self.history_s),
            "trend_median_s": statistics.median(self.trend_s),
            "history_workloads": self.history_workloads,
            "trend_points": self.trend_points,
            "workload_history_shorter_windows_s": self.windows_s,
        }


def measure_reads(
    directory: Path, workloads: int, copies: int, days: float, end: float, seed: int, repeat: int
) -> ReadResult:
    """Build the 2,000-workload history, then time the plan's reads."""
    recorded = workloads // copies
    fleet = Fleet(recorded, seed + 1, prefix="p")
    spacing = 300.0
    start = end - days * DAY
    began = time.perf_counter()
    store = HistoryStore.open(directory)
    try:
        moment, batch = start, []
        while moment < end:
            batch.append(fleet.snapshot(moment, spacing))
            moment += spacing
            if len(batch) == 12 or moment >= end:  # one transaction per simulated hour
                store.record_many(batch)
                store.maintain(batch[-1].timestamp)
                batch = []
    finally:
        store.close()
    total = clone_workloads(directory / HISTORY_FILE, copies - 1)
    with HistoryStore.open(directory) as store:
        store.maintain(end)
        generate = time.perf_counter() - began
        files = disk_bytes(store.path)
        rows = table_rows(store.path)
        snapshot = current_snapshot(store.workload_history(end - days * DAY), end)
        cold = plan_step(store, end, snapshot)[1]
        timed = [plan_step(store, end, snapshot) for _ in range(repeat)]
        steps = [total for _, total in timed]
        read_only = [read for read, _ in timed]
        history_s, trend_s = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            history = store.workload_history(end - days * DAY)
            history_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            trend = store.trend(end - days * DAY)
            trend_s.append(time.perf_counter() - t0)
        # Shorter windows (a --window setting) read other rows: hourly, or some days.
        windows: dict[str, float] = {}
        for hours in (6, 24, 7 * 24):
            if hours < days * 24:
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    store.workload_history(end - hours * 3600)
                    times.append(time.perf_counter() - t0)
                windows[f"{hours:g} h"] = statistics.median(times)
    if len(history) != total:
        raise BenchError(f"workload_history returned {len(history)} of {total} workloads")
    return ReadResult(
        workloads=total,
        recorded=recorded,
        days=days,
        spacing=spacing,
        generate_s=generate,
        files=files,
        rows=rows,
        cold_s=cold,
        plan_step_s=steps,
        read_s=read_only,
        history_s=history_s,
        trend_s=trend_s,
        history_workloads=len(history),
        trend_points=len(trend),
        windows_s=windows,
    )
