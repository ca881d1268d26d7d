"""The plan a running daemon already has: ``densityd plan`` asks it before sampling.

A daemon on this machine has sampled every interval and holds its history in memory; its
``/api/v1/plan`` answers in milliseconds what a fresh sample takes seconds to answer. Its
answer is used only when it is the answer this command would give: the daemon plans with the
same configured assumptions (reserve, ratio, target fill, percentile, window, guest OS,
declared capacity, scopes), the same sources and the same history file. Otherwise the command
samples here, and says why. The link to the daemon (its address, TLS, auth) is given by the
caller: plan/ does not know how the daemon serves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from densityd.config import Settings
from densityd.history.schema import HISTORY_FILE
from densityd.plan.core.model import RESOURCES, Resource
from densityd.plan.output.document import PLAN_SCHEMA, settings_assumptions

# The assumptions a user configures (``Settings.plan_settings``); the others in the document
# (the shim's size, QEMU's calibration, the measured guest OS) are measured by whoever plans.
CONFIGURED_ASSUMPTIONS: tuple[str, ...] = (
    "reserved",
    "reserved_given",
    "ratio",
    "target_fill",
    "percentile",
    "window_seconds",
    "guest_os",
)

# The declared capacities the document's ``host.capacity`` shows (a declared disk only by name).
_IN_DOCUMENT: dict[Resource, str] = {Resource.CPU: "cpu", Resource.MEMORY: "memory_bytes"}


class DaemonLink(Protocol):
    """How the command reaches the daemon: ``get`` raises ``OSError`` (or the link's own
    error, listed in ``errors``) when there is no answer."""

    errors: tuple[type[Exception], ...]

    @property
    def url(self) -> str: ...

    @property
    def requires_auth(self) -> bool: ...

    def get(self, path: str, limit: int = ...) -> tuple[int, bytes]: ...


@dataclass(frozen=True, slots=True)
class DaemonReply:
    """The daemon's document for the request, or ``None`` and why (``say``: worth telling
    the user; a daemon that is simply not running is not)."""

    document: dict[str, Any] | None
    why: str
    say: bool = True
    # The daemon rejected the request itself (a profile it cannot parse, an unknown --like):
    # a local sample would reject it as well.
    rejected: bool = False


def plan_queries(
    profiles: Sequence[str], like: str | None, kind: str | None, compare: bool, view: str
) -> list[str]:
    """The ``/api/v1/plan`` query strings of the plan flags: one per ``--profile``."""
    common: dict[str, str] = {"view": view}
    if like:
        common["like"] = like
    if kind:
        common["kind"] = kind
    if compare:
        common["compare"] = "1"
    if not profiles:
        return [urlencode(common)]
    return [urlencode({"profile": profile, **common}) for profile in profiles]


def configured(settings: Settings) -> dict[str, Any]:
    """What a daemon must plan with for its answer to be this command's."""
    assumptions = settings_assumptions(settings.plan_settings())
    result = {key: assumptions[key] for key in CONFIGURED_ASSUMPTIONS}
    result["scope"] = list(settings.scopes) or "all workloads"
    declared = settings.declared_capacity
    given = {} if declared is None else {r: declared.get(r) for r in RESOURCES}
    result["declared"] = {
        str(r): value if r in _IN_DOCUMENT else None
        for r, value in given.items()
        if value is not None
    }
    result["sources"] = sorted(
        name for name, on in (("docker", settings.docker), ("libvirt", settings.libvirt)) if on
    )
    history = settings.state_dir / HISTORY_FILE
    result["history_file"] = str(history.absolute()) if settings.history else None
    return result


def daemon_configured(document: Mapping[str, Any]) -> dict[str, Any]:
    """The same, as the daemon's document says it."""
    assumptions: Mapping[str, Any] = document.get("assumptions") or {}
    host: Mapping[str, Any] = document.get("host") or {}
    result = {key: assumptions.get(key) for key in CONFIGURED_ASSUMPTIONS}
    result["scope"] = assumptions.get("scope")
    capacity: Mapping[str, Any] = host.get("capacity") or {}
    result["declared"] = {
        name: capacity.get(_IN_DOCUMENT.get(Resource(name), "")) if name != "disk" else None
        for name in host.get("declared") or []
    }
    sources: Mapping[str, Any] = host.get("sources") or {}
    result["sources"] = sorted(name for name in ("docker", "libvirt") if name in sources)
    result["history_file"] = host.get("history_file")
    return result


def ask_daemon(link: DaemonLink, settings: Settings, queries: Sequence[str]) -> DaemonReply:
    """The daemon's answer to every query, merged into one document, when it can stand for
    this command's; otherwise why not."""
    if link.requires_auth:
        return DaemonReply(None, f"the daemon at {link.url} asks for basic auth")
    documents: list[dict[str, Any]] = []
    for query in queries:
        try:
            status, body = link.get(f"/api/v1/plan?{query}")
        except link.errors as exc:
            return DaemonReply(None, f"no daemon answers at {link.url}: {exc}", say=False)
        try:
            document = json.loads(body)
        except ValueError:
            return DaemonReply(None, f"{link.url}/api/v1/plan answered {status} with no JSON")
        if status != 200 or not isinstance(document, dict):
            error = document.get("error") if isinstance(document, dict) else None
            if status == 400 and error:
                # The daemon cannot answer this request: neither can a local sample.
                return DaemonReply(None, str(error), rejected=True)
            return DaemonReply(None, f"{link.url}/api/v1/plan answered {status}: {error}")
        if document.get("schema") != PLAN_SCHEMA:
            return DaemonReply(None, f"the daemon at {link.url} answers {document.get('schema')}")
        documents.append(document)
    first = documents[0]
    ours, theirs = configured(settings), daemon_configured(first)
    differ = sorted(key for key in ours if ours[key] != theirs.get(key))
    if differ:
        return DaemonReply(
            None, f"the daemon at {link.url} plans with other settings ({', '.join(differ)})"
        )
    for document in documents[1:]:
        first["answers"].extend(document["answers"])
    first["source"] = {"daemon": link.url}
    return DaemonReply(first, f"answered by the daemon at {link.url}")
