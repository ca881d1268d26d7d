"""The answers only ``densityd plan`` gives: a fleet, several shapes at once, rightsizing.

``fleet_plan`` answers the same requests as ``answer.plan_document`` for every host
Prometheus shows (each host's number equals what ``densityd plan`` on that host answers),
``pack_request`` places several shapes at once over one host or many, and ``rightsizing``
is the plan's rightsizing report. Apart from ``answer`` so that the daemon, which answers
one host, imports neither the fleet client nor packing nor the report's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from densityd.model import WorkloadKind
from densityd.plan.answer import plan_answers, recommendations, rightsized_answers, shapes
from densityd.plan.core import packing
from densityd.plan.core.fleet import FleetAnswer, HostUse, fleet_answers, pack_fleet
from densityd.plan.core.model import Answer, PlanSettings, Profile, View
from densityd.plan.core.slots import for_host, usable
from densityd.plan.inputs.fleet import Fleet
from densityd.plan.inputs.local import PlanContext
from densityd.plan.output.rightsize import rightsizing_document
from densityd.plan.request import PackingRequest, PlanRequest, PlanRequestError


def rightsizing(context: PlanContext, requests: Sequence[PlanRequest], top: int) -> dict[str, Any]:
    """The ``rightsizing`` part of the plan document (``output.rightsize``) for the requests:
    today's answers next to the rightsized ones, and every workload's recommendation."""
    today: list[Answer] = []
    resized: list[Answer] = []
    for request in requests:
        today.extend(plan_answers(context, request))
        resized.extend(rightsized_answers(context, request))
    host = context.inputs(WorkloadKind.CONTAINER).host
    room = usable(host, View.ALLOCATION, for_host(context.settings, host))
    return rightsizing_document(today, resized, recommendations(context), room, top)


# -- a fleet ---------------------------------------------------------------------------------


def _per_host_only(shape: Profile, kind: WorkloadKind, option: str) -> None:
    """Huge pages are planned on one host only: the fleet and packing paths do not carry the
    pools, and leaving them out would charge a hugepage VM nothing for its guest RAM."""
    if kind is WorkloadKind.VM and shape.hugepages:
        raise PlanRequestError(
            f"{option}: profile {shape.name} is backed by huge pages, which are planned per "
            "host only (densityd plan on the host, or its densityd_plan_* series)"
        )


def fleet_plan(
    fleet: Fleet, requests: Sequence[PlanRequest]
) -> tuple[list[FleetAnswer], dict[str, str]]:
    """Every fleet answer the requests ask for, and where each shape came from."""
    found: list[FleetAnswer] = []
    origins: dict[str, str] = {}
    for request in requests:
        for kind, shape in shapes(fleet.demands, request, where=" on any host"):
            _per_host_only(shape, kind, "--prometheus")
            origins[shape.name] = shape.origin
            found.append(
                fleet_answers(fleet.inputs(kind), shape, kind, request.views, fleet.settings)
            )
    return found, origins


# -- several shapes at once ------------------------------------------------------------------


def pack_request(
    uses: Sequence[HostUse],
    request: PackingRequest,
    views: Sequence[View],
    settings: PlanSettings,
) -> packing.Packing:
    """Pack the request over the hosts' uses (``fleet.host_use`` of each host's inputs)."""
    for profile, _count in request.shapes:
        _per_host_only(profile, request.kind, "--count")
    return pack_fleet(
        uses,
        [(profile, request.kind, count) for profile, count in request.shapes],
        views,
        settings,
        request.new_host,
    )
