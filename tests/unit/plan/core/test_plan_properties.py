"""Properties of answers over generated hosts, workloads, shapes and settings.

More capacity never gives fewer slots; one more workload never gives more; the slots promised
always fit (``remaining x cost <= free`` on every resource, the one-time image included) and
one more would not.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from densityd.model import WorkloadKind
from densityd.plan.core.cost import GUEST_OS_BASELINES
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
    View,
    WorkloadDemand,
)
from densityd.plan.core.slots import answer
from tests.unit.plan.core import strategies
from tests.unit.plan.core.strategies import Numbers

# Byte quantities are whole bytes, as measured: sums of them are exact in floats, so adding a
# workload and its footprint to the host changes system usage by exactly nothing.
memory_bytes = st.integers(0, 64 * GIB).map(float)
disk_bytes = st.integers(0, 512 * GIB).map(float)
cores = st.integers(0, 64_000).map(lambda millicores: millicores / 1000)
kinds = st.sampled_from(list(WorkloadKind))
views = st.sampled_from(list(View))
NUMBERS = Numbers(cores=cores, memory_bytes=memory_bytes, disk_bytes=disk_bytes)
resources = partial(strategies.resources, NUMBERS)
workloads = partial(strategies.workloads, NUMBERS)
profiles = partial(strategies.profiles, NUMBERS)


@st.composite
def hosts(draw: st.DrawFn) -> HostCapacity:
    total = Resources(
        cpu=float(draw(st.integers(1, 256))),
        memory=float(draw(st.integers(1 * GIB, 1024 * GIB))),
        disk=float(draw(st.integers(1 * GIB, 16384 * GIB))),
    )
    used = Resources(
        cpu=0.0,  # not measured, as on a real host
        memory=float(draw(st.integers(0, int(total.memory)))),
        disk=float(draw(st.integers(0, int(total.disk)))),
    )
    return HostCapacity(
        total=total,
        used=used,
        declared=frozenset(draw(st.sets(st.sampled_from(RESOURCES)))),
        image_bytes_present=frozenset(draw(st.sets(st.sampled_from(["app:1", "db:2"])))),
    )


@st.composite
def plan_settings(draw: st.DrawFn) -> PlanSettings:
    return PlanSettings(
        reserved=Resources(
            cpu=float(draw(st.integers(0, 2))),
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
    )


@st.composite
def plans(draw: st.DrawFn) -> tuple[PlanInputs, Profile, WorkloadKind, View, PlanSettings]:
    inputs = PlanInputs(
        timestamp=0.0,
        host=draw(hosts()),
        workloads=tuple(draw(st.lists(workloads(), max_size=8))),
    )
    return inputs, draw(profiles()), draw(kinds), draw(views), draw(plan_settings())


def _slots(result: Answer) -> float:
    """Slots as a number to compare: unbounded is more than any count."""
    return math.inf if result.remaining is None else result.remaining


def _once(result: Answer, resource: Resource) -> float:
    """What the first slot pays once on a resource: the image, on disk."""
    return result.overhead["image"] if resource is Resource.DISK else 0.0


@settings(max_examples=200, deadline=None)
@given(plans(), st.sampled_from(RESOURCES), st.integers(1, 2**40).map(float))
def test_more_capacity_never_gives_fewer_slots(
    plan: tuple[PlanInputs, Profile, WorkloadKind, View, PlanSettings],
    resource: Resource,
    extra: float,
) -> None:
    inputs, profile, kind, view, plan_settings = plan
    before = answer(inputs, profile, kind, view, plan_settings)
    total = dataclasses.replace(
        inputs.host.total, **{resource.value: inputs.host.total.get(resource) + extra}
    )
    bigger = dataclasses.replace(inputs, host=dataclasses.replace(inputs.host, total=total))
    after = answer(bigger, profile, kind, view, plan_settings)
    assert _slots(after) >= _slots(before)


@settings(max_examples=200, deadline=None)
@given(plans(), workloads())
def test_one_more_workload_never_gives_more_slots(
    plan: tuple[PlanInputs, Profile, WorkloadKind, View, PlanSettings],
    workload: WorkloadDemand,
) -> None:
    inputs, profile, kind, view, plan_settings = plan
    before = answer(inputs, profile, kind, view, plan_settings)
    # The new workload's footprint shows up in the host's measured use, as it would for real.
    host = inputs.host
    used = Resources(
        cpu=host.used.cpu,
        memory=host.used.memory + ((workload.memory_bytes or 0.0) if workload.running else 0.0),
        disk=host.used.disk + (workload.disk_bytes or 0.0),
    )
    more = dataclasses.replace(
        inputs,
        host=dataclasses.replace(host, used=used),
        workloads=(*inputs.workloads, workload),
    )
    after = answer(more, profile, kind, view, plan_settings)
    assert _slots(after) <= _slots(before)


@settings(max_examples=300, deadline=None)
@given(plans())
def test_the_slots_promised_fit_and_one_more_would_not(
    plan: tuple[PlanInputs, Profile, WorkloadKind, View, PlanSettings],
) -> None:
    result = answer(*plan)
    for r in result.resources:
        assert r.free == max(0.0, r.usable - r.used)
        assert 0.0 <= r.system <= r.used
    if result.remaining is None:
        assert result.bound is None
        for r in result.resources:
            assert r.fits is None
            assert r.cost == 0.0
            assert _once(result, r.resource) <= r.free
        return
    remaining = result.remaining
    assert remaining >= 0
    assert remaining == min(r.fits for r in result.resources if r.fits is not None)
    assert result.bound is not None
    bound = next(r for r in result.resources if r.resource is result.bound)
    assert bound.fits == remaining
    if remaining > 0:
        for r in result.resources:
            assert _once(result, r.resource) + remaining * r.cost <= r.free, r
    assert any(
        _once(result, r.resource) + (remaining + 1) * r.cost > r.free for r in result.resources
    )
