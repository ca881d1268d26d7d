"""The ``densityd`` command: ``run`` the daemon, ``sample`` once, ``--version``.

Every setting of ``config.Settings`` is a flag of both subcommands, generated from the model
so that flags, environment variables and TOML keys cannot drift apart. Bad flags and bad
values exit with status 2 and one line naming the setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import typing
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tabulate import tabulate

from densityd import __version__
from densityd.config import ConfigError, Settings, flag_name, load_settings, resolve_config_file
from densityd.daemon import (
    DOCKER_DISK_JOB,
    build_sampler,
    build_sources,
    log_found_sources,
    run_daemon,
)
from densityd.model import Snapshot, WorkloadSample
from densityd.sampler import SnapshotHolder
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
    return parser


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
    _setup_logging(settings.log_level)
    if args.command == "run":
        return run_daemon(settings)
    if args.cpu_window < 0:
        parser.error("--cpu-window: must be 0 or more")
    return sample_command(settings, args.output, args.cpu_window)


# -- densityd sample --------------------------------------------------------------------


def sample_command(settings: Settings, output: str, cpu_window: float) -> int:
    """Take one pass (two readings ``cpu_window`` apart, for CPU %) and print it."""
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
    finally:
        source_set.close()
    cpu_percent = _cpu_percent(first, second)
    if output == "json":
        print(json.dumps(sample_document(second, cpu_percent), indent=2))
    else:
        print(sample_table(second, cpu_percent))
    return 0


def _cpu_percent(first: Snapshot, second: Snapshot) -> dict[str, float]:
    """CPU use in percent of one core per workload between two snapshots (as docker stats)."""
    elapsed = second.timestamp - first.timestamp
    before = {w.id: w.cpu_seconds for w in first.workloads if w.cpu_seconds is not None}
    result: dict[str, float] = {}
    if elapsed <= 0:
        return result
    for workload in second.workloads:
        previous = before.get(workload.id)
        if previous is not None and workload.cpu_seconds is not None:
            result[workload.id] = max(0.0, workload.cpu_seconds - previous) / elapsed * 100
    return result


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
