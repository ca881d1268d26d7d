"""The fleet benchmark's three measurements, each returning its numbers.

Helpers of ``fleet.py``, not a benchmark: the single-shape fleet answer over one fleet (checked
against ``plan.answer`` first), the three-shape packing on the fleet with its overflow onto new
hosts, and the packing quality on random three-shape instances packed onto empty new hosts,
both ways, optionally solved exactly as an integer program over host configurations (scipy).
"""

from __future__ import annotations

import gc
import importlib
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any, TypeVar

from _common import BenchError, progress
from _fleet_synthetic import CONTAINER, VM, fleet

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
    View,
)
from densityd.plan.core.packing import Packing
from densityd.plan.core.quantity import parse_profile
from densityd.plan.core.slots import answer, headline, usable

VIEWS = (View.ALLOCATION, View.DEMAND)
T = TypeVar("T")


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
