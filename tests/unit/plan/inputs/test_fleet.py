"""The fleet planner: its PromQL, and host inputs rebuilt from Prometheus as hosts build them.

A fake Prometheus serves what real daemons export: each host's ``/metrics`` is rendered from
a snapshot by the real collectors (``SnapshotCollector`` and ``LivePlan``), labelled with an
``instance``, and the over-time queries answer what that host's history holds. The fleet's
answer for each host must then equal that host's own local plan exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from densityd import cli
from densityd.collect.sources.libvirt import ACTIVE_STATES, STATE_NAMES
from densityd.config import Settings, load_settings
from densityd.model import Snapshot, WorkloadKind, WorkloadSample
from densityd.plan import command
from densityd.plan.answer import plan_answers
from densityd.plan.command_answer import fleet_plan
from densityd.plan.core.model import (
    MIB,
    PlanSettings,
    Profile,
    Resource,
    View,
    WorkloadHistory,
)
from densityd.plan.core.quantity import parse_profile
from densityd.plan.inputs.fleet import (
    VM_RUNNING_STATES,
    Fleet,
    FleetError,
    fleet_settings,
    load_fleet,
)
from densityd.plan.inputs.local import History, PlanContext, plan_context
from densityd.plan.inputs.prometheus import Connection, PrometheusQueryError, Sample, Series
from densityd.plan.inputs.promql import (
    BASIS_METRICS,
    WORKLOAD_METRICS,
    FleetQuery,
    Queries,
    matchers,
    quantile,
    series_of,
)
from densityd.plan.live import LivePlan
from densityd.plan.output.fleet import FLEET_SCHEMA, fleet_document, fleet_table
from densityd.plan.request import PlanRequest, PlanRequestError
from densityd.serve.exporter import render
from densityd.units import WIDTH
from tests.unit.plan.inputs.test_local import DIRS, container, snapshot, vm

GIB = 1024 * MIB
NOW = 1_800_000_000.0
VIEWS = (View.ALLOCATION, View.DEMAND)


# -- PromQL ------------------------------------------------------------------------------------


def test_selectors_take_the_matchers_with_or_without_braces() -> None:
    assert matchers('{job="densityd"}') == 'job="densityd"'
    assert matchers(' job="densityd", env="prod" ') == 'job="densityd", env="prod"'
    assert matchers("") == ""
    for bad in ('{job="x"', 'a{job="x"}{b="y"}'):
        with pytest.raises(ValueError, match="--selector"):
            matchers(bad)


def test_the_promql_sent() -> None:
    query = FleetQuery(selector='{job="densityd"}', window_seconds=14 * 86400)
    queries = Queries(query)
    assert (
        queries.memory_max
        == 'max_over_time(densityd_workload_memory_bytes{job="densityd"}[1209600s])'
    )
    assert (
        queries.disk_min == 'min_over_time(densityd_workload_disk_bytes{job="densityd"}[1209600s])'
    )
    # 14 days in 1-minute slices would be 20,160 points: widened to 110 s.
    assert query.step_seconds == 110
    assert queries.cpu_percentile == (
        "quantile_over_time(0.95, "
        'rate(densityd_workload_cpu_seconds_total{job="densityd"}[110s])[1209600s:110s])'
    )
    assert queries.first_seen == (
        'min_over_time(timestamp(densityd_workload_memory_bytes{job="densityd"})[1209600s:110s])'
    )
    assert queries.trend() == {
        Resource.CPU: 'rate(densityd_workload_cpu_seconds_total{job="densityd"}[86400s])',
        Resource.MEMORY: 'max_over_time(densityd_workload_memory_bytes{job="densityd"}[86400s])',
        Resource.DISK: 'last_over_time(densityd_workload_disk_bytes{job="densityd"}[86400s])',
    }
    assert queries.basis.startswith('{__name__=~"densityd_plan_capacity_cores|')
    assert queries.basis.endswith(',job="densityd"}')
    assert FleetQuery(window_seconds=86400).trend_seconds == 3600  # hourly within 48 h
    short = Queries(FleetQuery(window_seconds=300, rate_interval_seconds=5, percentile=0.9))
    assert short.cpu_percentile == (
        "quantile_over_time(0.9, rate(densityd_workload_cpu_seconds_total[5s])[300s:5s])"
    )
    assert series_of(["a_b", "c.d"], "") == '{__name__=~"a_b|c\\.d"}'


def test_a_bad_host_label_is_refused() -> None:
    with pytest.raises(ValueError, match="--host-label"):
        FleetQuery(host_label="not a label")


@pytest.mark.parametrize(
    ("values", "phi", "expected"),
    [
        ([], 0.95, None),
        ([3.0], 0.95, 3.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.5, 3.0),
        ([5.0, 1.0, 4.0, 2.0, 3.0], 0.95, 4.8),  # rank 3.8: 4 + 0.8 * (5 - 4)
        ([0.0, 10.0], 1.0, 10.0),
    ],
)
def test_quantile_is_prometheus_quantile_over_time(
    values: list[float], phi: float, expected: float | None
) -> None:
    got = quantile(phi, values)
    assert got == (None if expected is None else pytest.approx(expected))


def test_running_vm_states_are_libvirts_active_ones() -> None:
    assert {STATE_NAMES[s] for s in ACTIVE_STATES} == VM_RUNNING_STATES


# -- a fake Prometheus over real exports ---------------------------------------------------------


@dataclass
class Host:
    """One daemon: its snapshot, settings and history, as exported and as planned locally."""

    name: str
    snapshot: Snapshot
    flags: dict[str, Any] = field(default_factory=dict)
    history: Mapping[tuple[str, str], WorkloadHistory] = field(default_factory=dict)

    def settings(self) -> Settings:
        return load_settings({"state_dir": Path("/nonexistent"), **self.flags})

    def context(self) -> PlanContext:
        hist = History(self.history, (), "test history")
        return plan_context(self.snapshot, hist, self.settings(), data_dirs=DIRS)

    def exported(self) -> list[Sample]:
        plan = LivePlan(self.settings(), data_dirs=lambda: DIRS, store=lambda: None)
        # The daemon reads its history from the store; this host's is given.
        plan._build_context = lambda snapshot: self.context()  # type: ignore[method-assign]
        plan.update(self.snapshot)
        text = render(self.snapshot, extra=[plan]).decode()
        samples = []
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = {**sample.labels, "__name__": sample.name, "instance": self.name}
                labels["job"] = "densityd"
                samples.append(Sample(labels=labels, value=sample.value, timestamp=NOW))
        return samples


class FakePrometheus:
    """Answers the fleet planner's queries from the hosts' exports and histories."""

    def __init__(self, hosts: Sequence[Host], *, subqueries: bool = True) -> None:
        self.hosts = hosts
        self.subqueries = subqueries
        self.conn = Connection(url="http://fake:9090")
        self.sent: list[str] = []
        self.exports = [s for host in hosts for s in host.exported()]
        self.queries = Queries(FleetQuery(selector='{job="densityd"}', window_seconds=86400))

    def _named(self, names: Sequence[str]) -> list[Sample]:
        return [s for s in self.exports if s.labels["__name__"] in names]

    def _per_workload(self, value: Any) -> list[Sample]:
        found = []
        for host in self.hosts:
            for workload in host.snapshot.workloads:
                got = value(host, workload)
                if got is not None:
                    labels = {"instance": host.name, "kind": str(workload.kind), "id": workload.id}
                    found.append(Sample(labels=labels, value=float(got), timestamp=NOW))
        return found

    def query(self, promql: str, at: float) -> list[Sample]:
        self.sent.append(promql)
        if "[" in promql and re.search(r"\[\d+s:\d+s\]", promql) and not self.subqueries:
            raise PrometheusQueryError("bad_data: subqueries", status=400, error="subqueries")
        if promql.startswith('{__name__=~"densityd_plan'):
            return self._named(BASIS_METRICS)
        if promql.startswith('{__name__=~"densityd_workload'):
            return self._named(WORKLOAD_METRICS)
        history = _history_of
        if promql.startswith("max_over_time"):
            return self._per_workload(lambda h, w: _or(history(h, w, "memory_max"), w.memory_bytes))
        if promql.startswith("min_over_time(densityd_workload_disk"):
            return self._per_workload(lambda h, w: _or(history(h, w, "disk_first"), w.disk_bytes))
        if promql.startswith("quantile_over_time"):
            return self._per_workload(lambda h, w: history(h, w, "cpu_rate_percentile"))
        if promql.startswith("min_over_time(timestamp"):
            return self._per_workload(lambda h, w: history(h, w, "first_timestamp"))
        raise AssertionError(f"unexpected query {promql}")

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        self.sent.append(promql)
        if promql.startswith(("rate(", "max_over_time(", "last_over_time(")) and step >= 3600:
            return []  # no trend
        found = []
        for sample in self._per_workload(lambda h, w: _range_value(h, w, promql)):
            value = sample.value
            # Three points whose 0.95 quantile (rank 1.9) is the value, and whose minimum is
            # the first timestamp.
            points: tuple[tuple[float, float], ...] = (
                (start, value * 0.5),
                (start + step, value),
                (end, value),
            )
            if promql.startswith("timestamp("):
                points = ((start, value), (end, end))
            found.append(Series(labels=sample.labels, points=points))
        return found


def _history_of(host: Host, workload: WorkloadSample, name: str) -> Any:
    record = host.history.get((str(workload.kind), workload.id))
    return None if record is None else getattr(record, name)


def _or(first: Any, second: Any) -> Any:
    return second if first is None else first


def _range_value(host: Host, workload: WorkloadSample, promql: str) -> Any:
    if promql.startswith("timestamp("):
        return _history_of(host, workload, "first_timestamp")
    return _history_of(host, workload, "cpu_rate_percentile")


def _hist(
    workload: WorkloadSample, cpu: float, memory: float, disk_first: float
) -> tuple[tuple[str, str], WorkloadHistory]:
    return (str(workload.kind), workload.id), WorkloadHistory(
        kind=workload.kind,
        id=workload.id,
        name=workload.name,
        first_timestamp=NOW - 3600,
        last_timestamp=NOW,
        cpu_rate_percentile=cpu,
        memory_max=memory,
        disk_first=disk_first,
        disk_last=float(workload.disk_bytes or 0),
    )


SHIMS = (12 * MIB, 14 * MIB)


def _fleet_hosts() -> list[Host]:
    web = container("web-1", 300 * MIB, memory_limit_bytes=512 * MIB)
    web2 = container("web-2", 200 * MIB, cpu_limit_cores=1.0)
    other = container("batch", 900 * MIB)
    stopped = container("web-old", 0, state="exited", running=False)
    db = vm("db")
    a = Host(
        "a:9847",
        snapshot(web, web2, other, stopped, shims=SHIMS, timestamp=NOW),
        flags={"capacity": "memory=4Gi", "scopes": ["web-*"]},
        history=dict(
            [
                _hist(web, 0.4, 450 * MIB, 5 * MIB),
                _hist(web2, 0.9, 250 * MIB, 10 * MIB),
            ]
        ),
    )
    b = Host(
        "b:9847",
        snapshot(web, db, shims=SHIMS, timestamp=NOW),
        history=dict([_hist(db, 1.5, 900 * MIB, 2 * GIB)]),
    )
    c = Host("c:9847", snapshot(shims=SHIMS, timestamp=NOW, same_disk=True), flags={})
    return [a, b, c]


def _load(fake: FakePrometheus, **query: Any) -> Fleet:
    settings = load_settings({"state_dir": Path("/nonexistent")}).plan_settings()
    fleet_query = FleetQuery(selector='{job="densityd"}', window_seconds=86400, **query)
    return load_fleet(fake, fleet_query, settings, NOW)


PROFILES = ("web=cpu=0.5,memory=256Mi,disk=1Gi", "big=cpu=2,memory=2Gi,disk=20Gi")


@pytest.mark.parametrize("subqueries", [True, False])
def test_each_hosts_fleet_answer_is_its_own_local_plan(subqueries: bool) -> None:
    hosts = _fleet_hosts()
    fake = FakePrometheus(hosts, subqueries=subqueries)
    fleet = _load(fake)
    assert [h.name for h in fleet.hosts] == ["a:9847", "b:9847", "c:9847"]
    assert fleet.subqueries is subqueries
    if not subqueries:
        assert any("rejected a subquery" in note for note in fleet.notes)
    assert fleet.settings.shim_measured and fleet.settings.container_shim_bytes == 13 * MIB
    for text in PROFILES:
        profile = parse_profile(text)
        for kind in WorkloadKind:
            found, _ = fleet_plan(fleet, [PlanRequest(profile=profile, kind=kind)])
            (answer,) = found
            total = 0
            for host in hosts:
                local = plan_answers(host.context(), PlanRequest(profile=profile, kind=kind))
                mine = answer.by_name[host.name]
                assert list(mine.remaining_by_view) == [a.remaining for a in local], (
                    host.name,
                    text,
                    kind,
                )
                assert [a.bound for a in local] == list(mine.bound_by_view)
                total += mine.remaining or 0
            assert answer.total_remaining == total


def test_scope_capacity_and_disks_come_from_each_hosts_basis() -> None:
    fleet = _load(FakePrometheus(_fleet_hosts()))
    a, b, c = fleet.hosts
    assert a.scopes == ("web-*",) and a.declared == (Resource.MEMORY,)
    assert [d.name for d in a.demands] == ["web-1", "web-2", "web-old"]
    assert a.workloads == 4
    containers = a.inputs[WorkloadKind.CONTAINER]
    assert containers.host.total.memory == 4 * GIB
    assert containers.host.image_bytes_present == frozenset()
    web = next(d for d in a.demands if d.name == "web-1")
    assert web.demand.cpu == 0.4
    assert web.demand.memory == pytest.approx(450 * MIB * 1.15)
    assert web.demand.disk == 10 * MIB + 5 * MIB  # now + growth since the window's minimum
    assert web.history_seconds == 3600
    assert not next(d for d in a.demands if d.name == "web-old").running
    # b's VM image is on its own filesystem: it takes none of the Docker disk.
    db_for_containers = next(
        d for d in b.inputs[WorkloadKind.CONTAINER].workloads if d.name == "db"
    )
    assert db_for_containers.demand.disk == 0
    assert b.inputs[WorkloadKind.VM].host.total.disk == 500 * GIB
    assert c.demands == () and c.inputs[WorkloadKind.VM].host.total.disk == 500 * GIB


def test_no_series_names_the_metrics_looked_for() -> None:
    empty = FakePrometheus([])
    with pytest.raises(FleetError) as caught:
        _load(empty)
    message = str(caught.value)
    assert "http://fake:9090" in message and '{job="densityd"}' in message
    assert "densityd_plan_capacity_cores" in message and "densityd_workload_info" in message
    assert caught.value.exit_code == 2


def test_workloads_without_a_basis_say_which_series_are_missing() -> None:
    fake = FakePrometheus(_fleet_hosts()[:1])
    fake.exports = [s for s in fake.exports if not s.labels["__name__"].startswith("densityd_plan")]
    with pytest.raises(FleetError, match="none of densityd_plan_capacity_cores"):
        _load(fake)


def test_a_missing_host_label_is_named() -> None:
    fake = FakePrometheus(_fleet_hosts()[:1])
    with pytest.raises(FleetError, match=r"no 'host' label.*--host-label"):
        _load(fake, host_label="host")


def test_hosts_without_a_basis_are_left_out_with_a_note() -> None:
    hosts = _fleet_hosts()
    fake = FakePrometheus(hosts)
    fake.exports = [
        s
        for s in fake.exports
        if not (
            s.labels["instance"] == "b:9847" and s.labels["__name__"].startswith("densityd_plan")
        )
    ]
    fleet = _load(fake)
    assert [h.name for h in fleet.hosts] == ["a:9847", "c:9847"]
    assert any("b:9847" in note and "left out" in note for note in fleet.notes)


def test_the_fleet_takes_the_median_measured_overhead() -> None:
    base = PlanSettings()
    overheads = [
        {("container", "shim"): 10.0 * MIB},
        {("container", "shim"): 12.0 * MIB, ("vm", "qemu_base"): 30.0 * MIB},
        {},
        {("container", "shim"): 20.0 * MIB},
    ]
    settings, notes = fleet_settings(base, overheads)
    assert settings.container_shim_bytes == 12 * MIB and settings.shim_measured
    assert settings.qemu_base_bytes == 30 * MIB and settings.qemu_calibrated
    assert len(notes) == 2
    assert fleet_settings(base, [{}]) == (base, [])


# -- the report --------------------------------------------------------------------------------


def _document(requests: Sequence[PlanRequest]) -> dict[str, Any]:
    fleet = _load(FakePrometheus(_fleet_hosts()))
    found, origins = fleet_plan(fleet, requests)
    source = {"prometheus": "http://fake:9090", "selector": "", "host_label": "instance"}
    document = fleet_document(
        fleet, found, origins, source={**source, "window": "1d"}, compare=requests[0].compare
    )
    json.dumps(document, allow_nan=False)
    return document


def test_the_document_has_the_fleet_total_and_every_host() -> None:
    profile = parse_profile(PROFILES[0])
    document = _document([PlanRequest(profile=profile)])
    assert document["schema"] == FLEET_SCHEMA
    (answer,) = document["answers"]
    hosts = document["hosts"]
    assert [h["host"] for h in hosts] == sorted(
        (h["host"] for h in hosts),
        key=lambda n: next(x["remaining"] for x in hosts if x["host"] == n),
    )
    assert answer["remaining"] == sum(h["remaining"] for h in hosts)
    assert answer["hosts"] == 3 and sum(answer["bound"].values()) == 3
    assert set(answer["remaining_by_view"]) == {"allocation", "demand"}
    assert answer["cost"]["demand"]["memory_bytes"] == 256 * MIB + 13 * MIB
    first = hosts[0]
    assert set(first) >= {"host", "remaining", "bound", "view", "by_view", "declared", "scope"}
    assert first["by_view"]["demand"]["free"]["cpu"] >= 0
    assert document["fleet"]["hosts"] == 3
    assert document["fleet"]["workloads"] == {"container": 4, "vm": 1}


def test_compare_gives_both_kinds_and_the_ratio() -> None:
    document = _document([PlanRequest(compare=True)])
    comparison = document["comparison"]
    assert {a["kind"] for a in document["answers"]} == {"container", "vm"}
    assert comparison["container_remaining"] > comparison["vm_remaining"] > 0


def test_like_finds_a_workload_anywhere_in_the_fleet() -> None:
    fleet = _load(FakePrometheus(_fleet_hosts()))
    found, origins = fleet_plan(fleet, [PlanRequest(like="db")])
    assert [a.kind for a in found] == [WorkloadKind.VM] and origins["db"] == "like db"
    # The same ID on two hosts (they share an engine) is one workload.
    fleet_plan(fleet, [PlanRequest(like="web-1")])
    with pytest.raises(PlanRequestError, match=r"'web' matches 4 workloads"):
        fleet_plan(fleet, [PlanRequest(like="web")])
    with pytest.raises(PlanRequestError, match="ghost"):
        fleet_plan(fleet, [PlanRequest(like="ghost")])


def test_the_table_fits_100_columns_and_tells_the_total() -> None:
    profile = parse_profile(PROFILES[0])
    document = _document([PlanRequest(profile=profile)])
    text = fleet_table(document)
    assert text.startswith("Fleet plan for 3 hosts from http://fake:9090")
    total = document["answers"][0]["remaining"]
    assert f"container web: {total} more on 3 hosts" in text
    assert "a:9847" in text and "Assumptions:" in text and "Notes:" in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--selector", '{job="x"}'], "--selector needs --prometheus"),
        (["--prometheus-username", "u"], "--prometheus-username needs --prometheus"),
        (["--prometheus", "prom:9090"], "--prometheus: 'prom:9090'"),
        (["--prometheus", "http://p", "--rate-interval", "soon"], "--rate-interval"),
        (["--prometheus", "http://p", "--selector", "{a"], "--selector"),
        (["--count", "web=2"], "--count: no --profile named web"),
        (["--profile", "web=cpu=1", "--count", "web=2", "--compare"], "--compare and --count"),
        (["--new-host", "cpu=1,memory=1Gi,disk=1Gi"], "--new-host needs shapes"),
        (["--prometheus", "http://p", "--guest-os", "measured"], "--guest-os measured is for"),
    ],
)
def test_bad_fleet_flags_exit_2_naming_them(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["plan", *argv]) == 2
    assert named in capsys.readouterr().err


def test_an_unreachable_prometheus_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.integration.backends import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["plan", "--prometheus", url]) == 1
    assert f"cannot reach Prometheus at {url}" in capsys.readouterr().err


def test_several_profiles_each_make_a_request() -> None:
    args = cli.build_parser().parse_args(
        ["plan", "--profile", "web=cpu=1", "--profile", "db=memory=1Gi", "--view", "demand"]
    )
    requests = command.plan_requests(args, command.plan_packing(args))
    assert [r.profile.name for r in requests if r.profile] == ["web", "db"]
    assert all(r.views == (View.DEMAND,) for r in requests)
    single = command.plan_request(cli.build_parser().parse_args(["plan", "--profile", "cpu=1"]))
    assert isinstance(single.profile, Profile) and single.profile.name == "cpu=1"


def test_the_daemon_exports_its_plan_basis() -> None:
    host = _fleet_hosts()[0]
    hidden = {"__name__", "instance", "job"}
    exported = {
        (
            s.labels["__name__"],
            frozenset(i for i in s.labels.items() if i[0] not in hidden),
        ): s.value
        for s in host.exported()
        if s.labels["__name__"] in BASIS_METRICS
    }
    assert exported[("densityd_plan_capacity_cores", frozenset({("kind", "container")}))] == 8
    memory = frozenset({("kind", "container"), ("resource", "memory")})
    assert exported[("densityd_plan_capacity_bytes", memory)] == 4 * GIB
    assert exported[("densityd_plan_host_used_bytes", memory)] == 6 * GIB
    assert exported[("densityd_plan_declared", frozenset({("resource", "memory")}))] == 1
    assert exported[("densityd_plan_scope", frozenset({("glob", "web-*")}))] == 1
    disk = frozenset({("kind", "vm"), ("path", "/var/lib/libvirt/images"), ("device", "2")})
    assert exported[("densityd_plan_data_disk_info", disk)] == 1
    shim = frozenset({("kind", "container"), ("item", "shim")})
    assert exported[("densityd_plan_measured_overhead_bytes", shim)] == 13 * MIB
    assert not any(
        name == "densityd_plan_measured_overhead_bytes" and ("item", "qemu_base") in labels
        for name, labels in exported
    )
