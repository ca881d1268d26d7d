"""Answer plan requests for a fleet, and print them as a document or a table.

The per-host numbers are ``plan.core.fleet.fleet_answers`` over the hosts' inputs
(``inputs.fleet.load_fleet``), so each equals what ``densityd plan`` on that host answers; the
fleet's total is their sum. The document (``densityd.fleet-plan/v1``) for scripts::

    {
      "schema": "densityd.fleet-plan/v1",
      "generated_at": 1764590400.0,
      "fleet": {"prometheus": "http://prom:9090", "selector": "{job=\\"densityd\\"}",
                "host_label": "instance", "window": "14d", "hosts": 3,
                "workloads": {"container": 40, "vm": 6}, "subqueries": true},
      "answers": [                                  # one per kind and profile: the fleet
        {"kind": "container", "profile": "web", "profile_origin": "given",
         "remaining": 118,                          # the sum of the hosts' headlines; null:
                                                    # unbounded on some host
         "remaining_by_view": {"allocation": 160, "demand": 118},
         "hosts": 3, "bound": {"memory": 2, "cpu": 1},   # hosts by binding resource
         "full_hosts": ["c:9847"], "unbounded_hosts": [],
         "cost": {"demand": {"cpu": 0.5, "memory_bytes": 550502400, "disk_bytes": 0}, ...},
         "overhead": {"demand": {"shim": 13631488}, ...},
         "time_to_full_seconds": 792000.0,          # the soonest host; null: no trend
         "notes": ["..."]}
      ],
      "hosts": [                                    # per host, kind and profile, fullest first
        {"host": "a:9847", "kind": "container", "profile": "web", "remaining": 12,
         "bound": "memory", "view": "demand", "time_to_full_seconds": null,
         "by_view": {"demand": {"remaining": 12, "bound": "memory",
                                "free": {"cpu": 1.2, "memory_bytes": 7e9, "disk_bytes": 1e11},
                                "total": {...}}, ...},   # null: capacity unknown
         "declared": ["memory"], "scope": [], "workloads": 14, "history_seconds": 1209600.0}
      ],
      "comparison": {"profile": "web", "container_remaining": 118, "vm_remaining": 20,
                     "ratio": 5.9} | null,
      "assumptions": {...},                         # as in densityd.plan/v1, plus "notes"
      "packing": {...}                              # with --count (output.packing)
    }
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tabulate import tabulate

from densityd.model import WorkloadKind
from densityd.plan.core.fleet import FleetAnswer, HostAnswer, shape_cost
from densityd.plan.core.model import RESOURCES, Profile, Resource, Resources
from densityd.plan.inputs.fleet import Fleet, FleetHost
from densityd.plan.output.document import RESOURCE_KEYS, settings_assumptions
from densityd.plan.output.local import OVERHEAD_LABELS, TIMES, plan_table
from densityd.plan.request import KINDS
from densityd.units import human_bytes, human_duration, wrap

FLEET_SCHEMA = "densityd.fleet-plan/v1"

_KIND_WORDS = {"container": "containers", "vm": "VMs"}


def fleet_document(
    fleet: Fleet,
    found: Sequence[FleetAnswer],
    origins: Mapping[str, str],
    *,
    source: Mapping[str, Any],
    compare: bool = False,
) -> dict[str, Any]:
    """The ``densityd.fleet-plan/v1`` document (layout in the module docstring)."""
    hosts_by_name = {host.name: host for host in fleet.hosts}
    answers = [_fleet_answer(fleet, answer, origins.get(answer.profile)) for answer in found]
    per_host = [
        _host_entry(answer, host, hosts_by_name[host.name])
        for answer in found
        for host in answer.hosts
    ]
    comparison = None
    if compare:
        by_kind = {answer.kind: answer for answer in found}
        container, vm = by_kind.get(WorkloadKind.CONTAINER), by_kind.get(WorkloadKind.VM)
        if container is not None and vm is not None:
            ratio = None
            if container.total_remaining is not None and vm.total_remaining:
                ratio = container.total_remaining / vm.total_remaining
            comparison = {
                "profile": container.profile,
                "container_remaining": container.total_remaining,
                "vm_remaining": vm.total_remaining,
                "ratio": ratio,
            }
    assumptions = settings_assumptions(fleet.settings)
    assumptions["notes"] = list(fleet.notes)
    counts = Counter(str(d.kind) for d in fleet.demands)
    return {
        "schema": FLEET_SCHEMA,
        "generated_at": fleet.timestamp,
        "fleet": {
            **source,
            "hosts": len(fleet.hosts),
            "workloads": {str(kind): counts.get(str(kind), 0) for kind in KINDS},
            "subqueries": fleet.subqueries,
        },
        "answers": answers,
        "hosts": per_host,
        "comparison": comparison,
        "assumptions": assumptions,
    }


def _fleet_answer(fleet: Fleet, answer: FleetAnswer, origin: str | None) -> dict[str, Any]:
    """One kind and profile over the fleet."""
    if answer.hosts:
        shape = answer.hosts[0].shape
    else:
        profile = Profile(name=answer.profile, demand=Resources(), allocation=Resources())
        shape = shape_cost(profile, answer.kind, answer.views, fleet.settings)
    bound = Counter(str(h.bound) for h in answer.hosts if h.bound is not None)
    fulls = [h.time_to_full_seconds for h in answer.hosts if h.time_to_full_seconds is not None]
    return {
        "kind": str(answer.kind),
        "profile": answer.profile,
        "profile_origin": origin,
        "remaining": answer.total_remaining,
        "remaining_by_view": {str(v): n for v, n in answer.total_by_view.items()},
        "hosts": len(answer.hosts),
        "bound": dict(bound.most_common()),
        "full_hosts": list(answer.full),
        "unbounded_hosts": list(answer.unbounded),
        "cost": {str(v): _resources(c) for v, c in zip(shape.views, shape.costs, strict=True)},
        "overhead": {
            str(v): {name: round(value) for name, value in overhead.items()}
            for v, overhead in zip(shape.views, shape.overheads, strict=True)
        },
        "time_to_full_seconds": min(fulls, default=None),
        "notes": list(answer.notes),
    }


def _host_entry(answer: FleetAnswer, host: HostAnswer, facts: FleetHost) -> dict[str, Any]:
    """One host's answer for one kind and profile, with what it was planned against."""
    by_view: dict[str, Any] = {}
    for index, view in enumerate(answer.views):
        use = host.use.view(view)
        bound = host.bound_by_view[index]
        by_view[str(view)] = {
            "remaining": host.remaining_by_view[index],
            "bound": None if bound is None else str(bound),
            "total": _known(_resources(use.total), host.use.unknown),
            "free": _known(_resources(use.free), host.use.unknown),
        }
    return {
        "host": host.name,
        "kind": str(answer.kind),
        "profile": answer.profile,
        "remaining": host.remaining,
        "bound": None if host.bound is None else str(host.bound),
        "view": str(host.view),
        "time_to_full_seconds": host.time_to_full_seconds,
        "by_view": by_view,
        "declared": [str(r) for r in facts.declared],
        "scope": list(facts.scopes),
        "workloads": facts.workloads,
        "history_seconds": facts.history_seconds,
    }


def _known(values: dict[str, float | int], unknown: frozenset[Resource]) -> dict[str, Any]:
    """``values`` with null for each resource whose capacity the host cannot see."""
    return {
        RESOURCE_KEYS[resource]: None if resource in unknown else values[RESOURCE_KEYS[resource]]
        for resource in RESOURCES
    }


def _resources(values: Resources) -> dict[str, float | int]:
    """``{"cpu": cores, "memory_bytes": n, "disk_bytes": n}``, bytes whole."""
    result: dict[str, float | int] = {}
    for resource in RESOURCES:
        value = values.get(resource)
        finite = value if math.isfinite(value) else 0.0
        result[RESOURCE_KEYS[resource]] = finite if resource is Resource.CPU else round(finite)
    return result


# -- the table -------------------------------------------------------------------------------


def fleet_table(document: Mapping[str, Any]) -> str:
    """The document as text for an operator, about 100 columns wide.

    Where the fleet came from, then per kind and profile the fleet's total and one row per
    host (fullest first), the comparison, every assumption and every note.
    """
    fleet = document.get("fleet") or {}
    lines = [wrap(_heading(fleet, document.get("generated_at")))]
    workloads = fleet.get("workloads") or {}
    lines.append(
        "Workloads in scope: "
        + ", ".join(f"{n} {_KIND_WORDS.get(k, k)}" for k, n in workloads.items())
    )
    hosts = list(document.get("hosts") or [])
    for answer in document.get("answers") or []:
        lines.append("")
        lines.extend(_answer_lines(answer, hosts))
    comparison = document.get("comparison")
    if comparison:
        lines.append("")
        lines.append(wrap(_comparison(comparison), hang="  "))
    # The assumptions and notes read as in a one-host plan: let its table print them.
    rest = plan_table(
        {
            "host": {},
            "answers": [{"notes": a.get("notes") or []} for a in document.get("answers") or []],
            "assumptions": document.get("assumptions") or {},
        }
    )
    tail = rest[rest.index("Assumptions:") :].rstrip("\n")
    lines.append("")
    lines.extend(tail.splitlines())
    return "\n".join(lines) + "\n"


def _heading(fleet: Mapping[str, Any], generated_at: Any) -> str:
    when = ""
    if isinstance(generated_at, int | float) and math.isfinite(generated_at):
        when = datetime.fromtimestamp(generated_at, tz=UTC).strftime(" at %Y-%m-%d %H:%M UTC")
    count = fleet.get("hosts", 0)
    where = fleet.get("prometheus", "Prometheus")
    selector = fleet.get("selector") or "all series"
    return (
        f"Fleet plan for {count} host{'s' if count != 1 else ''} from {where}{when} "
        f"({selector}, hosts by {fleet.get('host_label', 'instance')}, window "
        f"{fleet.get('window', '?')})"
    )


def _answer_lines(answer: Mapping[str, Any], hosts: Sequence[Mapping[str, Any]]) -> list[str]:
    """One kind and profile: the fleet's sentence, the cost, one row per host."""
    kind, profile = answer.get("kind"), answer.get("profile")
    mine = [h for h in hosts if h.get("kind") == kind and h.get("profile") == profile]
    total = answer.get("remaining")
    by_view = answer.get("remaining_by_view") or {}
    count = answer.get("hosts", 0)
    sentence = (
        f"{kind} {profile}: "
        + ("unbounded" if total is None else f"{total} more")
        + f" on {count} host{'s' if count != 1 else ''}"
    )
    if len(by_view) > 1:
        sentence += " (" + ", ".join(f"{v} {_slots(n)}" for v, n in by_view.items()) + ")"
    bound = answer.get("bound") or {}
    if bound:
        sentence += "; binds: " + ", ".join(f"{r} on {n}" for r, n in bound.items())
    full_in = answer.get("time_to_full_seconds")
    if full_in is not None:
        sentence += f"; first host full in {human_duration(full_in)}"
    lines = [wrap(sentence, hang="  ")]
    if answer.get("profile_origin"):
        lines.append(f"  shape: {answer['profile_origin']}")
    costs = answer.get("cost") or {}
    overheads = answer.get("overhead") or {}
    same = len({repr((c, overheads.get(v))) for v, c in costs.items()}) == 1
    if same:
        costs = dict(list(costs.items())[:1])  # one line when the views agree
    for view, cost in costs.items():
        label = "cost" if same else f"cost ({view} view)"
        extra = ", ".join(
            f"{OVERHEAD_LABELS.get(name, name)} {human_bytes(value)}"
            for name, value in (overheads.get(view) or {}).items()
            if value
        )
        text = (
            f"{label}: {cost['cpu']:.3g} cores, {human_bytes(cost['memory_bytes'])} memory, "
            f"{human_bytes(cost['disk_bytes'])} disk" + (f" (with {extra})" if extra else "")
        )
        lines.append(wrap(text, indent="  ", hang="    "))
    views = list(by_view)
    rows = []
    for host in mine:
        entries = host.get("by_view") or {}
        any_view: Mapping[str, Any] = entries.get(host.get("view")) or next(
            iter(entries.values()), {}
        )
        capacity = any_view.get("total") or {}
        declared = set(host.get("declared") or [])
        rows.append(
            [
                host.get("host"),
                _slots(host.get("remaining")),
                host.get("bound") or "-",
                *(_slots((entries.get(v) or {}).get("remaining")) for v in views),
                "-"
                if host.get("time_to_full_seconds") is None
                else human_duration(host["time_to_full_seconds"]),
                *(
                    _capacity(key, capacity.get(key, 0)) + ("*" if str(r) in declared else "")
                    for r in RESOURCES
                    for key in [RESOURCE_KEYS[r]]
                ),
            ]
        )
    if rows:
        headers = ["HOST", "MORE", "BINDS", *(v.upper() for v in views), "FULL IN"]
        headers += ["CPU", "MEMORY", "DISK"]
        table = tabulate(
            rows,
            headers=headers,
            tablefmt="simple",
            colalign=("left", "right", "left", *("right",) * (len(views) + 4)),
            disable_numparse=True,
        )
        lines.extend("  " + line for line in table.splitlines())
        if any(h.get("declared") for h in mine):
            lines.append("  * declared capacity (--capacity on that host)")
    return lines


def _capacity(key: str, value: Any) -> str:
    """A host's capacity of one resource in the table; ``unknown`` where it cannot see it."""
    if value is None:
        return "unknown"
    return f"{value:.3g}" if key == "cpu" else human_bytes(value)


def _slots(remaining: Any) -> str:
    return "unbounded" if remaining is None else str(remaining)


def _comparison(comparison: Mapping[str, Any]) -> str:
    containers = _slots(comparison.get("container_remaining"))
    vms = _slots(comparison.get("vm_remaining"))
    sentence = (
        f"Containers or VMs, profile {comparison.get('profile')}: {containers} as containers, "
        f"{vms} as VMs over the fleet"
    )
    ratio = comparison.get("ratio")
    if isinstance(ratio, int | float) and ratio > 0:
        sentence += (
            f" ({ratio:.1f}{TIMES} more as containers)"
            if ratio >= 1
            else f" ({1 / ratio:.1f}{TIMES} more as VMs)"
        )
    return sentence
