"""Rebuild every host's planner inputs from Prometheus, as each host builds its own.

Each densityd exports what its plans are made against (``densityd_plan_capacity_*``,
``densityd_plan_host_used_bytes``, ``densityd_plan_declared``, ``densityd_plan_scope``,
``densityd_plan_data_disk_info``, ``densityd_plan_measured_overhead_bytes``) next to its
workloads' series. From those this module makes one ``PlanInputs`` per host and kind, the
same way ``inputs.local.PlanContext.inputs`` does from a local sample and history:

- hosts are told apart by one label (``instance`` by default), series chosen by a selector;
- a workload's demand comes from PromQL over the window: CPU as the percentile of its rate
  (``quantile_over_time`` over a subquery of ``rate()`` on slices of the rate interval),
  memory as ``max_over_time`` plus the buffer, disk as now plus its growth since the
  window's minimum (``min_over_time``); limits and footprints as they are now;
- where the engine rejects subqueries, the rate and the first-seen time come from range
  queries and the percentile is computed here, the way ``quantile_over_time`` does;
- only workloads in the host's own scope count, and a kind's disk holds only the workloads
  whose data lives on that filesystem;
- the trend for the time to full sums, per hour (a day past 48 h), the in-scope workloads'
  mean CPU rate, maximum memory and last disk bytes, as the local history does.

The fleet's assumptions (reserve, ratios, target fill, percentile, window) are the caller's;
the per-kind overheads the hosts measured (the containerd shim, QEMU's base) are taken as
their median over the fleet, since a shape must cost the same on every host to be packed.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from densityd.model import WorkloadKind, WorkloadSample
from densityd.plan.core.demand import whole_vcpus
from densityd.plan.core.model import (
    RESOURCES,
    HostCapacity,
    PlanInputs,
    PlanSettings,
    Resource,
    Resources,
    TrendPoint,
    WorkloadDemand,
)
from densityd.plan.core.trend import summed, with_disk_of
from densityd.plan.inputs.basis import QEMU_BASE_ITEM, SHIM_ITEM
from densityd.plan.inputs.local import in_scope
from densityd.plan.inputs.prometheus import (
    Connection,
    PrometheusError,
    PrometheusQueryError,
    Sample,
    Series,
)
from densityd.plan.inputs.promql import (
    BASIS_METRICS,
    DISK,
    MEMORY,
    WORKLOAD_METRICS,
    FleetQuery,
    Queries,
    quantile,
)
from densityd.plan.request import KINDS
from densityd.units import human_bytes, human_duration

# A VM's libvirt states in which its QEMU process runs (collect.sources.libvirt.ACTIVE_STATES,
# by the names densityd_workload_info carries); a container runs only in "running".
VM_RUNNING_STATES = frozenset({"running", "blocked", "paused", "shutdown", "pmsuspended"})


class QueryClient(Protocol):
    """What the fleet planner needs of a client: the queries of ``PrometheusClient``."""

    @property
    def conn(self) -> Connection:
        """Where the server is (for messages)."""

    def query(self, promql: str, at: float) -> list[Sample]:
        """An instant query's vector."""

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        """A range query's matrix."""


class FleetError(PrometheusError):
    """What Prometheus holds cannot be planned on: no hosts, or series missing."""


WorkloadKey = tuple[str, str, str]  # host, kind, id


@dataclass(frozen=True, slots=True)
class FleetHost:
    """One host as Prometheus shows it: its planner inputs per kind, and what they came from.

    ``demands`` are its workloads in scope (each with its own disk, before a kind's inputs
    leave out the disks on another filesystem); ``workloads`` counts all of them.
    """

    name: str
    inputs: Mapping[WorkloadKind, PlanInputs]
    demands: tuple[WorkloadDemand, ...]
    declared: tuple[Resource, ...]
    scopes: tuple[str, ...]
    workloads: int
    history_seconds: float


@dataclass(frozen=True, slots=True)
class Fleet:
    """Every host found, the settings to plan them with, and notes on how they were read."""

    hosts: tuple[FleetHost, ...]
    settings: PlanSettings
    timestamp: float
    notes: tuple[str, ...]
    subqueries: bool

    def inputs(self, kind: WorkloadKind) -> list[tuple[str, PlanInputs]]:
        """``(host, inputs)`` of every host for one kind, for ``fleet.fleet_answers``."""
        return [(host.name, host.inputs[kind]) for host in self.hosts]

    @property
    def demands(self) -> tuple[WorkloadDemand, ...]:
        """Every host's workloads in scope."""
        return tuple(d for host in self.hosts for d in host.demands)


@dataclass
class _Workload:
    """What the queries said about one workload, gathered before it becomes a demand."""

    kind: WorkloadKind
    id: str
    name: str = ""
    image: str = ""
    state: str = ""
    values: dict[str, float] | None = None
    memory_max: float | None = None
    disk_min: float | None = None
    cpu: float | None = None
    first_seen: float | None = None

    def value(self, metric: str) -> float | None:
        return None if self.values is None else self.values.get(metric)


@dataclass
class _Basis:
    """What one host's plan basis series said."""

    capacity: dict[tuple[str, str], float]
    used: dict[tuple[str, str], float]
    declared: set[str]
    scopes: list[str]
    disks: dict[str, tuple[str, str]]
    overheads: dict[tuple[str, str], float]


def load_fleet(client: QueryClient, query: FleetQuery, settings: PlanSettings, now: float) -> Fleet:
    """Every host's planner inputs, read from Prometheus at ``now``.

    ``FleetError`` (exit 2) when no host's plan basis is found, naming the metrics looked
    for; ``PrometheusError`` for the server's own failures.
    """
    queries = Queries(query)
    notes: list[str] = []
    label = query.host_label
    bases = _bases(client.query(queries.basis, now), label, client, query)
    workloads, unlabelled = _workloads(client.query(queries.workloads, now), label)
    if not bases:
        raise _no_hosts(client, query, len(workloads) + unlabelled)
    orphans = sorted({host for host, _, _ in workloads} - set(bases))
    if orphans:
        notes.append(
            f"left out, workload series but no plan basis ({', '.join(BASIS_METRICS[:2])}): "
            f"{', '.join(orphans)}; is densityd there older, or has its planning failed?"
        )
    if unlabelled:
        notes.append(f"{unlabelled} workload series without a {label!r} label left out")
    _merge(workloads, client.query(queries.memory_max, now), label, "memory_max")
    _merge(workloads, client.query(queries.disk_min, now), label, "disk_min")
    subqueries = query.subqueries
    if subqueries:
        try:
            _merge(workloads, client.query(queries.cpu_percentile, now), label, "cpu")
            _merge(workloads, client.query(queries.first_seen, now), label, "first_seen")
        except PrometheusQueryError as exc:
            if exc.status != 400:
                raise
            subqueries = False
            notes.append(
                f"the server rejected a subquery ({exc.error or exc}): the CPU percentile was "
                "computed here from range queries"
            )
    if not subqueries:
        start = now - query.window_seconds
        step = query.step_seconds
        rates = client.query_range(queries.cpu_rate, start + step, now, step)
        _merge_series(workloads, rates, label, "cpu", lambda p: quantile(query.percentile, p))
        seen = client.query_range(queries.seen, start + step, now, step)
        _merge_series(workloads, seen, label, "first_seen", lambda p: min(p, default=None))
    trends = _trends(client, queries, now, label)
    hosts = []
    for name in sorted(bases):
        mine = {k: w for k, w in workloads.items() if k[0] == name}
        hosts.append(_host(name, bases[name], mine, trends, settings, now))
    plan_settings, overhead_notes = fleet_settings(settings, [b.overheads for b in bases.values()])
    notes.extend(overhead_notes)
    notes.insert(
        0,
        f"demand from Prometheus over {human_duration(query.window_seconds)}: CPU the "
        f"p{query.percentile * 100:g} of the rate over {human_duration(query.step_seconds)} "
        f"slices, memory the window's maximum + {plan_settings.memory_buffer * 100:g} %, disk "
        "now + growth since the window's minimum",
    )
    return Fleet(
        hosts=tuple(hosts),
        settings=plan_settings,
        timestamp=now,
        notes=tuple(notes),
        subqueries=subqueries,
    )


def fleet_settings(
    settings: PlanSettings, overheads: Iterable[Mapping[tuple[str, str], float]]
) -> tuple[PlanSettings, list[str]]:
    """``settings`` with the per-kind overheads the hosts measured: the fleet's median.

    ``overheads`` holds per host ``{(kind, item): bytes}`` as
    ``densityd_plan_measured_overhead_bytes`` gives it.
    """
    shims: list[float] = []
    qemu: list[float] = []
    for measured in overheads:
        if (shim := measured.get((str(WorkloadKind.CONTAINER), SHIM_ITEM))) is not None:
            shims.append(shim)
        if (base := measured.get((str(WorkloadKind.VM), QEMU_BASE_ITEM))) is not None:
            qemu.append(base)
    notes: list[str] = []
    if shims:
        shim = float(statistics.median(shims))
        settings = replace(settings, container_shim_bytes=shim, shim_measured=True)
        notes.append(f"containerd shim: median of {len(shims)} host(s) {human_bytes(shim)}")
    if qemu:
        base = float(statistics.median(qemu))
        settings = replace(settings, qemu_base_bytes=base, qemu_calibrated=True)
        notes.append(f"QEMU base overhead: median of {len(qemu)} host(s) {human_bytes(base)}")
    return settings, notes


def _bases(
    samples: Sequence[Sample], label: str, client: QueryClient, query: FleetQuery
) -> dict[str, _Basis]:
    """Each host's plan basis; ``FleetError`` naming what was looked for when there is none."""
    bases: dict[str, _Basis] = {}
    unlabelled = 0
    for sample in samples:
        host = sample.labels.get(label)
        if host is None:
            unlabelled += 1
            continue
        basis = bases.setdefault(host, _Basis({}, {}, set(), [], {}, {}))
        name, labels = sample.labels.get("__name__", ""), sample.labels
        kind, resource = labels.get("kind", ""), labels.get("resource", "")
        if name == "densityd_plan_capacity_cores":
            basis.capacity[(kind, str(Resource.CPU))] = sample.value
        elif name == "densityd_plan_capacity_bytes":
            basis.capacity[(kind, resource)] = sample.value
        elif name == "densityd_plan_host_used_bytes":
            basis.used[(kind, resource)] = sample.value
        elif name == "densityd_plan_declared":
            basis.declared.add(resource)
        elif name == "densityd_plan_scope" and labels.get("glob"):
            basis.scopes.append(labels["glob"])
        elif name == "densityd_plan_data_disk_info":
            basis.disks[kind] = (labels.get("path", ""), labels.get("device", ""))
        elif name == "densityd_plan_measured_overhead_bytes":
            basis.overheads[(kind, labels.get("item", ""))] = sample.value
    # A host is one whose CPU and memory capacity are known (a host always measures them; a
    # disk it cannot see is not exported, and is unknown); the other series say too little.
    complete = {
        host: basis
        for host, basis in bases.items()
        if all(
            (str(k), str(r)) in basis.capacity
            for k in KINDS
            for r in (Resource.CPU, Resource.MEMORY)
        )
    }
    if complete or (not bases and not unlabelled):
        return complete
    where = f"{client.conn.url}" + (f" with selector {query.selector}" if query.selector else "")
    if unlabelled:
        raise FleetError(
            f"the plan basis series at {where} have no {label!r} label to tell hosts apart "
            "(--host-label names it)"
        )
    raise FleetError(
        f"no host at {where} has both densityd_plan_capacity_cores and "
        "densityd_plan_capacity_bytes for every kind; is its densityd older than these series?"
    )


def _no_hosts(client: QueryClient, query: FleetQuery, workloads: int) -> FleetError:
    """The error for a Prometheus that holds no plan basis: what was looked for, and where."""
    where = f"{client.conn.url}" + (f" with selector {query.selector}" if query.selector else "")
    looked = ", ".join(BASIS_METRICS[:3])
    if workloads:
        return FleetError(
            f"no densityd plan basis at {where}: series of {workloads} workloads "
            f"({WORKLOAD_METRICS[0]}, ...) but none of {looked}; these come from a densityd "
            "that exports them (this version), after its first pass"
        )
    return FleetError(
        f"no densityd series at {where}: looked for {looked} and "
        f"{', '.join(WORKLOAD_METRICS[:2])}, found none. Is Prometheus scraping densityd, "
        "and does --selector match its job?"
    )


def _workloads(samples: Sequence[Sample], label: str) -> tuple[dict[WorkloadKey, _Workload], int]:
    """Each workload's info and current values, keyed by host, kind and ID."""
    found: dict[WorkloadKey, _Workload] = {}
    unlabelled = 0
    for sample in samples:
        labels = sample.labels
        host, kind, ident = labels.get(label), labels.get("kind"), labels.get("id")
        if host is None:
            unlabelled += 1
            continue
        if kind not in {str(k) for k in KINDS} or not ident:
            continue
        workload = found.setdefault(
            (host, kind, ident), _Workload(kind=WorkloadKind(kind), id=ident)
        )
        metric = labels.get("__name__", "")
        if metric == "densityd_workload_info":
            workload.name = labels.get("name", "")
            workload.image = labels.get("image", "")
            workload.state = labels.get("state", "")
        else:
            if workload.values is None:
                workload.values = {}
            workload.values[metric] = sample.value
    # Only workloads densityd lists now count: a footprint without info is a series past.
    return {key: w for key, w in found.items() if w.state}, unlabelled


def _key(labels: Mapping[str, str], label: str) -> WorkloadKey | None:
    host, kind, ident = labels.get(label), labels.get("kind"), labels.get("id")
    if host is None or kind is None or ident is None:
        return None
    return host, kind, ident


def _merge(
    workloads: dict[WorkloadKey, _Workload], samples: Sequence[Sample], label: str, field: str
) -> None:
    """Set ``field`` of each known workload from an instant vector."""
    for sample in samples:
        key = _key(sample.labels, label)
        if key is not None and key in workloads:
            setattr(workloads[key], field, sample.value)


def _merge_series(
    workloads: dict[WorkloadKey, _Workload],
    found: Sequence[Series],
    label: str,
    field: str,
    reduce: Callable[[list[float]], float | None],
) -> None:
    """Set ``field`` of each known workload from its range series, reduced here."""
    for item in found:
        key = _key(item.labels, label)
        if key is not None and key in workloads:
            value = reduce([v for _, v in item.points])
            if value is not None:
                setattr(workloads[key], field, value)


_Trends = dict[WorkloadKey, dict[float, list[float]]]


def _trends(client: QueryClient, queries: Queries, now: float, label: str) -> _Trends:
    """Each workload's ``[cpu, memory, disk]`` per trend period end; none within one period."""
    period = queries.query.trend_seconds
    if queries.query.window_seconds < period:
        return {}  # one point at most: no trend
    start = now - queries.query.window_seconds
    found: _Trends = defaultdict(dict)
    for index, (_, promql) in enumerate(queries.trend().items()):
        for item in client.query_range(promql, start, now, period):
            key = _key(item.labels, label)
            if key is None:
                continue
            for timestamp, value in item.points:
                found[key].setdefault(timestamp, [0.0, 0.0, 0.0])[index] = value
    # Memory and disk weigh by the share of the host's scrapes the workload was in (rate()
    # already does that for CPU); without the counts, a workload weighs fully.
    workload_counts, host_counts = queries.presence()
    scrapes: dict[str, dict[float, float]] = defaultdict(dict)
    for item in client.query_range(host_counts, start, now, period):
        host = item.labels.get(label)
        if host is not None:
            for timestamp, value in item.points:
                scrapes[host][timestamp] = max(value, scrapes[host].get(timestamp, 0.0))
    for item in client.query_range(workload_counts, start, now, period):
        key = _key(item.labels, label)
        if key is None or key not in found:
            continue
        for timestamp, count in item.points:
            values, total = found[key].get(timestamp), scrapes[key[0]].get(timestamp)
            if values is not None and total:
                weight = min(1.0, count / total)
                values[1] *= weight
                values[2] *= weight
    return found


def _host(
    name: str,
    basis: _Basis,
    workloads: Mapping[WorkloadKey, _Workload],
    trends: _Trends,
    settings: PlanSettings,
    now: float,
) -> FleetHost:
    """One host's planner inputs per kind, as ``PlanContext.inputs`` makes them locally."""
    scopes = tuple(sorted(basis.scopes))
    images = frozenset(w.image for w in workloads.values() if w.image)
    kept = {
        key: w
        for key, w in sorted(workloads.items())
        if in_scope(WorkloadSample(kind=w.kind, id=w.id, name=w.name), scopes)
    }
    demands = tuple(_demand(w, settings, now) for w in kept.values())
    kind_trends = {
        kind: _summed(trends, [key for key in kept if key[1] == str(kind)]) for kind in KINDS
    }
    trend = summed(kind_trends.values())
    declared = tuple(r for r in RESOURCES if str(r) in basis.declared)
    history = max((d.history_seconds for d in demands), default=0.0)
    inputs: dict[WorkloadKind, PlanInputs] = {}
    for kind in KINDS:
        k = str(kind)
        total = Resources(*(basis.capacity.get((k, str(r)), 0.0) for r in RESOURCES))
        # A host exports no capacity it cannot see (basis.plan_basis): unknown, never 0.
        unknown = tuple(
            (r, "the host's densityd cannot see it (no densityd_plan_capacity series)")
            for r in RESOURCES
            if (k, str(r)) not in basis.capacity
        )
        used = Resources(
            cpu=0.0,
            memory=basis.used.get((k, str(Resource.MEMORY)), 0.0),
            disk=basis.used.get((k, str(Resource.DISK)), 0.0),
        )
        inputs[kind] = PlanInputs(
            timestamp=now,
            host=HostCapacity(
                total=total,
                used=used,
                declared=frozenset(declared),
                image_bytes_present=images,
                unknown=unknown,
            ),
            workloads=_on_disk_of(kind, demands, basis.disks),
            trend=with_disk_of(trend, kind_trends[kind]) if _own_disk(kind, basis.disks) else trend,
            history_seconds=history,
        )
    return FleetHost(
        name=name,
        inputs=inputs,
        demands=demands,
        declared=declared,
        scopes=scopes,
        workloads=len(workloads),
        history_seconds=history,
    )


def _summed(trends: _Trends, keys: Iterable[WorkloadKey]) -> tuple[TrendPoint, ...]:
    """The trend of the workloads ``keys``: their values summed per period end."""
    return summed(
        [TrendPoint(timestamp=t, demand=Resources(*values)) for t, values in trends[key].items()]
        for key in keys
        if key in trends
    )


def _own_disk(kind: WorkloadKind, disks: Mapping[str, tuple[str, str]]) -> bool:
    """Whether the other kind keeps its data on another filesystem than ``kind``'s."""
    mine = disks.get(str(kind))
    others = [disk for k, disk in disks.items() if k != str(kind)]
    return mine is not None and any(other[1] != mine[1] for other in others)


def _on_disk_of(
    kind: WorkloadKind, demands: Sequence[WorkloadDemand], disks: Mapping[str, tuple[str, str]]
) -> tuple[WorkloadDemand, ...]:
    """The demands as ``kind``'s disk sees them: data on another filesystem takes none of it."""
    mine = disks.get(str(kind))
    result = []
    for demand in demands:
        other = disks.get(str(demand.kind))
        if mine is not None and other is not None and other[1] != mine[1]:
            demand = replace(
                demand, demand=replace(demand.demand, disk=0.0), disk_limit=0.0, disk_bytes=0.0
            )
        result.append(demand)
    return tuple(result)


def _demand(workload: _Workload, settings: PlanSettings, now: float) -> WorkloadDemand:
    """One workload as ``demand.workload_demand`` makes it, from what Prometheus holds."""
    is_vm = workload.kind is WorkloadKind.VM
    memory = workload.value(MEMORY)
    peak = max((m for m in (memory, workload.memory_max) if m is not None), default=0.0)
    disk = workload.value(DISK)
    growth = 0.0
    if disk is not None and workload.disk_min is not None:
        growth = max(0.0, disk - workload.disk_min)
    cpu_limit = workload.value("densityd_workload_cpu_limit_cores")
    memory_limit = workload.value("densityd_workload_memory_limit_bytes")
    running = workload.state in VM_RUNNING_STATES if is_vm else workload.state == "running"
    return WorkloadDemand(
        kind=workload.kind,
        id=workload.id,
        name=workload.name,
        image=workload.image,
        running=running,
        demand=Resources(
            cpu=max(0.0, workload.cpu or 0.0),
            memory=peak * (1.0 + settings.memory_buffer),
            disk=(disk or 0.0) + growth,
        ),
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        disk_limit=workload.value("densityd_workload_disk_limit_bytes"),
        memory_bytes=memory,
        guest_memory_bytes=memory_limit if is_vm else None,
        vcpus=whole_vcpus(cpu_limit) if is_vm else None,
        history_seconds=(
            max(0.0, now - workload.first_seen) if workload.first_seen is not None else 0.0
        ),
        disk_bytes=disk,
    )
