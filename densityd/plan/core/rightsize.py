"""Rightsizing: each workload's recommended size, and the plan if workloads had it.

A workload's recommendation is its demand as the planner already measures it
(``demand.workload_demand``): CPU at the configured percentile of its rate, memory at the
window's maximum plus the buffer. Set next to its limit, the difference is what it is
over-provisioned by (never negative; none without a limit).

"Resized" means each running workload's limits set to its recommendation:

- a container's CPU and memory limits both ways, to the recommendation (one whose use plus
  the buffer is above its limit is given the buffer: that is what it needs);
- a VM's vCPUs to the recommended cores rounded up (at least 1), its guest RAM to its
  recommended memory less QEMU's own overhead (which its measured resident set holds), at
  least the guest OS baseline; neither ever above what it has, since from the host a guest
  that touched all its RAM cannot be told from one that needs it (a Linux guest fills its
  free RAM with page cache);
- a workload without a limit has nothing to resize (the allocation view already counts it at
  its demand), and a stopped one keeps its limits (nothing of it runs to be measured).

Resizing changes the allocation view only: what workloads use, and so the demand view, is
the same after as before. The rightsized answer is the stricter of the resized allocation
view and the unchanged demand view, for the same shape of "one more".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from densityd.model import WorkloadKind
from densityd.plan.core.cost import (
    MEASURED_DISK_FROM,
    existing_overhead,
    guest_os_baseline,
    qemu_overhead,
)
from densityd.plan.core.demand import allocation_of, whole_vcpus
from densityd.plan.core.model import (
    PlanInputs,
    PlanSettings,
    Resource,
    Resources,
    WorkloadDemand,
)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One workload's recommended CPU and memory, next to its limits.

    ``cpu_limit`` is a container's CPU limit or a VM's vCPUs, ``memory_limit`` a container's
    memory limit or a VM's guest RAM (``None``: no limit). ``overprovisioned_*`` is
    ``limit - recommended``, floored at 0, ``None`` without a limit. ``frees`` is what
    resizing it frees in the allocation view (CPU cores, memory bytes with the per-kind
    overhead that follows its size); negative where it grows. ``resized`` says whether its
    limits are set to the recommendation in the rightsized plan (running, with a limit).
    """

    kind: WorkloadKind
    id: str
    name: str
    cpu: float
    memory: float
    cpu_limit: float | None
    memory_limit: float | None
    overprovisioned_cpu: float | None
    overprovisioned_memory: float | None
    frees: Resources
    resized: bool


def recommended(workload: WorkloadDemand, settings: PlanSettings) -> tuple[float, float]:
    """A workload's recommended (CPU cores, memory bytes), as the module docstring says."""
    cpu, memory = workload.demand.cpu, workload.demand.memory
    if workload.kind is not WorkloadKind.VM:
        return cpu, memory
    vcpus = _vcpus(workload)
    vcpu_cores = float(whole_vcpus(cpu) or 1)
    if vcpus is not None:
        vcpu_cores = min(vcpu_cores, float(vcpus))
    guest_ram = workload.guest_memory_bytes
    if guest_ram is None:
        return vcpu_cores, memory
    overhead = qemu_overhead(guest_ram, vcpus or 1, settings)
    floor = min(guest_ram, _guest_os_memory(settings))
    return vcpu_cores, min(guest_ram, max(memory - overhead, floor))


def resize(workload: WorkloadDemand, settings: PlanSettings) -> WorkloadDemand:
    """The workload with its limits set to its recommendation (unchanged when stopped)."""
    if not workload.running:
        return workload
    cpu, memory = recommended(workload, settings)
    if workload.kind is WorkloadKind.VM:
        vcpus = None if workload.vcpus is None and workload.cpu_limit is None else int(cpu)
        return replace(
            workload,
            cpu_limit=None if vcpus is None else float(vcpus),
            vcpus=vcpus,
            memory_limit=None if workload.memory_limit is None else memory,
            guest_memory_bytes=None if workload.guest_memory_bytes is None else memory,
        )
    return replace(
        workload,
        cpu_limit=None if workload.cpu_limit is None else cpu,
        memory_limit=None if workload.memory_limit is None else memory,
    )


def recommendation(workload: WorkloadDemand, settings: PlanSettings) -> Recommendation:
    """One workload's recommendation, its over-provisioning and what resizing it frees."""
    cpu, memory = recommended(workload, settings)
    cpu_limit = workload.cpu_limit
    if workload.kind is WorkloadKind.VM and workload.vcpus is not None:
        cpu_limit = float(workload.vcpus)
    memory_limit = workload.memory_limit
    if workload.kind is WorkloadKind.VM and workload.guest_memory_bytes is not None:
        memory_limit = workload.guest_memory_bytes
    after = resize(workload, settings)
    before_allocation, _ = allocation_of(workload)
    after_allocation, _ = allocation_of(after)
    frees = Resources(
        cpu=before_allocation.cpu - after_allocation.cpu,
        memory=(before_allocation.memory + existing_overhead(workload, settings))
        - (after_allocation.memory + existing_overhead(after, settings)),
        disk=0.0,
    )
    return Recommendation(
        kind=workload.kind,
        id=workload.id,
        name=workload.name,
        cpu=cpu,
        memory=memory,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        overprovisioned_cpu=None if cpu_limit is None else max(0.0, cpu_limit - cpu),
        overprovisioned_memory=None if memory_limit is None else max(0.0, memory_limit - memory),
        frees=frees,
        resized=workload.running and (cpu_limit is not None or memory_limit is not None),
    )


def rightsized(inputs: PlanInputs, settings: PlanSettings) -> PlanInputs:
    """The planner's inputs with every workload resized (``resize``)."""
    return replace(inputs, workloads=tuple(resize(w, settings) for w in inputs.workloads))


def biggest_savings(
    recommendations: Sequence[Recommendation], usable: Resources
) -> list[Recommendation]:
    """The recommendations that free something, the most freeing first.

    CPU and memory are made comparable as shares of the allocation view's usable capacity
    (``usable``): a workload ranks by the larger of its two shares (its dominant share), then
    by name.
    """

    def share(item: Recommendation) -> float:
        return max(
            (
                item.frees.get(r) / usable.get(r)
                for r in (Resource.CPU, Resource.MEMORY)
                if usable.get(r) > 0
            ),
            default=0.0,
        )

    freeing = [r for r in recommendations if r.frees.cpu > 0 or r.frees.memory > 0]
    return sorted(freeing, key=lambda r: (-share(r), r.name, r.id))


def _vcpus(workload: WorkloadDemand) -> int | None:
    """A VM's vCPUs as reported, else its CPU limit rounded up; ``None`` when neither."""
    if workload.vcpus is not None:
        return max(1, workload.vcpus)
    return whole_vcpus(workload.cpu_limit)


def _guest_os_memory(settings: PlanSettings) -> float:
    """The guest OS baseline's RAM; the default table entry's when ``measured`` has no figure
    (a plan refuses that setting before it gets here: ``inputs.local.guest_os_settings``)."""
    try:
        return guest_os_baseline(settings.guest_os, settings).memory
    except ValueError:
        return guest_os_baseline(MEASURED_DISK_FROM).memory
