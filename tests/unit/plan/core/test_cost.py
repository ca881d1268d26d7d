"""The cost of one more workload per kind: shim, QEMU overhead, guest OS, overlay disks."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from densityd.model import WorkloadKind
from densityd.plan.core.cost import (
    GUEST_OS_BASELINES,
    calibrate_qemu,
    existing_overhead,
    guest_os_baseline,
    qemu_overhead,
    workload_cost,
)
from densityd.plan.core.model import (
    GIB,
    MIB,
    PlanSettings,
    Profile,
    Resources,
    View,
    WorkloadDemand,
)

CONTAINER = WorkloadKind.CONTAINER
VM = WorkloadKind.VM
APP = Profile(
    name="app",
    demand=Resources(0.2, 300 * MIB, 1 * GIB),
    allocation=Resources(0.25, 512 * MIB, 2 * GIB),
)


def _vm(name: str, guest: float, rss: float, vcpus: int, **extra: Any) -> WorkloadDemand:
    workload = WorkloadDemand(
        kind=VM,
        id=name,
        name=name,
        guest_memory_bytes=guest,
        memory_limit=guest,
        memory_bytes=rss,
        vcpus=vcpus,
        cpu_limit=float(vcpus),
    )
    return dataclasses.replace(workload, **extra)


def test_qemu_overhead_is_ovirts_model() -> None:
    # 64 MiB + 2 GiB / 512 (4 MiB) + 8 MiB x 2 vCPUs
    assert qemu_overhead(2 * GIB, 2, PlanSettings()) == 84 * MIB
    settings = PlanSettings(qemu_base_bytes=10 * MIB, qemu_ram_divisor=256.0)
    assert qemu_overhead(1 * GIB, 1, settings) == 22 * MIB


def test_container_pays_its_profile_and_the_shim() -> None:
    cost, overhead, notes = workload_cost(APP, CONTAINER, View.ALLOCATION, PlanSettings())
    assert cost == Resources(0.25, 525 * MIB, 2 * GIB)
    assert overhead == {"shim": 13 * MIB}
    assert notes == ("container shim: 13.0MiB each (assumed)",)
    measured = PlanSettings(container_shim_bytes=20 * MIB, shim_measured=True)
    cost, overhead, notes = workload_cost(APP, CONTAINER, View.DEMAND, measured)
    assert cost == Resources(0.2, 320 * MIB, 1 * GIB)
    assert overhead == {"shim": 20 * MIB}
    assert "(measured)" in notes[0]


def test_an_app_as_a_vm_pays_guest_os_guest_ram_and_qemu() -> None:
    cost, overhead, notes = workload_cost(APP, VM, View.ALLOCATION, PlanSettings())
    # guest RAM = 512 MiB app + 512 MiB Debian = 1 GiB; QEMU = 64 + 1024/512 + 8 x 1 = 74 MiB
    assert overhead == {
        "qemu": 74 * MIB,
        "guest_os_memory": 512 * MIB,
        "guest_os_disk": 2 * GIB,
    }
    assert cost == Resources(1.0, 1 * GIB + 74 * MIB, 4 * GIB)  # 0.25 cores -> 1 whole vCPU
    assert any("guest OS debian added" in note for note in notes)


def test_guest_os_is_added_only_for_app_profiles() -> None:
    vm_shaped = dataclasses.replace(APP, includes_guest_os=True, vcpus=2)
    cost, overhead, notes = workload_cost(vm_shaped, VM, View.ALLOCATION, PlanSettings())
    # 512 MiB guest: QEMU = 64 + 1 + 16 = 81 MiB
    assert overhead == {"qemu": 81 * MIB, "guest_os_memory": 0.0, "guest_os_disk": 0.0}
    assert cost == Resources(2.0, 512 * MIB + 81 * MIB, 2 * GIB)
    assert not any("guest OS" in note for note in notes)


def test_the_guest_os_is_a_setting_and_unknown_names_are_refused() -> None:
    settings = PlanSettings(guest_os="alpine")
    cost, overhead, _ = workload_cost(APP, VM, View.DEMAND, settings)
    assert overhead["guest_os_memory"] == 128 * MIB
    assert overhead["guest_os_disk"] == 1 * GIB
    # QEMU is sized from the configured RAM (512 + 128 MiB), in the demand view too.
    qemu = 64 * MIB + 640 * MIB / 512 + 8 * MIB
    assert cost == Resources(0.2, 300 * MIB + 128 * MIB + qemu, 2 * GIB)
    with pytest.raises(ValueError, match=r"unknown guest OS 'plan9'.*alpine, debian"):
        workload_cost(APP, VM, View.DEMAND, PlanSettings(guest_os="plan9"))
    with pytest.raises(ValueError, match="rhel, ubuntu, windows"):
        guest_os_baseline("")


def test_guest_os_table() -> None:
    expected = {
        "alpine": (128 * MIB, 1 * GIB),
        "debian": (512 * MIB, 2 * GIB),
        "ubuntu": (1 * GIB, 4 * GIB),
        "rhel": (1536 * MIB, 10 * GIB),
        "windows": (2 * GIB, 32 * GIB),
        "none": (0, 0),
    }
    assert {name: (g.memory, g.disk) for name, g in GUEST_OS_BASELINES.items()} == expected
    assert all(g.name == name for name, g in GUEST_OS_BASELINES.items())
    assert PlanSettings().guest_os == "debian"


def test_measured_vm_demand_already_holds_qemu_overhead() -> None:
    like = Profile(
        name="db-1",
        demand=Resources(0.5, 1100 * MIB, 5 * GIB),
        allocation=Resources(2.0, 1 * GIB, 20 * GIB),
        includes_guest_os=True,
        vcpus=2,
        memory_includes_overhead=True,
    )
    cost, overhead, notes = workload_cost(like, VM, View.DEMAND, PlanSettings())
    assert cost == Resources(0.5, 1100 * MIB, 5 * GIB)
    assert overhead["qemu"] == 0.0
    assert "already in the profile's measured resident set" in notes[0]
    # The allocation view still adds it: guest RAM is configured, not measured.
    cost, overhead, _ = workload_cost(like, VM, View.ALLOCATION, PlanSettings())
    assert overhead["qemu"] == 82 * MIB  # 64 + 2 + 16
    assert cost == Resources(2.0, 1 * GIB + 82 * MIB, 20 * GIB)


def test_an_overlay_vm_pays_only_what_its_overlay_holds() -> None:
    base = Profile(
        name="v",
        demand=Resources(0.5, 1 * GIB, 3 * GIB),
        allocation=Resources(1.0, 1 * GIB, 40 * GIB),
        includes_guest_os=True,
    )
    full, _, _ = workload_cost(base, VM, View.ALLOCATION, PlanSettings())
    assert full.disk == 40 * GIB
    overlay = dataclasses.replace(base, disk_is_overlay=True)
    cost, _, notes = workload_cost(overlay, VM, View.ALLOCATION, PlanSettings())
    assert cost.disk == 3 * GIB
    assert any("overlay" in note for note in notes)


def test_existing_workload_overhead_in_the_allocation_view() -> None:
    container = WorkloadDemand(kind=CONTAINER, id="c", name="c")
    assert existing_overhead(container, PlanSettings()) == 13 * MIB
    assert existing_overhead(_vm("v", 2 * GIB, 0, 2), PlanSettings()) == 84 * MIB
    unknown_ram = WorkloadDemand(kind=VM, id="v", name="v", memory_bytes=1 * GIB)
    assert existing_overhead(unknown_ram, PlanSettings()) == 0.0


def test_calibration_replaces_the_base_term_with_the_median_fit() -> None:
    workloads = [
        # overhead 100 MiB; implied base = 100 - 1024/512 - 8 x 1 = 90 MiB
        _vm("a", 1 * GIB, 1 * GIB + 100 * MIB, 1),
        # overhead 120 MiB; implied base = 120 - 2048/512 - 8 x 2 = 100 MiB
        _vm("b", 2 * GIB, 2 * GIB + 120 * MIB, 2),
        # overhead 200 MiB; implied base = 200 - 2 - 8 = 190 MiB
        _vm("c", 1 * GIB, 1 * GIB + 200 * MIB, 1),
        # Has not touched all its RAM: says nothing about QEMU.
        _vm("lazy", 4 * GIB, 300 * MIB, 1),
        # Not running: its RSS is stale.
        _vm("off", 1 * GIB, 1 * GIB + 900 * MIB, 1, running=False),
        WorkloadDemand(kind=CONTAINER, id="c", name="c", memory_bytes=5 * GIB),
    ]
    settings, message = calibrate_qemu(workloads, PlanSettings())
    assert settings.qemu_base_bytes == 100 * MIB
    assert settings.qemu_calibrated is True
    assert settings.qemu_ram_divisor == 512.0
    assert settings.qemu_per_vcpu_bytes == 8 * MIB
    assert message == (
        "QEMU overhead calibrated from 3 VMs that touched all their RAM: median measured "
        "120.0MiB, base term 64.0MiB -> 100.0MiB"
    )
    # The model now matches the median VM.
    assert qemu_overhead(2 * GIB, 2, settings) == 120 * MIB
    _, overhead, notes = workload_cost(APP, VM, View.ALLOCATION, settings)
    assert overhead["qemu"] == 110 * MIB  # 100 + 2 + 8
    assert any("(calibrated)" in note for note in notes)


def test_calibration_floors_a_negative_base_at_zero() -> None:
    settings, _ = calibrate_qemu([_vm("a", 4 * GIB, 4 * GIB + 1 * MIB, 4)], PlanSettings())
    assert settings.qemu_base_bytes == 0.0


def test_no_calibration_without_a_fully_faulted_vm() -> None:
    defaults = PlanSettings()
    settings, message = calibrate_qemu([_vm("lazy", 4 * GIB, 300 * MIB, 1)], defaults)
    assert settings is defaults
    assert message == "QEMU overhead not calibrated: no VM has touched all its RAM"
    settings, message = calibrate_qemu([], defaults)
    assert settings is defaults
    assert message == "QEMU overhead not calibrated: no running VM to measure"
