"""The ``densityd`` command: ``run`` the daemon, ``sample`` once, ``plan``, ``--version``.

Every setting of ``config.Settings`` is a flag of both subcommands, generated from the model
so that flags, environment variables and TOML keys cannot drift apart. Bad flags and bad
values exit with status 2 and one line naming the setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
import typing
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from tabulate import tabulate

from densityd import __version__
from densityd.collect.sampler import SnapshotHolder
from densityd.config import ConfigError, Settings, flag_name, load_settings, resolve_config_file
from densityd.daemon import (
    DOCKER_DISK_JOB,
    build_sampler,
    build_sources,
    log_found_sources,
    run_daemon,
)
from densityd.history.store import HISTORY_FILE, HistoryStore, StoreError
from densityd.model import Snapshot, WorkloadKind, WorkloadSample, cpu_rates
from densityd.plan.answer import fleet_plan, pack_request, plan_document
from densityd.plan.core.fleet import host_use
from densityd.plan.core.model import View
from densityd.plan.core.quantity import QuantityError, parse_duration, parse_profile
from densityd.plan.inputs.fleet import FleetQuery, load_fleet
from densityd.plan.inputs.local import PlanContext, plan_context, read_history
from densityd.plan.inputs.prometheus import PrometheusClient, PrometheusError, connection
from densityd.plan.output.fleet import fleet_document, fleet_table
from densityd.plan.output.local import plan_table
from densityd.plan.output.packing import packing_document, packing_table
from densityd.plan.request import (
    KINDS,
    PackingRequest,
    PackingRequestError,
    PlanRequest,
    PlanRequestError,
    packing_request,
)
from densityd.units import human_bytes

SAMPLE_SCHEMA = "densityd.sample/v1"


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also DENSITYD_<NAME> or a TOML key)")
    group.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with settings (default: /etc/densityd/densityd.toml "
        "if present; env DENSITYD_CONFIG)",
    )
    for name, field in Settings.model_fields.items():
        flag = flag_name(name)
        help_text = field.description or ""
        annotation = field.annotation
        if annotation is bool:
            group.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif typing.get_origin(annotation) is list:
            group.add_argument(
                flag,
                dest=name,
                action="append",
                default=argparse.SUPPRESS,
                metavar="VALUE",
                help=help_text + " Repeatable.",
            )
        else:
            group.add_argument(
                flag, dest=name, default=argparse.SUPPRESS, metavar=name.upper(), help=help_text
            )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``densityd`` command."""
    parser = argparse.ArgumentParser(
        prog="densityd",
        description="Container and VM density metrics for Prometheus, and a capacity planner.",
    )
    parser.add_argument("--version", action="version", version=f"densityd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the daemon and serve /metrics")
    _add_settings_flags(run)
    sample = commands.add_parser("sample", help="take one sampling pass and print every workload")
    sample.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="output format (default: table)",
    )
    sample.add_argument(
        "--cpu-window",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between the two readings that give CPU %% (default: 1)",
    )
    _add_settings_flags(sample)
    _add_plan_parser(commands)
    return parser


def _add_plan_parser(commands: Any) -> None:
    plan = commands.add_parser(
        "plan",
        help="how many more containers or VMs of a shape fit, what binds, and when it fills",
        description="Plan from a fresh sample plus the local history (when the daemon has "
        "recorded one); works with no daemon running. With --prometheus, plan every host "
        "Prometheus scrapes densityd on instead. With --count, pack several shapes at once.",
    )
    shape = plan.add_mutually_exclusive_group()
    shape.add_argument(
        "--profile",
        metavar="SHAPE",
        action="append",
        help="the shape of one more workload: cpu=0.5,memory=512Mi,disk=2Gi "
        "(optionally NAME=...; keys cpu, memory, disk, image, vcpus). Repeatable: each "
        "shape is planned, and packed together with --count",
    )
    shape.add_argument(
        "--like", metavar="NAME", help="the shape of an existing workload (its demand)"
    )
    kind = plan.add_mutually_exclusive_group()
    kind.add_argument(
        "--kind",
        choices=[str(k) for k in KINDS],
        help="plan it as this kind (default: the --like workload's kind, containers for "
        "--profile, else each kind for its median workload)",
    )
    kind.add_argument(
        "--compare",
        action="store_true",
        help="plan the same app as a container and as a VM, side by side",
    )
    plan.add_argument(
        "--view",
        choices=["demand", "allocation", "both"],
        default="both",
        help="count workloads by measured demand, by allocation (limits), or both; the "
        "stricter is the headline (default: both)",
    )
    plan.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="output format (default: table)",
    )
    _add_packing_flags(plan)
    _add_fleet_flags(plan)
    _add_settings_flags(plan)


def _add_packing_flags(plan: argparse.ArgumentParser) -> None:
    group = plan.add_argument_group(
        "packing several shapes at once (first-fit-decreasing, dot-product host score)"
    )
    group.add_argument(
        "--count",
        metavar="NAME=N",
        action="append",
        default=[],
        help="how many of the --profile named NAME to place (repeatable), e.g. web=40",
    )
    group.add_argument(
        "--packing-file",
        metavar="FILE",
        help="YAML file with the profiles, counts, kind and new host to pack "
        "(see the README); --profile and --count add to it",
    )
    group.add_argument(
        "--new-host",
        metavar="SIZE",
        help="the size of a new host, cpu=N,memory=SIZE,disk=SIZE: count how many the "
        "copies that do not fit would need",
    )


def _add_fleet_flags(plan: argparse.ArgumentParser) -> None:
    group = plan.add_argument_group(
        "fleet: plan every host from Prometheus (or Thanos, Mimir, VictoriaMetrics)"
    )
    group.add_argument(
        "--prometheus", metavar="URL", help="base URL of the Prometheus HTTP API to plan from"
    )
    group.add_argument(
        "--selector",
        metavar="SELECTOR",
        help="label matchers for densityd's series, e.g. '{job=\"densityd\"}' (default: all)",
    )
    group.add_argument(
        "--host-label",
        metavar="LABEL",
        help="the label that tells hosts apart (default: instance)",
    )
    group.add_argument(
        "--rate-interval",
        metavar="DURATION",
        help="slice the CPU rate's percentile is taken over, at least 4 scrape intervals "
        "(default: 1m; widened so the window holds at most 11,000 slices)",
    )
    group.add_argument(
        "--no-subqueries",
        action="store_true",
        default=None,
        help="compute the CPU percentile from range queries instead of a PromQL subquery "
        "(done anyway when the server rejects subqueries)",
    )
    group.add_argument(
        "--prometheus-bearer-token-file",
        metavar="FILE",
        help="send the token in FILE as an Authorization: Bearer header",
    )
    group.add_argument("--prometheus-username", metavar="NAME", help="HTTP basic auth user name")
    group.add_argument(
        "--prometheus-password-file", metavar="FILE", help="HTTP basic auth password, from FILE"
    )
    group.add_argument(
        "--prometheus-ca-file", metavar="FILE", help="CA certificate(s) to verify the server with"
    )
    group.add_argument(
        "--prometheus-insecure-skip-verify",
        action="store_true",
        default=None,
        help="do not verify the server's TLS certificate",
    )
    group.add_argument(
        "--prometheus-timeout",
        metavar="SECONDS",
        type=float,
        help="timeout of one query in seconds (default: 30)",
    )


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


def _settings_from_args(args: argparse.Namespace) -> Settings:
    flags = {name: getattr(args, name) for name in Settings.model_fields if hasattr(args, name)}
    return load_settings(flags, resolve_config_file(args.config))


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``densityd`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings_from_args(args)
    except ConfigError as exc:
        print(f"densityd: {exc}", file=sys.stderr)
        return 2
    if args.command == "plan" and not hasattr(args, "log_level"):
        # A plan's output is the point: keep the sources' start-up lines out of it.
        settings = settings.model_copy(update={"log_level": "WARNING"})
    _setup_logging(settings.log_level)
    if args.command == "run":
        return run_daemon(settings)
    if args.command == "plan":
        return plan_command(settings, args)
    if args.cpu_window < 0:
        parser.error("--cpu-window: must be 0 or more")
    return sample_command(settings, args.output, args.cpu_window)


# -- densityd sample --------------------------------------------------------------------


def take_samples(
    settings: Settings, cpu_window: float
) -> tuple[Snapshot, Snapshot, dict[WorkloadKind, tuple[str, ...]]]:
    """Two passes ``cpu_window`` apart (one if 0), and where each kind keeps its disks."""
    source_set = build_sources(settings)
    try:
        missing = log_found_sources(source_set, settings)
        sampler = build_sampler(settings, source_set, SnapshotHolder())
        for name, reason in missing.items():
            sampler.mark_down(name, reason)
        if source_set.docker is not None:
            sampler.run_job(DOCKER_DISK_JOB)
        first = sampler.run_pass()
        if cpu_window > 0:
            time.sleep(cpu_window)
        second = sampler.run_pass() if cpu_window > 0 else first
        return first, second, source_set.data_dirs()
    finally:
        source_set.close()


def sample_command(settings: Settings, output: str, cpu_window: float) -> int:
    """Take one pass (two readings ``cpu_window`` apart, for CPU %) and print it."""
    first, second, _ = take_samples(settings, cpu_window)
    cpu_percent = {key: rate * 100 for key, rate in cpu_rates(first, second).items()}
    if output == "json":
        print(json.dumps(sample_document(second, cpu_percent), indent=2))
    else:
        print(sample_table(second, cpu_percent))
    return 0


def sample_document(snapshot: Snapshot, cpu_percent: dict[str, float]) -> dict[str, Any]:
    """The JSON document ``sample -o json`` prints (schema ``densityd.sample/v1``)."""
    workloads = []
    for workload in snapshot.workloads:
        item = asdict(workload)
        item["kind"] = str(workload.kind)
        item["labels"] = dict(workload.labels)
        item["cpu_percent"] = cpu_percent.get(workload.id)
        workloads.append(item)
    return {
        "schema": SAMPLE_SCHEMA,
        "timestamp": snapshot.timestamp,
        "host": asdict(snapshot.host) if snapshot.host else None,
        "sources": [asdict(s) for s in snapshot.sources],
        "workloads": workloads,
    }


def _row(workload: WorkloadSample, cpu_percent: dict[str, float]) -> list[str]:
    cpu = cpu_percent.get(workload.id)
    limit = workload.memory_limit_bytes
    mem_percent = (
        f"{workload.memory_bytes / limit * 100:.1f}%"
        if limit and workload.memory_bytes is not None
        else "-"
    )
    return [
        str(workload.kind),
        workload.name,
        workload.id[:12],
        workload.state,
        f"{cpu:.1f}%" if cpu is not None else "-",
        f"{workload.cpu_limit_cores:g}" if workload.cpu_limit_cores else "-",
        f"{human_bytes(workload.memory_bytes)} / {human_bytes(limit) if limit else '-'}",
        mem_percent,
        human_bytes(workload.disk_bytes),
        f"{human_bytes(workload.disk_read_bytes)} / {human_bytes(workload.disk_written_bytes)}",
    ]


def sample_table(snapshot: Snapshot, cpu_percent: dict[str, float]) -> str:
    """The table ``sample`` prints: workloads, then host and source status lines."""
    headers = [
        "KIND",
        "NAME",
        "ID",
        "STATE",
        "CPU %",
        "CPU LIMIT",
        "MEM / LIMIT",
        "MEM %",
        "DISK",
        "BLOCK I/O",
    ]
    rows = [_row(w, cpu_percent) for w in snapshot.workloads]
    lines = [tabulate(rows, headers=headers, tablefmt="plain") if rows else "no workloads found"]
    if snapshot.host is not None:
        host = snapshot.host
        lines.append("")
        lines.append(
            f"host: {host.cpu_cores} cores, memory {human_bytes(host.memory_bytes)} "
            f"({human_bytes(host.memory_available_bytes)} available)"
        )
        for disk in host.disks:
            lines.append(
                f"disk {disk.path}: {human_bytes(disk.free_bytes)} free of "
                f"{human_bytes(disk.total_bytes)}"
            )
    for status in snapshot.sources:
        state = "up" if status.up else f"DOWN ({status.last_error})"
        lines.append(f"source {status.name}: {state}")
    return "\n".join(lines)


# -- densityd plan ----------------------------------------------------------------------

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
    path = settings.state_dir / HISTORY_FILE
    if not settings.history or not path.exists():
        return None
    try:
        return HistoryStore(path, readonly=True)
    except StoreError as exc:
        logging.getLogger("densityd").warning("history at %s cannot be read: %s", path, exc)
        return None


def plan_command(settings: Settings, args: argparse.Namespace) -> int:
    """Sample (or read Prometheus), plan, print; exit 2 for a request that cannot be answered.

    Fleet mode exits 1 when Prometheus cannot be reached (or fails: HTTP 5xx), 2 when it
    rejects the query (HTTP 4xx) or holds no densityd series.
    """
    try:
        packing = plan_packing(args)
        requests = plan_requests(args, packing)
        if not args.prometheus:
            given = [name for name in FLEET_ONLY_FLAGS if getattr(args, name) is not None]
            if given:
                flag = "--" + given[0].replace("_", "-")
                raise PackingRequestError(f"{flag} needs --prometheus URL")
    except (QuantityError, PackingRequestError) as exc:
        print(f"densityd plan: {exc}", file=sys.stderr)
        return 2
    if args.prometheus:
        return fleet_command(settings, args, requests, packing)
    first, second, data_dirs = take_samples(settings, PLAN_CPU_WINDOW)
    store = open_history(settings)
    try:
        history = read_history(store, second, settings)
    finally:
        if store is not None:
            store.close()
    context = plan_context(
        second, history, settings, data_dirs=data_dirs, rates=cpu_rates(first, second)
    )
    try:
        document = _local_document(context, requests)
        if packing is not None:
            views = plan_views(args)
            use = host_use(
                socket.gethostname(), context.inputs(packing.kind), views, context.settings
            )
            result = pack_request([use], packing, views, context.settings)
            document["packing"] = packing_document(result, packing, views)
    except PlanRequestError as exc:
        print(f"densityd plan: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(document, indent=2))
    else:
        text = plan_table(document)
        if "packing" in document:
            text += "\n" + packing_table(document["packing"], hosts=1)
        print(text)
    return 0


def _local_document(context: PlanContext, requests: list[PlanRequest]) -> dict[str, Any]:
    """The ``densityd.plan/v1`` document of one or more requests: their answers together."""
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
