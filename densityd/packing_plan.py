"""Several shapes at once: the request (flags or a YAML file), the packing, its report.

``densityd plan --profile web=cpu=0.5,memory=512Mi --profile db=cpu=2,memory=8Gi --count
web=40 --count db=5 [--new-host cpu=16,memory=64Gi,disk=1Ti]`` places the copies over the
hosts (one host's local data, or every host Prometheus shows) by first-fit-decreasing with a
dot-product host score (``planner.packing``), and reports what goes where, what fits nowhere,
how many new hosts would be needed and how far that is from the lower bound
``max_r ceil(sum of demand_r / capacity_r)``. A copy must fit in every view asked for, as
one shape's headline is its stricter view.

The same request as a file (``--packing-file``)::

    kind: container              # or vm; --kind wins
    new_host: {cpu: 16, memory: 64Gi, disk: 1Ti}
    profiles:
      web: {cpu: 0.5, memory: 512Mi, count: 40}
      db:  {cpu: 2, memory: 8Gi, disk: 20Gi, count: 5}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

from densityd.model import WorkloadKind
from densityd.planner import packing
from densityd.planner.fleet import HostUse, pack_fleet
from densityd.planner.model import RESOURCES, PlanSettings, Profile, Resource, Resources, View
from densityd.planner.quantity import (
    PROFILE_KEYS,
    QuantityError,
    parse_profile,
    parse_resources,
)
from densityd.planner.report import RESOURCE_KEYS
from densityd.units import WIDTH, human_bytes, wrap

_FILE_KEYS = frozenset({"kind", "new_host", "profiles"})
_KIND_WORDS = {WorkloadKind.CONTAINER: "containers", WorkloadKind.VM: "VMs"}


class PackingRequestError(ValueError):
    """The packing request cannot be understood; the message names the flag or file key."""


@dataclass(frozen=True, slots=True)
class PackingRequest:
    """``count`` more of each profile as ``kind``, and the new host to add when they overflow."""

    shapes: tuple[tuple[Profile, int], ...]
    kind: WorkloadKind = WorkloadKind.CONTAINER
    new_host: Resources | None = None


def parse_count(text: str) -> tuple[str, int]:
    """``web=40`` -> ``("web", 40)``; ``PackingRequestError`` naming ``--count`` otherwise."""
    name, sep, number = (part.strip() for part in text.partition("="))
    if not sep or not name:
        raise PackingRequestError(f"--count: '{text}' is not NAME=N (example: web=40)")
    if not number.isascii() or not number.isdigit():
        raise PackingRequestError(f"--count: {name}: '{number}' is not a whole number >= 0")
    return name, int(number)


def parse_new_host(text: str, option: str = "--new-host") -> Resources:
    """A whole machine: ``cpu=16,memory=64Gi,disk=1Ti``, every key given."""
    given = parse_resources(text, option=option, kind="capacity")
    missing = [str(r) for r in RESOURCES if given.get(r) is None]
    if missing:
        raise QuantityError(
            f"'{text}' leaves out {', '.join(missing)}: a new host needs cpu, memory and disk",
            option=option,
        )
    return Resources(*(given.get(r) or 0.0 for r in RESOURCES))


def read_packing_file(path: str | Path) -> tuple[list[Profile], dict[str, int], Any, Any]:
    """The profiles, counts, kind and new host a YAML packing file gives (layout above).

    ``PackingRequestError`` (or ``QuantityError``) names the file and the key at fault.
    """
    where = f"--packing-file {path}"
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise PackingRequestError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise PackingRequestError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise PackingRequestError(f"{where}: expected a mapping with 'profiles'")
    unknown = set(document) - _FILE_KEYS
    if unknown:
        known = ", ".join(sorted(_FILE_KEYS))
        listed = ", ".join(map(str, unknown))
        raise PackingRequestError(f"{where}: unknown key(s) {listed} (known: {known})")
    profiles_part = document.get("profiles")
    if not isinstance(profiles_part, dict) or not profiles_part:
        raise PackingRequestError(f"{where}: 'profiles' must map names to shapes")
    profiles: list[Profile] = []
    counts: dict[str, int] = {}
    for name, shape in profiles_part.items():
        key = f"{where}: profiles.{name}"
        if not isinstance(shape, dict):
            raise PackingRequestError(f"{key}: expected a mapping such as {{cpu: 1, count: 3}}")
        fields = dict(shape)
        count = fields.pop("count", None)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise PackingRequestError(f"{key}.count: expected a whole number >= 0, got {count!r}")
        unknown_keys = set(fields) - set(PROFILE_KEYS)
        if unknown_keys:
            raise PackingRequestError(
                f"{key}: unknown key(s) {', '.join(map(str, unknown_keys))} "
                f"(known: {', '.join(PROFILE_KEYS)}, count)"
            )
        text = ",".join(f"{k}={_scalar(v)}" for k, v in fields.items())
        profiles.append(parse_profile(f"{name}={text}", option=key))
        counts[str(name)] = count
    return profiles, counts, document.get("kind"), document.get("new_host")


def _scalar(value: Any) -> str:
    """A YAML value as the text a flag would give: ``0.5``, ``512Mi``, ``2``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def packing_request(
    profiles: Sequence[Profile],
    counts: Sequence[str],
    *,
    packing_file: str | None = None,
    kind: str | None = None,
    new_host: str | None = None,
) -> PackingRequest | None:
    """The packing the flags (and file) ask for; ``None`` when neither gives a count.

    Every profile needs a name and a count, every count a profile; flags add to the file's
    profiles and override its kind and new host.
    """
    named = list(profiles)
    wanted: dict[str, int] = {}
    file_kind: Any = None
    file_host: Any = None
    if packing_file is not None:
        from_file, wanted, file_kind, file_host = read_packing_file(packing_file)
        named = [*from_file, *named]
    for text in counts:
        name, number = parse_count(text)
        if name in wanted:
            raise PackingRequestError(f"--count: {name} given twice")
        wanted[name] = number
    if not wanted:
        return None
    by_name: dict[str, Profile] = {}
    for profile in named:
        if profile.origin == "given" and "=" in profile.name:
            raise PackingRequestError(
                f"--profile {profile.name}: name it to pack it (--profile web={profile.name})"
            )
        if profile.name in by_name:
            raise PackingRequestError(f"--profile: {profile.name} given twice")
        by_name[profile.name] = profile
    for name in wanted:
        if name not in by_name:
            raise PackingRequestError(f"--count: no --profile named {name}")
    for name in by_name:
        if name not in wanted:
            raise PackingRequestError(f"--profile {name}: no --count {name}=N to pack")
    chosen = kind if kind is not None else file_kind
    try:
        kind_value = WorkloadKind(chosen) if chosen is not None else WorkloadKind.CONTAINER
    except ValueError:
        raise PackingRequestError(f"kind: {chosen!r} is not container or vm") from None
    host_text = new_host
    if host_text is None and file_host is not None:
        if isinstance(file_host, dict):
            host_text = ",".join(f"{k}={_scalar(v)}" for k, v in file_host.items())
        else:
            host_text = str(file_host)
    option = "--new-host" if new_host is not None else f"--packing-file {packing_file}: new_host"
    return PackingRequest(
        shapes=tuple((profile, wanted[name]) for name, profile in by_name.items()),
        kind=kind_value,
        new_host=parse_new_host(host_text, option) if host_text is not None else None,
    )


def pack_request(
    uses: Sequence[HostUse],
    request: PackingRequest,
    views: Sequence[View],
    settings: PlanSettings,
) -> packing.Packing:
    """Pack the request over the hosts' uses (``fleet.host_use`` of each host's inputs)."""
    return pack_fleet(
        uses,
        [(profile, request.kind, count) for profile, count in request.shapes],
        views,
        settings,
        request.new_host,
    )


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
