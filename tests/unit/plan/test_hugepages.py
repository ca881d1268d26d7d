"""Huge pages as a resource: situations whose right answer is known by construction.

A host with a pool of 2 MiB pages, some of it held by a running hugepage VM; a VM profile
backed by huge pages must bind on them with the count the free pages allow, while ordinary
memory loses the pool (MemAvailable never counted it) and is not charged the VM's guest RAM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from densityd.config import load_settings
from densityd.model import (
    DiskUsage,
    HostSample,
    HugepagePool,
    Snapshot,
    SourceStatus,
    WorkloadKind,
    WorkloadSample,
)
from densityd.plan.answer import plan_answers, plan_document
from densityd.plan.command_answer import pack_request
from densityd.plan.core.model import MIB, PlanSettings, Resource, View
from densityd.plan.core.quantity import QuantityError, parse_profile
from densityd.plan.inputs.local import NO_HISTORY, plan_context
from densityd.plan.live import LivePlan
from densityd.plan.request import PackingRequest, PlanRequest, PlanRequestError

GIB = 1024 * MIB
PAGE = 2 * MIB
DIRS = {WorkloadKind.CONTAINER: ("/var/lib/docker",), WorkloadKind.VM: ("/var/lib/libvirt",)}


def hugepage_vm(name: str = "hp-1", running: bool = True) -> WorkloadSample:
    """A running 1 GiB VM backed by 2 MiB pages: QEMU's RSS (100 MiB) holds none of them."""
    return WorkloadSample(
        kind=WorkloadKind.VM,
        id=f"{name}-uuid",
        name=name,
        running=running,
        state="running" if running else "shutoff",
        cpu_seconds=10.0 if running else None,
        cpu_limit_cores=1.0,
        memory_bytes=100 * MIB if running else None,
        memory_limit_bytes=1 * GIB,
        disk_bytes=1 * GIB,
        disk_limit_bytes=10 * GIB,
        hugepage_size_bytes=PAGE,
        hugepage_bytes=1 * GIB,
    )


def host(free_pages: int = 1792, reserved: int = 256, total_pages: int = 2048) -> HostSample:
    """16 GiB, a 4 GiB pool of 2 MiB pages (2048): the VM holds 512, 256 of them faulted in
    and 256 reserved, so 1536 pages (3 GiB) are there for a new VM. MemAvailable (10 GiB)
    excludes the whole pool, as the kernel's does."""
    return HostSample(
        cpu_cores=8,
        memory_bytes=16 * GIB,
        memory_available_bytes=10 * GIB,
        disks=(
            DiskUsage("/var/lib/docker", 500 * GIB, 400 * GIB, device=1),
            DiskUsage("/var/lib/libvirt", 500 * GIB, 400 * GIB, device=1),
        ),
        hugepages=(
            HugepagePool(PAGE, total_pages, free_pages, reserved, 0, default=True),
            HugepagePool(1024 * MIB, 0, 0, 0, 0),
        ),
        hugepages_bytes=total_pages * PAGE,
    )


def snapshot(*workloads: WorkloadSample, **host_args: Any) -> Snapshot:
    return Snapshot(
        timestamp=1000.0,
        workloads=workloads,
        host=host(**host_args),
        sources=(SourceStatus("libvirt", True, 0.01, 0, 1000.0),),
    )


def answers(snap: Snapshot, request: PlanRequest) -> dict[tuple[str, View], Any]:
    context = plan_context(
        snap, NO_HISTORY, load_settings({"state_dir": Path("/nonexistent")}), data_dirs=DIRS
    )
    return {(str(a.kind), a.view): a for a in plan_answers(context, request)}


def resource(answer: Any, which: Resource) -> Any:
    return next(r for r in answer.resources if r.resource is which)


# 1 GiB of guest RAM + Debian's 512 MiB guest OS (the profile has none) = 1.5 GiB in pages.
HUGEPAGE_PROFILE = parse_profile("hpvm=cpu=1,memory=1Gi,disk=5Gi,hugepages=true")


@pytest.mark.parametrize("view", list(View))
def test_a_hugepage_vm_profile_binds_on_the_free_pages(view: View) -> None:
    found = answers(snapshot(hugepage_vm()), PlanRequest(profile=HUGEPAGE_PROFILE, kind=None))
    vm_answer = answers(
        snapshot(hugepage_vm()),
        PlanRequest(profile=HUGEPAGE_PROFILE, kind=WorkloadKind.VM),
    )[("vm", view)]
    # 3 GiB of pages free and unreserved, 1.5 GiB each: exactly 2, a third needs 4.5 GiB.
    assert vm_answer.remaining == 2
    assert vm_answer.bound is Resource.HUGEPAGES
    pages = resource(vm_answer, Resource.HUGEPAGES)
    assert pages.total == pages.usable == 4 * GIB  # no reserve, ratio or fill target
    assert pages.used == 1 * GIB  # the running VM's 512 pages, reserved ones included
    assert pages.free == 3 * GIB
    assert pages.cost == 1.5 * GIB
    # Ordinary memory pays QEMU's overhead only, and has lost the pool from its total.
    memory = resource(vm_answer, Resource.MEMORY)
    assert memory.total == 12 * GIB
    assert memory.cost < 128 * MIB
    assert memory.fits is not None and memory.fits > 50
    # As a container the same profile is ordinary memory and has no hugepages side.
    container = found[("container", view)]
    assert all(r.resource is not Resource.HUGEPAGES for r in container.resources)
    assert resource(container, Resource.MEMORY).cost >= 1 * GIB


def test_the_pool_is_not_counted_twice_in_memory() -> None:
    # A profile without huge pages on the same host: memory is MemTotal less the pool, and
    # its use MemTotal - MemAvailable less the pool (the VM's RSS of 100 MiB explained).
    plain = parse_profile("vm=cpu=1,memory=1Gi,disk=5Gi")
    found = answers(snapshot(hugepage_vm()), PlanRequest(profile=plain, kind=WorkloadKind.VM))
    demand = found[("vm", View.DEMAND)]
    memory = resource(demand, Resource.MEMORY)
    assert memory.total == 12 * GIB
    # Used: the VM's demand (RSS + 15 %) and the rest of the 2 GiB the pool does not explain.
    assert memory.system == pytest.approx(2 * GIB - 100 * MIB)
    assert memory.used == pytest.approx(2 * GIB - 100 * MIB + 115 * MIB)
    assert all(r.resource is not Resource.HUGEPAGES for r in demand.resources)
    # Allocation view: the hugepage VM's 1 GiB is in the pool, only its QEMU overhead here.
    allocation = resource(found[("vm", View.ALLOCATION)], Resource.MEMORY)
    assert allocation.used < 128 * MIB


def test_a_stopped_hugepage_vm_keeps_its_pages_promised_in_the_allocation_view() -> None:
    # Shut off, it holds no pages (all 2048 free), but starting it takes 512 of them back.
    snap = snapshot(hugepage_vm(running=False), free_pages=2048, reserved=0)
    found = answers(snap, PlanRequest(profile=HUGEPAGE_PROFILE, kind=WorkloadKind.VM))
    assert found[("vm", View.ALLOCATION)].remaining == 2  # (4 - 1) GiB / 1.5 GiB
    assert found[("vm", View.DEMAND)].remaining == 2  # 4 GiB / 1.5 GiB = 2.67
    assert resource(found[("vm", View.DEMAND)], Resource.HUGEPAGES).used == 0


def test_pages_in_use_by_something_else_count_in_both_views() -> None:
    # No VM, but 1024 pages taken by another user (a DPDK app, say): 2 GiB left, 1 fits.
    snap = snapshot(free_pages=1024, reserved=0)
    found = answers(snap, PlanRequest(profile=HUGEPAGE_PROFILE, kind=WorkloadKind.VM))
    for view in View:
        assert found[("vm", view)].remaining == 1
        assert resource(found[("vm", view)], Resource.HUGEPAGES).system == 2 * GIB


def test_a_page_size_the_host_has_no_pages_of_fits_none() -> None:
    gigantic = parse_profile("big=cpu=1,memory=1Gi,hugepages=1Gi")
    found = answers(snapshot(), PlanRequest(profile=gigantic, kind=WorkloadKind.VM))
    answer = found[("vm", View.DEMAND)]
    assert answer.remaining == 0 and answer.bound is Resource.HUGEPAGES
    # 1 GiB + 512 MiB of guest OS in 1 GiB pages: 2 pages.
    assert resource(answer, Resource.HUGEPAGES).cost == 2 * GIB


def test_like_a_hugepage_vm_is_a_hugepage_shape() -> None:
    found = answers(snapshot(hugepage_vm()), PlanRequest(like="hp-1"))
    answer = found[("vm", View.ALLOCATION)]
    # Its own 1 GiB of pages (guest OS included): 3 more in the 3 GiB left.
    assert answer.remaining == 3 and answer.bound is Resource.HUGEPAGES


def test_a_host_without_huge_page_support_binds_a_hugepage_profile_at_none_known() -> None:
    # No pools at all (no default size): unknown, never a guess; memory and the rest bind.
    bare = Snapshot(
        timestamp=1000.0,
        host=HostSample(cpu_cores=8, memory_bytes=16 * GIB, memory_available_bytes=10 * GIB),
        sources=(),
    )
    found = answers(bare, PlanRequest(profile=HUGEPAGE_PROFILE, kind=WorkloadKind.VM))
    pages = resource(found[("vm", View.DEMAND)], Resource.HUGEPAGES)
    assert pages.fits is None and not pages.known
    assert any("hugepages capacity unknown" in n for n in found[("vm", View.DEMAND)].notes)


def test_the_document_and_table_carry_hugepages() -> None:
    context = plan_context(
        snapshot(hugepage_vm()),
        NO_HISTORY,
        load_settings({"state_dir": Path("/nonexistent")}),
        data_dirs=DIRS,
    )
    document = plan_document(context, PlanRequest(profile=HUGEPAGE_PROFILE, kind=WorkloadKind.VM))
    answer = document["answers"][0]
    assert answer["bound"] == "hugepages"
    assert answer["total"]["hugepages_bytes"] == 4 * GIB
    assert answer["cost"]["hugepages_bytes"] == 1.5 * GIB
    assert answer["fits"]["hugepages_bytes"] == 2


def test_the_live_plan_exports_hugepages_as_a_resource() -> None:
    settings = load_settings(
        {
            "state_dir": Path("/nonexistent"),
            "plan_profiles": ["web=cpu=1,memory=1Gi", "hpvm=cpu=1,memory=1Gi,hugepages=true"],
        }
    )
    live = LivePlan(settings, lambda: DIRS, lambda: None)
    live.update(snapshot(hugepage_vm()))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in live.collect()
        for s in family.samples
    }
    bound = {
        labels
        for name, labels in samples
        if name == "densityd_plan_bound" and ("kind", "vm") in labels
    }
    assert (("kind", "vm"), ("profile", "hpvm"), ("resource", "hugepages")) in bound
    assert (
        samples[
            (
                "densityd_plan_usable_bytes",
                (("kind", "vm"), ("resource", "hugepages"), ("view", "demand")),
            )
        ]
        == 4 * GIB
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", (True, None)), ("no", (False, None)), ("2Mi", (True, PAGE)), ("1Gi", (True, GIB))],
)
def test_the_hugepages_profile_key(text: str, expected: tuple[bool, int | None]) -> None:
    profile = parse_profile(f"cpu=1,memory=1Gi,hugepages={text}")
    assert (profile.hugepages, profile.hugepage_size) == expected


@pytest.mark.parametrize("text", ["2M", "3Mi", "4Ki", "maybe"])
def test_a_bad_hugepages_value_names_the_key(text: str) -> None:
    with pytest.raises(QuantityError, match="hugepages"):
        parse_profile(f"cpu=1,memory=1Gi,hugepages={text}")


def test_packing_and_the_fleet_refuse_a_hugepage_vm_rather_than_charge_it_nothing() -> None:
    request = PackingRequest(shapes=((HUGEPAGE_PROFILE, 3),), kind=WorkloadKind.VM)
    with pytest.raises(PlanRequestError, match="huge pages, which are planned per host only"):
        pack_request([], request, list(View), PlanSettings())
    # As containers the same shapes pack as ordinary memory.
    as_containers = PackingRequest(shapes=((HUGEPAGE_PROFILE, 3),), kind=WorkloadKind.CONTAINER)
    assert pack_request([], as_containers, list(View), PlanSettings()) is not None
