"""The planner benchmark's report: the targets and the printed results.

Helpers of ``planner.py``, not a benchmark: each target of the issue (the history's size, the
plan's time) with what was measured and whether it was met, and the report of both
measurements.
"""

from __future__ import annotations

import statistics
from typing import Any

from _common import percentile, print_targets
from _planner_measure import ReadResult, SizeResult, rows_line

# Targets from the issue; measured and reported, never asserted.
TARGET_SIZE_BYTES = 200 * 10**6  # "200 MB", read strictly as 10^6 bytes
TARGET_PLAN_SECONDS = 1.0


# -- report ------------------------------------------------------------------------------------


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
            f"p99 {percentile(size.record_ms, 99):.1f} ms; maintain() meanwhile: median "
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
