"""The fleet benchmark's report: the targets and the printed results.

Helpers of ``fleet.py``, not a benchmark: the packing-quality statistics per instance family
(also against the optimum and the LP bound, where ``--exact`` found them), each target of the
issue with what was measured and whether it was met, and the report of the three measurements.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from _common import print_targets
from _fleet_measure import FleetResult, Instance, PackResult

# Targets from the issue; measured and reported, never asserted.
TARGET_FLEET_SECONDS = 2.0
TARGET_FLEET_HOSTS = 10_000
TARGET_PACKING_RATIO = 1.05


# -- report ------------------------------------------------------------------------------------


def family_stats(instances: Sequence[Instance], family: str) -> dict[str, float]:
    """Mean and max of both ratios over one family's instances."""
    mine = [i for i in instances if i.family == family]
    return {
        "instances": len(mine),
        "ratio_mean": statistics.mean(i.ratio for i in mine),
        "ratio_max": max(i.ratio for i in mine),
        "one_by_one_mean": statistics.mean(i.ratio_one_by_one for i in mine),
        "one_by_one_max": max(i.ratio_one_by_one for i in mine),
        "lower_bound_min": min(i.lower_bound for i in mine),
        "lower_bound_max": max(i.lower_bound for i in mine),
        "seconds_max": max(i.seconds for i in mine),
        **_optimum_stats(mine),
    }


def _optimum_stats(instances: Sequence[Instance]) -> dict[str, float]:
    """Hosts used over the proven optimum and the LP bound, where ``--exact`` found them."""
    ratios = [r for r in (i.ratio_optimum for i in instances) if r is not None]
    bounds = [i.at_once / i.lp_bound for i in instances if i.lp_bound]
    if not ratios or not bounds:
        return {}
    return {
        "solved": len(ratios),
        "optimum_ratio_mean": statistics.mean(ratios),
        "optimum_ratio_max": max(ratios),
        "lp_ratio_max": max(bounds),
        "bound_below_optimum_max": max(
            (i.optimum or 0) / i.lower_bound for i in instances if i.optimum
        ),
    }


def targets(fleets: Sequence[FleetResult], instances: Sequence[Instance]) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and met / not met."""
    found: list[dict[str, Any]] = []
    for result in fleets:
        if result.hosts == TARGET_FLEET_HOSTS:
            found.append(
                {
                    "target": f"{result.hosts} hosts x {result.workloads} workloads planned for "
                    f"one shape in under {TARGET_FLEET_SECONDS:g} s",
                    "measured": f"{result.median_s:.2f} s (median of {len(result.answer_s)})",
                    "met": result.median_s < TARGET_FLEET_SECONDS,
                }
            )
    if instances:
        worst = max(i.ratio for i in instances)
        found.append(
            {
                "target": "mixed-shape packing within 5 % of the lower bound on the generated "
                "instances",
                "measured": f"worst {100 * (worst - 1):.1f} % above over {len(instances)} "
                f"instances (mean {100 * (statistics.mean(i.ratio for i in instances) - 1):.1f} %)",
                "met": worst <= TARGET_PACKING_RATIO,
            }
        )
    return found


def shape_line(values: dict[str, int]) -> str:
    """``web 1200, db 80, cache 300``."""
    return ", ".join(f"{name} {count}" for name, count in values.items())


def print_report(
    fleets: Sequence[FleetResult], packs: Sequence[PackResult], instances: Sequence[Instance]
) -> None:
    """Print the three measurements and the targets."""
    print()
    print(
        "1. single-shape fleet answer (web=cpu=0.5,memory=512Mi as a container, both views; "
        "median of the runs; setup = building the PlanInputs, not timed in the answer)"
    )
    for r in fleets:
        print(
            f"  {r.hosts:>6} hosts x {r.workloads} workloads: {r.median_s:.3f} s "
            f"(runs {', '.join(f'{s:.3f}' for s in r.answer_s)}; "
            f"{r.median_s / r.hosts * 1e6:.0f} µs/host); setup {r.setup_s:.1f} s; "
            f"{r.total_remaining} slots in total, {r.full_hosts} hosts full; "
            f"{r.checked} hosts checked equal to plan.answer"
        )
        if r.plan_answer_s is not None:
            print(
                f"         plan.answer on every host instead: {r.plan_answer_s:.2f} s "
                f"({r.plan_answer_s / r.hosts * 1e6:.0f} µs/host)"
            )
        if r.build_answers_s is not None:
            print(
                f"         building every host's full Answer objects afterwards: "
                f"{r.build_answers_s:.2f} s"
            )
    for p in packs:
        print()
        print(
            f"2. three shapes over {p.hosts} hosts, each at 40 % of what the fleet holds of it "
            f"alone, overflow onto new hosts (median of {len(p.pack_s)}: {p.median_s:.3f} s; "
            f"host uses {p.uses_s:.2f} s before)"
        )
        print(f"  requested {shape_line(p.requested)}")
        print(f"  placed on the fleet {shape_line(p.placed)}; overflow {shape_line(p.overflow)}")
        print(
            f"  fleet hosts used {p.hosts_used} (lower bound {p.hosts_lower_bound}: copies "
            "spread, by design, over the roomiest hosts)"
        )
        print(
            f"  new hosts {p.new_hosts} for {shape_line(p.placed_new)} (lower bound "
            f"{p.new_hosts_lower_bound}, on {p.new_hosts_bound}); placed nowhere: "
            f"{shape_line(p.unplaced)}"
        )
    if instances:
        print()
        print(
            "3. packing quality: new hosts used / lower bound, on random three-shape "
            "instances packed onto empty hosts (bound opened at once | one at a time)"
        )
        for family in ("web/db/cache", "complementary"):
            s = family_stats(instances, family)
            print(
                f"  {family:<14} {s['instances']} instances, bounds {s['lower_bound_min']:.0f}-"
                f"{s['lower_bound_max']:.0f} hosts: mean {s['ratio_mean']:.3f}, max "
                f"{s['ratio_max']:.3f} | one at a time: mean {s['one_by_one_mean']:.3f}, max "
                f"{s['one_by_one_max']:.3f}; slowest packing {s['seconds_max']:.2f} s"
            )
            if "solved" in s:
                print(
                    f"  {'':<14} vs the optimum ({s['solved']} solved exactly): mean "
                    f"{s['optimum_ratio_mean']:.3f}, max {s['optimum_ratio_max']:.3f}; vs the "
                    f"LP bound max {s['lp_ratio_max']:.3f}; the optimum is up to "
                    f"{s['bound_below_optimum_max']:.3f} x the simple bound"
                )
    print()
    print_targets(targets(fleets, instances))
