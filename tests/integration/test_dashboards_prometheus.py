"""Every query of every Grafana dashboard returns data from a real Prometheus.

No Grafana server can be had here, so this does what Grafana would: a real Prometheus
scrapes, every second, a densityd daemon sampling a CPU burner, a memory filler and a QEMU
VM, and each panel's every query, with the dashboard variables substituted (the host is that
daemon's instance), must return at least one sample.

Per world: per-workload PSI (``densityd_workload_pressure_seconds_total``) exists on cgroup
v2 only, so its queries must be empty on a v1 host and return data on the v2 guest.

The daemon's history is seeded with three earlier hours of the same workloads at a smaller
footprint, so that demand has a rising trend and ``densityd_plan_time_to_full_seconds`` is
exported, as it is on a host that has been filling up for a while.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from densityd.history.store import HistoryStore
from densityd.model import Snapshot, WorkloadKind, WorkloadSample
from tests.integration.backends import (
    VM_PREFIX,
    Containers,
    Daemon,
    PrometheusServer,
    VMs,
    promtool,
)
from tests.integration.cgroups import cgroup_version
from tests.unit.test_dashboards import (
    DASHBOARD_FILES,
    METRIC,
    Query,
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


def wait_until_ready(
    prometheus: PrometheusServer,
    instance: str,
    timeout: float = 45,
    ready: Sequence[str] = READY,
) -> None:
    """Until Prometheus holds every series in ``ready`` for ``instance``."""
    deadline = time.monotonic() + timeout
    missing: list[str] = list(ready)
    while time.monotonic() < deadline:
        missing = [
            promql
            for promql in ready
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


def v2_only(query: Query) -> bool:
    return bool(set(METRIC.findall(query.expr)) & V2_ONLY)


def test_every_dashboard_query_returns_data(
    containers: Containers,
    vms: VMs,
    network: str,
    start_daemon: Callable[..., Daemon],
    start_prometheus: Callable[[Sequence[str]], PrometheusServer],
    tmp_path: Path,
) -> None:
    prefix = f"{VM_PREFIX}dash-{uuid.uuid4().hex[:6]}"
    # An interface of its own (network panels); lo and the host's network are not exported.
    containers.run("--network", network, name=f"{prefix}-net", command="exec sleep 3600")
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
    empty = empty_queries(prometheus, found, instance)
    if empty:
        # A panel whose data comes a scrape later (an increase() over a young series) gets
        # a few more seconds; a query that is wrong stays empty.
        time.sleep(5)
        empty = empty_queries(prometheus, empty, instance)
    assert not empty, "dashboard queries without data:\n" + "\n".join(q.where() for q in empty)
    # The exposition those panels read, every family of both kinds in it, is valid.
    checked = subprocess.run(
        [promtool(), "check", "metrics"],
        input=daemon.metrics_text(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_pressure_queries_return_data_on_cgroup_v2(
    containers: Containers,
    start_daemon: Callable[..., Daemon],
    start_prometheus: Callable[[Sequence[str]], PrometheusServer],
) -> None:
    """On cgroup v2 (the guest of ``.ci/v2-guest``) every per-workload and host pressure
    query of the dashboards returns data for a CPU burner under a quota. The guest has no
    libvirt: the daemon samples containers only."""
    if cgroup_version() != 2:
        pytest.skip("per-cgroup PSI is cgroup v2 only: .ci/v2-guest runs this test")
    prefix = f"densityd-test-psi-{uuid.uuid4().hex[:6]}"
    containers.run("--cpus", "0.2", name=f"{prefix}-cpu", command="exec yes > /dev/null")
    daemon = start_daemon("--no-libvirt", "--scope", f"{prefix}-*")
    instance = daemon.url.removeprefix("http://")
    prometheus = start_prometheus([instance])
    ready = (
        "rate(densityd_workload_pressure_seconds_total[5s])",
        "densityd_host_pressure_seconds_total",
    )
    wait_until_ready(prometheus, instance, timeout=120, ready=ready)  # TCG: slow start
    pressure = [
        query
        for name in DASHBOARD_FILES
        for query in queries(name)
        if "pressure_seconds_total" in query.expr
    ]
    assert any(v2_only(q) for q in pressure), "the dashboards have per-workload PSI panels"
    assert any(not v2_only(q) for q in pressure), "and host PSI panels"
    empty = empty_queries(prometheus, pressure, instance)
    if empty:
        time.sleep(5)  # a rate() over a series one scrape old
        empty = empty_queries(prometheus, empty, instance)
    assert not empty, "pressure queries without data:\n" + "\n".join(q.where() for q in empty)
