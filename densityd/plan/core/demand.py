"""What existing workloads take, in both views, and the shapes planned for (DESIGN §6).

``workload_demand`` turns one sample and its history into a ``WorkloadDemand``;
``median_profile``, ``like_profile`` and ``DEFAULT_PROFILES`` give the ``Profile`` of "one
more" when the operator names none.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from densityd.model import WorkloadKind, WorkloadSample
from densityd.plan.core.model import (
    GIB,
    MIB,
    PlanSettings,
    Profile,
    Resource,
    Resources,
    WorkloadDemand,
    WorkloadHistory,
)

# Integral values that float arithmetic left a hair above an integer still round down to it.
_EPSILON = 1e-9


def workload_demand(
    sample: WorkloadSample,
    history: WorkloadHistory | None,
    settings: PlanSettings,
    cpu_rate: float | None = None,
) -> WorkloadDemand:
    """One workload as the planner sees it, from its latest sample and its history.

    CPU is the history's percentile of the rate, else ``cpu_rate`` (from two fresh samples),
    else 0. Memory is the larger of the window maximum and the current footprint, plus the
    buffer. Disk is the current size plus the growth the history shows (``last - first``,
    never negative, not extrapolated past the window).

    The sample has no backing-file field yet, so ``disk_is_overlay`` stays ``False``: a VM on
    a copy-on-write overlay is counted at its virtual capacity in the allocation view.
    """
    cpu = 0.0
    if history is not None and history.cpu_rate_percentile is not None:
        cpu = history.cpu_rate_percentile
    elif cpu_rate is not None:
        cpu = cpu_rate
    current_memory = float(sample.memory_bytes) if sample.memory_bytes is not None else None
    peak = max(
        (m for m in (current_memory, history.memory_max if history else None) if m is not None),
        default=0.0,
    )
    current_disk = float(sample.disk_bytes) if sample.disk_bytes is not None else None
    growth = 0.0
    if history is not None and history.disk_first is not None and history.disk_last is not None:
        growth = max(0.0, history.disk_last - history.disk_first)
    is_vm = sample.kind is WorkloadKind.VM
    return WorkloadDemand(
        kind=sample.kind,
        id=sample.id,
        name=sample.name,
        image=sample.image,
        running=sample.running,
        demand=Resources(
            cpu=max(0.0, cpu),
            memory=peak * (1.0 + settings.memory_buffer),
            disk=(current_disk or 0.0) + growth,
        ),
        cpu_limit=sample.cpu_limit_cores,
        memory_limit=_float_or_none(sample.memory_limit_bytes),
        disk_limit=_float_or_none(sample.disk_limit_bytes),
        memory_bytes=current_memory,
        guest_memory_bytes=_float_or_none(sample.memory_limit_bytes) if is_vm else None,
        vcpus=whole_vcpus(sample.cpu_limit_cores) if is_vm else None,
        history_seconds=(
            max(0.0, history.last_timestamp - history.first_timestamp) if history else 0.0
        ),
        disk_bytes=current_disk,
        hugepage_size=sample.hugepage_size_bytes if is_vm else None,
        hugepage_bytes=_float_or_none(sample.hugepage_bytes) if is_vm else None,
    )


def allocation_of(workload: WorkloadDemand) -> tuple[Resources, tuple[Resource, ...]]:
    """A workload's allocation view, and the resources where it had no limit.

    Where there is no limit (or configured size) the workload counts at its demand. A VM's
    memory is its configured guest RAM; a VM on a copy-on-write overlay counts its disk at its
    demand, as ``workload_cost`` charges one more of it.
    """
    fallbacks: list[Resource] = []

    def pick(resource: Resource, limit: float | None) -> float:
        if limit is None:
            fallbacks.append(resource)
            return workload.demand.get(resource)
        return limit

    memory_limit = workload.memory_limit
    if workload.kind is WorkloadKind.VM and workload.guest_memory_bytes is not None:
        memory_limit = workload.guest_memory_bytes
    cpu = pick(Resource.CPU, workload.cpu_limit)
    memory = pick(Resource.MEMORY, memory_limit)
    if workload.kind is WorkloadKind.VM and workload.disk_is_overlay:
        disk = workload.demand.disk
    else:
        disk = pick(Resource.DISK, workload.disk_limit)
    return Resources(cpu=cpu, memory=memory, disk=disk), tuple(fallbacks)


def like_profile(workload: WorkloadDemand) -> Profile:
    """The shape of one more workload like an existing one.

    The demand view is its measured demand; the allocation view its limits, falling back to
    its demand. A VM's shape already includes its guest OS, and its demand memory (QEMU's
    resident set) already includes QEMU's overhead. A container's image is on the host.
    """
    allocation, _ = allocation_of(workload)
    is_vm = workload.kind is WorkloadKind.VM
    return Profile(
        name=workload.name,
        demand=workload.demand,
        allocation=allocation,
        origin=f"like {workload.name}",
        image_present=not is_vm,
        includes_guest_os=is_vm,
        vcpus=workload.vcpus if is_vm else None,
        disk_is_overlay=workload.disk_is_overlay if is_vm else False,
        image=workload.image,
        memory_includes_overhead=is_vm,
        hugepages=is_vm and workload.hugepage_bytes is not None,
        hugepage_size=workload.hugepage_size if is_vm else None,
    )


def median_profile(workloads: Sequence[WorkloadDemand], kind: WorkloadKind) -> Profile | None:
    """The per-resource median of one kind's running workloads, ``None`` when there are none.

    Each view takes its own median (the median allocation need not belong to the workload
    with the median demand). A median VM has ``ceil`` of the median vCPUs, includes its guest
    OS and QEMU's overhead in its demand memory, and is an overlay when most VMs are.
    """
    running = [w for w in workloads if w.kind is kind and w.running]
    if not running:
        return None
    allocations = [allocation_of(w)[0] for w in running]
    paged = [w for w in running if w.hugepage_bytes is not None and w.hugepage_size is not None]
    demand = _median_resources([w.demand for w in running])
    allocation = _median_resources(allocations)
    is_vm = kind is WorkloadKind.VM
    return Profile(
        name=f"median-{kind.value}",
        demand=demand,
        allocation=allocation,
        origin=f"median {kind.value}",
        # Only images already on the host are in the median; their size is not counted again.
        image_present=not is_vm,
        includes_guest_os=is_vm,
        vcpus=whole_vcpus(allocation.cpu) if is_vm else None,
        disk_is_overlay=is_vm and 2 * sum(w.disk_is_overlay for w in running) > len(running),
        memory_includes_overhead=is_vm,
        # Backed by huge pages, of their most common size, when most of the VMs are.
        hugepages=2 * len(paged) > len(running),
        hugepage_size=(
            statistics.mode(w.hugepage_size for w in paged)
            if 2 * len(paged) > len(running)
            else None
        ),
    )


# The shapes for a kind the host has none of; documented on ``default_profile``.
DEFAULT_PROFILES: dict[WorkloadKind, Profile] = {
    WorkloadKind.CONTAINER: Profile(
        name="default-container",
        demand=Resources(cpu=0.25, memory=256 * MIB, disk=1 * GIB),
        allocation=Resources(cpu=0.25, memory=256 * MIB, disk=1 * GIB),
        origin="default",
    ),
    WorkloadKind.VM: Profile(
        name="default-vm",
        demand=Resources(cpu=1.0, memory=1 * GIB, disk=10 * GIB),
        allocation=Resources(cpu=1.0, memory=1 * GIB, disk=10 * GIB),
        origin="default",
        includes_guest_os=True,
        vcpus=1,
    ),
}


def default_profile(workloads: Sequence[WorkloadDemand], kind: WorkloadKind) -> Profile:
    """The median running workload of the kind, else ``DEFAULT_PROFILES[kind]``.

    The defaults, the same in both views since nothing was measured: a container of 0.25
    cores, 256 MiB and 1 GiB of writable layer; a VM of 1 vCPU, 1 GiB of guest RAM and a
    10 GiB disk, guest OS included.
    """
    median = median_profile(workloads, kind)
    return DEFAULT_PROFILES[kind] if median is None else median


def _median_resources(values: Sequence[Resources]) -> Resources:
    """The per-resource median of a non-empty sequence."""
    return Resources(
        cpu=statistics.median(v.cpu for v in values),
        memory=statistics.median(v.memory for v in values),
        disk=statistics.median(v.disk for v in values),
    )


def whole_vcpus(cores: float | None) -> int | None:
    """Whole vCPUs for a core count, rounded up and at least 1; ``None`` when unknown."""
    if cores is None:
        return None
    return max(1, math.ceil(cores - _EPSILON))


def _float_or_none(value: int | float | None) -> float | None:
    """``value`` as a float, keeping ``None``."""
    return None if value is None else float(value)
