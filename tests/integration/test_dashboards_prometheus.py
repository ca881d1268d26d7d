"""Every query of every Grafana dashboard returns data from a real Prometheus.

No Grafana server can be had here, so this does what Grafana would: a real Prometheus
scrapes, every second, a densityd daemon sampling a CPU burner, a memory filler and a QEMU
VM, and each panel's every query, with the dashboard variables substituted (the host is that
daemon's instance), must return at least one sample.

Per world: per-workload PSI (``densityd_workload_pressure_seconds_total``) exists on cgroup
v2 only, so its queries must be empty on a v1 host and return data on the v2 guest. Queries
of families contracted to other branches (``test_dashboards.CONTRACTED``) that this build
does not document yet are reported, not checked, until their branch is merged.

The daemon's history is seeded with three earlier hours of the same workloads at a smaller
footprint, so that demand has a rising trend and ``densityd_plan_time_to_full_seconds`` is
exported, as it is on a host that has been filling up for a while.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from densityd.history.store import HistoryStore
from densityd.model import Snapshot, WorkloadKind, WorkloadSample
from tests.integration.backends import VM_PREFIX, Containers, Daemon, PrometheusServer, VMs
from tests.integration.cgroups import cgroup_version
from tests.unit.test_dashboards import (
    CONTRACTED,
    DASHBOARD_FILES,
    METRIC,
    Query,
    documented_metrics,
    queries,
    substitute,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
HOUR = 3600
# Series the slowest panels need: CPU rates (two scrapes inside $__rate_interval), the
# time to full, and the VM's QEMU footprint.
READY = (
    "rate(densityd_workload_cpu_seconds_total[5s])",
    "densityd_plan_time_to_full_seconds",
    'densityd_workload_memory_bytes{kind="vm"}',
    'densityd_workload_memory_bytes{kind="container"}',
)


def seed_history(
    state_dir: Path, workloads: Sequence[tuple[WorkloadKind, str, str]], now: float
) -> None:
    """Three hourly passes, 3 h to 1 h ago, of ``workloads`` at 1, 2 and 3 MiB each."""
    with HistoryStore.open(state_dir) as store:
        store.record_many(
            Snapshot(
                timestamp=now - hours * HOUR,
                workloads=tuple(
                    WorkloadSample(
                        kind=kind,
                        id=workload_id,
                        name=name,
                        memory_bytes=(4 - hours) * MiB,
                        disk_bytes=0,
                    )
                    for kind, workload_id, name in workloads
                ),
            )
            for hours in (3, 2, 1)
        )


def wait_until_ready(prometheus: PrometheusServer, instance: str, timeout: float = 45) -> None:
    """Until Prometheus holds every series in ``READY`` for ``instance``."""
    deadline = time.monotonic() + timeout
    missing: list[str] = list(READY)
    while time.monotonic() < deadline:
        missing = [
            promql
            for promql in READY
            if not [r for r in prometheus.query(promql) if r["metric"].get("instance") == instance]
        ]
        if not missing:
            return
        time.sleep(1)
    raise AssertionError(f"Prometheus still lacks {missing} for {instance}")


def empty_queries(
    prometheus: PrometheusServer, found: Sequence[Query], instance: str
) -> list[Query]:
    """The queries that return no sample, with the dashboard variables substituted."""
    values = {"instance": instance, "datasource": "prometheus"}
    return [q for q in found if not prometheus.query(substitute(q.expr, values))]


# Families that exist only on a cgroup v2 host (PSI per cgroup: the pressure files).
V2_ONLY = frozenset({"densityd_workload_pressure_seconds_total"})


def pending(query: Query) -> set[str]:
    """The contracted families a query uses that this build does not export yet."""
    return (set(METRIC.findall(query.expr)) & CONTRACTED) - documented_metrics()


def v2_only(query: Query) -> bool:
    return bool(set(METRIC.findall(query.expr)) & V2_ONLY)


def test_every_dashboard_query_returns_data(
    containers: Containers,
    vms: VMs,
    start_daemon: Callable[..., Daemon],
    start_prometheus: Callable[[Sequence[str]], PrometheusServer],
    tmp_path: Path,
) -> None:
    prefix = f"{VM_PREFIX}dash-{uuid.uuid4().hex[:6]}"
    # A CPU quota (throttling panels) and a memory limit (rightsizing panels) to show.
    burner = containers.run("--cpus", "0.5", name=f"{prefix}-cpu", command="exec yes > /dev/null")
    filler = containers.run(
        "--memory",
        "256m",
        "--tmpfs",
        "/data:size=200m",
        name=f"{prefix}-memory",
        command="dd if=/dev/zero of=/data/x bs=1M count=60 && exec sleep 3600",
    )
    vm = vms.define(memory_mib=128, vcpus=1, disks_mib=(64,), written_mib=4, name=f"{prefix}-vm")
    state_dir = tmp_path / "dashboard-state"
    seed_history(
        state_dir,
        [
            (WorkloadKind.CONTAINER, burner, f"{prefix}-cpu"),
            (WorkloadKind.CONTAINER, filler, f"{prefix}-memory"),
            (WorkloadKind.VM, vm, f"{prefix}-vm"),
        ],
        time.time(),
    )
    # Scoped to this test's workloads: others on the engine do not move its plan or trend.
    daemon = start_daemon("--scope", f"{prefix}-*", "--state-dir", str(state_dir))
    instance = daemon.url.removeprefix("http://")
    prometheus = start_prometheus([instance])
    wait_until_ready(prometheus, instance)

    everything = [query for name in DASHBOARD_FILES for query in queries(name)]
    assert len(everything) >= 40
    found = everything
    if cgroup_version() == 1:
        # No PSI per cgroup on v1: those queries must find nothing here, not a made-up 0.
        absent = [q for q in found if v2_only(q)]
        found = [q for q in found if not v2_only(q)]
        assert absent, "the dashboards have per-workload PSI panels"
        present = [q for q in absent if q not in empty_queries(prometheus, absent, instance)]
        assert not present, "v2-only queries with data on cgroup v1:\n" + "\n".join(
            q.where() for q in present
        )
    waiting = [q for q in found if pending(q)]
    found = [q for q in found if not pending(q)]
    if waiting:
        # Said in the test's output (-s), for whoever merges the branches.
        print(
            "not checked, their families are not on this build yet:\n"
            + "\n".join(f"{q.where()} ({', '.join(sorted(pending(q)))})" for q in waiting)
        )
    empty = empty_queries(prometheus, found, instance)
    if empty:
        # A panel whose data comes a scrape later (an increase() over a young series) gets
        # a few more seconds; a query that is wrong stays empty.
        time.sleep(5)
        empty = empty_queries(prometheus, empty, instance)
    assert not empty, "dashboard queries without data:\n" + "\n".join(q.where() for q in empty)
