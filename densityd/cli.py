"""The ``densityd`` command: ``run`` the daemon, ``sample`` once, ``plan``, ``healthcheck``.

Every setting of ``config.Settings`` is a flag of both subcommands, generated from the model
so that flags, environment variables and TOML keys cannot drift apart. Bad flags and bad
values exit with status 2 and one line naming the setting. This module only parses and
dispatches: ``run`` to ``daemon``, ``sample`` to ``collect.once``, ``plan`` to ``plan.command``,
``healthcheck`` to ``serve.healthcheck``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from densityd import __version__
from densityd.config import ConfigError, Settings, flag_name, load_settings, resolve_config_file
from densityd.model import WorkloadKind

# How long ``plan`` waits for the local daemon's answer before sampling itself.
DAEMON_TIMEOUT = 2.0


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
    _add_healthcheck_parser(commands)
    return parser


def _add_healthcheck_parser(commands: Any) -> None:
    check = commands.add_parser(
        "healthcheck",
        help="exit 0 if the local daemon's /healthz answers 200 (the image's HEALTHCHECK)",
        description="Ask /healthz on the port of --listen-address, over TLS when the "
        "--web-config-file has tls_server_config (trusting its cert_file). Reads the same "
        "settings as run: give the daemon's address and web config through the environment "
        "or the TOML file so both see them.",
    )
    check.add_argument(
        "--client-cert", metavar="FILE", help="client certificate, for mutual TLS (PEM)"
    )
    check.add_argument(
        "--client-key", metavar="FILE", help="its key (default: in --client-cert's file)"
    )
    _add_settings_flags(check)


def _add_plan_parser(commands: Any) -> None:
    plan = commands.add_parser(
        "plan",
        help="how many more containers or VMs of a shape fit, what binds, and when it fills",
        description="Where a densityd daemon runs on this host (on --listen-address) and "
        "plans with the same settings, print its answer: it has sampled all along. Otherwise "
        "plan from a fresh sample plus the local history (when the daemon has recorded one); "
        "works with no daemon running. With --prometheus, plan every host "
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
        choices=[str(k) for k in WorkloadKind],
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
    plan.add_argument(
        "--no-daemon",
        action="store_true",
        help="sample this host even when a densityd daemon answers on --listen-address "
        "(by default a local plan is the running daemon's answer when it plans with the same "
        "settings: it has sampled all along and holds its history)",
    )
    plan.add_argument(
        "--rightsize",
        action="store_true",
        help="also answer as if every workload were resized to what it uses (its demand): "
        "how many more would fit, and the workloads whose resizing frees the most",
    )
    plan.add_argument(
        "--rightsize-top",
        metavar="N",
        type=int,
        default=10,
        help="how many of the biggest savings --rightsize lists (default: 10; -o json "
        "lists every workload)",
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
    if args.command in ("plan", "healthcheck") and not hasattr(args, "log_level"):
        # A plan's output (a health check's one line) is the point: keep info lines out.
        settings = settings.model_copy(update={"log_level": "WARNING"})
    _setup_logging(settings.log_level)
    # Each command imports what it runs, and only that: a health check (run every few seconds
    # by the image's HEALTHCHECK) does not pay for the daemon, the planner and the SDKs.
    if args.command == "run":
        from densityd.daemon import run_daemon

        return run_daemon(settings)
    if args.command == "plan":
        from densityd.plan.command import plan_command
        from densityd.serve.local_client import LocalDaemon

        return plan_command(settings, args, LocalDaemon(settings, timeout=DAEMON_TIMEOUT))
    if args.command == "healthcheck":
        from densityd.serve.healthcheck import healthcheck_command

        return healthcheck_command(
            settings,
            Path(args.client_cert) if args.client_cert else None,
            Path(args.client_key) if args.client_key else None,
        )
    if args.cpu_window < 0:
        parser.error("--cpu-window: must be 0 or more")
    from densityd.collect.once import sample_command

    return sample_command(settings, args.output, args.cpu_window)
