"""What a plan is asked: one shape (``PlanRequest``) or several packed at once (``PackingRequest``).

``densityd plan --profile web=cpu=0.5,memory=512Mi --profile db=cpu=2,memory=8Gi --count
web=40 --count db=5 [--new-host cpu=16,memory=64Gi,disk=1Ti]`` asks to place the copies
over the hosts (one host's local data, or every host Prometheus shows;
``command_answer.pack_request`` packs them by first-fit-decreasing with a dot-product host
score, ``plan.core.packing``).
A copy must fit in every view asked for, as one shape's headline is its stricter view.

The same request as a file (``--packing-file``)::

    kind: container              # or vm; --kind wins
    new_host: {cpu: 16, memory: 64Gi, disk: 1Ti}
    profiles:
      web: {cpu: 0.5, memory: 512Mi, count: 40}
      db:  {cpu: 2, memory: 8Gi, disk: 20Gi, count: 5}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densityd.model import WorkloadKind
from densityd.plan.core.model import RESOURCES, Profile, Resources, View
from densityd.plan.core.quantity import (
    PROFILE_KEYS,
    QuantityError,
    parse_profile,
    parse_resources,
)

KINDS: tuple[WorkloadKind, ...] = (WorkloadKind.CONTAINER, WorkloadKind.VM)


VIEWS: tuple[View, ...] = (View.ALLOCATION, View.DEMAND)


class PlanRequestError(ValueError):
    """The request cannot be answered as asked (an unknown ``--like`` name, say)."""


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What to plan for: which shape, as which kinds, in which views.

    ``profile`` is a given shape; ``like`` names an existing workload; with neither, each
    kind is planned for its own median workload. ``kind`` ``None`` means: the ``like``
    workload's kind, else containers for a given profile, else both kinds. ``compare`` plans
    the one shape both as a container and as a VM and gives the ratio of their slots.
    """

    profile: Profile | None = None
    like: str | None = None
    kind: WorkloadKind | None = None
    compare: bool = False
    views: tuple[View, ...] = VIEWS


_FILE_KEYS = frozenset({"kind", "new_host", "profiles"})


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
    import yaml  # only for a packing file: the daemon never reads one

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
