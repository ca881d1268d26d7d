"""The plan as a table for people: ``plan_table`` of the ``densityd.plan/v1`` document.

``densityd plan`` prints it; the document itself (``-o json``, ``/api/v1/plan``) is built in
``output.document``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tabulate import tabulate

from densityd.plan.core.model import (
    RESOURCES,
)
from densityd.plan.output.document import (
    RESOURCE_KEYS,
    plain_number,
)
from densityd.units import human_bytes, human_duration, wrap

# The multiplication sign ("6.7 times"), as an escape so no one mistakes it for an x.
TIMES = "\u00d7"


# The table's words for the overhead items the planner itemises (unknown ones print as is).
OVERHEAD_LABELS: dict[str, str] = {
    "shim": "containerd shim",
    "qemu": "QEMU",
    "guest_os_memory": "guest OS RAM",
    "guest_os_disk": "guest OS disk",
    "image": "image",
}


_KIND_WORDS = {"container": "containers", "vm": "VMs"}

_ROWS: tuple[tuple[str, str], ...] = (
    ("total", "TOTAL"),
    ("usable", "USABLE"),
    ("used", "USED (SYSTEM)"),
    ("free", "FREE"),
    ("cost", "COST"),
    ("fits", "FITS"),
)


def plan_table(document: Mapping[str, Any]) -> str:
    """The document as text for an operator, at most about 100 columns wide.

    The host, then one block per kind and profile (the headline sentence, a table of every
    view by resource with the binding resource marked ``*``, the overhead), the containers
    versus VMs comparison, every assumption and every note.
    """
    lines: list[str] = []
    lines.extend(_host_lines(document.get("host") or {}, document.get("generated_at")))
    answers: list[Mapping[str, Any]] = list(document.get("answers") or [])
    for group in _groups(answers):
        lines.append("")
        lines.extend(_block_lines(group))
    comparison = document.get("comparison")
    assumptions: Mapping[str, Any] = document.get("assumptions") or {}
    if comparison:
        lines.append("")
        lines.extend(_comparison_lines(comparison, answers, assumptions))
    lines.append("")
    lines.append("Assumptions:")
    for key, value in assumptions.items():
        lines.extend(_assumption_lines(key, value))
    notes = _unique(note for answer in answers for note in answer.get("notes") or [])
    if notes:
        lines.append("")
        lines.append("Notes:")
        lines.extend(wrap(f"- {note}", indent="  ", hang="    ") for note in notes)
    return "\n".join(lines) + "\n"


# -- the document ----------------------------------------------------------------------------


# -- the table -------------------------------------------------------------------------------


def _host_lines(host: Mapping[str, Any], generated_at: Any) -> list[str]:
    """The plan's first lines: which host, when, what it holds, and anything else passed in."""
    when = "at an unknown time"
    if isinstance(generated_at, int | float) and math.isfinite(generated_at):
        stamp = datetime.fromtimestamp(generated_at, tz=UTC)
        when = stamp.strftime("at %Y-%m-%d %H:%M UTC")
    name = host.get("name")
    lines = [f"Plan for {f'host {name}' if name else 'this host'} {when}"]
    facts: list[str] = []
    capacity = host.get("capacity")
    if isinstance(capacity, Mapping):
        facts.append(
            ", ".join(_in_words(key, value) for key, value in capacity.items() if value is not None)
        )
    declared = host.get("declared")
    if declared:
        facts.append(f"declared: {', '.join(str(item) for item in declared)}")
    if host.get("history_seconds") is not None:
        facts.append(f"history {human_duration(host['history_seconds'])}")
    workloads = host.get("workloads")
    if isinstance(workloads, Mapping):
        counts = ", ".join(
            f"{count} {_KIND_WORDS.get(kind, kind)}" for kind, count in workloads.items()
        )
        facts.append(f"workloads: {counts or 'none'}")
    if facts:
        lines.append(wrap("Host: " + "; ".join(facts), hang="  "))
    shown = {"name", "capacity", "declared", "history_seconds", "workloads"}
    for key, value in host.items():
        if key not in shown:
            lines.extend(_assumption_lines(key, value, indent=""))
    return lines


def _in_words(key: str, value: Any) -> str:
    """One capacity figure: ``8 cores``, ``15.6GiB memory``."""
    if key == "cpu":
        return f"{_cores(value)} cores"
    return f"{_format(key, value)} {key.removesuffix('_bytes')}"


def _groups(answers: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Answers grouped by kind and profile, in the order they first appear."""
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for answer in answers:
        groups.setdefault((answer.get("kind"), answer.get("profile")), []).append(answer)
    return list(groups.values())


def _block_lines(group: Sequence[Mapping[str, Any]]) -> list[str]:
    """One kind and profile: the headline sentence, the table, the shape and overhead."""
    headline = next((answer for answer in group if answer.get("headline")), group[0])
    lines = [wrap(_headline_sentence(headline), hang="  ")]
    if headline.get("profile_origin"):
        lines.append(f"  shape: {headline['profile_origin']}")
    rows: list[list[str]] = []
    for answer in group:
        listed = [r for r in RESOURCE_KEYS if RESOURCE_KEYS[r] in (answer.get("total") or {})]
        for number, resource in enumerate(listed or RESOURCES):
            key = RESOURCE_KEYS[resource]
            marker = "*" if answer.get("bound") == resource.value else ""
            row = [str(answer.get("view")) if number == 0 else "", resource.value + marker]
            row.extend(_cell(answer, column, key, marker) for column, _ in _ROWS)
            rows.append(row)
    table = tabulate(
        rows,
        headers=["VIEW", "RESOURCE", *(title for _, title in _ROWS)],
        tablefmt="simple",
        colalign=("left", "left", *("right",) * len(_ROWS)),
        disable_numparse=True,
    )
    lines.extend("  " + line for line in table.splitlines())
    overheads = [(answer.get("view"), answer.get("overhead") or {}) for answer in group]
    if all(overhead == overheads[0][1] for _, overhead in overheads):
        lines.append(wrap(f"overhead per slot: {_overhead_words(overheads[0][1])}", "  ", "    "))
    else:
        for view, overhead in overheads:
            text = f"overhead per slot, {view} view: {_overhead_words(overhead)}"
            lines.append(wrap(text, "  ", "    "))
    return lines


def _headline_sentence(answer: Mapping[str, Any]) -> str:
    """The block's first line: ``container web: 12 more (demand view), memory binds; ...``."""
    subject = f"{answer.get('kind')} {answer.get('profile')}"
    view = f"({answer.get('view')} view)"
    remaining = answer.get("remaining")
    if remaining is None:
        return f"{subject}: unbounded {view}: it costs nothing of any resource"
    sentence = f"{subject}: {remaining} more {view}"
    if answer.get("bound"):
        sentence += f", {answer['bound']} binds"
    full_in = answer.get("time_to_full_seconds")
    if full_in is None:
        return sentence + "; no growth trend"
    return sentence + f"; full in {human_duration(full_in)} at the current trend"


def _cell(answer: Mapping[str, Any], column: str, key: str, marker: str) -> str:
    """One table cell: cores or human bytes; USED carries SYSTEM; FITS carries the marker."""
    value = (answer.get(column) or {}).get(key)
    if (answer.get("total") or {}).get(key) is None and column != "cost":
        return "unknown"  # the capacity could not be seen; the notes say why
    if column == "fits":
        return ("unbounded" if value is None else str(value)) + marker
    text = _amount(key, value)
    if column == "used":
        text += f" ({_amount(key, (answer.get('system') or {}).get(key))})"
    return text


def _amount(key: str, value: Any) -> str:
    """Cores for ``cpu``, human bytes for the rest, ``-`` when missing."""
    if value is None:
        return "-"
    return _cores(value) if key == "cpu" else human_bytes(value)


def _overhead_words(overhead: Mapping[str, Any]) -> str:
    """``containerd shim 13.0MiB, image 5.0MiB``, or ``none``."""
    if not overhead:
        return "none"
    return ", ".join(
        f"{OVERHEAD_LABELS.get(name, name)} {human_bytes(value)}"
        for name, value in overhead.items()
    )


def _comparison_lines(
    comparison: Mapping[str, Any],
    answers: Sequence[Mapping[str, Any]],
    assumptions: Mapping[str, Any],
) -> list[str]:
    """The containers versus VMs sentence for one shape."""
    profile = comparison.get("profile")
    containers = _slots(comparison.get("container_remaining"))
    vms = _slots(comparison.get("vm_remaining"))
    sentence = f"As containers: {containers}; as VMs: {vms}"
    ratio = comparison.get("ratio")
    if isinstance(ratio, int | float) and math.isfinite(ratio) and ratio > 0:
        if ratio >= 1:
            sentence += f" — {ratio:.1f}{TIMES} more as containers"
        else:
            sentence += f" — {1 / ratio:.1f}{TIMES} more as VMs"
    overhead = comparison.get("vm_overhead")
    if not isinstance(overhead, Mapping):
        overhead = next(
            (
                answer.get("overhead") or {}
                for answer in answers
                if answer.get("kind") == "vm"
                and answer.get("profile") == profile
                and answer.get("headline")
            ),
            {},
        )
    paid: list[str] = []
    if overhead.get("qemu"):
        paid.append(f"QEMU {human_bytes(overhead['qemu'])}")
    guest_memory, guest_disk = overhead.get("guest_os_memory"), overhead.get("guest_os_disk")
    if guest_memory or guest_disk:
        guest_os = comparison.get("guest_os") or assumptions.get("guest_os") or "guest"
        paid.append(
            f"a {guest_os} guest OS {human_bytes(guest_memory or 0)} RAM"
            f" / {human_bytes(guest_disk or 0)} disk"
        )
    if paid:
        sentence += f"; the VM pays {' and '.join(paid)}"
    lines = [f"Containers or VMs, profile {profile}:", wrap(sentence, "  ", "  ")]
    guest = comparison.get("guest_os_memory")
    if isinstance(guest, Mapping):
        measured = guest.get("measured_bytes")
        told = (
            f"measured {human_bytes(measured)} (median guest used of "
            f"{guest.get('measured_vms')} VM(s))"
            if measured is not None
            else "not measured (no running VM reports current guest memory)"
        )
        lines.append(
            wrap(
                f"guest OS RAM: table {guest.get('table')} "
                f"{human_bytes(guest.get('table_bytes') or 0)}, {told}",
                "  ",
                "  ",
            )
        )
    return lines


def _slots(remaining: Any) -> str:
    """``40 more``, or ``unbounded``."""
    return "unbounded" if remaining is None else f"{remaining} more"


# The table's words for the document's keys; the JSON keeps the keys. A key not named here
# reads as its words without the unit suffix (``guest_os`` -> ``guest os``).
_LABELS: dict[str, str] = {
    "memory_available_bytes": "memory available",
    "data_disks": "data disks",
    "reserved_given": "reserve kept within a declared capacity",
    "ratio": "overcommit ratios",
    "target_fill": "target fill",
    "percentile": "CPU percentile",
    "memory_buffer": "memory buffer",
    "window_seconds": "window",
    "container_shim_bytes": "containerd shim",
    "shim_measured": "shim measured",
    "qemu_overhead": "QEMU overhead",
    "guest_os": "guest OS",
    "qemu_calibrated": "QEMU overhead calibrated",
    "min_trend_seconds": "shortest trend",
    "memory_bytes": "memory",
    "disk_bytes": "disk",
    "total_bytes": "total",
    "free_bytes": "free",
}


def table_label(key: str) -> str:
    """A document key in words for the table."""
    label = _LABELS.get(key)
    if label is not None:
        return label
    return key.removesuffix("_bytes").removesuffix("_seconds").replace("_", " ")


def _assumption_lines(key: str, value: Any, indent: str = "  ") -> list[str]:
    """``label: value`` on one line; a list gets one line per item."""
    label = table_label(key)
    if isinstance(value, list | tuple):
        if not value:
            return [f"{indent}{label}: none"]
        items = [wrap(f"- {_format(key, item)}", indent + "  ", indent + "    ") for item in value]
        return [f"{indent}{label}:", *items]
    return [wrap(f"{label}: {_format(key, value)}", indent, indent + "    ")]


def _format(key: str, value: Any) -> str:
    """A value in words by its key's unit: ``_bytes`` human bytes, ``_seconds`` a duration."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        if not value:
            return "none"
        if key == "sources":
            return ", ".join(f"{name} {'up' if up else 'down'}" for name, up in value.items())
        return ", ".join(_entry(name, item) for name, item in value.items())
    if isinstance(value, int | float):
        if key.endswith("_bytes"):
            return human_bytes(value)
        if key.endswith("_seconds"):
            return human_duration(value)
        return plain_number(value)
    if isinstance(value, list | tuple):
        return ", ".join(_format(key, item) for item in value)
    return str(value)


def _entry(name: str, item: Any) -> str:
    """One entry of a mapping in words: ``memory 512.0MiB``, or a data disk's place and size."""
    if isinstance(item, Mapping) and {"path", "total_bytes", "free_bytes"} <= set(item):
        total, free = human_bytes(item["total_bytes"]), human_bytes(item["free_bytes"])
        why = f"; {item['why']}" if item.get("why") else ""
        return f"{_KIND_WORDS.get(name, name)} on {item['path']} ({free} free of {total}{why})"
    if isinstance(item, Mapping):
        return f"{table_label(name)} ({_format(name, item)})"
    return f"{table_label(name)} {_format(name, item)}"


def _cores(value: float) -> str:
    """Cores with up to three significant digits: ``8``, ``27.5``, ``0.125``."""
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _unique(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, in their first order."""
    return list(dict.fromkeys(items))
