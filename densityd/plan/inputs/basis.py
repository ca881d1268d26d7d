"""What a host's plans are made against, as the running daemon exports it (``PlanBasis``).

Per kind the capacity total and the host's measured use, the declared resources, the scope
globs, the data disk of each kind and the overheads measured here: the daemon exports them
as the ``densityd_plan_*`` basis gauges (``plan.live``), so that ``densityd plan
--prometheus`` (``inputs.fleet``) can rebuild this host's planner inputs from Prometheus and
answer as the host itself would.
"""

from __future__ import annotations

from dataclasses import dataclass

from densityd.model import WorkloadKind
from densityd.plan.core.model import RESOURCES, Resource
from densityd.plan.inputs.local import PlanContext
from densityd.plan.request import KINDS

# The per-kind overheads a plan measures on the host, by item: exported only when measured.
SHIM_ITEM = "shim"


QEMU_BASE_ITEM = "qemu_base"


@dataclass(frozen=True, slots=True)
class PlanBasis:
    """What one pass's plans were made against, as the ``densityd_plan_*`` basis gauges.

    ``capacity`` and ``used`` per kind are ``HostCapacity.total`` and ``.used`` of that
    kind's planner inputs (the kinds differ in their data disk); ``disks`` the path and
    device of each kind's data disk; ``overheads`` the measured per-kind overheads,
    ``(kind, item, bytes)``.
    """

    capacity: tuple[tuple[WorkloadKind, Resource, float], ...]
    used: tuple[tuple[WorkloadKind, Resource, float], ...]
    declared: tuple[Resource, ...]
    scopes: tuple[str, ...]
    disks: tuple[tuple[WorkloadKind, str, int], ...]
    overheads: tuple[tuple[WorkloadKind, str, float], ...]


def plan_basis(context: PlanContext) -> PlanBasis:
    """The basis of every plan made from ``context``; ``PlanRequestError`` without a host."""
    capacity: list[tuple[WorkloadKind, Resource, float]] = []
    used: list[tuple[WorkloadKind, Resource, float]] = []
    for kind in KINDS:
        host = context.inputs(kind).host
        for resource in RESOURCES:
            if resource in host.unknown_resources:
                continue  # not known: not exported (as 0, it would bind every fleet plan)
            capacity.append((kind, resource, host.total.get(resource)))
            if resource is not Resource.CPU:  # CPU use is not measured: always 0
                used.append((kind, resource, host.used.get(resource)))
    settings = context.settings
    overheads: list[tuple[WorkloadKind, str, float]] = []
    if settings.shim_measured:
        overheads.append((WorkloadKind.CONTAINER, SHIM_ITEM, settings.container_shim_bytes))
    if settings.qemu_calibrated:
        overheads.append((WorkloadKind.VM, QEMU_BASE_ITEM, settings.qemu_base_bytes))
    return PlanBasis(
        capacity=tuple(capacity),
        used=tuple(used),
        declared=tuple(r for r in RESOURCES if r in context.declared),
        scopes=context.scopes,
        disks=tuple(
            (kind, disk.path, disk.device)
            for kind, disk in context.disks.items()
            if disk is not None
        ),
        overheads=tuple(overheads),
    )
