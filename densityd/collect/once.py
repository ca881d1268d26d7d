"""``densityd sample``: one pass over the sources (two, for CPU rates), printed as a table or JSON.

``densityd plan`` takes its local sample here too, so both see the same sources.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from tabulate import tabulate

from densityd.collect.build import DOCKER_DISK_JOB, build_sampler, build_sources, log_found_sources
from densityd.collect.sampler import SnapshotHolder
from densityd.config import Settings
from densityd.model import Snapshot, WorkloadKind, WorkloadSample, cpu_rates
from densityd.units import human_bytes

SAMPLE_SCHEMA = "densityd.sample/v1"


def take_samples(
    settings: Settings, cpu_window: float
) -> tuple[Snapshot, Snapshot, dict[WorkloadKind, tuple[str, ...]]]:
    """Two passes ``cpu_window`` apart (one if 0), and where each kind keeps its disks."""
    source_set = build_sources(settings)
    try:
        # One-shot: nothing will try a missing source again, so the logs do not say so.
        missing = log_found_sources(source_set, settings, retries=False)
        sampler = build_sampler(settings, source_set, SnapshotHolder(), retries=False)
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
        del item["cpu_read_at"]  # behind cpu_percent; not part of densityd.sample/v1
        item["kind"] = str(workload.kind)
        item["labels"] = dict(workload.labels)
        item["cpu_percent"] = cpu_percent.get(workload.id)
        workloads.append(item)
    return {
        "schema": SAMPLE_SCHEMA,
        "timestamp": snapshot.timestamp,
        "host": asdict(snapshot.host) if snapshot.host else None,
        "sources": [asdict(s) for s in snapshot.sources],
        # The engine behind the Docker API source ({"name": "podman", ...}), when one answered.
        "engine": asdict(snapshot.engine) if snapshot.engine else None,
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
