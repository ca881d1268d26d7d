"""Answers with hand-computed numbers: usable, used, system, free, slots, binding resource."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from densityd.model import WorkloadKind
from densityd.plan.core.demand import DEFAULT_PROFILES
from densityd.plan.core.model import (
    GIB,
    MIB,
    Answer,
    HostCapacity,
    PlanInputs,
    PlanSettings,
    Profile,
    Resource,
    ResourceAnswer,
    Resources,
    TrendPoint,
    View,
    WorkloadDemand,
)
from densityd.plan.core.slots import (
    answer,
    answers,
    compare_ratio,
    fit_count,
    headline,
    usable,
)

CONTAINER = WorkloadKind.CONTAINER
VM = WorkloadKind.VM
ALLOCATION = View.ALLOCATION
DEMAND = View.DEMAND
# No reserve, no overcommit, no headroom: the numbers below are plain sums.
FLAT = PlanSettings(reserved=Resources(), ratio=Resources(1.0, 1.0, 1.0), target_fill=1.0)
BIG = Resources(cpu=1000.0, memory=1000 * GIB, disk=1000 * GIB)


def _host(total: Resources = BIG, used: Resources | None = None, **extra: Any) -> HostCapacity:
    return HostCapacity(total=total, used=used or Resources(), **extra)


def _inputs(host: HostCapacity, *workloads: WorkloadDemand, **extra: Any) -> PlanInputs:
    return PlanInputs(timestamp=0.0, host=host, workloads=workloads, **extra)


def _container(name: str, demand: Resources, **extra: Any) -> WorkloadDemand:
    workload = WorkloadDemand(kind=CONTAINER, id=name, name=name, demand=demand)
    return dataclasses.replace(workload, **extra)


def _vm(name: str, guest: float, vcpus: int, disk: float, **extra: Any) -> WorkloadDemand:
    workload = WorkloadDemand(
        kind=VM,
        id=name,
        name=name,
        cpu_limit=float(vcpus),
        memory_limit=guest,
        guest_memory_bytes=guest,
        vcpus=vcpus,
        disk_limit=disk,
    )
    return dataclasses.replace(workload, **extra)


def _profile(cpu: float, memory: float, disk: float, **extra: Any) -> Profile:
    shape = Resources(cpu, memory, disk)
    return dataclasses.replace(Profile(name="p", demand=shape, allocation=shape), **extra)


def _one(result: Answer, resource: Resource) -> ResourceAnswer:
    (found,) = [r for r in result.resources if r.resource is resource]
    return found


def test_usable_applies_reserve_ratio_and_fill() -> None:
    host = _host(Resources(cpu=8.0, memory=16 * GIB, disk=100 * GIB))
    allocation = usable(host, ALLOCATION, PlanSettings())
    assert allocation.cpu == pytest.approx(8 * 4.0 * 0.9)
    assert allocation.memory == pytest.approx((16 * GIB - 512 * MIB) * 0.9)
    assert allocation.disk == pytest.approx(100 * GIB * 0.9)
    # Overcommit is for promises only: measured use is held against physical capacity.
    demand = usable(host, DEMAND, PlanSettings())
    assert demand.cpu == pytest.approx(8 * 0.9)
    assert demand.memory == allocation.memory
    custom = PlanSettings(
        reserved=Resources(cpu=2.0, memory=1 * GIB, disk=10 * GIB),
        ratio=Resources(cpu=2.0, memory=1.5, disk=1.0),
        target_fill=0.5,
    )
    assert usable(host, ALLOCATION, custom) == Resources(
        cpu=6.0, memory=15 * GIB * 1.5 * 0.5, disk=45 * GIB
    )
    # A reserve larger than the host leaves nothing, never a negative capacity.
    assert usable(host, DEMAND, dataclasses.replace(custom, reserved=Resources(cpu=9.0))).cpu == 0


def _measured_host() -> tuple[HostCapacity, tuple[WorkloadDemand, ...]]:
    host = _host(
        Resources(cpu=8.0, memory=16 * GIB, disk=100 * GIB),
        Resources(cpu=0.0, memory=6 * GIB, disk=50 * GIB),
    )
    workloads = (
        _container(
            "web", Resources(0.5, 1200 * MIB, 10 * GIB), memory_bytes=1 * GIB, disk_bytes=9 * GIB
        ),
        _vm(
            "db",
            2 * GIB,
            2,
            40 * GIB,
            demand=Resources(1.0, 2400 * MIB, 5 * GIB),
            memory_bytes=2 * GIB,
            disk_bytes=5 * GIB,
        ),
        # Stopped: its stale footprint explains nothing of the host's memory use now.
        _container(
            "old",
            Resources(3.0, 1 * GIB, 2 * GIB),
            running=False,
            memory_bytes=1 * GIB,
            disk_bytes=2 * GIB,
        ),
    )
    return host, workloads


def test_demand_view_counts_host_use_no_workload_explains_as_system() -> None:
    host, workloads = _measured_host()
    result = answer(_inputs(host, *workloads), DEFAULT_PROFILES[CONTAINER], CONTAINER, DEMAND, FLAT)
    cpu, memory, disk = result.resources
    # memory: 6 GiB used - (1 GiB + 2 GiB) running footprints = 3 GiB system
    assert memory.system == 3 * GIB
    assert memory.used == 1200 * MIB + 2400 * MIB + 3 * GIB
    assert memory.free == 16 * GIB - memory.used
    # disk: 50 GiB used - (9 + 5 + 2) GiB current footprints = 34 GiB; the stopped one's counts
    assert disk.system == 34 * GIB
    assert disk.used == 10 * GIB + 5 * GIB + 2 * GIB + 34 * GIB
    # CPU: the host's use is not measured; the stopped container's 3 cores do not count.
    assert (cpu.system, cpu.used, cpu.free) == (0.0, 1.5, 6.5)
    # cpu: 6.5 / 0.25 = 26; memory: (16384 - 6672) MiB / 269 MiB = 36.1; disk: 49 GiB / 1 GiB
    assert (cpu.fits, memory.fits, disk.fits) == (26, 36, 49)
    assert (result.remaining, result.bound) == (26, Resource.CPU)
    assert "1 stopped container: only its disk counts, not CPU or memory" in result.notes


def test_declared_capacity_counts_no_system_usage() -> None:
    host, workloads = _measured_host()
    declared = dataclasses.replace(host, declared=frozenset({Resource.MEMORY}))
    result = answer(
        _inputs(declared, *workloads), DEFAULT_PROFILES[CONTAINER], CONTAINER, DEMAND, FLAT
    )
    assert _one(result, Resource.MEMORY).system == 0.0
    assert _one(result, Resource.MEMORY).used == 1200 * MIB + 2400 * MIB
    assert _one(result, Resource.DISK).system == 34 * GIB  # not declared: still counted
    assert (
        "memory capacity declared: no system usage, only workloads count (the host reserve does "
        "not apply: --reserved sets one)" in result.notes
    )
    # The kernel charges a container's shim to the host, outside the declared slice.
    assert _one(result, Resource.MEMORY).cost == DEFAULT_PROFILES[CONTAINER].demand.memory
    assert result.overhead["shim"] == 0.0
    # A reserve is for the host's own OS: a default one does not apply to a declared capacity,
    # one given explicitly (--reserved memory=1Gi) does.
    one_gib = Resources(memory=1 * GIB)
    by_default = dataclasses.replace(FLAT, reserved=one_gib)
    given = dataclasses.replace(by_default, reserved_given=frozenset({Resource.MEMORY}))
    for settings, expected in ((by_default, 16 * GIB), (given, 15 * GIB)):
        reserved = answer(
            _inputs(declared, *workloads), DEFAULT_PROFILES[CONTAINER], CONTAINER, DEMAND, settings
        )
        assert _one(reserved, Resource.MEMORY).usable == expected
    assert (
        "memory capacity declared: no system usage, only workloads and the reserve of 1.0GiB"
        in (
            answer(
                _inputs(declared, *workloads), DEFAULT_PROFILES[CONTAINER], CONTAINER, DEMAND, given
            )
        ).notes
    )
    # A measured capacity keeps the default reserve.
    measured = answer(
        _inputs(host, *workloads), DEFAULT_PROFILES[CONTAINER], CONTAINER, DEMAND, by_default
    )
    assert _one(measured, Resource.MEMORY).usable == 15 * GIB


def test_allocation_view_counts_limits_overhead_and_says_what_had_no_limit() -> None:
    workloads = (
        _container("a", Resources(0.1, 100 * MIB, 1 * GIB), cpu_limit=1.0),
        _container("b", Resources(0.1, 200 * MIB, 1 * GIB), cpu_limit=1.0),
        _container("c", Resources(0.1, 300 * MIB, 1 * GIB), cpu_limit=1.0),
        _container("d", Resources(0.1, 50 * MIB, 1 * GIB), cpu_limit=1.0, memory_limit=1 * GIB),
        _vm("v", 1 * GIB, 1, 20 * GIB, demand=Resources(0.2, 900 * MIB, 3 * GIB)),
    )
    host = _host(used=Resources(memory=500 * GIB, disk=500 * GIB))  # ignored: allocation view
    result = answer(
        _inputs(host, *workloads), DEFAULT_PROFILES[CONTAINER], CONTAINER, ALLOCATION, FLAT
    )
    cpu, memory, disk = result.resources
    assert cpu.used == 5.0
    # 600 MiB counted at demand + 1 GiB limit + 4 shims + 1 GiB guest + 74 MiB QEMU
    assert memory.used == 600 * MIB + 1 * GIB + 4 * 13 * MIB + 1 * GIB + 74 * MIB
    assert disk.used == 4 * GIB + 20 * GIB
    assert (cpu.system, memory.system, disk.system) == (0.0, 0.0, 0.0)
    assert "3 containers without a memory limit counted at their demand" in result.notes
    assert "4 containers without a disk limit counted at their demand" in result.notes
    assert not any("cpu limit" in note for note in result.notes)


def test_a_stopped_vm_counts_in_allocation_but_only_its_disk_in_demand() -> None:
    stopped = _vm(
        "off",
        2 * GIB,
        2,
        10 * GIB,
        running=False,
        demand=Resources(1.0, 1 * GIB, 3 * GIB),
        memory_bytes=1 * GIB,
        disk_bytes=3 * GIB,
    )
    inputs = _inputs(_host(), stopped)
    allocation = answer(inputs, DEFAULT_PROFILES[VM], VM, ALLOCATION, FLAT)
    # 2 GiB guest + 64 + 4 + 16 MiB QEMU: promised, it comes back when started
    assert [r.used for r in allocation.resources] == [2.0, 2 * GIB + 84 * MIB, 10 * GIB]
    assert "1 stopped VM counted: its resources are promised" in allocation.notes
    demand = answer(inputs, DEFAULT_PROFILES[VM], VM, DEMAND, FLAT)
    assert [r.used for r in demand.resources] == [0.0, 0.0, 3 * GIB]
    assert "1 stopped VM: only its disk counts, not CPU or memory" in demand.notes


def test_slots_are_the_floor_on_the_binding_resource_with_the_shim() -> None:
    # 2690 MiB holds exactly 10 containers of 256 MiB + the 13 MiB shim.
    host = _host(Resources(cpu=100.0, memory=2690 * MIB, disk=1024 * GIB))
    result = answer(_inputs(host), DEFAULT_PROFILES[CONTAINER], CONTAINER, ALLOCATION, FLAT)
    assert result.cost == Resources(0.25, 269 * MIB, 1 * GIB)
    assert result.overhead == {"shim": 13 * MIB, "image": 0.0}
    assert [r.fits for r in result.resources] == [400, 10, 1024]
    assert (result.remaining, result.bound) == (10, Resource.MEMORY)
    assert result.kind is CONTAINER
    assert result.view is ALLOCATION
    assert result.profile == "default-container"
    one_less = dataclasses.replace(host, total=dataclasses.replace(host.total, memory=2689 * MIB))
    assert (
        answer(
            _inputs(one_less), DEFAULT_PROFILES[CONTAINER], CONTAINER, ALLOCATION, FLAT
        ).remaining
        == 9
    )


def test_the_image_is_paid_once_per_host() -> None:
    host = _host(Resources(cpu=100.0, memory=100 * GIB, disk=20 * GIB))
    profile = _profile(0.1, 10 * MIB, 1 * GIB, image="nginx:1", image_bytes=5 * GIB)
    result = answer(_inputs(host), profile, CONTAINER, DEMAND, FLAT)
    # (20 GiB - 5 GiB image) / 1 GiB writable layer each
    assert (result.remaining, result.bound) == (15, Resource.DISK)
    assert result.overhead["image"] == 5 * GIB
    assert result.cost.disk == 1 * GIB  # the per-slot cost leaves the image out
    assert "image nginx:1: 5.0GiB counted once per host" in result.notes
    present = dataclasses.replace(host, image_bytes_present=frozenset({"nginx:1"}))
    result = answer(_inputs(present), profile, CONTAINER, DEMAND, FLAT)
    assert (result.remaining, result.overhead["image"]) == (20, 0.0)
    assert "image nginx:1: already on the host, not counted" in result.notes
    known = dataclasses.replace(profile, image_present=True)
    assert answer(_inputs(host), known, CONTAINER, DEMAND, FLAT).remaining == 20


def test_an_image_larger_than_the_free_disk_fits_nothing() -> None:
    host = _host(Resources(cpu=100.0, memory=100 * GIB, disk=20 * GIB))
    profile = _profile(0.1, 10 * MIB, 0.0, image_bytes=30 * GIB)
    result = answer(_inputs(host), profile, CONTAINER, DEMAND, FLAT)
    assert (result.remaining, result.bound) == (0, Resource.DISK)


def test_guest_os_is_added_only_when_an_app_is_asked_about_as_a_vm() -> None:
    inputs = _inputs(_host())
    app_as_vm = answer(inputs, DEFAULT_PROFILES[CONTAINER], VM, ALLOCATION, FLAT)
    assert app_as_vm.overhead["guest_os_memory"] == 512 * MIB
    assert app_as_vm.overhead["guest_os_disk"] == 2 * GIB
    # 256 MiB app + 512 MiB Debian; QEMU = 64 + 768/512 + 8 MiB
    assert app_as_vm.cost == Resources(1.0, 768 * MIB + 73.5 * MIB, 3 * GIB)
    vm = answer(inputs, DEFAULT_PROFILES[VM], VM, ALLOCATION, FLAT)
    assert vm.overhead["guest_os_memory"] == 0.0
    assert vm.cost == Resources(1.0, 1 * GIB + 74 * MIB, 10 * GIB)
    container = answer(inputs, DEFAULT_PROFILES[CONTAINER], CONTAINER, ALLOCATION, FLAT)
    assert set(container.overhead) == {"shim", "image"}
    assert set(vm.overhead) == {"qemu", "guest_os_memory", "guest_os_disk", "image"}


def test_an_overlay_vm_is_charged_its_overlay_not_its_virtual_size() -> None:
    profile = Profile(
        name="v",
        demand=Resources(0.5, 1 * GIB, 2 * GIB),
        allocation=Resources(1.0, 1 * GIB, 40 * GIB),
        includes_guest_os=True,
        disk_is_overlay=True,
    )
    host = _host(Resources(cpu=100.0, memory=100 * GIB, disk=10 * GIB))
    result = answer(_inputs(host), profile, VM, ALLOCATION, FLAT)
    assert result.cost.disk == 2 * GIB
    assert (result.remaining, result.bound) == (5, Resource.DISK)
    thick = dataclasses.replace(profile, disk_is_overlay=False)
    assert answer(_inputs(host), thick, VM, ALLOCATION, FLAT).remaining == 0


def test_demand_view_does_not_overcommit_cpu() -> None:
    host = _host(Resources(cpu=4.0, memory=100 * GIB, disk=100 * GIB))
    profile = _profile(1.0, 1 * MIB, 0.0)
    settings = PlanSettings(reserved=Resources())  # cpu ratio 4, fill 0.9
    assert answer(_inputs(host), profile, CONTAINER, ALLOCATION, settings).remaining == 14  # 14.4
    demand = answer(_inputs(host), profile, CONTAINER, DEMAND, settings)
    assert demand.remaining == 3  # 3.6 physical cores
    assert any("overcommit ratios apply to the allocation view only" in n for n in demand.notes)
    assert not any(
        "overcommit" in n for n in answer(_inputs(host), profile, CONTAINER, DEMAND, FLAT).notes
    )


def test_time_to_full_from_the_demand_trend() -> None:
    host = _host(Resources(cpu=8.0, memory=10 * GIB, disk=100 * GIB))
    trend = tuple(
        TrendPoint(1e9 + 60.0 * i, Resources(1.0, 60.0 * i * MIB, 5 * GIB - 60.0 * i))
        for i in range(31)
    )
    inputs = _inputs(host, trend=trend)
    result = answer(inputs, DEFAULT_PROFILES[CONTAINER], CONTAINER, DEMAND, FLAT)
    # 10 GiB free, rising 1 MiB/s; CPU flat; disk falling
    assert _one(result, Resource.MEMORY).time_to_full_seconds == pytest.approx(10240.0)
    assert _one(result, Resource.CPU).time_to_full_seconds is None
    assert _one(result, Resource.DISK).time_to_full_seconds is None
    assert result.time_to_full_seconds == pytest.approx(10240.0)
    allocation = answer(inputs, DEFAULT_PROFILES[CONTAINER], CONTAINER, ALLOCATION, FLAT)
    assert allocation.time_to_full_seconds is None
    short = answer(
        _inputs(host, trend=trend[:5]), DEFAULT_PROFILES[CONTAINER], CONTAINER, DEMAND, FLAT
    )
    assert short.time_to_full_seconds is None
    assert "no time to full: the trend needs 2 points over at least 10m" in short.notes


def test_nothing_to_pay_is_unbounded() -> None:
    free_shape = _profile(0.0, 0.0, 0.0)
    result = answer(
        _inputs(_host()),
        free_shape,
        CONTAINER,
        DEMAND,
        dataclasses.replace(FLAT, container_shim_bytes=0.0),
    )
    assert (result.remaining, result.bound) == (None, None)
    assert [r.fits for r in result.resources] == [None, None, None]


def test_answers_cover_every_kind_and_view_kinds_outermost() -> None:
    found = answers(
        _inputs(_host()), DEFAULT_PROFILES[CONTAINER], [CONTAINER, VM], [ALLOCATION, DEMAND], FLAT
    )
    assert [(a.kind, a.view) for a in found] == [
        (CONTAINER, ALLOCATION),
        (CONTAINER, DEMAND),
        (VM, ALLOCATION),
        (VM, DEMAND),
    ]


def _answer(remaining: int | None, view: View = DEMAND) -> Answer:
    return Answer(
        kind=CONTAINER,
        profile="p",
        view=view,
        remaining=remaining,
        bound=None,
        cost=Resources(),
        resources=(),
    )


def test_headline_is_the_stricter_answer() -> None:
    loose, strict = _answer(5, ALLOCATION), _answer(3)
    assert headline([loose, strict]) is strict
    unbounded = _answer(None)
    assert headline([unbounded, _answer(7)]).remaining == 7
    tie = _answer(3, ALLOCATION)
    assert headline([tie, strict]) is tie
    assert headline([unbounded]) is unbounded
    assert headline([_answer(0), _answer(None)]).remaining == 0
    with pytest.raises(ValueError, match="no answers"):
        headline([])


def test_compare_ratio_is_container_slots_per_vm_slot() -> None:
    assert compare_ratio(_answer(30), _answer(10)) == 3.0
    assert compare_ratio(_answer(7), _answer(2)) == 3.5
    assert compare_ratio(_answer(0), _answer(4)) == 0.0
    assert compare_ratio(_answer(7), _answer(0)) is None
    assert compare_ratio(_answer(None), _answer(2)) is None
    assert compare_ratio(_answer(3), _answer(None)) is None


def test_fit_count_counts_exact_fits_and_never_overpromises() -> None:
    # 0.29 / 0.01 is 28.999999999999996 in floats, yet 29 x 0.01 <= 0.29: an exact fit.
    assert 0.29 / 0.01 < 29
    assert fit_count(0.29, 0.01) == 29
    # 3 x 0.1 is 0.30000000000000004 > 0.3: promising 3 would overpromise.
    assert fit_count(0.3, 0.1) == 2
    assert fit_count(7.0, 2.0) == 3
    assert fit_count(0.0, 1.0) == 0
    assert fit_count(1.0, 0.0) is None  # costs nothing: does not bound
    assert fit_count(5.0, 1.0, once=2.0) == 3
    assert fit_count(5.0, 0.0, once=2.0) is None
    assert fit_count(5.0, 0.0, once=6.0) == 0
    assert fit_count(5.0, 1.0, once=5.0) == 0
    assert fit_count(1e300, 1e-300) is None  # beyond what floats can count
