"""Packing several shapes at once: hand-made instances with known placements, and properties.

The properties are checked in exact rationals: no host over capacity in any dimension,
every copy accounted for, never fewer hosts than the lower bound, and a copy left over only
where no host has room for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from densityd.plan.core.model import GIB, Resources
from densityd.plan.core.packing import Demand, Host, Packing, Placement, Vector, pack

CPU_MEMORY = ("cpu", "memory")


def counts(packing: Packing) -> dict[str, dict[str, int]]:
    """Host name -> copies per shape, existing and new hosts alike."""
    return {p.host: p.counts for p in (*packing.placements, *packing.new_hosts)}


# -- hand-made instances -------------------------------------------------------------------


def test_one_host_one_shape_fills_to_the_binding_resource() -> None:
    packing = pack(
        [("a", Resources(cpu=4, memory=8 * GIB, disk=100 * GIB))],
        [("web", Resources(cpu=1, memory=1 * GIB, disk=10 * GIB), 10)],
    )
    assert counts(packing) == {"a": {"web": 4}}
    assert packing.placed == {"web": 4}
    assert packing.overflow == {"web": 6}
    assert packing.unplaced == {"web": 6}
    assert packing.placed_new == {"web": 0}
    assert packing.placements[0].left == (0.0, 4.0 * GIB, 60.0 * GIB)
    assert packing.new_host_count is None
    assert packing.new_hosts_lower_bound is None


def test_each_copy_goes_where_its_demand_aligns_with_the_room_left() -> None:
    # a has CPU to spare, b memory: the memory-heavy db goes to b, the CPU-heavy web to a.
    packing = pack(
        [("a", (8.0, 2.0)), ("b", (2.0, 8.0))],
        [("web", (2.0, 1.0), 1), ("db", (1.0, 4.0), 1)],
        dims=CPU_MEMORY,
    )
    assert counts(packing) == {"a": {"web": 1}, "b": {"db": 1}}


def test_copies_spread_over_equal_hosts_first_host_first_on_ties() -> None:
    # Each copy lowers its host's score, so the next one goes to the other host.
    packing = pack(
        [("a", (4.0, 4.0)), ("b", (4.0, 4.0))], [("web", (1.0, 1.0), 5)], dims=CPU_MEMORY
    )
    assert counts(packing) == {"a": {"web": 3}, "b": {"web": 2}}
    assert packing.hosts_used == 2
    assert packing.hosts_lower_bound == 2  # 5 cores need more than one host of 4


def test_largest_shape_first_whatever_the_order_given() -> None:
    # Small copies first would take the whole host and leave the big one out.
    packing = pack([("a", (3.0,))], [("small", (1.0,), 3), ("big", (2.0,), 1)], dims=("cpu",))
    assert counts(packing) == {"a": {"small": 1, "big": 1}}
    assert packing.overflow == {"small": 2, "big": 0}


def test_a_copy_larger_than_every_host_fits_nowhere() -> None:
    packing = pack(
        [("a", (4.0, 16.0)), ("b", (16.0, 4.0))],
        [("huge", (8.0, 8.0), 3), ("web", (1.0, 1.0), 2)],
        dims=CPU_MEMORY,
    )
    assert packing.placed == {"huge": 0, "web": 2}
    assert packing.unplaced == {"huge": 3, "web": 0}
    assert packing.hosts_used == 2  # the two webs spread


def test_the_overflow_goes_to_new_hosts_and_too_large_copies_nowhere() -> None:
    packing = pack(
        [("a", (2.0, 2.0))],
        [("web", (1.0, 1.0), 10), ("huge", (8.0, 1.0), 2)],
        new_host=(4.0, 16.0),
        dims=CPU_MEMORY,
    )
    assert packing.placed == {"web": 2, "huge": 0}
    assert packing.overflow == {"web": 8, "huge": 2}
    assert packing.placed_new == {"web": 8, "huge": 0}
    assert packing.unplaced == {"web": 0, "huge": 2}  # larger than an empty new host
    assert packing.new_host_count == 2
    assert packing.new_hosts_lower_bound == 2  # 8 cores of webs over 4-core hosts
    assert packing.new_hosts_bound == "cpu"
    assert packing.new_hosts_gap == 0
    assert packing.new_hosts_ratio == 1.0


def test_new_hosts_from_empty_open_the_lower_bound_at_once_and_spread() -> None:
    packing = pack([], [("web", (1.0, 2.0), 10)], new_host=(4.0, 16.0), dims=CPU_MEMORY)
    # max(ceil(10 / 4), ceil(20 / 16)) = 3 hosts, filled in turn.
    assert packing.new_hosts_lower_bound == 3
    assert counts(packing) == {"new-1": {"web": 4}, "new-2": {"web": 3}, "new-3": {"web": 3}}
    assert all(p.new for p in packing.new_hosts)
    assert packing.new_hosts[0].left == (0.0, 8.0)
    assert packing.hosts_used == 0
    assert packing.hosts_lower_bound == 0


def test_new_hosts_one_at_a_time_fill_each_before_the_next() -> None:
    packing = pack(
        [], [("web", (1.0, 2.0), 10)], new_host=(4.0, 16.0), dims=CPU_MEMORY, open_lower_bound=False
    )
    assert counts(packing) == {"new-1": {"web": 4}, "new-2": {"web": 4}, "new-3": {"web": 2}}


def test_complementary_shapes_share_hosts_when_the_bound_is_opened_at_once() -> None:
    # 4 hosts hold it exactly: per host 4 cpu-heavy and 4 memory-heavy copies use 20 of 20
    # on both resources. Filled one by one, each host takes the larger shape only.
    demands = [("cpu-heavy", (4.0, 1.0), 16), ("memory-heavy", (1.0, 4.0), 16)]
    at_once = pack([], demands, new_host=(20.0, 20.0), dims=CPU_MEMORY)
    one_by_one = pack([], demands, new_host=(20.0, 20.0), dims=CPU_MEMORY, open_lower_bound=False)
    assert at_once.new_hosts_lower_bound == 4
    assert at_once.new_host_count == 4
    assert one_by_one.new_host_count is not None and one_by_one.new_host_count > 4


def test_the_lower_bound_is_the_most_loaded_resource_rounded_up() -> None:
    packing = pack(
        [],
        [("a", (3.0, 1.0, 0.0), 5), ("b", (1.0, 6.0, 0.0), 2)],
        new_host=(10.0, 10.0, 1.0),
    )
    # cpu: 17 / 10 -> 2; memory: 17 / 10 -> 2; disk costs nothing: left out.
    assert packing.new_hosts_lower_bound == 2
    assert packing.new_host_count is not None and packing.new_host_count >= 2


def test_the_lower_bound_on_unequal_hosts_takes_the_largest_first() -> None:
    packing = pack(
        [("small", (2.0,)), ("large", (10.0,)), ("medium", (5.0,))],
        [("x", (1.0,), 12)],
        dims=("cpu",),
    )
    # The large host takes copies until it is level with the medium one, then they
    # alternate; the twelfth copy finds all three level at 2 left and goes to the host given
    # first.
    assert counts(packing) == {"small": {"x": 1}, "large": {"x": 8}, "medium": {"x": 3}}
    assert packing.hosts_lower_bound == 2  # 10 + 5 >= 12, 10 alone is not
    assert packing.hosts_bound == "cpu"
    assert packing.hosts_used == 3


def test_zero_cost_resources_never_bind() -> None:
    packing = pack(
        [("a", Resources(cpu=2, memory=0, disk=0))],
        [("tiny", Resources(cpu=0.5, memory=0, disk=0), 10)],
    )
    assert packing.placed == {"tiny": 4}


def test_a_shape_that_costs_nothing_goes_to_one_host_all_at_once() -> None:
    packing = pack(
        [("a", (1.0, 1.0)), ("b", (1.0, 1.0))], [("free", (0.0, 0.0), 1000)], dims=CPU_MEMORY
    )
    assert counts(packing) == {"a": {"free": 1000}}
    empty = pack([], [("free", (0.0, 0.0), 5)], new_host=(1.0, 1.0), dims=CPU_MEMORY)
    assert empty.new_hosts_lower_bound == 0
    assert empty.new_host_count == 1
    assert empty.new_hosts_ratio is None


def test_capacity_is_exact() -> None:
    # 512 x 2 is 1024 exactly: both fit. The float 0.1 is a little more than a tenth: ten of
    # them are more than 1.0, so nine fit.
    assert pack([("a", (1024.0,))], [("x", (512.0,), 5)], dims=("memory",)).placed == {"x": 2}
    assert pack([("a", (1.0,))], [("x", (0.1,), 20)], dims=("cpu",)).placed == {"x": 9}


def test_a_one_time_cost_is_paid_once_per_host_unless_the_host_holds_it() -> None:
    image = Demand("app", cost=(1.0,), count=20, once=(5.0,), once_key="registry/app:1")
    assert pack([Host("a", (10.0,))], [image], dims=("disk",)).placed == {"app": 5}
    holds = Host("a", (10.0,), paid=frozenset({"registry/app:1"}))
    assert pack([holds], [image], dims=("disk",)).placed == {"app": 10}
    # Two shapes with the same image pay it once: 5 + 2 x 1 + 3 x 1 = 10.
    other = Demand("worker", cost=(1.0,), count=3, once=(5.0,), once_key="registry/app:1")
    small = Demand("app", cost=(1.0,), count=2, once=(5.0,), once_key="registry/app:1")
    assert pack([Host("a", (10.0,))], [small, other], dims=("disk",)).placed == {
        "app": 2,
        "worker": 3,
    }


def test_a_one_time_cost_larger_than_the_room_keeps_even_free_copies_out() -> None:
    image = Demand("app", cost=(0.0,), count=3, once=(5.0,))
    assert pack([Host("a", (4.0,))], [image], dims=("disk",)).placed == {"app": 0}


@pytest.mark.parametrize(
    ("hosts", "demands", "message"),
    [
        ([("a", (-1.0,))], [("x", (1.0,), 1)], "not negative"),
        ([("a", (math.nan,))], [("x", (1.0,), 1)], "finite"),
        ([("a", (1.0, 2.0))], [("x", (1.0,), 1)], "2 values for 1 dimensions"),
        ([("a", (1.0,)), ("a", (2.0,))], [("x", (1.0,), 1)], "host 'a' given twice"),
        ([("a", (1.0,))], [("x", (1.0,), 1), ("x", (2.0,), 1)], "shape 'x' given twice"),
        ([("a", (1.0,))], [("x", (1.0,), -1)], "whole number"),
        ([("a", (1.0,))], [("x", (math.inf,), 1)], "finite"),
    ],
)
def test_bad_input_is_refused(
    hosts: list[tuple[str, Vector]], demands: list[tuple[str, Vector, int]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        pack(hosts, demands, dims=("cpu",))


def test_one_time_costs_under_one_key_must_agree() -> None:
    demands = [
        Demand("a", (1.0,), 1, once=(2.0,), once_key="img"),
        Demand("b", (1.0,), 1, once=(3.0,), once_key="img"),
    ]
    with pytest.raises(ValueError, match="'img' given with different values"):
        pack([("h", (10.0,))], demands, dims=("disk",))


def test_resources_need_three_dimensions() -> None:
    with pytest.raises(ValueError, match="Resources has 3 values"):
        pack([("a", Resources(cpu=1))], [("x", (1.0,), 1)], dims=("cpu",))


# -- properties ----------------------------------------------------------------------------

WIDTH = 3
# Whole numbers, small binary fractions and awkward decimals, zero included: exact fits,
# zero-cost dimensions and rounding all come up.
values = st.one_of(
    st.integers(0, 64).map(float),
    st.integers(0, 64).map(lambda n: n / 8),
    st.sampled_from([0.1, 0.2, 0.3, 0.7, 1e-3, 1 / 3]),
    st.floats(0, 100, allow_nan=False, allow_infinity=False),
)
vectors = st.tuples(values, values, values)
costs = st.one_of(vectors, st.tuples(values, st.just(0.0), values))


@st.composite
def demands(draw: st.DrawFn) -> list[Demand]:
    names = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True))
    keys = ("", "img-1", "img-2")
    onces = {key: draw(st.tuples(st.just(0.0), st.just(0.0), values)) for key in keys}
    shapes = []
    for name in names:
        key = draw(st.sampled_from(keys))
        shapes.append(
            Demand(
                name=name,
                cost=draw(costs),
                count=draw(st.integers(0, 40)),
                once=onces[key] if key else draw(st.none() | st.just(onces[""])),
                once_key=key,
            )
        )
    return shapes


@st.composite
def fleets(draw: st.DrawFn) -> list[Host]:
    count = draw(st.integers(0, 6))
    return [
        Host(
            name=f"h{i}",
            free=draw(vectors),
            paid=frozenset(draw(st.lists(st.sampled_from(["img-1", "img-2"]), max_size=2))),
        )
        for i in range(count)
    ]


def exact(vector: Resources | Vector | None) -> list[Fraction]:
    assert vector is not None and not isinstance(vector, Resources)
    return [Fraction(v) for v in vector]


def used_on(placement: Placement, shapes: Sequence[Demand], paid: frozenset[str]) -> list[Fraction]:
    """What the copies on one host take, exactly, with the one-time costs it had to pay."""
    total = [Fraction(0)] * WIDTH
    keys: dict[str, list[Fraction]] = {}
    for shape in shapes:
        number = placement.counts.get(shape.name, 0)
        if number == 0:
            continue
        total = [t + number * c for t, c in zip(total, exact(shape.cost), strict=True)]
        key = shape.once_key or shape.name
        if shape.once is not None and key not in paid:
            keys[key] = exact(shape.once)
    for once in keys.values():
        total = [t + o for t, o in zip(total, once, strict=True)]
    return total


def room_for_one(
    free: Sequence[Fraction], used: Sequence[Fraction], shape: Demand, paid: bool
) -> bool:
    once = exact(shape.once) if shape.once is not None and not paid else [Fraction(0)] * WIDTH
    return all(
        u + c + o <= f for f, u, c, o in zip(free, used, exact(shape.cost), once, strict=True)
    )


@settings(max_examples=300, deadline=None)
@given(fleets(), demands(), st.none() | vectors, st.booleans())
def test_packing_properties(
    hosts: list[Host], shapes: list[Demand], new_host: Vector | None, at_once: bool
) -> None:
    packing = pack(hosts, shapes, new_host=new_host, open_lower_bound=at_once)
    names = [s.name for s in shapes]
    requested = {s.name: s.count for s in shapes}
    assert packing.requested == requested
    for name in names:
        assert (
            packing.placed[name] + packing.placed_new[name] + packing.unplaced[name]
            == (requested[name])
        )
        assert packing.overflow[name] == requested[name] - packing.placed[name]
        if new_host is None:
            assert packing.unplaced[name] == packing.overflow[name]
            assert packing.placed_new[name] == 0
    by_name = {h.name: h for h in hosts}
    on_hosts = {p.host: p for p in packing.placements}
    for host in hosts:
        placement = on_hosts.get(host.name, Placement(host.name, {}, ()))
        used = used_on(placement, shapes, host.paid)
        free = exact(host.free)
        assert all(u <= f for u, f in zip(used, free, strict=True)), (host, placement)
        if placement.counts:
            assert placement.left == tuple(float(f - u) for f, u in zip(free, used, strict=True))
        # Copies are left over only where no host has room for one more.
        for shape in shapes:
            if packing.overflow[shape.name]:
                key = shape.once_key or shape.name
                paid = key in host.paid or any(
                    placement.counts.get(s.name) and (s.once_key or s.name) == key for s in shapes
                )
                assert not room_for_one(free, used, shape, paid), (host.name, shape.name)
    assert set(on_hosts) <= set(by_name)
    assert all(p.counts and all(c > 0 for c in p.counts.values()) for p in packing.placements)
    assert packing.hosts_used >= packing.hosts_lower_bound
    if new_host is None:
        assert packing.new_hosts == ()
        return
    for placement in packing.new_hosts:
        used = used_on(placement, shapes, frozenset())
        assert all(u <= f for u, f in zip(used, exact(new_host), strict=True))
    assert packing.new_hosts_lower_bound is not None
    assert len(packing.new_hosts) >= packing.new_hosts_lower_bound
    # The bound, recomputed: the overflow that fits an empty new host, resource by resource.
    empty = [Fraction(0)] * WIDTH
    fits = {s.name: room_for_one(exact(new_host), empty, s, False) for s in shapes}
    for shape in shapes:
        if packing.unplaced[shape.name]:
            assert not fits[shape.name]
    need = [
        sum(
            (packing.overflow[s.name] * exact(s.cost)[i] for s in shapes if fits[s.name]),
            Fraction(0),
        )
        for i in range(WIDTH)
    ]
    bound = max(
        (math.ceil(n / cap) for n, cap in zip(need, exact(new_host), strict=True) if n > 0),
        default=0,
    )
    assert packing.new_hosts_lower_bound == bound


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=12),
    st.floats(0.01, 100),
    st.integers(0, 400),
)
def test_each_copy_goes_to_the_roomiest_host(frees: list[float], cost: float, count: int) -> None:
    # One resource, one shape: the score is the room left, so when a host took its last copy
    # it had at least as much room as any host that could still take one has now.
    packing = pack(
        [(f"h{i}", (free,)) for i, free in enumerate(frees)], [("x", (cost,), count)], dims=("cpu",)
    )
    took = list(packing.placements)
    left = {p.host: p.left[0] for p in took}
    could = [
        left.get(f"h{i}", free) for i, free in enumerate(frees) if left.get(f"h{i}", free) >= cost
    ]
    tolerance = 1e-9 * max(frees)
    for placement in took:
        assert all(placement.left[0] + cost >= room - tolerance for room in could)
    if packing.overflow["x"]:
        assert could == []
