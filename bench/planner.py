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
import platform
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import loadavg, machine_basics, progress, run_benchmark
from _planner_measure import ReadResult, SizeResult, measure_reads, measure_size
from _planner_report import print_report, targets

from densityd import __version__ as densityd_version

# 2026-01-01 13:07 UTC: not on a day or hour boundary, like a real "now".
DEFAULT_END = 1_767_272_820.0


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
