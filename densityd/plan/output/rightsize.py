"""``densityd plan --rightsize``: the ``rightsizing`` part of the plan document, and its table.

The part (``rightsizing_document``)::

    "rightsizing": {
      "answers": [                                  # per kind and profile: today and resized
        {"kind": "container", "profile": "median-container",
         "remaining": 3, "bound": "memory",          # today's headline (the stricter view)
         "rightsized_remaining": 12, "rightsized_bound": "memory",
         "more": 9,                                  # null when either is unbounded
         "by_view": {"allocation": {"remaining": 3, "rightsized_remaining": 14, ...},
                     "demand": {"remaining": 12, "rightsized_remaining": 12, ...}}}
      ],
      "frees": {"cpu": 3.5, "memory_bytes": 1610612736},   # summed over the workloads
      "workloads": [                                # biggest savings first, then the rest
        {"kind": "container", "id": "...", "name": "web",
         "cpu_limit": 2.0, "recommended_cpu": 0.12, "overprovisioned_cpu": 1.88,
         "memory_limit_bytes": 1073741824, "recommended_memory_bytes": 73400320,
         "overprovisioned_memory_bytes": 1000341504,       # null: no limit
         "frees": {"cpu": 1.88, "memory_bytes": 1000341504}, "resized": true}
      ],
      "top": 10                                     # how many the table lists
    }
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from densityd.plan.core.model import Answer, Resources
from densityd.plan.core.rightsize import Recommendation, biggest_savings
from densityd.plan.core.slots import headline
from densityd.units import human_bytes, wrap

# What resized means, printed under the table (the README's planner section says more).
RESIZED = (
    "resized: each running workload's limits set to its recommendation (CPU at the "
    "percentile of its rate, memory at the window's maximum plus the buffer); a VM's vCPUs "
    "to the recommended cores rounded up, its guest RAM to its recommended memory less QEMU's "
    "overhead and at least the guest OS baseline, never above what it has; workloads without "
    "a limit and stopped ones unchanged; the demand view does not change, and the shape of "
    "one more is the same"
)


def rightsizing_document(
    today: Sequence[Answer],
    resized: Sequence[Answer],
    recommendations: Sequence[Recommendation],
    usable: Resources,
    top: int,
) -> dict[str, Any]:
    """The ``rightsizing`` part: ``today`` and ``resized`` are the same answers (kind,
    profile, view, in the same order) before and after resizing; ``usable`` is the
    allocation view's usable capacity, which ranks the savings."""
    ranked = biggest_savings(recommendations, usable)
    rest = sorted((r for r in recommendations if r not in ranked), key=lambda r: (r.name, r.id))
    return {
        "answers": _answers(today, resized),
        "frees": {
            "cpu": sum(r.frees.cpu for r in recommendations),
            "memory_bytes": round(sum(r.frees.memory for r in recommendations)),
        },
        "workloads": [_workload(r) for r in [*ranked, *rest]],
        "freeing": len(ranked),
        "top": top,
        "resized": RESIZED,
    }


def _answers(today: Sequence[Answer], resized: Sequence[Answer]) -> list[dict[str, Any]]:
    """Per kind and profile, today's headline next to the rightsized one, and each view's."""
    groups: dict[tuple[str, str], list[tuple[Answer, Answer]]] = {}
    for before, after in zip(today, resized, strict=True):
        groups.setdefault((str(before.kind), before.profile), []).append((before, after))
    result = []
    for (kind, profile), pairs in groups.items():
        now = headline([before for before, _ in pairs])
        then = headline([after for _, after in pairs])
        result.append(
            {
                "kind": kind,
                "profile": profile,
                "remaining": now.remaining,
                "bound": _name(now.bound),
                "rightsized_remaining": then.remaining,
                "rightsized_bound": _name(then.bound),
                "more": None
                if now.remaining is None or then.remaining is None
                else then.remaining - now.remaining,
                "by_view": {
                    str(before.view): {
                        "remaining": before.remaining,
                        "bound": _name(before.bound),
                        "rightsized_remaining": after.remaining,
                        "rightsized_bound": _name(after.bound),
                    }
                    for before, after in pairs
                },
            }
        )
    return result


def _workload(item: Recommendation) -> dict[str, Any]:
    return {
        "kind": str(item.kind),
        "id": item.id,
        "name": item.name,
        "cpu_limit": item.cpu_limit,
        "recommended_cpu": item.cpu,
        "overprovisioned_cpu": item.overprovisioned_cpu,
        "memory_limit_bytes": _bytes(item.memory_limit),
        "recommended_memory_bytes": _bytes(item.memory),
        "overprovisioned_memory_bytes": _bytes(item.overprovisioned_memory),
        "frees": {"cpu": item.frees.cpu, "memory_bytes": _bytes(item.frees.memory)},
        "resized": item.resized,
    }


def rightsizing_table(part: Mapping[str, Any]) -> str:
    """The part as text: the answers before and after, then the biggest savings."""
    lines = ["Rightsizing: if the workloads were resized to what they use"]
    rows = []
    for answer in part.get("answers") or []:
        more = answer.get("more")
        rows.append(
            [
                answer["kind"],
                answer["profile"],
                _slots(answer.get("remaining")),
                _slots(answer.get("rightsized_remaining")),
                "-" if more is None else f"{more:+d}",
                f"{answer.get('bound') or '-'} -> {answer.get('rightsized_bound') or '-'}",
                *(_view(answer, view) for view in ("allocation", "demand")),
            ]
        )
    headers = ["KIND", "PROFILE", "TODAY", "RIGHTSIZED", "MORE", "BINDS", "ALLOCATION", "DEMAND"]
    lines.extend("  " + line for line in tabulate(rows, headers=headers).splitlines())
    frees = part.get("frees") or {}
    lines.append(
        f"  resizing frees {_cores(frees.get('cpu'))} cores and "
        f"{human_bytes(frees.get('memory_bytes') or 0)} of memory in the allocation view"
    )
    workloads = list(part.get("workloads") or [])
    freeing = int(part.get("freeing") or 0)
    top = int(part.get("top") or 0)
    shown = workloads[: min(top, freeing)]
    lines.append("")
    if not shown:
        lines.append("Biggest savings: no workload frees anything by resizing")
    else:
        lines.append(
            f"Biggest savings (the {len(shown)} that free the most, of {freeing} that free "
            f"something; {len(workloads)} workloads):"
        )
        savings = [
            [
                item["kind"],
                item["name"],
                f"{_cores(item['cpu_limit'])} / {_cores(item['recommended_cpu'])}",
                _cores(item["overprovisioned_cpu"]),
                f"{_size(item['memory_limit_bytes'])} / {_size(item['recommended_memory_bytes'])}",
                _size(item["overprovisioned_memory_bytes"]),
                f"{_cores(item['frees']['cpu'])} cores, {_size(item['frees']['memory_bytes'])}",
            ]
            for item in shown
        ]
        headers = ["KIND", "NAME", "CPU LIMIT / REC", "CPU OVER", "MEM LIMIT / REC", "MEM OVER"]
        headers.append("FREES")
        lines.extend("  " + line for line in tabulate(savings, headers=headers).splitlines())
    lines.append(wrap(str(part.get("resized", RESIZED)), indent="  ", hang="  "))
    return "\n".join(lines) + "\n"


def _view(answer: Mapping[str, Any], view: str) -> str:
    """One view's slots before and after: ``24 -> 31``; ``-`` when the view was not asked."""
    found = (answer.get("by_view") or {}).get(view)
    if not found:
        return "-"
    return f"{_slots(found.get('remaining'))} -> {_slots(found.get('rightsized_remaining'))}"


def _slots(value: Any) -> str:
    return "unbounded" if value is None else str(value)


def _cores(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value):.3g}"


def _size(value: Any) -> str:
    return "-" if value is None else human_bytes(value)


def _bytes(value: float | None) -> int | None:
    return None if value is None else round(value)


def _name(value: Any) -> str | None:
    return None if value is None else str(value)
