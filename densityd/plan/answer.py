"""Answer plan requests: pick the shapes asked about and run the pure core over the inputs.

``densityd plan``, the daemon's ``densityd_plan_remaining`` gauges and ``/api/v1/plan`` all
come through ``plan_document`` for one host, so that they give the same answer for the same
data. What only the commands answer (a fleet, several shapes at once, the rightsizing
report) is in ``plan.command_answer``, so that the daemon imports none of it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from densityd.model import WorkloadKind
from densityd.plan.core.cost import MEASURED, MEASURED_DISK_FROM, guest_os_baseline
from densityd.plan.core.demand import default_profile, like_profile
from densityd.plan.core.model import Answer, PlanSettings, Profile, Resource, WorkloadDemand
from densityd.plan.core.rightsize import Recommendation, recommendation, rightsized
from densityd.plan.core.slots import answers, compare_ratio, headline
from densityd.plan.inputs.local import PlanContext
from densityd.plan.output.document import plan_document as render_document
from densityd.plan.output.document import settings_assumptions
from densityd.plan.request import KINDS, PlanRequest, PlanRequestError


def shapes(
    demands: Sequence[WorkloadDemand], request: PlanRequest, *, where: str = ""
) -> list[tuple[WorkloadKind, Profile]]:
    """The (kind, shape) pairs a request asks about: a given profile, a workload ``like``
    (``where`` says where it was looked for: `` on any host`` for a fleet), else each kind's
    median over ``demands``."""
    if request.like is not None:
        workload = _like(demands, request.like, where)
        shape = like_profile(workload)
        return [(kind, shape) for kind in _kinds(request, workload.kind)]
    if request.profile is not None:
        return [(kind, request.profile) for kind in _kinds(request, WorkloadKind.CONTAINER)]
    if request.compare:
        shape = default_profile(demands, request.kind or WorkloadKind.CONTAINER)
        return [(kind, shape) for kind in KINDS]
    kinds = (request.kind,) if request.kind else KINDS
    return [(kind, default_profile(demands, kind)) for kind in kinds]


def _like(demands: Sequence[WorkloadDemand], name: str, where: str) -> WorkloadDemand:
    """The one workload ``--like`` names (its name, ID or an ID prefix)."""
    matches = [d for d in demands if name in (d.name, d.id) or d.id.startswith(name)]
    if not matches:
        known = ", ".join(sorted({d.name for d in demands})[:20]) or "none"
        raise PlanRequestError(
            f"--like: no workload in scope{where} is named {name!r} (known: {known})"
        )
    if len({(d.kind, d.id) for d in matches}) > 1:
        raise PlanRequestError(f"--like: {name!r} matches {len(matches)} workloads; give the ID")
    return matches[0]


def _kinds(request: PlanRequest, natural: WorkloadKind) -> tuple[WorkloadKind, ...]:
    if request.compare:
        return KINDS
    return (request.kind or natural,)


# -- one host ----------------------------------------------------------------------------------


def _planned(context: PlanContext, request: PlanRequest) -> tuple[list[Answer], dict[str, str]]:
    """Every answer a request asks for, kind by kind, and where each shape came from."""
    result: list[Answer] = []
    origins: dict[str, str] = {}
    for kind, shape in shapes(context.demands, request):
        origins[shape.name] = shape.origin
        result.extend(answers(context.inputs(kind), shape, [kind], request.views, context.settings))
    return result, origins


def plan_answers(context: PlanContext, request: PlanRequest) -> list[Answer]:
    """Every answer a request asks for, kind by kind."""
    return _planned(context, request)[0]


def rightsized_answers(context: PlanContext, request: PlanRequest) -> list[Answer]:
    """``plan_answers`` as if every workload were resized to its recommendation
    (``core.rightsize``): the same shapes, kinds and views, in the same order."""
    result: list[Answer] = []
    for kind, shape in shapes(context.demands, request):
        inputs = rightsized(context.inputs(kind), context.settings)
        result.extend(answers(inputs, shape, [kind], request.views, context.settings))
    return result


def recommendations(context: PlanContext) -> list[Recommendation]:
    """Every workload in scope's recommendation, in the context's order."""
    return [recommendation(demand, context.settings) for demand in context.demands]


def host_summary(context: PlanContext) -> dict[str, Any]:
    """The document's ``host`` part: what was planned against."""
    host = context.snapshot.host
    counts = {str(kind): sum(1 for d in context.demands if d.kind == kind) for kind in KINDS}
    summary: dict[str, Any] = {
        "name": socket.gethostname(),
        "declared": sorted(str(r) for r in context.declared),
        "history_seconds": max((d.history_seconds for d in context.demands), default=0.0),
        "workloads": counts,
        "sources": {s.name: s.up for s in context.snapshot.sources},
    }
    if host is not None:
        summary["capacity"] = {
            "cpu": context.declared.get(Resource.CPU, float(host.cpu_cores)),
            "memory_bytes": context.declared.get(Resource.MEMORY, float(host.memory_bytes)),
        }
        summary["memory_available_bytes"] = host.memory_available_bytes
        summary["data_disks"] = {
            str(kind): {
                "path": disk.path,
                "total_bytes": disk.total_bytes,
                "free_bytes": disk.free_bytes,
                # Why it is not the kind's own filesystem; absent when it is.
                **({"why": why} if (why := context.disk_fallbacks.get(kind)) else {}),
            }
            for kind, disk in context.disks.items()
            if disk is not None
        }
    return summary


def plan_document(context: PlanContext, request: PlanRequest) -> dict[str, Any]:
    """The ``densityd.plan/v1`` document for a request (what ``plan -o json`` prints)."""
    found, origins = _planned(context, request)
    comparison = None
    if request.compare:
        by_kind = {a.kind: a for a in headlines(found)}
        container, vm = by_kind.get(WorkloadKind.CONTAINER), by_kind.get(WorkloadKind.VM)
        if container is not None and vm is not None:
            comparison = {
                "profile": container.profile,
                "container_remaining": container.remaining,
                "vm_remaining": vm.remaining,
                "ratio": compare_ratio(container, vm),
                "vm_overhead": dict(vm.overhead),
                "guest_os_memory": guest_os_comparison(context.settings),
            }
    assumptions = settings_assumptions(context.settings)
    assumptions["scope"] = list(context.scopes) or "all workloads"
    assumptions["notes"] = list(context.notes)
    return render_document(
        host=host_summary(context),
        answers=found,
        assumptions=assumptions,
        comparison=comparison,
        generated_at=context.snapshot.timestamp,
        origins=origins,
    )


def guest_os_comparison(settings: PlanSettings) -> dict[str, Any]:
    """The guest OS's RAM from the table next to the one measured on this host, with its VMs."""
    table = guest_os_baseline(
        settings.guest_os if settings.guest_os != MEASURED else MEASURED_DISK_FROM
    )
    return {
        "table": table.name,
        "table_bytes": table.memory,
        "measured_bytes": settings.measured_guest_os_memory,
        "measured_vms": settings.measured_guest_os_vms,
    }


def headlines(found: Sequence[Answer]) -> list[Answer]:
    """The stricter view's answer for each kind and profile."""
    groups: dict[tuple[WorkloadKind, str], list[Answer]] = {}
    for item in found:
        groups.setdefault((item.kind, item.profile), []).append(item)
    return [headline(group) for group in groups.values()]
