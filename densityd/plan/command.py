"""``densityd plan``: from its flags to a printed answer, for this host or a whole fleet.

Locally it samples the host (``collect.once``) and reads the daemon's history read-only
(``inputs.local``); with ``--prometheus URL`` it rebuilds every host's inputs from Prometheus
(``inputs.fleet``). Either way ``answer`` runs the core and ``output`` prints the table or the
JSON document. Bad requests exit 2 and name the part; Prometheus failures exit as
``PrometheusError.exit_code`` says.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from densityd.config import Settings
from densityd.model import WorkloadKind
from densityd.plan.core.model import View
from densityd.plan.core.quantity import QuantityError, parse_duration, parse_profile
from densityd.plan.inputs.daemon import DaemonLink, ask_daemon, plan_queries
from densityd.plan.output.local import plan_table
from densityd.plan.request import (
    PackingRequest,
    PackingRequestError,
    PlanRequest,
    PlanRequestError,
    packing_request,
)

if TYPE_CHECKING:
    from densityd.history.store import HistoryStore
    from densityd.plan.inputs.local import PlanContext

# The fleet flags that mean nothing without --prometheus.
FLEET_ONLY_FLAGS: tuple[str, ...] = (
    "selector",
    "host_label",
    "rate_interval",
    "no_subqueries",
    "prometheus_bearer_token_file",
    "prometheus_username",
    "prometheus_password_file",
    "prometheus_ca_file",
    "prometheus_insecure_skip_verify",
    "prometheus_timeout",
)


PLAN_CPU_WINDOW = 1.0


def plan_views(args: argparse.Namespace) -> tuple[View, ...]:
    """The views ``--view`` asks for."""
    return (View.ALLOCATION, View.DEMAND) if args.view == "both" else (View(args.view),)


def plan_request(args: argparse.Namespace) -> PlanRequest:
    """The request the plan flags describe for one profile (the first); ``QuantityError``
    names a bad part."""
    profiles = args.profile or []
    return PlanRequest(
        profile=parse_profile(profiles[0]) if profiles else None,
        like=args.like,
        kind=WorkloadKind(args.kind) if args.kind else None,
        compare=args.compare,
        views=plan_views(args),
    )


def plan_requests(args: argparse.Namespace, packing: PackingRequest | None) -> list[PlanRequest]:
    """One request per shape asked about: each ``--profile``, or each shape to pack."""
    if packing is not None:
        if args.compare:
            raise PackingRequestError("--compare and --count: pack one kind at a time (--kind)")
        return [
            PlanRequest(profile=profile, kind=packing.kind, views=plan_views(args))
            for profile, _ in packing.shapes
        ]
    first = plan_request(args)
    rest = [parse_profile(text) for text in (args.profile or [])[1:]]
    return [first, *(replace(first, profile=profile) for profile in rest)]


def plan_packing(args: argparse.Namespace) -> PackingRequest | None:
    """The packing the flags ask for, ``None`` without ``--count`` or ``--packing-file``."""
    if args.new_host and not (args.count or args.packing_file):
        raise PackingRequestError("--new-host needs shapes to pack: --count NAME=N")
    return packing_request(
        [parse_profile(text) for text in args.profile or []],
        args.count,
        packing_file=args.packing_file,
        kind=args.kind,
        new_host=args.new_host,
    )


def open_history(settings: Settings) -> HistoryStore | None:
    """The daemon's history, read-only, when it exists and can be read."""
    from densityd.history.schema import HISTORY_FILE, StoreError
    from densityd.history.store import HistoryStore

    path = settings.state_dir / HISTORY_FILE
    if not settings.history or not path.exists():
        return None
    try:
        return HistoryStore(path, readonly=True)
    except StoreError as exc:
        logging.getLogger("densityd").warning("history at %s cannot be read: %s", path, exc)
        return None


def plan_command(
    settings: Settings, args: argparse.Namespace, daemon: DaemonLink | None = None
) -> int:
    """Ask the daemon, sample (or read Prometheus), plan, print; exit 2 for a request that
    cannot be answered.

    A local plan of single shapes is the answer of the daemon ``daemon`` reaches when it
    plans with this command's settings (``inputs.daemon``), unless ``--no-daemon``. Fleet
    mode exits 1 when Prometheus cannot be reached (or fails: HTTP 5xx), 2 when it rejects
    the query (HTTP 4xx) or holds no densityd series.
    """
    try:
        packing = plan_packing(args)
        requests = plan_requests(args, packing)
        if not args.prometheus:
            given = [name for name in FLEET_ONLY_FLAGS if getattr(args, name) is not None]
            if given:
                flag = "--" + given[0].replace("_", "-")
                raise PackingRequestError(f"{flag} needs --prometheus URL")
        _check_rightsize(args, packing)
    except (QuantityError, PackingRequestError) as exc:
        print(f"densityd plan: {exc}", file=sys.stderr)
        return 2
    if args.prometheus:
        return fleet_command(settings, args, requests, packing)
    if daemon is not None and not args.no_daemon and packing is None and not args.rightsize:
        queries = plan_queries(args.profile or [], args.like, args.kind, args.compare, args.view)
        reply = ask_daemon(daemon, settings, queries)
        if reply.rejected:
            print(f"densityd plan: {reply.why}", file=sys.stderr)
            return 2
        if reply.document is not None:
            age = max(0.0, time.time() - float(reply.document.get("generated_at") or 0))
            print(
                f"densityd plan: {reply.why}, from its pass {age:.0f} s ago and its "
                "history (--no-daemon: sample here instead)",
                file=sys.stderr,
            )
            _print_document(reply.document, args.output)
            return 0
        if reply.say:
            print(f"densityd plan: {reply.why}: sampling here", file=sys.stderr)
    return local_command(settings, args, requests, packing)


def local_command(
    settings: Settings,
    args: argparse.Namespace,
    requests: list[PlanRequest],
    packing: PackingRequest | None,
) -> int:
    """Sample this host, read the history, plan, print."""
    # Imported here: a plan the daemon answers needs none of the sampling or the history.
    from densityd.collect.once import take_samples
    from densityd.model import cpu_rates
    from densityd.plan.command_answer import pack_request, rightsizing
    from densityd.plan.core.fleet import host_use
    from densityd.plan.inputs.local import plan_context, read_history
    from densityd.plan.output.packing import packing_document

    first, second, data_dirs = take_samples(settings, PLAN_CPU_WINDOW)
    store = open_history(settings)
    history_file = None if store is None else str(store.path.absolute())
    try:
        history = read_history(store, second, settings)
    finally:
        if store is not None:
            store.close()
    try:
        context = plan_context(
            second, history, settings, data_dirs=data_dirs, rates=cpu_rates(first, second)
        )
        document = _local_document(context, requests)
        document["host"]["history_file"] = history_file
        if packing is not None:
            views = plan_views(args)
            use = host_use(
                socket.gethostname(), context.inputs(packing.kind), views, context.settings
            )
            result = pack_request([use], packing, views, context.settings)
            document["packing"] = packing_document(result, packing, views)
        if args.rightsize:
            document["rightsizing"] = rightsizing(context, requests, args.rightsize_top)
    except PlanRequestError as exc:
        print(f"densityd plan: {exc}", file=sys.stderr)
        return 2
    _print_document(document, args.output)
    return 0


def _print_document(document: dict[str, Any], output: str) -> None:
    """A local plan's document as JSON or as the table (packing, rightsizing appended)."""
    if output == "json":
        print(json.dumps(document, indent=2))
        return
    text = plan_table(document)
    if "packing" in document:
        from densityd.plan.output.packing import packing_table

        text += "\n" + packing_table(document["packing"], hosts=1)
    if "rightsizing" in document:
        from densityd.plan.output.rightsize import rightsizing_table

        text += "\n" + rightsizing_table(document["rightsizing"])
    print(text)


def _check_rightsize(args: argparse.Namespace, packing: PackingRequest | None) -> None:
    """``--rightsize`` is for one host's plan of single shapes; ``PackingRequestError`` else."""
    if args.rightsize_top < 0:
        raise PackingRequestError(f"--rightsize-top: {args.rightsize_top} is not >= 0")
    if not args.rightsize:
        return
    if args.prometheus:
        raise PackingRequestError(
            "--rightsize is for a local plan: with --prometheus each host's recommendations "
            "are its densityd_workload_recommended_* series"
        )
    if packing is not None:
        raise PackingRequestError("--rightsize and --count: plan the shapes without --count")


def _local_document(context: PlanContext, requests: list[PlanRequest]) -> dict[str, Any]:
    """The ``densityd.plan/v1`` document of one or more requests: their answers together."""
    from densityd.plan.answer import plan_document

    document = plan_document(context, requests[0])
    for request in requests[1:]:
        document["answers"].extend(plan_document(context, request)["answers"])
    return document


def fleet_command(
    settings: Settings,
    args: argparse.Namespace,
    requests: list[PlanRequest],
    packing: PackingRequest | None,
) -> int:
    """Plan every host Prometheus shows; exit status as ``plan_command`` says."""
    from densityd.plan.command_answer import fleet_plan, pack_request
    from densityd.plan.core.fleet import host_use
    from densityd.plan.inputs.fleet import load_fleet
    from densityd.plan.inputs.prometheus import PrometheusClient, PrometheusError, connection
    from densityd.plan.inputs.promql import FleetQuery
    from densityd.plan.output.fleet import fleet_document, fleet_table
    from densityd.plan.output.packing import packing_document, packing_table

    if settings.guest_os == "measured":
        # The fleet path does not read densityd_vm_guest_memory_used_bytes yet.
        print(
            "densityd plan: --guest-os measured is for a local plan; with --prometheus pick a "
            "table entry (alpine, debian, ubuntu, rhel, windows, none)",
            file=sys.stderr,
        )
        return 2
    try:
        conn = connection(
            args.prometheus,
            bearer_token_file=args.prometheus_bearer_token_file,
            username=args.prometheus_username,
            password_file=args.prometheus_password_file,
            ca_file=args.prometheus_ca_file,
            insecure=bool(args.prometheus_insecure_skip_verify),
            timeout=args.prometheus_timeout if args.prometheus_timeout is not None else 30.0,
        )
        query = FleetQuery(
            selector=args.selector or "",
            host_label=args.host_label or "instance",
            window_seconds=settings.window_seconds,
            rate_interval_seconds=_rate_interval(args.rate_interval),
            percentile=settings.percentile_fraction,
            subqueries=not args.no_subqueries,
        )
    except PrometheusError as exc:
        print(f"densityd plan: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:  # QuantityError included
        print(f"densityd plan: {exc}", file=sys.stderr)
        return 2
    with PrometheusClient(conn) as client:
        try:
            fleet = load_fleet(client, query, settings.plan_settings(), time.time())
        except PrometheusError as exc:
            print(f"densityd plan: {exc}", file=sys.stderr)
            return exc.exit_code
    views = plan_views(args)
    try:
        found, origins = fleet_plan(fleet, requests)
    except PlanRequestError as exc:
        print(f"densityd plan: {exc}", file=sys.stderr)
        return 2
    source = {
        "prometheus": conn.url,
        "selector": query.selector,
        "host_label": query.host_label,
        "window": settings.window,
    }
    document = fleet_document(
        fleet, found, origins, source=source, compare=any(r.compare for r in requests)
    )
    if settings.capacity is not None or settings.scopes:
        document["assumptions"]["notes"].append(
            "capacity and scopes of this command do not apply: each host plans with its own"
        )
    if packing is not None:
        uses = [
            host_use(host.name, host.inputs[packing.kind], views, fleet.settings)
            for host in fleet.hosts
        ]
        result = pack_request(uses, packing, views, fleet.settings)
        document["packing"] = packing_document(result, packing, views)
    if args.output == "json":
        print(json.dumps(document, indent=2))
    else:
        text = fleet_table(document)
        if "packing" in document:
            text += "\n" + packing_table(document["packing"], hosts=len(fleet.hosts))
        print(text)
    return 0


def _rate_interval(text: str | None) -> float:
    """``--rate-interval`` in seconds (1 minute when not given)."""
    if text is None:
        return 60.0
    try:
        return parse_duration(text)
    except QuantityError as exc:
        raise QuantityError(exc.problem, option="--rate-interval") from None
