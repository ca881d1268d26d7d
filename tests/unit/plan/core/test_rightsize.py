"""Rightsizing's rules on workloads whose right recommendation is known by construction."""

from __future__ import annotations

import dataclasses

import pytest

from densityd.model import WorkloadKind
from densityd.plan.core.demand import DEFAULT_PROFILES
from densityd.plan.core.model import (
    GIB,
    MIB,
    HostCapacity,
    PlanInputs,
    PlanSettings,
    Resources,
    View,
    WorkloadDemand,
)
from densityd.plan.core.rightsize import biggest_savings, recommendation, rightsized
from densityd.plan.core.slots import answer, usable

SETTINGS = PlanSettings()


def container(
    name: str,
    cpu: float,
    memory: float,
    cpu_limit: float | None = None,
    memory_limit: float | None = None,
) -> WorkloadDemand:
    return WorkloadDemand(
        kind=WorkloadKind.CONTAINER,
        id=f"{name}-id",
        name=name,
        demand=Resources(cpu=cpu, memory=memory, disk=0.0),
        memory_bytes=memory / 1.15,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
    )


def vm(name: str, cpu: float, rss: float, guest: float, vcpus: int) -> WorkloadDemand:
    return WorkloadDemand(
        kind=WorkloadKind.VM,
        id=f"{name}-id",
        name=name,
        demand=Resources(cpu=cpu, memory=rss * 1.15, disk=0.0),
        memory_bytes=rss,
        cpu_limit=float(vcpus),
        memory_limit=guest,
        guest_memory_bytes=guest,
        vcpus=vcpus,
    )


def test_a_container_is_recommended_its_demand_and_over_provisioned_by_the_rest() -> None:
    item = recommendation(
        container("web", 0.12, 70 * MIB, cpu_limit=2.0, memory_limit=1 * GIB), SETTINGS
    )
    assert (item.cpu, item.memory) == (0.12, 70 * MIB)
    assert item.overprovisioned_cpu == pytest.approx(1.88)
    assert item.overprovisioned_memory == pytest.approx(1 * GIB - 70 * MIB)
    # Its allocation frees exactly that (the shim stays the same).
    assert item.frees.cpu == pytest.approx(1.88)
    assert item.frees.memory == pytest.approx(1 * GIB - 70 * MIB)
    assert item.resized


def test_a_container_above_its_limit_is_given_its_buffer_but_never_negative_over() -> None:
    """A 100 MiB limit filled to the brim: demand 115 MiB; resizing grows it by 15 MiB."""
    item = recommendation(
        container("tight", 0.5, 115 * MIB, cpu_limit=0.5, memory_limit=100 * MIB), SETTINGS
    )
    assert item.overprovisioned_memory == 0.0
    assert item.overprovisioned_cpu == 0.0
    assert item.frees.memory == pytest.approx(-15 * MIB)


def test_a_workload_without_a_limit_has_no_over_provisioning_and_frees_nothing() -> None:
    item = recommendation(container("free", 0.3, 50 * MIB), SETTINGS)
    assert item.overprovisioned_cpu is None and item.overprovisioned_memory is None
    assert (item.frees.cpu, item.frees.memory) == (0.0, 0.0)
    assert not item.resized


def test_a_stopped_container_keeps_its_limits() -> None:
    stopped = container("off", 0.0, 0.0, cpu_limit=1.0, memory_limit=1 * GIB)
    stopped = dataclasses.replace(stopped, running=False)
    item = recommendation(stopped, SETTINGS)
    assert not item.resized
    assert (item.frees.cpu, item.frees.memory) == (0.0, 0.0)


def test_a_vm_gets_whole_vcpus_and_guest_ram_less_qemus_overhead() -> None:
    """2 vCPUs, 2 GiB guest RAM, QEMU at most 600 MiB, p95 0.3 cores."""
    item = recommendation(vm("db", 0.3, 600 * MIB, 2 * GIB, 2), SETTINGS)
    overhead = 64 * MIB + 2 * GIB / 512 + 2 * 8 * MIB
    assert item.cpu == 1.0
    assert item.memory == pytest.approx(600 * MIB * 1.15 - overhead)
    assert item.overprovisioned_cpu == 1.0
    assert item.overprovisioned_memory == pytest.approx(2 * GIB - item.memory)
    # One vCPU less, and QEMU's overhead shrinks with it (8 MiB) and with the RAM (RAM/512).
    assert item.frees.cpu == 1.0
    assert item.frees.memory == pytest.approx((2 * GIB - item.memory) * (1 + 1 / 512) + 8 * MIB)


def test_a_vm_is_never_below_its_guest_os_nor_above_what_it_has() -> None:
    idle = recommendation(vm("bios", 0.01, 40 * MIB, 2 * GIB, 1), SETTINGS)
    assert idle.memory == 512 * MIB  # Debian's baseline, the default --guest-os
    small = recommendation(vm("small", 0.01, 40 * MIB, 256 * MIB, 1), SETTINGS)
    assert small.memory == 256 * MIB  # smaller than the baseline already: kept
    touched = recommendation(vm("touched", 3.5, 2 * GIB + 80 * MIB, 2 * GIB, 2), SETTINGS)
    assert (touched.cpu, touched.memory) == (2.0, 2 * GIB)
    assert (touched.frees.cpu, touched.frees.memory) == (0.0, 0.0)


def test_the_rightsized_plan_frees_exactly_what_the_recommendations_free() -> None:
    host = HostCapacity(
        total=Resources(cpu=8, memory=16 * GIB, disk=100 * GIB), used=Resources(memory=4 * GIB)
    )
    workloads = (
        container("web", 0.12, 70 * MIB, cpu_limit=2.0, memory_limit=1 * GIB),
        container("api", 0.5, 900 * MIB, cpu_limit=1.0, memory_limit=1 * GIB),
        vm("db", 0.3, 600 * MIB, 2 * GIB, 2),
    )
    inputs = PlanInputs(timestamp=0.0, host=host, workloads=workloads)
    shape = DEFAULT_PROFILES[WorkloadKind.CONTAINER]
    before = answer(inputs, shape, WorkloadKind.CONTAINER, View.ALLOCATION, SETTINGS)
    after = answer(
        rightsized(inputs, SETTINGS), shape, WorkloadKind.CONTAINER, View.ALLOCATION, SETTINGS
    )
    items = [recommendation(w, SETTINGS) for w in workloads]
    for index, field in ((0, "cpu"), (1, "memory")):
        freed = sum(getattr(i.frees, field) for i in items)
        assert before.resources[index].used - after.resources[index].used == pytest.approx(freed)
    demand_before = answer(inputs, shape, WorkloadKind.CONTAINER, View.DEMAND, SETTINGS)
    demand_after = answer(
        rightsized(inputs, SETTINGS), shape, WorkloadKind.CONTAINER, View.DEMAND, SETTINGS
    )
    assert demand_after == demand_before  # resizing does not change what workloads use
    ranked = biggest_savings(items, usable(host, View.ALLOCATION, SETTINGS))
    # db frees 1 of 28.8 usable cores (3.5 %) and ~1.4 GiB of 13.9 GiB (10 %); web 1.88 cores
    # (6.5 %) and 954 MiB (6.7 %); api 0.5 cores and 0 MiB (api grows by its buffer: -11 MiB).
    assert [i.name for i in ranked] == ["db", "web", "api"]
