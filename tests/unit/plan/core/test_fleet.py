"""The fleet answer: per host exactly what ``plan.answer`` says, summed and sorted; and the
packing of several shapes over hosts built from the same inputs.

The fast path repeats ``plan.answer``'s arithmetic; the generated comparison below is what
keeps the two equal when either changes.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from densityd.model import WorkloadKind
from densityd.plan.core.cost import GUEST_OS_BASELINES, workload_cost
from densityd.plan.core.fleet import (
    answers_for_uses,
    fleet_answers,
    host_answer,
    host_use,
    pack_fleet,
    shape_cost,
)
from densityd.plan.core.model import (
    GIB,
    MIB,
    RESOURCES,
    Answer,
    HostCapacity,
    PlanInputs,
    PlanSettings,
    Profile,
    Resource,
    Resources,
    TrendPoint,
    View,
    WorkloadDemand,
)
from densityd.plan.core.slots import answer, headline
from tests.unit.plan.core import strategies
from tests.unit.plan.core.strategies import Numbers

DAY = 86400.0
NOW = 1_767_272_820.0
CONTAINER = WorkloadKind.CONTAINER
BOTH = (View.ALLOCATION, View.DEMAND)

# -- generated inputs ----------------------------------------------------------------------

# Whole bytes and millicores, and arbitrary floats (a buffer of 15 % makes any float): sums
# of the latter depend on their order, which is what the comparison must catch.
memory_bytes = st.one_of(
    st.integers(0, 64 * GIB).map(float), st.floats(0, 64 * GIB, allow_nan=False)
)
disk_bytes = st.one_of(
    st.integers(0, 512 * GIB).map(float), st.floats(0, 512 * GIB, allow_nan=False)
)
cores = st.one_of(
    st.integers(0, 64_000).map(lambda millicores: millicores / 1000), st.floats(0, 64)
)
kinds = st.sampled_from(list(WorkloadKind))
view_lists = st.sampled_from([[View.ALLOCATION], [View.DEMAND], list(BOTH), list(BOTH)[::-1]])
NUMBERS = Numbers(cores=cores, memory_bytes=memory_bytes, disk_bytes=disk_bytes)
resources = partial(strategies.resources, NUMBERS)
workloads = partial(strategies.workloads, NUMBERS)
profiles = partial(strategies.profiles, NUMBERS)


@st.composite
def trends(draw: st.DrawFn) -> tuple[TrendPoint, ...]:
    count = draw(st.integers(0, 16))
    step = draw(st.sampled_from([60.0, 3600.0, DAY]))
    start = draw(st.one_of(resources(), st.just(Resources(1.0, GIB, 10 * GIB))))
    slope = draw(st.one_of(resources(), st.just(Resources())))  # flat, or rising
    noise = draw(st.booleans())
    points = []
    for i in range(count):
        wobble = draw(resources()) if noise else Resources()
        points.append(
            TrendPoint(
                timestamp=NOW - (count - i) * step,
                demand=Resources(
                    cpu=start.cpu + i * slope.cpu / 10 + wobble.cpu / 100,
                    memory=start.memory + i * slope.memory / 10 + wobble.memory / 100,
                    disk=start.disk + i * slope.disk / 10 - wobble.disk / 100,
                ),
            )
        )
    return tuple(points)


@st.composite
def inputs(draw: st.DrawFn) -> PlanInputs:
    total = Resources(
        cpu=float(draw(st.integers(1, 256))),
        memory=float(draw(st.integers(1 * GIB, 1024 * GIB))),
        disk=draw(st.floats(1 * GIB, 16384 * GIB)),
    )
    host = HostCapacity(
        total=total,
        used=Resources(
            cpu=0.0, memory=draw(st.floats(0, total.memory)), disk=draw(st.floats(0, total.disk))
        ),
        declared=frozenset(draw(st.sets(st.sampled_from(RESOURCES)))),
        image_bytes_present=frozenset(draw(st.sets(st.sampled_from(["app:1", "db:2"])))),
    )
    return PlanInputs(
        timestamp=NOW,
        host=host,
        workloads=tuple(draw(st.lists(workloads(), max_size=12))),
        trend=draw(trends()),
        history_seconds=draw(st.sampled_from([0.0, 3600.0, 14 * DAY])),
    )


@st.composite
def plan_settings(draw: st.DrawFn) -> PlanSettings:
    return PlanSettings(
        reserved=Resources(
            cpu=draw(st.sampled_from([0.0, 0.5, 2.0])),
            memory=float(draw(st.integers(0, 2 * GIB))),
            disk=float(draw(st.integers(0, 10 * GIB))),
        ),
        reserved_given=frozenset(draw(st.sets(st.sampled_from(RESOURCES)))),
        ratio=Resources(
            cpu=draw(st.sampled_from([1.0, 1.5, 4.0, 16.0])),
            memory=draw(st.sampled_from([1.0, 1.2])),
            disk=draw(st.sampled_from([1.0, 2.0])),
        ),
        target_fill=draw(st.floats(0.1, 1.0)),
        container_shim_bytes=float(draw(st.integers(0, 64 * MIB))),
        qemu_base_bytes=float(draw(st.integers(0, 256 * MIB))),
        qemu_ram_divisor=draw(st.sampled_from([256.0, 512.0, 1024.0])),
        qemu_per_vcpu_bytes=float(draw(st.integers(0, 16 * MIB))),
        guest_os=draw(st.sampled_from(sorted(GUEST_OS_BASELINES))),
        min_trend_seconds=draw(st.sampled_from([0.0, 600.0, 2 * DAY])),
    )


def without_notes(result: Answer) -> Answer:
    return dataclasses.replace(result, notes=())


@settings(max_examples=400, deadline=None)
@given(inputs(), profiles(), kinds, view_lists, plan_settings())
def test_each_host_gets_exactly_what_plan_answer_gives(
    host: PlanInputs,
    profile: Profile,
    kind: WorkloadKind,
    views: list[View],
    plan_settings: PlanSettings,
) -> None:
    expected = [answer(host, profile, kind, view, plan_settings) for view in views]
    result = host_answer(
        host_use("h", host, views, plan_settings), shape_cost(profile, kind, views, plan_settings)
    )
    assert result.answers == tuple(without_notes(a) for a in expected)
    stricter = headline(expected)
    assert result.headline == without_notes(stricter)
    assert (result.remaining, result.bound, result.view) == (
        stricter.remaining,
        stricter.bound,
        stricter.view,
    )
    assert result.remaining_by_view == tuple(a.remaining for a in expected)
    assert result.bound_by_view == tuple(a.bound for a in expected)
    demand = [a for a in expected if a.view is View.DEMAND]
    assert result.time_to_full_seconds == (demand[0].time_to_full_seconds if demand else None)


@settings(max_examples=100, deadline=None)
@given(st.lists(inputs(), max_size=6), profiles(), kinds, view_lists, plan_settings())
def test_the_fleet_total_is_the_sum_over_hosts(
    hosts: list[PlanInputs],
    profile: Profile,
    kind: WorkloadKind,
    views: list[View],
    plan_settings: PlanSettings,
) -> None:
    named = [(f"host-{i}", h) for i, h in enumerate(hosts)]
    fleet = fleet_answers(named, profile, kind, views, plan_settings)
    expected = {
        name: headline([answer(h, profile, kind, view, plan_settings) for view in views])
        for name, h in named
    }
    assert fleet.headlines == {name: without_notes(a) for name, a in expected.items()}
    counts = [a.remaining for a in expected.values()]
    total = None if None in counts else sum(c for c in counts if c is not None)
    assert fleet.total_remaining == total
    for i, view in enumerate(views):
        per_view = [fleet.by_name[name].remaining_by_view[i] for name, _ in named]
        assert fleet.total_by_view[view] == (
            None if None in per_view else sum(c for c in per_view if c is not None)
        )
    keys = [(h.remaining is None, h.remaining or 0) for h in fleet.hosts]
    assert keys == sorted(keys)
    assert fleet.views == tuple(views)
    assert fleet.notes == tuple(
        dict.fromkeys(
            note for view in views for note in workload_cost(profile, kind, view, plan_settings)[2]
        )
    )


# -- hand-made fleets ----------------------------------------------------------------------


def a_host(
    cores: float,
    memory: float,
    disk: float = 1000 * GIB,
    workloads: tuple[WorkloadDemand, ...] = (),
    trend: tuple[TrendPoint, ...] = (),
) -> PlanInputs:
    """A host with nothing measured but its workloads; no reserve in the settings below."""
    return PlanInputs(
        timestamp=NOW,
        host=HostCapacity(total=Resources(cpu=cores, memory=memory, disk=disk), used=Resources()),
        workloads=workloads,
        trend=trend,
    )


PLAIN = PlanSettings(
    reserved=Resources(),
    ratio=Resources(cpu=1.0, memory=1.0, disk=1.0),
    target_fill=1.0,
    container_shim_bytes=0.0,
)
WEB = Profile(
    name="web",
    demand=Resources(cpu=1.0, memory=1 * GIB, disk=0.0),
    allocation=Resources(cpu=1.0, memory=1 * GIB, disk=0.0),
)


def growing(per_day: float, days: int = 8) -> tuple[TrendPoint, ...]:
    """Total demand whose memory grows by ``per_day`` bytes a day."""
    return tuple(
        TrendPoint(
            timestamp=NOW - (days - i) * DAY,
            demand=Resources(cpu=1.0, memory=GIB + i * per_day, disk=0.0),
        )
        for i in range(days)
    )


def test_hosts_come_closest_to_full_first_with_the_binding_resource() -> None:
    busy = WorkloadDemand(
        kind=CONTAINER, id="b", name="busy", demand=Resources(cpu=6.0, memory=2 * GIB)
    )
    fleet = fleet_answers(
        [
            ("roomy", a_host(16, 64 * GIB)),
            ("busy", a_host(8, 64 * GIB, workloads=(busy,))),
            ("small", a_host(4, 2 * GIB)),
            ("filling", a_host(4, 2 * GIB, trend=growing(GIB / 4))),
        ],
        WEB,
        CONTAINER,
        BOTH,
        PLAIN,
    )
    # Three hosts have 2 slots left: the one filling up comes first, then by name.
    assert [(h.name, h.remaining, h.bound) for h in fleet.hosts] == [
        ("filling", 2, Resource.MEMORY),
        ("busy", 2, Resource.CPU),
        ("small", 2, Resource.MEMORY),
        ("roomy", 16, Resource.CPU),
    ]
    assert fleet.total_remaining == 22
    assert fleet.total_by_view == {View.ALLOCATION: 22, View.DEMAND: 22}
    assert fleet.full == ()
    # 2 GiB of memory free (no workload, nothing measured), used up at a quarter GiB a day.
    assert fleet.by_name["filling"].time_to_full_seconds == pytest.approx(8 * DAY)
    assert fleet.by_name["small"].time_to_full_seconds is None


def test_one_unbounded_host_makes_the_total_unbounded() -> None:
    nothing = Profile(name="nothing", demand=Resources(), allocation=Resources())
    fleet = fleet_answers(
        [("a", a_host(4, 4 * GIB)), ("b", a_host(4, 4 * GIB))], nothing, CONTAINER, BOTH, PLAIN
    )
    assert fleet.total_remaining is None
    assert fleet.unbounded == ("a", "b")
    assert all(h.bound is None for h in fleet.hosts)


def test_an_empty_fleet_has_no_slots() -> None:
    fleet = fleet_answers([], WEB, CONTAINER, BOTH, PLAIN)
    assert fleet.total_remaining == 0
    assert fleet.hosts == ()


def test_a_host_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="host 'a' given twice"):
        fleet_answers([("a", a_host(1, GIB)), ("a", a_host(2, GIB))], WEB, CONTAINER, BOTH, PLAIN)


def test_no_view_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one view"):
        fleet_answers([("a", a_host(1, GIB))], WEB, CONTAINER, [], PLAIN)


def test_host_uses_serve_several_shapes() -> None:
    uses = [host_use("a", a_host(8, 8 * GIB), BOTH, PLAIN)]
    shape = Resources(cpu=4.0, memory=GIB)
    big = dataclasses.replace(WEB, name="big", demand=shape, allocation=shape)
    assert answers_for_uses(uses, WEB, CONTAINER, BOTH, PLAIN).total_remaining == 8
    assert answers_for_uses(uses, big, CONTAINER, BOTH, PLAIN).total_remaining == 2


def test_packing_one_shape_on_one_host_matches_the_answer() -> None:
    web = WorkloadDemand(
        kind=CONTAINER,
        id="w",
        name="web-1",
        demand=Resources(cpu=0.5, memory=GIB, disk=GIB),
        cpu_limit=1.0,
        memory_limit=2 * GIB,
        disk_limit=10 * GIB,
    )
    host = a_host(8, 16 * GIB, 100 * GIB, workloads=(web, web))
    use = host_use("local", host, BOTH, PLAIN)
    expected = host_answer(use, shape_cost(WEB, CONTAINER, BOTH, PLAIN))
    packing = pack_fleet([use], [(WEB, CONTAINER, 100)], BOTH, PLAIN)
    assert expected.remaining == 6  # allocation: 8 - 2 x 1 cores
    assert packing.placed == {"web": expected.remaining}
    assert packing.dims == (
        "allocation cpu",
        "allocation memory",
        "allocation disk",
        "demand cpu",
        "demand memory",
        "demand disk",
    )


def test_packing_pays_an_image_once_per_host_that_lacks_it() -> None:
    app = dataclasses.replace(
        WEB, demand=Resources(cpu=0.0, memory=0.0, disk=GIB), image="app:1", image_bytes=5 * GIB
    )
    app = dataclasses.replace(app, allocation=app.demand)
    lacking = a_host(64, 64 * GIB, 10 * GIB)
    holding = dataclasses.replace(
        lacking, host=dataclasses.replace(lacking.host, image_bytes_present=frozenset({"app:1"}))
    )
    uses = [host_use("lacking", lacking, BOTH, PLAIN), host_use("holding", holding, BOTH, PLAIN)]
    packing = pack_fleet(uses, [(app, CONTAINER, 100)], BOTH, PLAIN)
    assert {p.host: p.counts["web"] for p in packing.placements} == {"lacking": 5, "holding": 10}


def test_new_hosts_get_their_usable_room_per_view() -> None:
    reserve = dataclasses.replace(PLAIN, reserved=Resources(cpu=1.0), target_fill=0.5)
    packing = pack_fleet(
        [], [(WEB, CONTAINER, 10)], BOTH, reserve, new_host=Resources(cpu=9, memory=64 * GIB)
    )
    # (9 - 1) x 0.5 = 4 cores per new host in both views (ratios of 1): 10 webs need 3.
    assert packing.new_host == (4.0, 32.0 * GIB, 0.0, 4.0, 32.0 * GIB, 0.0)
    assert packing.new_hosts_lower_bound == 3
    assert packing.new_host_count == 3
    assert packing.placed_new == {"web": 10}
