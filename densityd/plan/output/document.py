"""The plan as a JSON document (``densityd.plan/v1``): what scripts read.

``densityd plan -o json`` prints it, the daemon serves it at ``/api/v1/plan``, and
``output.local.plan_table`` prints it for people, so all three agree. Apart from the table so
that the daemon, which serves documents only, imports no table formatting. The document is
the contract for scripts::

    {
      "schema": "densityd.plan/v1",
      "generated_at": 1764590400.0,                  # Unix seconds
      "host": {...},                                 # passed through as given: name,
                                                     # capacity, declared, history_seconds,
                                                     # workloads {container: n, vm: n},
                                                     # data_disks {kind: {path, total_bytes,
                                                     # free_bytes, why?}}, ...
      "answers": [
        {
          "kind": "container",                       # or "vm"
          "profile": "median-container",
          "profile_origin": "median container",      # null when not known
          "view": "demand",                          # or "allocation"
          "headline": true,                          # the stricter view of kind + profile
          "remaining": 12,                           # null: unbounded
          "bound": "memory",                         # null: nothing binds
          "cost":  {"cpu": 0.5, "memory_bytes": 629145600, "disk_bytes": 0},
          "total": {...}, "usable": {...}, "used": {...}, "system": {...}, "free": {...},
          "fits":  {"cpu": 47, "memory_bytes": 12, "disk_bytes": null},
          "overhead": {"shim": 13631488},            # bytes per item, included in cost
          "time_to_full_seconds": 792000.0,          # null: no growth trend
          "notes": ["..."]
        }
      ],
      "comparison": {"profile": "...", "container_remaining": 40, "vm_remaining": 6,
                     "ratio": 6.7, ...} | null,      # passed through as given
      "assumptions": {...}                           # settings_assumptions() and more
    }

Per-resource objects always have the keys ``cpu`` (cores, a number), ``memory_bytes`` and
``disk_bytes`` (whole bytes), and ``hugepages_bytes`` in the answers of a VM profile backed by
huge pages (the host's pool of its page size); a value is null where the planner gave none
(or it was not finite). ``fits`` is how many more fit on that resource alone, null where it
does not bound.
A resource whose capacity densityd cannot see is null in ``total``, ``usable``, ``used``,
``system``, ``free`` and ``fits``, never binds, and a note names it and says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from densityd.plan.core.model import (
    MIB,
    RESOURCES,
    Answer,
    PlanSettings,
    Resource,
    Resources,
)

PLAN_SCHEMA = "densityd.plan/v1"


# The document's key for each resource: the unit is in the name where it has one.
RESOURCE_KEYS: dict[Resource, str] = {
    Resource.CPU: "cpu",
    Resource.MEMORY: "memory_bytes",
    Resource.DISK: "disk_bytes",
    Resource.HUGEPAGES: "hugepages_bytes",
}


# The PlanSettings fields summed up in "qemu_overhead" rather than listed one by one.
_QEMU_FIELDS = frozenset({"qemu_base_bytes", "qemu_ram_divisor", "qemu_per_vcpu_bytes"})


def plan_document(
    *,
    host: Mapping[str, Any],
    answers: Sequence[Answer],
    assumptions: Mapping[str, Any],
    comparison: Mapping[str, Any] | None = None,
    generated_at: float,
    origins: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``densityd.plan/v1`` document (layout in the module docstring); ``json.dumps``-able.

    ``origins`` maps a profile name to where its shape came from (``Profile.origin``), for
    ``profile_origin``; ``host``, ``assumptions`` and ``comparison`` are passed through.
    """
    headlines = _headline_indexes(answers)
    return {
        "schema": PLAN_SCHEMA,
        "generated_at": generated_at,
        "host": dict(host),
        "answers": [
            _answer_document(answer, index in headlines, (origins or {}).get(answer.profile))
            for index, answer in enumerate(answers)
        ],
        "comparison": None if comparison is None else dict(comparison),
        "assumptions": dict(assumptions),
    }


def settings_assumptions(settings: PlanSettings) -> dict[str, Any]:
    """Every assumption in ``settings``, in plain units, for the document and the table.

    Resources become ``{"cpu", "memory_bytes", "disk_bytes"}`` (ratios, being unitless,
    ``{"cpu", "memory", "disk"}``), sizes whole bytes, and QEMU's overhead model one line
    (``"64 MiB + RAM/512 + 8 MiB per vCPU"``). A field added to ``PlanSettings`` later shows up
    under its own name.
    """
    result: dict[str, Any] = {}
    for item in fields(settings):
        if item.name in _QEMU_FIELDS:
            result.setdefault("qemu_overhead", _qemu_formula(settings))
            continue
        value = getattr(settings, item.name)
        if item.name == "ratio" and isinstance(value, Resources):
            result[item.name] = {r.value: value.get(r) for r in RESOURCES}
        elif isinstance(value, Resources):
            result[item.name] = _resources_document(value)
        elif item.name.endswith("_bytes") and isinstance(value, float):
            result[item.name] = _whole(value)
        elif isinstance(value, frozenset):  # of resources: reserved_given
            result[item.name] = [str(r) for r in RESOURCES if r in value]
        else:
            result[item.name] = value
    return result


def _headline_indexes(answers: Sequence[Answer]) -> set[int]:
    """The index of the stricter answer of each kind and profile (the first one on a tie)."""
    best: dict[tuple[str, str], int] = {}
    for index, answer in enumerate(answers):
        key = (str(answer.kind), answer.profile)
        if key not in best or _strictness(answer) < _strictness(answers[best[key]]):
            best[key] = index
    return set(best.values())


def _strictness(answer: Answer) -> float:
    """Fewer remaining is stricter; unbounded is the least strict."""
    return math.inf if answer.remaining is None else float(answer.remaining)


def _answer_document(answer: Answer, headline: bool, origin: str | None) -> dict[str, Any]:
    """One answer as the document's object."""
    by_resource = {item.resource: item for item in answer.resources}
    present = _answer_resources(answer)

    def column(field: str) -> dict[str, Any]:
        # An unknown capacity's numbers mean nothing: null, as a value the planner gave none.
        values: dict[Resource, float | int | None] = {
            resource: None if item is None or not item.known else getattr(item, field)
            for resource in present
            for item in [by_resource.get(resource)]
        }
        if field == "fits":
            return {RESOURCE_KEYS[resource]: value for resource, value in values.items()}
        return {
            RESOURCE_KEYS[resource]: _unit(resource, value) for resource, value in values.items()
        }

    return {
        "kind": str(answer.kind),
        "profile": answer.profile,
        "profile_origin": origin,
        "view": str(answer.view),
        "headline": headline,
        "remaining": answer.remaining,
        "bound": None if answer.bound is None else str(answer.bound),
        "cost": _resources_document(answer.cost, present),
        "total": column("total"),
        "usable": column("usable"),
        "used": column("used"),
        "system": column("system"),
        "free": column("free"),
        "fits": column("fits"),
        "overhead": {name: _whole(value) for name, value in answer.overhead.items()},
        "time_to_full_seconds": _finite(answer.time_to_full_seconds),
        "notes": list(answer.notes),
    }


def _answer_resources(answer: Answer) -> tuple[Resource, ...]:
    """The resources an answer reports: RESOURCES, and huge pages where it has them."""
    extra = tuple(r.resource for r in answer.resources if r.resource not in RESOURCES)
    return (*RESOURCES, *extra)


def _resources_document(
    values: Resources, resources: Sequence[Resource] = RESOURCES
) -> dict[str, Any]:
    """``Resources`` as ``{"cpu": cores, "memory_bytes": n, "disk_bytes": n}``."""
    return {RESOURCE_KEYS[r]: _unit(r, values.get(r)) for r in resources}


def _unit(resource: Resource, value: float | None) -> float | int | None:
    """Cores as they are; bytes as whole bytes (a fraction of a byte means nothing)."""
    return _finite(value) if resource is Resource.CPU else _whole(value)


def _finite(value: float | None) -> float | None:
    """``value``, or ``None`` when it is missing or not finite (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def _whole(value: float | None) -> int | None:
    """``value`` rounded to a whole number, ``None`` when missing or not finite."""
    finite = _finite(value)
    return None if finite is None else round(finite)


def _qemu_formula(settings: PlanSettings) -> str:
    """QEMU's overhead model in words: ``64 MiB + RAM/512 + 8 MiB per vCPU``."""
    base = f"{plain_number(settings.qemu_base_bytes / MIB)} MiB"
    # getattr: qemu_calibrated came after PlanSettings did; settings without it read as not.
    if getattr(settings, "qemu_calibrated", False):
        base += " (measured)"
    return (
        f"{base} + RAM/{plain_number(settings.qemu_ram_divisor)}"
        f" + {plain_number(settings.qemu_per_vcpu_bytes / MIB)} MiB per vCPU"
    )


def plain_number(value: float) -> str:
    """A plain number without a needless ``.0``: ``4``, ``0.9``, ``0.15``."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"
