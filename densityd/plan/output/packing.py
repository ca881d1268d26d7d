"""The ``packing`` part of a plan document, and its table: what goes where, what fits nowhere.

It says how many new hosts would be needed and how far that is from the lower bound
``max_r ceil(sum of demand_r / capacity_r)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from densityd.model import WorkloadKind
from densityd.plan.core import packing
from densityd.plan.core.model import RESOURCES, Resource, Resources, View
from densityd.plan.output.document import RESOURCE_KEYS
from densityd.plan.request import PackingRequest
from densityd.units import WIDTH, human_bytes, wrap

_KIND_WORDS = {WorkloadKind.CONTAINER: "containers", WorkloadKind.VM: "VMs"}


def packing_document(
    result: packing.Packing, request: PackingRequest, views: Sequence[View]
) -> dict[str, Any]:
    """The ``packing`` object of a plan document; ``json.dumps``-able::

    {"kind": "container", "views": ["allocation", "demand"],
     "shapes": [{"name": "web", "requested": 40, "placed": 30, "placed_new": 10,
                 "unplaced": 0}],
     "placements": [{"host": "a:9847", "counts": {"web": 12},
                     "left": {"demand": {"cpu": 0.3, "memory_bytes": 1, "disk_bytes": 2}}}],
     "hosts_used": 3, "hosts_lower_bound": 2, "hosts_bound": "demand memory",
     "new_host": {"cpu": 16, ...} | null, "new_hosts": [...like placements...],
     "new_hosts_needed": 1 | null, "lower_bound": 1 | null,
     "lower_bound_resource": "demand memory" | null, "gap": 0 | null}
    """
    return {
        "kind": str(request.kind),
        "views": [str(view) for view in views],
        "shapes": [
            {
                "name": profile.name,
                "requested": result.requested.get(profile.name, count),
                "placed": result.placed.get(profile.name, 0),
                "placed_new": result.placed_new.get(profile.name, 0),
                "unplaced": result.unplaced.get(profile.name, 0),
            }
            for profile, count in request.shapes
        ],
        "placements": [_placement(p, result.dims) for p in result.placements],
        "hosts_used": result.hosts_used,
        "hosts_lower_bound": result.hosts_lower_bound,
        "hosts_bound": result.hosts_bound,
        "new_host": None if request.new_host is None else _resources(request.new_host),
        "new_hosts": [_placement(p, result.dims) for p in result.new_hosts],
        "new_hosts_needed": result.new_host_count,
        "lower_bound": result.new_hosts_lower_bound,
        "lower_bound_resource": result.new_hosts_bound,
        "gap": result.new_hosts_gap,
    }


def _placement(placement: packing.Placement, dims: Sequence[str]) -> dict[str, Any]:
    left: dict[str, dict[str, float | int]] = {}
    for label, value in zip(dims, placement.left, strict=True):
        view, _, resource = label.rpartition(" ")
        key = RESOURCE_KEYS[Resource(resource)]
        left.setdefault(view, {})[key] = value if key == "cpu" else round(value)
    return {"host": placement.host, "counts": dict(placement.counts), "left": left}


def _resources(values: Resources) -> dict[str, float | int]:
    return {
        RESOURCE_KEYS[r]: values.get(r) if r is Resource.CPU else round(values.get(r))
        for r in RESOURCES
    }


def packing_table(document: Mapping[str, Any], hosts: int) -> str:
    """The ``packing`` object as text: copies per host and shape, the overflow, new hosts.

    ``hosts`` is how many existing hosts were offered.
    """
    shapes = [s["name"] for s in document.get("shapes") or []]
    kind = _KIND_WORDS.get(WorkloadKind(document.get("kind", "container")), "workloads")
    views = " and ".join(document.get("views") or [])
    lines = [
        _wrap(
            f"Packing as {kind}: first-fit-decreasing with a dot-product host score; a copy "
            f"must fit the {views} view{'s' if ' and ' in views else ''}"
        )
    ]
    rows: list[list[str]] = []
    for placement in document.get("placements") or []:
        rows.append([placement["host"], *(str(placement["counts"].get(n, 0)) for n in shapes)])
    for placement in document.get("new_hosts") or []:
        rows.append(
            [f"{placement['host']} (new)", *(str(placement["counts"].get(n, 0)) for n in shapes)]
        )
    by_name = {s["name"]: s for s in document.get("shapes") or []}
    rows.append(["not placed", *(str(by_name[n]["unplaced"]) for n in shapes)])
    rows.append(["requested", *(str(by_name[n]["requested"]) for n in shapes)])
    table = tabulate(
        rows,
        headers=["HOST", *shapes],
        tablefmt="simple",
        colalign=("left", *("right",) * len(shapes)),
        disable_numparse=True,
    )
    lines.extend("  " + line for line in table.splitlines())
    placed = ", ".join(f"{by_name[n]['placed']} {n}" for n in shapes)
    existing = (
        f"  on existing hosts: {placed} on {document.get('hosts_used')} of {hosts} host"
        f"{'s' if hosts != 1 else ''}"
    )
    if document.get("hosts_bound"):
        existing += (
            f" (they need at least {document['hosts_lower_bound']}, by {document['hosts_bound']})"
        )
    lines.append(_wrap(existing))
    new_host = document.get("new_host")
    if new_host is not None:
        size = (
            f"{new_host['cpu']:g} cores, {human_bytes(new_host['memory_bytes'])} memory, "
            f"{human_bytes(new_host['disk_bytes'])} disk"
        )
        needed = document.get("new_hosts_needed")
        sentence = f"  new hosts of {size}: {needed} needed"
        if document.get("lower_bound") is not None:
            sentence += f" (lower bound {document['lower_bound']}"
            if document.get("lower_bound_resource"):
                sentence += f" by {document['lower_bound_resource']}"
            sentence += f"; gap {document.get('gap')})"
        lines.append(_wrap(sentence))
    unplaced = [f"{by_name[n]['unplaced']} {n}" for n in shapes if by_name[n]["unplaced"]]
    if unplaced:
        why = (
            "each is larger than an empty new host"
            if new_host is not None
            else "give --new-host SIZE to count the new hosts they need"
        )
        lines.append(_wrap(f"  not placed: {', '.join(unplaced)} ({why})"))
    return "\n".join(lines) + "\n"


def _wrap(line: str) -> str:
    """A sentence wrapped to ``WIDTH`` columns, later lines indented under its first word."""
    if len(line) <= WIDTH or "\n" in line:
        return line
    indent = line[: len(line) - len(line.lstrip())]
    return wrap(line.strip(), indent, indent + "  ")
