"""The Docker benchmark's report: the machine, the per-N table, the targets.

Helpers of ``docker_sampling.py``, not a benchmark: what the numbers were measured on (CPU,
kernel, the Docker engine and its cgroup setup), the per-N table with the cost per added
container and a least-squares fit, each target of the issue with what was measured and whether
it was met, and the printed report.
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Sequence
from typing import Any

from _common import loadavg, machine_basics, print_targets
from _docker_cli import DockerCli
from _docker_measure import DaemonResult, PassResult

from densityd import __version__ as densityd_version

# Targets from the issue; measured and reported, never asserted.
TARGET_RATIO_AT_50 = 20.0
TARGET_FLAT_GROWTH = 1.25  # per-container cost at the largest N vs the smallest, at most
TARGET_SCRAPE_P99_MS = 20.0
TARGET_RSS_BYTES = 60 * 10**6  # "60 MB", read strictly as 10^6 bytes


# -- report ------------------------------------------------------------------------------------


def machine(docker: DockerCli) -> dict[str, Any]:
    """What the numbers were measured on."""
    info = docker.info()
    return {
        **machine_basics(),
        "docker": info.get("ServerVersion"),
        "storage_driver": info.get("Driver"),
        "cgroup_version": info.get("CgroupVersion"),
        "cgroup_driver": info.get("CgroupDriver"),
        "python": platform.python_version(),
        "densityd": densityd_version,
        "loadavg_at_start": loadavg(),
    }


def pass_table(results: Sequence[PassResult]) -> str:
    """The per-N table the benchmark prints."""
    header = (
        f"{'N':>5} {'seen':>5} {'cold ms':>9} {'steady ms':>10} {'µs/ctr':>8} {'Δµs/ctr':>8} "
        f"{'cold µs/ctr':>12} {'docker stats s':>15} {'ratio':>8} {'cold ratio':>11}"
    )
    lines = [header, "-" * len(header)]
    previous: PassResult | None = None
    for r in results:
        step = f"{incremental_us(previous, r):.1f}" if previous else "-"
        lines.append(
            f"{r.n:>5} {r.seen:>5} {r.cold_s * 1e3:>9.1f} {r.steady_median_s * 1e3:>10.2f} "
            f"{r.per_container_us:>8.1f} {step:>8} {r.cold_per_container_us:>12.0f} "
            f"{r.docker_stats_median_s:>15.2f} {r.ratio:>7.0f}x {r.cold_ratio:>10.1f}x"
        )
        previous = r
    return "\n".join(lines)


def incremental_us(before: PassResult, after: PassResult) -> float:
    """What each added container cost between two counts (steady medians), in µs."""
    return (after.steady_median_s - before.steady_median_s) / (after.seen - before.seen) * 1e6


def linear_fit(results: Sequence[PassResult]) -> tuple[float, float] | None:
    """Least-squares steady pass time = fixed + marginal x seen; (fixed ms, marginal µs)."""
    if len(results) < 2:
        return None
    xs = [float(r.seen) for r in results]
    ys = [r.steady_median_s for r in results]
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept * 1e3, slope * 1e6


def targets(results: Sequence[PassResult], daemon: DaemonResult | None) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and met / not met (None: not measured)."""
    found: list[dict[str, Any]] = []
    at_50 = next((r for r in results if r.n == 50), None)
    found.append(
        {
            "target": f"docker pass over 50 containers >= {TARGET_RATIO_AT_50:g}x faster "
            "than docker stats --no-stream",
            "measured": f"{at_50.ratio:.0f}x (steady), {at_50.cold_ratio:.1f}x (cold)"
            if at_50
            else "not run (50 not in --counts)",
            "met": at_50.ratio >= TARGET_RATIO_AT_50 if at_50 else None,
        }
    )
    if len(results) >= 2:
        first, last = results[0], results[-1]
        growth = last.per_container_us / first.per_container_us
        found.append(
            {
                "target": f"cost per container flat from {first.n} to {last.n} "
                f"(at most {TARGET_FLAT_GROWTH:g}x)",
                "measured": f"{first.per_container_us:.1f} -> {last.per_container_us:.1f} "
                f"µs/container ({growth:.2f}x)",
                "met": growth <= TARGET_FLAT_GROWTH,
            }
        )
    if daemon is not None:
        found.append(
            {
                "target": f"/metrics with {daemon.n} workloads under "
                f"{TARGET_SCRAPE_P99_MS:g} ms p99",
                "measured": f"p99 {daemon.p99_ms:.1f} ms",
                "met": daemon.p99_ms < TARGET_SCRAPE_P99_MS,
            }
        )
        found.append(
            {
                "target": f"daemon RSS under 60 MB with {daemon.n} containers",
                "measured": f"{daemon.rss_bytes / 1e6:.1f} MB ({daemon.rss_bytes / 2**20:.1f} MiB)",
                "met": daemon.rss_bytes < TARGET_RSS_BYTES,
            }
        )
    return found


def print_report(results: Sequence[PassResult], daemon: DaemonResult | None) -> None:
    """Print the table, the fit, the daemon numbers and the targets."""
    print()
    print("densityd docker pass vs docker stats --no-stream (medians; ratio = stats / pass;")
    print("µs/ctr = steady pass / containers seen; Δµs/ctr = added cost per added container)")
    print(pass_table(results))
    fit = linear_fit(results)
    if fit is not None:
        print(f"steady pass ~ {fit[0]:.2f} ms + {fit[1]:.1f} µs x containers (least squares)")
    if daemon is not None:
        print()
        print(f"daemon with {daemon.n} bench containers ({' '.join(daemon.command)}):")
        print(
            f"  /metrics over {daemon.scrapes} scrapes: p50 {daemon.p50_ms:.1f} ms, "
            f"p99 {daemon.p99_ms:.1f} ms, max {daemon.max_ms:.1f} ms; "
            f"{daemon.response_bytes} bytes, {daemon.metric_lines} samples"
        )
        print(
            f"  RSS {daemon.rss_bytes / 2**20:.1f} MiB (peak {daemon.hwm_bytes / 2**20:.1f} MiB); "
            f"docker source pass in the daemon: "
            + (f"{daemon.source_duration_s * 1e3:.1f} ms" if daemon.source_duration_s else "?")
        )
        stopped = (
            f"exited {daemon.exit_code} after SIGTERM in {daemon.stop_s:.2f} s"
            if daemon.exit_code is not None
            else "did NOT exit within 15 s of SIGTERM (killed)"
        )
        print(f"  {stopped}")
    print()
    print_targets(targets(results, daemon))
