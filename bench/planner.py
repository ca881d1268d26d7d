"""How big the history store gets, and how fast a plan over it is.

Two measurements, one command, no backend needed (everything runs on a temporary SQLite file)::

    /opt/densityd-venv/bin/python bench/planner.py --json /tmp/planner.json

1. **History size**: 200 workloads x 14 days at the default 15 s pass interval, written through
   the store's own code, with ``maintain()`` every 5 simulated minutes (as the daemon's
   recorder does). To keep the run short, the older 12 days are recorded at 5-minute spacing
   -- exactly what the 5-minute rollup keeps of 15 s passes -- and the last 48 h at 15 s; the
   last ``--per-pass-hours`` (6) through ``record()``, one call per pass as the daemon does
   (timed), the rest through ``record_many()``, which writes the same rows (a unit test
   checks it) in one transaction per batch. Reports the file size (database + WAL), rows and
   bytes per table, the generation time and ``record()``'s time per pass; target < 200 MB.
2. **Plan time**: 2,000 workloads x 14 days at 5-minute spacing, then one plan as
   ``densityd plan`` makes it, minus the sampling: the history reads
   (``workload_history(since=now-14d)``, ``trend(since)``), every workload's demand
   (``plan_context``) and the answers for each kind's median workload in both views
   (``plan_document``), timed in ``plan_step()`` (median of ``--repeat`` runs, plus the first,
   cold one); target under 1 s. Recording 8 million samples
   one by one would take most of an hour here, so the bench records 200 distinct workloads
   through ``record_many()`` (one transaction per simulated hour, the same rows as
   ``record()``) and copies their rows 9 times under new IDs in SQL: what the reads cost
   depends on how many rows they read, not on the values in them.

The data is realistic and reproducible (``--seed``): per workload a CPU rate with a daily
swing, noise and bursts (and the odd restart, which resets its CPU counter), memory on a
mean-reverting random walk, disk growing slowly; 80 % containers, 20 % VMs; the host's memory
and two data disks. Timestamps are simulated: 14 days ending at ``--end`` (a fixed instant, so
runs compare), passed to ``maintain(now)``. About 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import BenchError, loadavg, machine_basics, print_targets, run_benchmark

from densityd import __version__ as densityd_version
from densityd.config import load_settings
from densityd.history.schema import HISTORY_FILE
from densityd.history.store import HistoryStore
from densityd.model import DiskUsage, HostSample, Snapshot, WorkloadKind, WorkloadSample
from densityd.plan.answer import plan_document
from densityd.plan.core.model import WorkloadHistory
from densityd.plan.inputs.local import History, plan_context
from densityd.plan.request import PlanRequest

DAY = 86400.0
GIB = 1024**3
MIB = 1024**2
# 2026-01-01 13:07 UTC: not on a day or hour boundary, like a real "now".
DEFAULT_END = 1_767_272_820.0
MAINTAIN_EVERY_PASSES = 20  # every 5 minutes at 15 s, as densityd.history.recorder does
# Targets from the issue; measured and reported, never asserted.
TARGET_SIZE_BYTES = 200 * 10**6  # "200 MB", read strictly as 10^6 bytes
TARGET_PLAN_SECONDS = 1.0


# -- the simulated fleet -----------------------------------------------------------------------


@dataclass
class SimWorkload:
    """One simulated container or VM and where its counters stand."""

    kind: WorkloadKind
    id: str
    name: str
    image: str
    cpu_base: float  # cores, the daily mean
    swing: float  # relative amplitude of the daily cycle
    phase: float
    memory_base: float
    memory: float
    memory_limit: int | None
    disk: float
    disk_growth: float  # bytes per second
    cpu_limit: float | None
    cpu_seconds: float = 0.0


class Fleet:
    """Workloads whose usage moves realistically from pass to pass, from a fixed seed."""

    def __init__(self, count: int, seed: int, prefix: str = "") -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.workloads: list[SimWorkload] = []
        for index in range(count):
            vm = rng.random() < 0.2
            memory_base = rng.lognormvariate(math.log(600 * MIB if vm else 150 * MIB), 0.8)
            self.workloads.append(
                SimWorkload(
                    kind=WorkloadKind.VM if vm else WorkloadKind.CONTAINER,
                    id=f"{prefix}{rng.getrandbits(128):032x}",
                    name=f"{prefix}{'vm' if vm else 'app'}-{index}",
                    image="" if vm else f"registry.local/app{index % 17}:1.{index % 5}",
                    cpu_base=min(4.0, rng.lognormvariate(math.log(0.05), 1.3)),
                    swing=rng.uniform(0.1, 0.7),
                    phase=rng.uniform(0, 2 * math.pi),
                    memory_base=memory_base,
                    memory=memory_base,
                    memory_limit=int(memory_base * 2) if vm or rng.random() < 0.6 else None,
                    disk=rng.lognormvariate(math.log(4 * GIB if vm else 60 * MIB), 1.0),
                    disk_growth=rng.uniform(0, 40 * MIB) / DAY,
                    cpu_limit=float(rng.choice((1, 2, 4))) if vm or rng.random() < 0.5 else None,
                )
            )

    def snapshot(self, timestamp: float, step: float) -> Snapshot:
        """Advance every workload by ``step`` seconds and sample it at ``timestamp``."""
        rng = self.rng
        day_angle = 2 * math.pi * (timestamp % DAY) / DAY
        samples = []
        used = 0.0
        for w in self.workloads:
            rate = w.cpu_base * (1 + w.swing * math.sin(day_angle + w.phase))
            rate *= rng.lognormvariate(0.0, 0.35)
            if rng.random() < 0.01:
                rate *= 5  # a burst
            if rng.random() < step / (5 * DAY):  # restarted: the CPU counter starts again
                w.cpu_seconds = 0.0
                w.memory = w.memory_base * 0.6
            w.cpu_seconds += rate * step
            w.memory += 0.05 * (w.memory_base - w.memory) + w.memory_base * rng.gauss(0, 0.02)
            w.memory = max(w.memory_base * 0.3, w.memory)
            w.disk += w.disk_growth * step
            used += w.memory
            samples.append(
                WorkloadSample(
                    kind=w.kind,
                    id=w.id,
                    name=w.name,
                    image=w.image,
                    cpu_seconds=w.cpu_seconds,
                    cpu_limit_cores=w.cpu_limit,
                    memory_bytes=int(w.memory),
                    memory_limit_bytes=w.memory_limit,
                    disk_bytes=int(w.disk),
                )
            )
        total = 512 * GIB
        host = HostSample(
            cpu_cores=64,
            memory_bytes=total,
            memory_available_bytes=max(0, int(total - used - 6 * GIB)),
            disks=(
                DiskUsage("/var/lib/docker", 2 * 10**12, 10**12 + int(timestamp % 10**9)),
                DiskUsage("/var/lib/libvirt/images", 4 * 10**12, 3 * 10**12),
            ),
        )
        return Snapshot(timestamp=timestamp, workloads=tuple(samples), host=host)


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
            "record_ms_p99": _pct(self.record_ms, 99),
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


# -- report ------------------------------------------------------------------------------------


def _pct(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * pct / 100)) - 1]


def progress(text: str) -> None:
    """A progress line on stderr, so that stdout holds only the results."""
    print(text, file=sys.stderr, flush=True)


def targets(size: SizeResult | None, reads: ReadResult | None) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and met / not met."""
    found: list[dict[str, Any]] = []
    if size is not None:
        found.append(
            {
                "target": f"history of {size.workloads} workloads x {size.days:g} days at "
                f"{size.interval:g} s under 200 MB",
                "measured": f"{size.size_bytes / 1e6:.1f} MB (database + WAL)",
                "met": size.size_bytes < TARGET_SIZE_BYTES,
            }
        )
    if reads is not None:
        found.append(
            {
                "target": f"plan over {reads.workloads} workloads x {reads.days:g} days in "
                f"under {TARGET_PLAN_SECONDS:g} s (history reads + planner)",
                "measured": f"{reads.plan_step_median_s:.3f} s (median), of which history "
                f"reads {statistics.median(reads.read_s):.3f} s",
                "met": reads.plan_step_median_s < TARGET_PLAN_SECONDS,
            }
        )
    return found


def print_report(size: SizeResult | None, reads: ReadResult | None) -> None:
    """Print both measurements and the targets."""
    if size is not None:
        print()
        print(
            f"1. history size: {size.workloads} workloads x {size.days:g} days: "
            f"{size.interval:g} s passes for the last 48 h, 5-minute passes before "
            f"({size.passes} passes, {size.samples} samples); the last "
            f"{size.per_pass_hours:g} h through record() pass by pass, the rest through "
            "record_many() (5-minute batches at 15 s, hourly before), maintain() every 5 "
            "simulated minutes"
        )
        print(
            f"  file: {size.size_bytes / 1e6:.1f} MB (database {size.files['db'] / 1e6:.1f} MB"
            f" + WAL {size.files['wal'] / 1e6:.1f} MB; shm {size.files['shm'] / 1e3:.0f} kB)"
        )
        print(f"  rows: {rows_line(size.rows)}")
        print(
            f"  generated in {size.generate_s:.0f} s; record() per pass of {size.workloads} "
            f"workloads: median {statistics.median(size.record_ms):.1f} ms, "
            f"p99 {_pct(size.record_ms, 99):.1f} ms; maintain() meanwhile: median "
            f"{statistics.median(size.maintain_ms):.0f} ms, max {max(size.maintain_ms):.0f} ms;"
            f" final maintain() {size.final_maintain_s:.2f} s"
        )
    if reads is not None:
        print()
        print(
            f"2. plan-read time: {reads.workloads} workloads x {reads.days:g} days at "
            f"{reads.spacing / 60:g}-minute spacing ({reads.recorded} recorded through "
            f"record_many(), copied {reads.workloads // reads.recorded - 1} times in SQL)"
        )
        print(f"  file: {(reads.files['db'] + reads.files['wal']) / 1e6:.1f} MB")
        print(f"  rows: {rows_line(reads.rows)}")
        print(
            f"  plan_step (history reads over {reads.days:g} days + plan): median "
            f"{reads.plan_step_median_s:.3f} s over {len(reads.plan_step_s)} runs "
            f"(first, cold: {reads.cold_s:.3f} s), of which the reads "
            f"{statistics.median(reads.read_s):.3f} s; workload_history median "
            f"{statistics.median(reads.history_s):.3f} s ({reads.history_workloads} "
            f"workloads), trend median {statistics.median(reads.trend_s):.3f} s "
            f"({reads.trend_points} points); generated in {reads.generate_s:.0f} s"
        )
        if reads.windows_s:
            print(
                "  workload_history over shorter windows (median of 3): "
                + ", ".join(f"{w} {t:.3f} s" for w, t in reads.windows_s.items())
            )
    print()
    print_targets(targets(size, reads))


# -- main --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(
        description="Measure the history store's size on disk and the planner's read time."
    )
    parser.add_argument("--workloads", type=int, default=200, help="for the size (200)")
    parser.add_argument("--plan-workloads", type=int, default=2000, help="for the read time (2000)")
    parser.add_argument(
        "--copies",
        type=int,
        default=10,
        help="the read-time history is --plan-workloads / COPIES workloads recorded, "
        "copied COPIES times (10)",
    )
    parser.add_argument("--days", type=float, default=14.0, help="history length (14)")
    parser.add_argument("--interval", type=float, default=15.0, help="pass interval, s (15)")
    parser.add_argument(
        "--per-pass-hours",
        type=float,
        default=6.0,
        help="the last hours recorded with record() one pass at a time, timed (6)",
    )
    parser.add_argument("--repeat", type=int, default=7, help="timed read runs (7)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--end", type=float, default=DEFAULT_END, help="simulated 'now'")
    parser.add_argument("--skip-size", action="store_true", help="only the read time")
    parser.add_argument("--skip-reads", action="store_true", help="only the size")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both measurements in a temporary directory; the JSON document."""
    started = datetime.now(UTC)
    host: dict[str, Any] = {
        **machine_basics(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "densityd": densityd_version,
        "loadavg_at_start": loadavg(),
    }
    print(
        f"machine: {host['cpus']} cores ({host['cpu_model']}), kernel {host['kernel']}, "
        f"Python {host['python']}, SQLite {host['sqlite']}, densityd {host['densityd']}; "
        f"load average {' '.join(host['loadavg_at_start'])}"
    )
    size: SizeResult | None = None
    reads: ReadResult | None = None
    with tempfile.TemporaryDirectory(prefix="densityd-bench-planner-") as tmp:
        if not args.skip_size:
            progress(f"1. recording {args.workloads} workloads x {args.days:g} days ...")
            size = measure_size(
                Path(tmp) / "size",
                args.workloads,
                args.days,
                args.interval,
                args.end,
                args.seed,
                args.per_pass_hours,
            )
        if not args.skip_reads:
            progress(f"2. building {args.plan_workloads} workloads x {args.days:g} days ...")
            reads = measure_reads(
                Path(tmp) / "reads",
                args.plan_workloads,
                args.copies,
                args.days,
                args.end,
                args.seed,
                args.repeat,
            )
    print_report(size, reads)
    return {
        "schema": "densityd.bench.planner/v1",
        "date": started.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "machine": host,
        "size": size.summary() if size else None,
        "reads": reads.summary() if reads else None,
        "targets": targets(size, reads),
        "loadavg_at_end": loadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 when it could not measure what it meant to."""
    args = build_parser().parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress interleaves
    if (
        min(args.workloads, args.plan_workloads, args.copies, args.repeat) < 1
        or min(args.days, args.interval) <= 0
    ):
        print("counts: at least 1; --days, --interval: above 0", file=sys.stderr)
        return 2
    if args.plan_workloads % args.copies:
        print("--plan-workloads must be a multiple of --copies", file=sys.stderr)
        return 2
    return run_benchmark(lambda: run(args), args.json)


if __name__ == "__main__":
    sys.exit(main())
