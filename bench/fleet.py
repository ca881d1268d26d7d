"""How fast the planner answers for a fleet, and how well it packs several shapes at once.

One command, no backend needed (the fleets are synthetic, built in memory)::

    /opt/densityd-venv/bin/python bench/fleet.py --json /tmp/fleet.json

1. **Single-shape fleet answer**: fleets of 1,000 and 10,000 hosts of mixed sizes (16/32/64
   cores, 64/128/256 GiB, 1-4 TB of disk), 20 workloads each (70 % containers with and
   without limits, 30 % VMs, 5 % stopped), and a 15-point daily demand trend per host, built as
   ``PlanInputs`` (setup, timed apart). Timed: ``fleet.fleet_answers`` for one shape
   (``web=cpu=0.5,memory=512Mi`` as a container) in both views, median of ``--repeat``
   runs; target < 2 s at 10,000 hosts. For scale: ``plan.answer`` on every host of the
   1,000-host fleet, and building every host's full ``Answer`` objects at 10,000. Before
   timing, 200 hosts of each fleet are checked against ``plan.answer``.
2. **Three-shape packing on the fleet**: web (container), db (VM) and cache (container),
   each asked for at 40 % of what the fleet holds of that shape alone, so together they
   need the whole fleet and some new hosts (``--new-host``, default 64 cores, 256 GiB,
   4 TB). Timed: ``fleet.pack_fleet`` (median of 3). Reported: copies placed, overflow,
   new hosts against their lower bound, existing hosts used against theirs.
3. **Packing quality**: ``--instances`` random three-shape instances per family packed onto
   empty new hosts, new hosts used over the lower bound ``max_r ceil(sum demand_r /
   capacity_r)``; target within 5 %. Families: *web/db/cache* (the shapes above, sizes
   jittered) and *complementary* (one shape heavy on CPU, one on memory, one on disk: the
   hard case for a greedy packing, and for that bound). Each instance is also packed opening
   new hosts one at a time, the classic first fit, for comparison. With ``--exact`` and
   scipy importable (it is no densityd dependency; the system Python here has it), each
   instance is also solved exactly as an integer program over host configurations, to tell
   the packing's gap from the bound's::

       PYTHONPATH=. python3 bench/fleet.py --exact

Everything comes from ``--seed``; timestamps are simulated. About 40 s on 2 cores (a minute
more with ``--exact``).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from _common import BenchError, loadavg, machine_basics, print_targets, run_benchmark

from densityd import __version__ as densityd_version
from densityd.model import WorkloadKind
from densityd.plan.core.fleet import (
    answers_for_uses,
    fleet_answers,
    host_use,
    pack_fleet,
    shape_cost,
)
from densityd.plan.core.model import (
    GIB,
    MIB,
    RESOURCES,
    HostCapacity,
    PlanInputs,
    PlanSettings,
    Profile,
    Resources,
    TrendPoint,
    View,
    WorkloadDemand,
)
from densityd.plan.core.packing import Packing
from densityd.plan.core.quantity import parse_profile, parse_resources
from densityd.plan.core.slots import answer, headline, usable

DAY = 86400.0
TB = 10**12
# 2026-01-01 13:07 UTC: a fixed "now", so that runs compare.
NOW = 1_767_272_820.0
VIEWS = (View.ALLOCATION, View.DEMAND)
CONTAINER, VM = WorkloadKind.CONTAINER, WorkloadKind.VM
# Targets from the issue; measured and reported, never asserted.
TARGET_FLEET_SECONDS = 2.0
TARGET_FLEET_HOSTS = 10_000
TARGET_PACKING_RATIO = 1.05
T = TypeVar("T")


# -- the synthetic fleet -----------------------------------------------------------------------


def workload(rng: random.Random, host: str, index: int) -> WorkloadDemand:
    """One container or VM with plausible demand, limits and footprints."""
    if rng.random() < 0.3:
        vcpus = rng.choice((1, 2, 2, 4, 4, 8))
        ram = float(rng.choice((1, 2, 4, 4, 8, 16)) * GIB)
        rss = ram * rng.uniform(0.4, 1.0) + 100 * MIB
        disk = float(rng.choice((20, 40, 80, 200)) * GIB) * rng.uniform(0.3, 1.0)
        return WorkloadDemand(
            kind=VM,
            id=f"{host}-vm-{index}",
            name=f"vm-{index}",
            running=rng.random() > 0.05,
            demand=Resources(
                cpu=vcpus * rng.uniform(0.05, 0.6), memory=rss * 1.15, disk=disk * 1.02
            ),
            cpu_limit=float(vcpus),
            memory_limit=ram,
            memory_bytes=rss,
            guest_memory_bytes=ram,
            vcpus=vcpus,
            disk_is_overlay=rng.random() < 0.5,
            history_seconds=14 * DAY,
            disk_bytes=disk,
        )
    memory = rng.lognormvariate(math.log(300 * MIB), 0.8)
    disk = rng.lognormvariate(math.log(200 * MIB), 1.0)
    return WorkloadDemand(
        kind=CONTAINER,
        id=f"{host}-ctr-{index}",
        name=f"app-{index}",
        running=rng.random() > 0.05,
        image=f"registry.local/app{index % 7}:1",
        demand=Resources(
            cpu=min(4.0, rng.lognormvariate(math.log(0.1), 1.2)),
            memory=memory * 1.15,
            disk=disk * 1.01,
        ),
        cpu_limit=rng.choice((None, 0.5, 1.0, 2.0)),
        memory_limit=rng.choice((None, float(2 ** rng.randint(28, 32)))),
        memory_bytes=memory,
        history_seconds=14 * DAY,
        disk_bytes=disk,
    )


def fleet(count: int, workloads: int, seed: int) -> list[tuple[str, PlanInputs]]:
    """``count`` hosts of mixed sizes, each with ``workloads`` workloads and a 15-day trend."""
    rng = random.Random(seed)
    hosts = []
    for number in range(1, count + 1):
        name = f"host-{number:05d}"
        total = Resources(
            cpu=float(rng.choice((16, 32, 64))),
            memory=float(rng.choice((64, 128, 256)) * GIB),
            disk=float(rng.choice((1, 2, 4)) * TB),
        )
        ws = tuple(workload(rng, name, i) for i in range(workloads))
        running = [w for w in ws if w.running]
        memory = sum(w.memory_bytes or 0.0 for w in running) + rng.uniform(2, 6) * GIB
        disk = sum(w.disk_bytes or 0.0 for w in ws) + rng.uniform(20, 60) * GIB
        now = Resources(
            cpu=sum(w.demand.cpu for w in running),
            memory=sum(w.demand.memory for w in running),
            disk=sum(w.demand.disk for w in ws),
        )
        growth = rng.uniform(-0.002, 0.01)  # per day, relative; some hosts shrink
        trend = tuple(
            TrendPoint(
                timestamp=NOW - (14 - day) * DAY,
                demand=Resources(
                    cpu=now.cpu * (1 - growth * (14 - day)) * rng.uniform(0.9, 1.1),
                    memory=now.memory * (1 - growth * (14 - day)) * rng.uniform(0.98, 1.02),
                    disk=now.disk * (1 - growth * (14 - day)),
                ),
            )
            for day in range(15)
        )
        host = HostCapacity(
            total=total,
            used=Resources(cpu=0.0, memory=min(memory, total.memory), disk=min(disk, total.disk)),
            image_bytes_present=frozenset(w.image for w in ws if w.image),
        )
        hosts.append(
            (
                name,
                PlanInputs(
                    timestamp=NOW, host=host, workloads=ws, trend=trend, history_seconds=14 * DAY
                ),
            )
        )
    return hosts


# -- measurements ------------------------------------------------------------------------------


def timed(function: Callable[[], T]) -> tuple[float, T]:
    """Seconds one call takes, and its result."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def check_against_plan(
    hosts: Sequence[tuple[str, PlanInputs]],
    profile: Profile,
    settings: PlanSettings,
    sample: int,
    seed: int,
) -> int:
    """Compare ``sample`` hosts' fleet answers with ``plan.answer``; how many were checked."""
    fleet_answer = fleet_answers(hosts, profile, CONTAINER, VIEWS, settings)
    by_name = fleet_answer.by_name
    picked = random.Random(seed).sample(list(hosts), min(sample, len(hosts)))
    for name, inputs in picked:
        expected = headline([answer(inputs, profile, CONTAINER, v, settings) for v in VIEWS])
        if replace(expected, notes=()) != by_name[name].headline:
            raise BenchError(f"{name}: the fleet answer differs from plan.answer")
    return len(picked)


@dataclass
class FleetResult:
    """Measurement 1 at one fleet size."""

    hosts: int
    workloads: int
    setup_s: float
    answer_s: list[float]
    total_remaining: int | None
    full_hosts: int
    checked: int
    plan_answer_s: float | None = None  # plan.answer on every host, both views
    build_answers_s: float | None = None  # every host's full Answer objects

    @property
    def median_s(self) -> float:
        return statistics.median(self.answer_s)

    def summary(self) -> dict[str, Any]:
        """The numbers, for ``--json``."""
        return {
            "hosts": self.hosts,
            "workloads_per_host": self.workloads,
            "setup_s": self.setup_s,
            "fleet_answer_s": self.answer_s,
            "fleet_answer_median_s": self.median_s,
            "total_remaining": self.total_remaining,
            "full_hosts": self.full_hosts,
            "checked_against_plan_answer": self.checked,
            "plan_answer_every_host_s": self.plan_answer_s,
            "build_every_answer_s": self.build_answers_s,
        }


def measure_fleet(
    size: int, workloads: int, seed: int, repeat: int, profile: Profile, settings: PlanSettings
) -> tuple[FleetResult, list[tuple[str, PlanInputs]]]:
    """Build one fleet and time the single-shape fleet answer over it."""
    progress(f"1. building {size} hosts x {workloads} workloads ...")
    setup, hosts = timed(lambda: fleet(size, workloads, seed))
    checked = check_against_plan(hosts, profile, settings, 200, seed)
    runs = []
    result = None
    for _ in range(repeat):
        gc.collect()  # start each run from the same collector state
        seconds, result = timed(lambda: fleet_answers(hosts, profile, CONTAINER, VIEWS, settings))
        runs.append(seconds)
    assert result is not None
    measured = FleetResult(
        hosts=size,
        workloads=workloads,
        setup_s=setup,
        answer_s=runs,
        total_remaining=result.total_remaining,
        full_hosts=len(result.full),
        checked=checked,
    )
    if size <= 1000:
        measured.plan_answer_s, _ = timed(
            lambda: [
                headline([answer(inputs, profile, CONTAINER, v, settings) for v in VIEWS])
                for _name, inputs in hosts
            ]
        )
    else:
        measured.build_answers_s, _ = timed(lambda: [h.answers for h in result.hosts])
    return measured, hosts


@dataclass
class PackResult:
    """Measurement 2: three shapes over one fleet, the overflow on new hosts."""

    hosts: int
    uses_s: float
    pack_s: list[float]
    requested: dict[str, int]
    placed: dict[str, int]
    overflow: dict[str, int]
    placed_new: dict[str, int]
    unplaced: dict[str, int]
    hosts_used: int
    hosts_lower_bound: int
    new_hosts: int | None
    new_hosts_lower_bound: int | None
    new_hosts_bound: str | None

    @property
    def median_s(self) -> float:
        return statistics.median(self.pack_s)

    def summary(self) -> dict[str, Any]:
        """The numbers, for ``--json``."""
        return {**asdict(self), "pack_median_s": self.median_s}


def three_shapes() -> list[tuple[Profile, WorkloadKind]]:
    """web and cache as containers, db as a VM (guest OS and QEMU overhead added)."""
    return [
        (parse_profile("web=cpu=0.5,memory=512Mi,disk=1Gi"), CONTAINER),
        (parse_profile("db=cpu=2,memory=8Gi,disk=100Gi"), VM),
        (parse_profile("cache=cpu=1,memory=4Gi,disk=2Gi"), CONTAINER),
    ]


def measure_packing(
    hosts: Sequence[tuple[str, PlanInputs]],
    settings: PlanSettings,
    new_host: Resources,
    share: float,
) -> PackResult:
    """Pack the three shapes, each at ``share`` of what the fleet holds of it alone."""
    progress(f"2. packing three shapes over {len(hosts)} hosts ...")
    uses_s, uses = timed(lambda: [host_use(name, i, VIEWS, settings) for name, i in hosts])
    shapes = []
    for profile, kind in three_shapes():
        alone = answers_for_uses(uses, profile, kind, VIEWS, settings).total_remaining
        if alone is None:
            raise BenchError(f"{profile.name} is unbounded on the fleet")
        shapes.append((profile, kind, max(1, round(alone * share))))
    runs = []
    packing: Packing | None = None
    for _ in range(3):
        gc.collect()
        seconds, packing = timed(lambda: pack_fleet(uses, shapes, VIEWS, settings, new_host))
        runs.append(seconds)
    assert packing is not None
    return PackResult(
        hosts=len(hosts),
        uses_s=uses_s,
        pack_s=runs,
        requested=packing.requested,
        placed=packing.placed,
        overflow=packing.overflow,
        placed_new=packing.placed_new,
        unplaced=packing.unplaced,
        hosts_used=packing.hosts_used,
        hosts_lower_bound=packing.hosts_lower_bound,
        new_hosts=packing.new_host_count,
        new_hosts_lower_bound=packing.new_hosts_lower_bound,
        new_hosts_bound=packing.new_hosts_bound,
    )


@dataclass
class Instance:
    """One generated packing instance and how both ways of opening new hosts did."""

    family: str
    shapes: list[dict[str, Any]]
    lower_bound: int
    at_once: int
    one_by_one: int
    seconds: float
    costs: list[list[float]]  # per shape, one value per view and resource
    room: list[float]  # a new host's, likewise
    lp_bound: int | None = None  # --exact: the configuration LP's bound
    optimum: int | None = None  # --exact: the fewest hosts, when the solver proved it

    @property
    def ratio(self) -> float:
        return self.at_once / self.lower_bound

    @property
    def ratio_optimum(self) -> float | None:
        return None if self.optimum is None else self.at_once / self.optimum

    @property
    def ratio_one_by_one(self) -> float:
        return self.one_by_one / self.lower_bound


def jitter(rng: random.Random, value: float) -> float:
    """``value`` times a factor between 0.5 and 1.5."""
    return value * rng.uniform(0.5, 1.5)


def instance_shapes(rng: random.Random, family: str) -> list[tuple[Profile, WorkloadKind]]:
    """Three random shapes of one family."""

    def shape(name: str, cpu: float, memory: float, disk: float) -> Profile:
        size = Resources(cpu=round(cpu, 3), memory=float(round(memory)), disk=float(round(disk)))
        return Profile(name=name, demand=size, allocation=size)

    if family == "web/db/cache":
        return [
            (shape("web", jitter(rng, 0.5), jitter(rng, 512 * MIB), jitter(rng, GIB)), CONTAINER),
            (shape("db", jitter(rng, 2), jitter(rng, 8 * GIB), jitter(rng, 100 * GIB)), VM),
            (shape("cache", jitter(rng, 1), jitter(rng, 4 * GIB), jitter(rng, 2 * GIB)), CONTAINER),
        ]
    return [
        (shape("cpu-heavy", jitter(rng, 6), jitter(rng, 2 * GIB), jitter(rng, 5 * GIB)), CONTAINER),
        (
            shape("mem-heavy", jitter(rng, 0.5), jitter(rng, 24 * GIB), jitter(rng, 5 * GIB)),
            CONTAINER,
        ),
        (
            shape("disk-heavy", jitter(rng, 1), jitter(rng, 2 * GIB), jitter(rng, 600 * GIB)),
            CONTAINER,
        ),
    ]


def measure_instances(
    count: int, seed: int, settings: PlanSettings, new_host: Resources
) -> list[Instance]:
    """``count`` random instances per family, packed onto empty new hosts both ways."""
    progress(f"3. packing {2 * count} generated instances onto empty hosts ...")
    rng = random.Random(seed + 1)
    empty = HostCapacity(total=new_host, used=Resources())
    room = [usable(empty, view, settings) for view in VIEWS]
    found = []
    for family in ("web/db/cache", "complementary"):
        for _ in range(count):
            kinds = instance_shapes(rng, family)
            target = rng.randint(50, 500)  # roughly the hosts the instance should need
            weights = [rng.uniform(0.1, 1.0) for _ in kinds]
            shapes = []
            for (profile, kind), weight in zip(kinds, weights, strict=True):
                costs = shape_cost(profile, kind, VIEWS, settings).costs
                # The share of a new host one copy takes, on its most loaded resource.
                share = max(
                    cost.get(r) / space.get(r)
                    for cost, space in zip(costs, room, strict=True)
                    for r in RESOURCES
                    if space.get(r) > 0
                )
                number = max(1, round(target * weight / sum(weights) / share))
                shapes.append((profile, kind, number))
            seconds, at_once = timed(partial(pack_fleet, [], shapes, VIEWS, settings, new_host))
            one_by_one = pack_fleet([], shapes, VIEWS, settings, new_host, open_lower_bound=False)
            if not at_once.new_hosts_lower_bound:
                raise BenchError("a generated instance has no lower bound")
            if any(at_once.unplaced.values()):
                raise BenchError(f"a generated shape does not fit a new host: {at_once.unplaced}")
            found.append(
                Instance(
                    family=family,
                    shapes=[
                        {
                            "name": p.name,
                            "kind": k.value,
                            "count": n,
                            "cpu": p.demand.cpu,
                            "memory": p.demand.memory,
                            "disk": p.demand.disk,
                        }
                        for p, k, n in shapes
                    ],
                    lower_bound=at_once.new_hosts_lower_bound,
                    at_once=at_once.new_host_count or 0,
                    one_by_one=one_by_one.new_host_count or 0,
                    seconds=seconds,
                    costs=[
                        [x for c in shape_cost(p, k, VIEWS, settings).costs for x in _row(c)]
                        for p, k, _n in shapes
                    ],
                    room=[x for r in room for x in _row(r)],
                )
            )
    return found


def _row(values: Resources) -> list[float]:
    """A ``Resources`` as a list in ``RESOURCES`` order."""
    return [values.get(r) for r in RESOURCES]


def solve_exactly(instances: Sequence[Instance], seconds: float) -> bool:
    """Fill in each instance's configuration-LP bound and optimum; ``False`` without scipy.

    A host's configuration is how many copies of each shape it holds; the fewest hosts is
    an integer program over every configuration that fits (Gilmore and Gomory's model),
    solved by HiGHS through scipy when it is importable (it is no dependency of densityd).
    Its LP relaxation is a lower bound at least as strong as ``max_r ceil(...)``.
    """
    try:
        np: Any = importlib.import_module("numpy")
        optimize: Any = importlib.import_module("scipy.optimize")
    except ImportError:
        return False
    for instance in instances:
        costs, room = np.array(instance.costs), np.array(instance.room)
        counts = np.array([shape["count"] for shape in instance.shapes])
        most = [int(min(room[d] // c[d] for d in range(len(room)) if c[d] > 0)) for c in costs]
        grid = np.stack(
            np.meshgrid(*[np.arange(m + 1) for m in most], indexing="ij"), axis=-1
        ).reshape(-1, len(most))
        grid = grid[(grid @ costs <= room * (1 + 1e-12)).all(axis=1) & (grid.sum(axis=1) > 0)]
        ones = np.ones(len(grid))
        relaxed = optimize.linprog(ones, A_ub=-grid.T, b_ub=-counts, method="highs")
        instance.lp_bound = math.ceil(relaxed.fun - 1e-9)
        solved = optimize.milp(
            ones,
            constraints=optimize.LinearConstraint(grid.T, lb=counts, ub=np.inf),
            integrality=ones,
            options={"time_limit": seconds},
        )
        if solved.status == 0:  # proven optimal, not stopped by the time limit
            instance.optimum = round(solved.fun)
    return True


# -- report ------------------------------------------------------------------------------------


def progress(text: str) -> None:
    """A progress line on stderr, so that stdout holds only the results."""
    print(text, file=sys.stderr, flush=True)


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


# -- main --------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    """``1000,10000`` -> ``[1000, 10000]``."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of host counts: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("host counts must be at least 1")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(
        description="Time the planner's fleet answer and packing; measure packing quality."
    )
    parser.add_argument(
        "--hosts", type=parse_sizes, default=[1000, 10000], help="fleet sizes (1000,10000)"
    )
    parser.add_argument("--workloads", type=int, default=20, help="per host (20)")
    parser.add_argument("--repeat", type=int, default=5, help="timed fleet answers per size (5)")
    parser.add_argument(
        "--instances", type=int, default=10, help="generated packing instances per family (10)"
    )
    parser.add_argument(
        "--new-host",
        default="cpu=64,memory=256Gi,disk=4T",
        help="the new host's size (cpu=64,memory=256Gi,disk=4T)",
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="also solve each generated instance exactly (needs scipy, no densityd dependency)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All three measurements; the JSON document."""
    started = datetime.now(UTC)
    host: dict[str, Any] = {
        **machine_basics(),
        "python": platform.python_version(),
        "densityd": densityd_version,
        "loadavg_at_start": loadavg(),
    }
    print(
        f"machine: {host['cpus']} cores ({host['cpu_model']}), kernel {host['kernel']}, "
        f"Python {host['python']}, densityd {host['densityd']}; "
        f"load average {' '.join(host['loadavg_at_start'])}"
    )
    settings = PlanSettings()
    new_host = _new_host(args.new_host)
    web = parse_profile("web=cpu=0.5,memory=512Mi")
    fleets, packs = [], []
    for size in args.hosts:
        result, hosts = measure_fleet(size, args.workloads, args.seed, args.repeat, web, settings)
        fleets.append(result)
        packs.append(measure_packing(hosts, settings, new_host, 0.4))
        del hosts
        gc.collect()
    instances = measure_instances(args.instances, args.seed, settings, new_host)
    if args.exact:
        progress(f"3. solving the {len(instances)} instances exactly ...")
        if not solve_exactly(instances, 20.0):
            print("--exact: scipy is not importable here; skipped", file=sys.stderr)
    print_report(fleets, packs, instances)
    return {
        "schema": "densityd.bench.fleet/v1",
        "date": started.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "machine": host,
        "new_host": asdict(new_host),
        "fleets": [f.summary() for f in fleets],
        "packing": [p.summary() for p in packs],
        "quality": {
            family: family_stats(instances, family)
            for family in ("web/db/cache", "complementary")
            if args.instances
        },
        "instances": [{**asdict(i), "ratio": i.ratio} for i in instances],
        "targets": targets(fleets, instances),
        "loadavg_at_end": loadavg(),
    }


def _new_host(text: str) -> Resources:
    """``--new-host`` as Resources; a resource left out is 0 (the new host has none of it)."""
    partial = parse_resources(text, option="--new-host", kind="capacity")
    return Resources(**{r.value: partial.get(r) or 0.0 for r in RESOURCES})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 when it could not measure what it meant to."""
    args = build_parser().parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress interleaves
    if min(args.workloads, args.repeat) < 1 or args.instances < 0:
        print("--workloads, --repeat: at least 1; --instances: at least 0", file=sys.stderr)
        return 2
    return run_benchmark(lambda: run(args), args.json)


if __name__ == "__main__":
    sys.exit(main())
