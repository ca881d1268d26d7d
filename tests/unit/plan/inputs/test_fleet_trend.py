"""The fleet's trend and capacities from Prometheus: per period, per filesystem, unknown disks.

Over the same fake Prometheus as ``test_fleet.py`` (the exposition of real ``LivePlan``s),
answering the trend's range queries with series made up per test.
"""

from __future__ import annotations

import dataclasses

from densityd.model import WorkloadKind
from densityd.plan.answer import plan_answers
from densityd.plan.command_answer import fleet_plan
from densityd.plan.core.model import GIB, MIB, Resource, Resources
from densityd.plan.core.quantity import parse_profile
from densityd.plan.inputs.prometheus import Series
from densityd.plan.output.fleet import fleet_document, fleet_table
from densityd.plan.request import PlanRequest
from tests.unit.plan.inputs.test_fleet import (
    NOW,
    PROFILES,
    FakePrometheus,
    Host,
    _fleet_hosts,
    _load,
)
from tests.unit.plan.inputs.test_local import container, snapshot


def test_the_trend_sums_the_in_scope_workloads_per_period() -> None:
    hosts = _fleet_hosts()[:1]

    class WithTrend(FakePrometheus):
        def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
            if step < 3600:
                return super().query_range(promql, start, end, step)
            if promql.startswith("count_over_time"):
                return []  # no scrape counts: every workload weighs fully
            value = {"rate(": 0.5, "max_o": 100 * MIB, "last_": 10 * MIB}[promql[:5]]
            return [
                Series(
                    labels={"instance": "a:9847", "kind": "container", "id": f"{name}-id"},
                    points=((NOW - 7200, value), (NOW - 3600, value * 2), (NOW, value * 3)),
                )
                for name in ("web-1", "web-2", "batch")  # batch is out of a's scope
            ]

    (host,) = _load(WithTrend(hosts)).hosts
    trend = host.inputs[WorkloadKind.CONTAINER].trend
    assert [p.timestamp for p in trend] == [NOW - 7200, NOW - 3600, NOW]
    assert trend[-1].demand == Resources(cpu=3.0, memory=600 * MIB, disk=60 * MIB)


def test_redeployed_workloads_weigh_by_the_share_of_scrapes_they_were_in() -> None:
    """web-1 then web-2, each half of every period: one service's memory, as locally."""
    hosts = _fleet_hosts()[:1]

    class Redeployed(FakePrometheus):
        def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
            if step < 3600:
                return super().query_range(promql, start, end, step)
            points = (NOW - 3600, NOW)
            if "densityd_host_memory_bytes" in promql:
                return [Series({"instance": "a:9847"}, tuple((t, 240.0) for t in points))]
            value = {"rate(": 0.25, "max_o": 100 * MIB, "last_": 10 * MIB, "count": 120.0}[
                promql[:5]
            ]
            return [
                Series(
                    labels={"instance": "a:9847", "kind": "container", "id": f"{name}-id"},
                    points=tuple((t, value) for t in points),
                )
                for name in ("web-1", "web-2")
            ]

    (host,) = _load(Redeployed(hosts)).hosts
    trend = host.inputs[WorkloadKind.CONTAINER].trend
    assert trend[-1].demand == Resources(cpu=0.5, memory=100 * MIB, disk=10 * MIB)


TIMES = ((7200, 1), (3600, 2), (0, 3))


def test_a_kind_on_its_own_filesystem_has_its_own_disk_trend() -> None:
    """b's VM image lives on the libvirt filesystem: its growth is no disk trend for containers."""
    hosts = _fleet_hosts()[1:2]

    class WithTrend(FakePrometheus):
        def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
            if step < 3600:
                return super().query_range(promql, start, end, step)
            if promql.startswith("count_over_time"):
                return []
            value = {"rate(": 0.5, "max_o": 100 * MIB, "last_": 10 * GIB}[promql[:5]]
            return [
                Series(
                    labels={"instance": "b:9847", "kind": kind, "id": workload_id},
                    points=tuple((NOW - age, value * n * scale) for age, n in TIMES),
                )
                # The VM's disk grows twice as fast as the container's.
                for kind, workload_id, scale in (
                    ("container", "web-1-id", 1),
                    ("vm", "db-uuid", 2 if promql.startswith("last_") else 1),
                )
            ]

    (host,) = _load(WithTrend(hosts)).hosts
    containers = host.inputs[WorkloadKind.CONTAINER].trend
    vms = host.inputs[WorkloadKind.VM].trend
    # CPU and memory of both kinds; disk of the kind's own filesystem only (not 90 GiB).
    assert containers[-1].demand == Resources(cpu=3.0, memory=600 * MIB, disk=30 * GIB)
    assert vms[-1].demand == Resources(cpu=3.0, memory=600 * MIB, disk=60 * GIB)
    assert [p.demand.cpu for p in containers] == [p.demand.cpu for p in vms] == [1.0, 2.0, 3.0]


def test_a_host_that_cannot_see_its_disk_plans_as_it_does_locally() -> None:
    """No data filesystem visible: no disk capacity exported, unknown (not 0) in the fleet."""
    blind = dataclasses.replace(snapshot(container("web-1", 300 * MIB), timestamp=NOW))
    assert blind.host is not None
    blind = dataclasses.replace(blind, host=dataclasses.replace(blind.host, disks=()))
    host = Host("d:9847", blind)
    exported = {s.labels["__name__"] for s in host.exported()}
    assert "densityd_plan_capacity_bytes" in exported
    assert not [
        s
        for s in host.exported()
        if s.labels["__name__"] == "densityd_plan_capacity_bytes" and s.labels["resource"] == "disk"
    ]
    fleet = _load(FakePrometheus([host]))
    profile = parse_profile(PROFILES[0])
    for kind in WorkloadKind:
        found, _ = fleet_plan(fleet, [PlanRequest(profile=profile, kind=kind)])
        (answer,) = found
        mine = answer.by_name["d:9847"]
        local = plan_answers(host.context(), PlanRequest(profile=profile, kind=kind))
        assert list(mine.remaining_by_view) == [a.remaining for a in local]
        assert mine.remaining and mine.bound is not Resource.DISK, mine
        document = fleet_document(fleet, found, {}, source={}, compare=False)
        entry = document["hosts"][0]["by_view"]
        assert all(view["total"]["disk_bytes"] is None for view in entry.values())
        assert "unknown" in fleet_table(document)
