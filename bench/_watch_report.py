"""The watch-cost benchmark's report: the side-by-side table, the phase split, the fits, targets.

Helpers of ``watch_cost.py``, not a benchmark. MB here is 10^6 bytes, as the issue counts.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from _common import percentile, print_targets
from _watch_daemons import Window
from _watch_pass import HotSpot, PhaseSplit
from _watch_scale import Fit, ScalePoint

RSS_TARGET_MB = 45.0
FILES_RATIO_TARGET = 2.0
PLAN_TARGET_S = 0.5
SCRAPE_P99_TARGET_MS = 20.0
VM_PASS_TARGET_MS = 50.0


def _mb(value: int) -> str:
    return f"{value / 1e6:.1f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def print_side_by_side(windows: Sequence[Window], baseline: dict[str, Any]) -> None:
    """The table of the issue, from this run, and the ratios."""
    print("\n## Side by side (same workloads, same cadence, one after another)\n")
    rate = baseline["rate_per_s"]
    print(
        "idle baseline (no collector), engines' CPU per window: "
        + ", ".join(f"{k} {v * windows[0].window_s:.2f} s" for k, v in rate.items())
        + f" (mean of {len(baseline['windows'])} windows: "
        + "; ".join(", ".join(f"{k} {v:.2f}" for k, v in w.items()) for w in baseline["windows"])
        + ")\n"
    )
    print(
        "| daemon | own CPU, % of a core | own CPU-s/h | engine CPU it adds per window "
        "(dockerd, containerd, libvirtd) | total CPU-s/h | RSS / PSS (MB) | scrape p50 / p99 |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for w in windows:
        engines = ", ".join(f"{k} {v:+.2f} s" for k, v in w.engine_excess_s.items())
        scrape = (
            f"{percentile(w.scrape_ms, 50):.1f} / {percentile(w.scrape_ms, 99):.1f} ms"
            if w.scrape_ms
            else "-"
        )
        print(
            f"| {w.name} | {w.own_cpu_s / w.window_s * 100:.3f} % | "
            f"{w.own_cpu_per_hour_s:.1f} | {engines} | {w.total_cpu_per_hour_s:.1f} | "
            f"{_mb(w.rss_bytes)} / {_mb(w.pss_bytes)} | {scrape} |"
        )
    by_name = {w.name: w for w in windows}
    ours = by_name.get("densityd")
    if ours is None:
        return
    print()
    for other in ("netdata", "collectd"):
        theirs = by_name.get(other)
        if theirs is None:
            continue
        print(
            f"densityd / {other}: own CPU {_ratio(ours.own_cpu_s, theirs.own_cpu_s)}, "
            f"CPU incl. engines {_ratio(ours.total_cpu_per_hour_s, theirs.total_cpu_per_hour_s)}"
            f", RSS {_ratio(ours.rss_bytes, theirs.rss_bytes)}, "
            f"PSS {_ratio(ours.pss_bytes, theirs.pss_bytes)}"
        )


def print_phases(split: PhaseSplit) -> None:
    """Where a steady pass goes."""
    print(
        f"\n## Where a pass goes ({split.passes} steady passes of the in-process daemon at "
        f"{split.interval:g} s, after {split.warmup_passes} warm-up ones; medians)\n"
    )
    print("| phase | wall ms | CPU ms (its thread) |")
    print("|---|---:|---:|")
    for name, wall in split.phases_wall_ms.items():
        depth = name.count("/")
        label = ("  " * depth + "- " if depth else "") + name.rsplit("/", 1)[-1]
        print(f"| {label} | {wall:.2f} | {split.phases_cpu_ms[name]:.2f} |")
    for source in ("docker", "libvirt"):
        parts = [n for n in split.phases_wall_ms if n.startswith(source + "/")]
        if source in split.phases_wall_ms and parts:
            rest = split.phases_wall_ms[source] - sum(split.phases_wall_ms[n] for n in parts)
            print(f"| {source}: the Python around those | {rest:.2f} | |")
    print(
        f"\nwhole process CPU per steady pass (every thread): "
        f"{split.process_cpu_per_pass_ms:.2f} ms"
    )
    print(
        "engines' CPU per pass on densityd's calls (minus the idle baseline's rate): "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in split.engine_cpu_per_pass_ms.items())
    )
    print(
        "engines' on-CPU time while densityd's samples ran (schedstat, median per pass): "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in split.engine_during_sample_ms.items())
        + " (docker: dockerd + containerd; libvirt: libvirtd)"
    )
    print(
        f"steady Docker pass {split.docker_pass_ms:.2f} ms vs reading the same "
        f"{split.cgroup_files} cgroup files alone {split.cgroup_files_alone_ms:.2f} ms: "
        f"{split.files_ratio:.1f}x"
    )


def print_hotspots(hotspots: Sequence[HotSpot], containers: int) -> None:
    """The profiled Docker pass's top functions by own time."""
    print(
        f"\n## A steady Docker pass under cProfile ({containers} bench containers; per pass; "
        "the profiler inflates Python against system calls)\n"
    )
    print("| function | calls | own ms | cumulative ms |")
    print("|---|---:|---:|---:|")
    for h in hotspots:
        print(f"| `{h.function}` | {h.calls:.0f} | {h.own_ms:.2f} | {h.cumulative_ms:.2f} |")


def fit_text(found: Fit | None) -> str:
    """``a ms + b µs·n (R² r)`` for a fit of seconds."""
    if found is None:
        return "n/a"
    return f"{found.a * 1e3:.2f} ms + {found.b * 1e6:.1f} µs·n (R² {found.r2:.3f})"


def print_scale(kind: str, points: Sequence[ScalePoint], found: dict[str, Fit | None]) -> None:
    """One sweep's points and its fits."""
    print(f"\n## Scale: {kind}\n")
    files = any(p.files_ratio is not None for p in points)
    extra = " pass / files alone, interleaved |" if files else ""
    print(
        f"| {kind} (ours) | seen | pass wall ms | pass CPU ms | per workload µs (wall) | "
        f"set-up s |{extra}"
    )
    print("|---:|---:|---:|---:|---:|---:|" + ("---:|" if files else ""))
    for p in points:
        cell = ""
        if files and p.files_ratio is not None:
            cell = (
                f" {(p.interleaved_pass_s or 0) * 1e3:.2f} / {(p.files_alone_s or 0) * 1e3:.2f}"
                f" ms ({p.files} files) = {p.files_ratio:.1f}x |"
            )
        print(
            f"| {p.n} | {p.seen} | {p.wall_s * 1e3:.2f} | {p.cpu_s * 1e3:.2f} | "
            f"{p.wall_s / p.seen * 1e6:.0f} | {p.setup_s:.1f} |{cell}"
        )
    for name, value in found.items():
        print(f"fit of the pass {name}: {fit_text(value)}")


BASELINE_AGREEMENT = 1.5  # the two idle windows' engine CPU within this factor: usable


def baselines_agree(baseline: dict[str, Any]) -> bool:
    """Whether the idle windows' engine CPU agree well enough to subtract."""
    windows = baseline.get("windows") or []
    if len(windows) < 2:
        return False
    for name in windows[0]:
        low, high = sorted(w[name] for w in windows)[:: len(windows) - 1]
        if high > BASELINE_AGREEMENT * max(low, 0.05):
            return False
    return True


def cpu_target(
    ours: Window,
    netdata: Window,
    split: PhaseSplit | None,
    baseline: dict[str, Any],
    interval: float,
) -> dict[str, Any]:
    """densityd's CPU per hour with the engine CPU it causes against netdata's.

    With usable baselines, each collector's window minus them. When other work on the
    engines made the baselines disagree, densityd's engine CPU is taken from the phase
    split (the engines' on-CPU time while its samples ran, an upper bound, times the passes
    an hour holds) and netdata's counts as zero (its Engine calls come only at discovery):
    a comparison that can only favour netdata.
    """
    target = "CPU per hour incl. the engine CPU it causes <= netdata cgroups.plugin's"
    if baselines_agree(baseline):
        return {
            "target": target,
            "measured": f"densityd {ours.total_cpu_per_hour_s:.1f} CPU-s/h, netdata "
            f"{netdata.total_cpu_per_hour_s:.1f} CPU-s/h (windows minus the idle baseline)",
            "met": ours.total_cpu_per_hour_s <= netdata.total_cpu_per_hour_s,
        }
    if split is None or not split.engine_during_sample_ms:
        return {
            "target": target,
            "measured": "not measured: the idle baselines disagree (other work on the engines)",
            "met": None,
        }
    passes_per_hour = 3600 / interval
    engine = sum(split.engine_during_sample_ms.values()) / 1e3 * passes_per_hour
    total = ours.own_cpu_per_hour_s + engine
    return {
        "target": target,
        "measured": f"densityd {ours.own_cpu_per_hour_s:.1f} own + {engine:.1f} engine "
        f"(during its samples) = {total:.1f} CPU-s/h, netdata {netdata.own_cpu_per_hour_s:.1f}"
        " own CPU-s/h (the idle baselines disagree, so no window minus baseline is used)",
        "met": total <= netdata.own_cpu_per_hour_s,
    }


def targets(
    windows: Sequence[Window],
    split: PhaseSplit | None,
    scrape_500: dict[str, Any] | None,
    vm_points: Sequence[ScalePoint],
    docker_points: Sequence[ScalePoint] = (),
    baseline: dict[str, Any] | None = None,
    interval: float = 15.0,
) -> list[dict[str, Any]]:
    """Each target of the issue, measured or not."""
    by_name = {w.name: w for w in windows}
    ours, netdata = by_name.get("densityd"), by_name.get("netdata")
    found: list[dict[str, Any]] = []
    if ours and netdata:
        found.append(cpu_target(ours, netdata, split, baseline or {}, interval))
    else:
        found.append(
            {
                "target": "CPU per hour incl. engine CPU <= netdata cgroups.plugin's",
                "measured": "not measured",
                "met": None,
            }
        )
    found.append(
        {
            "target": f"RSS with all sources on <= {RSS_TARGET_MB:g} MB (PSS reported)",
            "measured": f"RSS {_mb(ours.rss_bytes)} MB, PSS {_mb(ours.pss_bytes)} MB"
            if ours
            else "not measured",
            "met": ours.rss_bytes / 1e6 <= RSS_TARGET_MB if ours else None,
        }
    )
    at_50 = next((p for p in docker_points if p.n == 50 and p.files_ratio is not None), None)
    files_target = (
        f"steady Docker pass at 50 containers <= {FILES_RATIO_TARGET:g}x reading the same "
        "cgroup files alone"
    )
    if at_50 is not None and at_50.files_ratio is not None:
        found.append(
            {
                "target": files_target,
                "measured": f"{(at_50.interleaved_pass_s or 0) * 1e3:.2f} ms vs "
                f"{(at_50.files_alone_s or 0) * 1e3:.2f} ms ({at_50.files} files, interleaved)"
                f" = {at_50.files_ratio:.1f}x",
                "met": at_50.files_ratio <= FILES_RATIO_TARGET,
            }
        )
    else:
        found.append(
            {
                "target": files_target,
                "measured": f"{split.docker_pass_ms:.2f} ms vs "
                f"{split.cgroup_files_alone_ms:.2f} ms = {split.files_ratio:.1f}x (phase split)"
                if split
                else "not measured",
                "met": split.files_ratio <= FILES_RATIO_TARGET if split else None,
            }
        )
    plan = statistics.median(ours.plan_s) if ours and ours.plan_s else None
    found.append(
        {
            "target": f"`densityd plan` with a daemon running < {PLAN_TARGET_S:g} s wall",
            "measured": f"median {plan:.2f} s of {len(ours.plan_s)} ({ours.plan_note})"
            if ours and plan is not None
            else "not measured",
            "met": plan < PLAN_TARGET_S if plan is not None else None,
        }
    )
    p99 = percentile(scrape_500["scrape_ms"], 99) if scrape_500 else None
    found.append(
        {
            "target": f"scrape p99 at 500 workloads < {SCRAPE_P99_TARGET_MS:g} ms",
            "measured": f"p99 {p99:.1f} ms over {len(scrape_500['scrape_ms'])} scrapes, "
            f"{scrape_500['workloads']} workloads"
            if scrape_500 and p99 is not None
            else "not measured",
            # Only a count of 500 or more answers the target.
            "met": p99 < SCRAPE_P99_TARGET_MS
            if p99 is not None and scrape_500 and scrape_500["workloads"] >= 500
            else None,
        }
    )
    at_8 = next((p for p in vm_points if p.n == 8), None)
    found.append(
        {
            "target": f"libvirt pass for 8 VMs < {VM_PASS_TARGET_MS:g} ms",
            "measured": f"{at_8.wall_s * 1e3:.1f} ms (median steady pass)"
            if at_8
            else "not measured (8 not in --vm-counts)",
            "met": at_8.wall_s * 1e3 < VM_PASS_TARGET_MS if at_8 else None,
        }
    )
    return found


def print_targets_section(found: list[dict[str, Any]]) -> None:
    """The targets, one line each."""
    print("\n## Targets\n")
    print_targets(found)
