"""Gathering the planner's inputs: scope, CPU rates, data disks, declared capacity, shims."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from densityd.config import load_settings
from densityd.model import (
    DiskUsage,
    HostSample,
    Snapshot,
    SourceStatus,
    WorkloadKind,
    WorkloadSample,
    cpu_rates,
)
from densityd.plan.answer import plan_document
from densityd.plan.core.model import MIB, Resource, View
from densityd.plan.inputs.local import NO_HISTORY, in_scope, plan_context, shim_settings
from densityd.plan.output.local import plan_table
from densityd.plan.request import PlanRequest, PlanRequestError

GIB = 1024 * MIB
DOCKER_ROOT = "/var/lib/docker"
IMAGES = "/var/lib/libvirt/images"


def container(name: str, memory: int, cpu: float = 10.0, **extra: object) -> WorkloadSample:
    return WorkloadSample(
        kind=WorkloadKind.CONTAINER,
        id=f"{name}-id",
        name=name,
        cpu_seconds=cpu,
        memory_bytes=memory,
        disk_bytes=10 * MIB,
        **extra,  # type: ignore[arg-type]
    )


def vm(name: str) -> WorkloadSample:
    return WorkloadSample(
        kind=WorkloadKind.VM,
        id=f"{name}-uuid",
        name=name,
        cpu_seconds=100.0,
        cpu_limit_cores=2,
        memory_bytes=300 * MIB,
        memory_limit_bytes=1 * GIB,
        disk_bytes=3 * GIB,
        disk_limit_bytes=20 * GIB,
    )


def host(*, same_disk: bool = False, shims: tuple[int, ...] = ()) -> HostSample:
    return HostSample(
        cpu_cores=8,
        memory_bytes=16 * GIB,
        memory_available_bytes=10 * GIB,
        disks=(
            DiskUsage(DOCKER_ROOT, 100 * GIB, 60 * GIB, device=1),
            DiskUsage(IMAGES, 500 * GIB, 400 * GIB, device=1 if same_disk else 2),
        ),
        container_shim_rss_bytes=shims,
    )


def snapshot(
    *workloads: WorkloadSample, timestamp: float = 1000.0, **host_args: object
) -> Snapshot:
    return Snapshot(
        timestamp=timestamp,
        workloads=workloads,
        host=host(**host_args),  # type: ignore[arg-type]
        sources=(SourceStatus("docker", True, 0.01, 0, timestamp),),
    )


DIRS = {WorkloadKind.CONTAINER: (DOCKER_ROOT,), WorkloadKind.VM: (IMAGES,)}


def settings(**flags: object) -> object:
    return load_settings({"state_dir": Path("/nonexistent"), **flags})


def test_in_scope_matches_name_or_id_globs() -> None:
    web = container("web-1", MIB)
    assert in_scope(web, [])
    assert in_scope(web, ["web-*"])
    assert in_scope(web, ["db-*", "web-1-i?"])
    assert not in_scope(web, ["db-*"])
    assert not in_scope(web, ["WEB-*"])  # case matters, as in Docker names


def test_cpu_rates_between_two_snapshots() -> None:
    first = snapshot(container("a", MIB, cpu=10.0), container("b", MIB, cpu=5.0), timestamp=100)
    second = snapshot(
        container("a", MIB, cpu=11.5),
        container("b", MIB, cpu=4.0),
        container("c", MIB),
        timestamp=102,
    )
    assert cpu_rates(first, second) == {"a-id": 0.75, "b-id": 0.0}  # b restarted; c is new
    assert cpu_rates(None, second) == {}
    assert cpu_rates(second, second) == {}


def test_cpu_rates_divide_by_the_time_between_the_readings_not_the_passes() -> None:
    """Issue 12: the first pass inspects before it reads, so its start is too early."""
    burner = replace(container("burn", 1), cpu_seconds=10.0, cpu_read_at=1002.5)
    first = snapshot(burner, timestamp=1000.0)
    second = snapshot(replace(burner, cpu_seconds=11.0, cpu_read_at=1004.5), timestamp=1004.0)
    # 1 CPU-second in the 2 s between the readings: 0.5 cores, not 1 / 4 s = 0.25.
    assert cpu_rates(first, second) == {"burn-id": 0.5}
    unknown = replace(burner, cpu_seconds=11.0, cpu_read_at=None)
    assert cpu_rates(first, snapshot(unknown, timestamp=1004.0)) == {"burn-id": 1 / 1.5}


def test_shim_cost_is_the_median_measured_shim() -> None:
    plan_settings = load_settings({}).plan_settings()
    assert not plan_settings.shim_measured
    measured = shim_settings(plan_settings, host(shims=(12 * MIB, 14 * MIB, 13 * MIB)))
    assert measured.shim_measured and measured.container_shim_bytes == 13 * MIB
    assert shim_settings(plan_settings, host()) is plan_settings


def test_scope_limits_the_workloads_that_count() -> None:
    snap = snapshot(container("web-1", 100 * MIB), container("db-1", 900 * MIB))
    context = plan_context(snap, NO_HISTORY, settings(scopes=["web-*"]), data_dirs=DIRS)
    assert [d.name for d in context.demands] == ["web-1"]
    assert any("1 of 2 workloads" in note for note in context.notes)


def test_each_kind_plans_against_its_own_data_disk() -> None:
    snap = snapshot(container("web", 100 * MIB), vm("db"))
    context = plan_context(snap, NO_HISTORY, settings(), data_dirs=DIRS)
    for_containers = context.inputs(WorkloadKind.CONTAINER)
    for_vms = context.inputs(WorkloadKind.VM)
    assert for_containers.host.total.disk == 100 * GIB
    assert for_containers.host.used.disk == 40 * GIB
    assert for_vms.host.total.disk == 500 * GIB
    # The VM's image is on another filesystem: it takes nothing of the Docker disk.
    vm_on_docker_disk = next(d for d in for_containers.workloads if d.kind is WorkloadKind.VM)
    assert vm_on_docker_disk.demand.disk == 0 and vm_on_docker_disk.disk_limit == 0
    vm_on_its_disk = next(d for d in for_vms.workloads if d.kind is WorkloadKind.VM)
    assert vm_on_its_disk.demand.disk >= 3 * GIB


def test_a_shared_filesystem_counts_both_kinds() -> None:
    snap = snapshot(container("web", 100 * MIB), vm("db"), same_disk=True)
    context = plan_context(snap, NO_HISTORY, settings(), data_dirs=DIRS)
    on_docker_disk = context.inputs(WorkloadKind.CONTAINER).workloads
    assert next(d for d in on_docker_disk if d.kind is WorkloadKind.VM).demand.disk >= 3 * GIB


def test_declared_capacity_replaces_only_the_named_resources() -> None:
    snap = snapshot(container("web", 100 * MIB))
    context = plan_context(snap, NO_HISTORY, settings(capacity="memory=2Gi"), data_dirs=DIRS)
    inputs = context.inputs(WorkloadKind.CONTAINER)
    assert inputs.host.total.memory == 2 * GIB
    assert inputs.host.total.cpu == 8
    assert inputs.host.declared == frozenset({Resource.MEMORY})


def test_like_an_unknown_workload_is_a_request_error() -> None:
    context = plan_context(snapshot(container("web", MIB)), NO_HISTORY, settings(), data_dirs=DIRS)
    with pytest.raises(PlanRequestError, match="nope"):
        plan_document(context, PlanRequest(like="nope"))


def test_document_answers_each_kind_for_its_median_by_default() -> None:
    snap = snapshot(container("web", 100 * MIB), vm("db"))
    context = plan_context(snap, NO_HISTORY, settings(), data_dirs=DIRS)
    document = plan_document(context, PlanRequest())
    assert document["schema"] == "densityd.plan/v1"
    got = {(a["kind"], a["view"]) for a in document["answers"]}
    assert got == {(str(k), str(v)) for k in WorkloadKind for v in View}
    assert "no local history" in " ".join(document["assumptions"]["notes"])


def test_compare_plans_one_shape_as_both_kinds_with_a_ratio() -> None:
    snap = snapshot(container("web", 100 * MIB))
    context = plan_context(snap, NO_HISTORY, settings(), data_dirs=DIRS)
    document = plan_document(context, PlanRequest(like="web", compare=True))
    assert {a["kind"] for a in document["answers"]} == {"container", "vm"}
    comparison = document["comparison"]
    assert comparison["container_remaining"] > comparison["vm_remaining"] > 0
    assert comparison["ratio"] == pytest.approx(
        comparison["container_remaining"] / comparison["vm_remaining"]
    )


def test_with_libvirt_down_vms_are_planned_on_the_docker_filesystem_saying_why() -> None:
    """Issue 12: VMs were planned against Docker's filesystem without a word in the table."""
    down = snapshot(container("web", MIB))
    down = replace(
        down,
        sources=(
            *down.sources,
            SourceStatus("libvirt", False, 0.01, 1, None, "cannot reach libvirt"),
        ),
    )
    context = plan_context(
        down,
        NO_HISTORY,
        load_settings({}),
        data_dirs={WorkloadKind.CONTAINER: (DOCKER_ROOT,), WorkloadKind.VM: ()},
    )
    assert context.disks[WorkloadKind.VM] == context.disks[WorkloadKind.CONTAINER]
    why = context.disk_fallbacks[WorkloadKind.VM]
    assert why.startswith("libvirt is down, so its libvirt storage pool is not known")
    document = plan_document(context, PlanRequest(kind=WorkloadKind.VM))
    assert document["host"]["data_disks"]["vm"]["why"] == why
    assert "why" not in document["host"]["data_disks"]["container"]
    table = " ".join(plan_table(document).split())
    assert f"VMs on {DOCKER_ROOT} (" in table and "libvirt is down, so its" in table


def test_a_hung_pool_filesystem_leaves_the_vm_disk_unknown_not_planned_elsewhere() -> None:
    """Issue 13: a pool whose statvfs does not answer is unknown, and never binds a VM plan on
    Docker's filesystem instead."""
    snap = snapshot(vm("db"))
    assert snap.host is not None
    hung = SourceStatus(IMAGES, False, 10.0, 1, 900.0, "no answer within the 10s deadline")
    snap = replace(
        snap,
        host=replace(
            snap.host,
            disks=snap.host.disks[:1],  # the pool's filesystem gave no answer
            disk_checks=(SourceStatus(DOCKER_ROOT, True, 0.0, 0, 1000.0), hung),
        ),
    )
    context = plan_context(snap, NO_HISTORY, settings(), data_dirs=DIRS)
    assert context.disks[WorkloadKind.VM] is None
    assert context.disks[WorkloadKind.CONTAINER] is not None
    why = context.disk_fallbacks[WorkloadKind.VM]
    assert why == f"its libvirt storage pool {IMAGES} does not answer ({hung.last_error})"
    document = plan_document(context, PlanRequest(kind=WorkloadKind.VM))
    for answer in document["answers"]:
        assert answer["bound"] in ("cpu", "memory"), answer  # disk unknown never binds
        assert answer["remaining"] is not None
    assert why in " ".join(document["assumptions"]["notes"])


def guest_vm(name: str, guest_used: int | None) -> WorkloadSample:
    return replace(vm(name), guest_memory_used_bytes=guest_used)


def test_guest_os_measured_is_the_median_guest_used_of_the_reporting_vms() -> None:
    # Three reporting guests (one busy) and one that reports nothing: the median of three.
    snap = snapshot(
        container("web", 100 * MIB),
        guest_vm("a", 60 * MIB),
        guest_vm("b", 70 * MIB),
        guest_vm("busy", 900 * MIB),
        guest_vm("silent", None),
    )
    context = plan_context(snap, NO_HISTORY, settings(guest_os="measured"), data_dirs=DIRS)
    assert context.settings.measured_guest_os_memory == 70 * MIB
    assert context.settings.measured_guest_os_vms == 3
    assert any("70.0MiB median guest used over 3 VM(s)" in n for n in context.notes)
    document = plan_document(context, PlanRequest(like="web", compare=True))
    comparison = document["comparison"]
    assert comparison["vm_overhead"]["guest_os_memory"] == 70 * MIB
    assert comparison["guest_os_memory"] == {
        "table": "debian",
        "table_bytes": 512 * MIB,
        "measured_bytes": 70 * MIB,
        "measured_vms": 3,
    }
    table = plan_table(document)
    assert "guest OS RAM: table debian 512.0MiB, measured 70.0MiB" in table
    assert "of 3 VM(s)" in table


def test_the_table_guest_os_is_compared_with_the_measured_one_but_still_used() -> None:
    snap = snapshot(container("web", 100 * MIB), guest_vm("a", 60 * MIB))
    context = plan_context(snap, NO_HISTORY, settings(guest_os="alpine"), data_dirs=DIRS)
    comparison = plan_document(context, PlanRequest(like="web", compare=True))["comparison"]
    assert comparison["vm_overhead"]["guest_os_memory"] == 128 * MIB
    assert comparison["guest_os_memory"]["table"] == "alpine"
    assert comparison["guest_os_memory"]["measured_bytes"] == 60 * MIB


def test_guest_os_measured_without_a_reporting_vm_is_a_request_error_naming_the_flag() -> None:
    snap = snapshot(container("web", 100 * MIB), guest_vm("silent", None))
    with pytest.raises(PlanRequestError, match="--guest-os measured: no running VM reports"):
        plan_context(snap, NO_HISTORY, settings(guest_os="measured"), data_dirs=DIRS)
    # Without the flag, the table is used and the comparison says nothing was measured.
    context = plan_context(snap, NO_HISTORY, settings(), data_dirs=DIRS)
    document = plan_document(context, PlanRequest(like="web", compare=True))
    assert document["comparison"]["guest_os_memory"]["measured_bytes"] is None
    assert "not measured (no running VM reports current guest memory)" in plan_table(document)
