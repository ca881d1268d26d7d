"""What existing workloads take (``workload_demand``) and the shapes planned for."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from densityd.model import WorkloadKind, WorkloadSample
from densityd.plan.core.demand import (
    DEFAULT_PROFILES,
    allocation_of,
    default_profile,
    like_profile,
    median_profile,
    workload_demand,
)
from densityd.plan.core.model import (
    GIB,
    MIB,
    PlanSettings,
    Resource,
    Resources,
    WorkloadDemand,
    WorkloadHistory,
)

CONTAINER = WorkloadKind.CONTAINER
VM = WorkloadKind.VM


def _history(**values: float) -> WorkloadHistory:
    return WorkloadHistory(
        kind=CONTAINER,
        id="c1",
        name="web-1",
        first_timestamp=1000.0,
        last_timestamp=4600.0,
        **values,
    )


def test_demand_from_history_percentile_window_max_and_growth() -> None:
    sample = WorkloadSample(
        kind=CONTAINER,
        id="c1",
        name="web-1",
        image="nginx:1",
        memory_bytes=150 * MIB,
        disk_bytes=3 * GIB,
    )
    history = _history(
        cpu_rate_percentile=0.4, memory_max=200 * MIB, disk_first=1 * GIB, disk_last=2 * GIB
    )
    demand = workload_demand(sample, history, PlanSettings(), cpu_rate=3.0)
    assert demand.demand.cpu == 0.4  # the percentile wins over the fresh rate
    assert demand.demand.memory == pytest.approx(200 * MIB * 1.15)
    assert demand.demand.disk == 3 * GIB + 1 * GIB  # current + growth over the window
    assert demand.history_seconds == 3600.0
    assert demand.memory_bytes == 150 * MIB
    assert demand.disk_bytes == 3 * GIB
    assert demand.image == "nginx:1"
    assert (demand.cpu_limit, demand.memory_limit, demand.disk_limit) == (None, None, None)
    assert (demand.vcpus, demand.guest_memory_bytes) == (None, None)


def test_current_memory_above_the_window_max_counts_and_the_buffer_is_a_setting() -> None:
    sample = WorkloadSample(kind=CONTAINER, id="c1", name="web-1", memory_bytes=400 * MIB)
    history = _history(memory_max=200 * MIB)
    demand = workload_demand(sample, history, PlanSettings(memory_buffer=0.5))
    assert demand.demand.memory == 600 * MIB


def test_without_history_the_fresh_rate_then_zero() -> None:
    sample = WorkloadSample(kind=CONTAINER, id="c1", name="web-1", memory_bytes=100 * MIB)
    fresh = workload_demand(sample, None, PlanSettings(memory_buffer=0.0), cpu_rate=1.5)
    assert fresh.demand.cpu == 1.5
    assert fresh.demand.memory == 100 * MIB
    assert fresh.history_seconds == 0.0
    assert workload_demand(sample, None, PlanSettings()).demand.cpu == 0.0
    # A history without a percentile (one sample in the window) also falls back.
    assert workload_demand(sample, _history(), PlanSettings(), cpu_rate=0.7).demand.cpu == 0.7


def test_shrinking_disk_adds_no_growth_and_unknown_sizes_are_zero() -> None:
    sample = WorkloadSample(kind=CONTAINER, id="c1", name="web-1", disk_bytes=5 * GIB)
    history = _history(disk_first=8 * GIB, disk_last=5 * GIB)
    assert workload_demand(sample, history, PlanSettings()).demand.disk == 5 * GIB
    bare = workload_demand(WorkloadSample(kind=CONTAINER, id="c2", name="x"), None, PlanSettings())
    assert bare.demand == Resources(0.0, 0.0, 0.0)
    assert (bare.memory_bytes, bare.disk_bytes) == (None, None)


def test_vm_demand_carries_vcpus_guest_ram_and_virtual_disk() -> None:
    sample = WorkloadSample(
        kind=VM,
        id="u1",
        name="db-1",
        running=False,
        state="shutoff",
        cpu_limit_cores=2.0,
        memory_limit_bytes=4 * GIB,
        memory_bytes=None,
        disk_bytes=6 * GIB,
        disk_limit_bytes=40 * GIB,
    )
    demand = workload_demand(sample, None, PlanSettings())
    assert demand.kind is VM
    assert demand.running is False
    assert demand.vcpus == 2
    assert demand.guest_memory_bytes == 4 * GIB
    assert demand.memory_limit == 4 * GIB
    assert demand.cpu_limit == 2.0
    assert demand.disk_limit == 40 * GIB
    assert demand.demand.disk == 6 * GIB
    assert demand.disk_is_overlay is False  # the sample has no backing-file field yet


def _container(name: str, cpu: float, memory: float, disk: float, **extra: Any) -> WorkloadDemand:
    workload = WorkloadDemand(
        kind=CONTAINER, id=name, name=name, demand=Resources(cpu, memory, disk)
    )
    return dataclasses.replace(workload, **extra)


def _vm(name: str, **extra: Any) -> WorkloadDemand:
    workload = WorkloadDemand(
        kind=VM,
        id=name,
        name=name,
        demand=Resources(0.5, 1100 * MIB, 5 * GIB),
        cpu_limit=2.0,
        memory_limit=1 * GIB,
        guest_memory_bytes=1 * GIB,
        vcpus=2,
        disk_limit=20 * GIB,
    )
    return dataclasses.replace(workload, **extra)


def test_allocation_falls_back_to_demand_where_there_is_no_limit() -> None:
    workload = _container("web-1", 0.3, 200 * MIB, 1 * GIB, memory_limit=512 * MIB)
    allocation, fallbacks = allocation_of(workload)
    assert allocation == Resources(0.3, 512 * MIB, 1 * GIB)
    assert fallbacks == (Resource.CPU, Resource.DISK)


def test_allocation_of_an_overlay_vm_counts_its_disk_at_demand() -> None:
    assert allocation_of(_vm("v"))[0].disk == 20 * GIB
    overlay, fallbacks = allocation_of(_vm("v", disk_is_overlay=True))
    assert overlay == Resources(2.0, 1 * GIB, 5 * GIB)
    assert fallbacks == ()


def test_like_a_container() -> None:
    workload = _container("web-1", 0.3, 200 * MIB, 1 * GIB, cpu_limit=1.0, image="nginx:1")
    profile = like_profile(workload)
    assert profile.name == "web-1"
    assert profile.origin == "like web-1"
    assert profile.demand == Resources(0.3, 200 * MIB, 1 * GIB)
    assert profile.allocation == Resources(1.0, 200 * MIB, 1 * GIB)
    assert profile.includes_guest_os is False
    assert profile.image == "nginx:1"
    assert profile.image_present is True
    assert profile.memory_includes_overhead is False


def test_like_a_vm() -> None:
    profile = like_profile(_vm("db-1", vcpus=3, cpu_limit=3.0, guest_memory_bytes=2 * GIB))
    assert profile.origin == "like db-1"
    assert profile.allocation == Resources(3.0, 2 * GIB, 20 * GIB)
    assert profile.demand == Resources(0.5, 1100 * MIB, 5 * GIB)
    assert profile.vcpus == 3
    assert profile.includes_guest_os is True
    assert profile.memory_includes_overhead is True


def test_median_per_resource_per_view_over_running_workloads_of_the_kind() -> None:
    workloads = [
        _container("a", 0.1, 100 * MIB, 1 * GIB, memory_limit=1 * GIB),
        _container("b", 0.5, 300 * MIB, 9 * GIB),
        _container("c", 0.3, 900 * MIB, 2 * GIB, memory_limit=2 * GIB),
        _container("stopped", 9.0, 9 * GIB, 9 * GIB, running=False),
        _vm("v"),
    ]
    profile = median_profile(workloads, CONTAINER)
    assert profile is not None
    assert profile.name == "median-container"
    assert profile.origin == "median container"
    assert profile.demand == Resources(0.3, 300 * MIB, 2 * GIB)
    # allocation memory: 1 GiB, 300 MiB (no limit: its demand), 2 GiB -> 1 GiB
    assert profile.allocation == Resources(0.3, 1 * GIB, 2 * GIB)
    assert profile.includes_guest_os is False


def test_median_vm_and_none_without_running_workloads() -> None:
    workloads = [
        _vm("a", cpu_limit=1.0, vcpus=1),
        _vm("b", cpu_limit=4.0, vcpus=4, disk_is_overlay=True),
    ]
    profile = median_profile(workloads, VM)
    assert profile is not None
    assert (profile.name, profile.origin) == ("median-vm", "median vm")
    assert profile.allocation.cpu == 2.5
    assert profile.vcpus == 3  # whole vCPUs, rounded up
    assert profile.includes_guest_os is True
    assert profile.memory_includes_overhead is True
    assert profile.disk_is_overlay is False  # one of two is not "most"
    assert median_profile(workloads, CONTAINER) is None
    assert median_profile([_vm("off", running=False)], VM) is None


def test_default_profile_is_the_median_else_the_documented_default() -> None:
    assert default_profile([], CONTAINER) is DEFAULT_PROFILES[CONTAINER]
    assert default_profile([_vm("off", running=False)], VM) is DEFAULT_PROFILES[VM]
    assert default_profile([_vm("v")], VM).origin == "median vm"
    container, vm = DEFAULT_PROFILES[CONTAINER], DEFAULT_PROFILES[VM]
    assert container.allocation == container.demand == Resources(0.25, 256 * MIB, 1 * GIB)
    assert vm.allocation == vm.demand == Resources(1.0, 1 * GIB, 10 * GIB)
    assert vm.includes_guest_os is True
    assert container.includes_guest_os is False
