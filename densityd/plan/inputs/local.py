"""The planner's inputs on one host: a snapshot and the local history, made into a PlanContext.

The planner itself is pure (``densityd.plan.core``); this module decides what goes into it:
the workloads in scope and their demand over the window, the host's capacity (measured or
declared) per kind's data disk, the measured overheads, and the notes that explain them.
``densityd plan`` and the daemon's live plan (``plan.live``) both build their context here,
and ``plan.answer`` runs the core over it.
"""

from __future__ import annotations

import fnmatch
import logging
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from densityd.config import Settings
from densityd.history.schema import StoreError
from densityd.model import DiskUsage, HostSample, Snapshot, WorkloadKind, WorkloadSample
from densityd.plan.core.cost import (
    MEASURED,
    MEASURED_DISK_FROM,
    calibrate_qemu,
    guest_os_baseline,
    measured_guest_os,
)
from densityd.plan.core.demand import workload_demand
from densityd.plan.core.model import (
    RESOURCES,
    HostCapacity,
    HugepageSpace,
    PlanInputs,
    PlanSettings,
    Resource,
    Resources,
    TrendPoint,
    WorkloadDemand,
    WorkloadHistory,
)
from densityd.plan.core.trend import summed, with_disk_of
from densityd.plan.inputs.last_known import SOURCE_KINDS
from densityd.plan.request import KINDS, PlanRequestError
from densityd.units import human_bytes

log = logging.getLogger("densityd.planning")


@dataclass(frozen=True, slots=True)
class History:
    """What the local history holds for one plan: per-workload summaries and the trend.

    ``trend`` sums every kind (``kind_trends`` added up); ``kind_trends`` holds each kind
    alone, for a kind whose data lives on a filesystem of its own (its disk trend is then its
    own workloads' only).
    """

    workloads: Mapping[tuple[str, str], WorkloadHistory]
    trend: tuple[TrendPoint, ...]
    note: str
    kind_trends: Mapping[WorkloadKind, tuple[TrendPoint, ...]] = field(default_factory=dict)


NO_HISTORY = History({}, (), "no local history: demand is measured from the fresh sample only")


def in_scope(workload: WorkloadSample, scopes: Sequence[str]) -> bool:
    """Whether a workload counts: no scopes, or its name or ID matches one of the globs."""
    return not scopes or any(
        fnmatch.fnmatchcase(workload.name, pattern) or fnmatch.fnmatchcase(workload.id, pattern)
        for pattern in scopes
    )


class HistoryReads(Protocol):
    """The reads a plan makes of the history: ``HistoryStore``'s, or the daemon's
    ``history.window.FollowedHistory`` (the same answers, kept in memory between passes)."""

    def workload_history(
        self, since: float, percentile: float = ...
    ) -> Mapping[tuple[str, str], WorkloadHistory]: ...

    def trend(
        self, since: float, keys: Collection[tuple[str, str]] | None = ..., kind: str | None = ...
    ) -> Sequence[TrendPoint]: ...

    def oldest_timestamp(self) -> float | None: ...


def read_history(store: HistoryReads | None, snapshot: Snapshot, settings: Settings) -> History:
    """The history summaries over the window, or an empty history saying why there is none.

    The trend sums only the workloads in scope, as they are the ones the plan counts.
    """
    if store is None:
        return NO_HISTORY
    now = snapshot.timestamp
    since = now - settings.window_seconds
    keys = [(str(w.kind), w.id) for w in snapshot.workloads if in_scope(w, settings.scopes)]
    scoped = keys if settings.scopes else None
    try:
        summaries = store.workload_history(since, settings.percentile_fraction)
        kind_trends = {kind: tuple(store.trend(since, scoped, str(kind))) for kind in KINDS}
        oldest = store.oldest_timestamp()
    except StoreError as exc:
        log.warning("history cannot be read, planning from the fresh sample only: %s", exc)
        return History({}, (), f"history unreadable ({exc}): demand from the fresh sample only")
    covered = max(0.0, now - oldest) if oldest is not None else 0.0
    return History(
        summaries,
        summed(kind_trends.values()),
        f"history: {covered / 3600:.1f} h of the {settings.window} window",
        kind_trends,
    )


def shim_settings(plan_settings: PlanSettings, host: HostSample | None) -> PlanSettings:
    """The shim cost measured from the running containerd shims, when any are visible."""
    if host is None or not host.container_shim_rss_bytes:
        return plan_settings
    measured = float(statistics.median(host.container_shim_rss_bytes))
    return replace(plan_settings, container_shim_bytes=measured, shim_measured=True)


def guest_os_settings(
    plan_settings: PlanSettings, snapshot: Snapshot, scopes: Sequence[str] = ()
) -> tuple[PlanSettings, str]:
    """The guest OS measured from the running VMs in scope that report current guest memory,
    and a note saying how much, from how many VMs, next to the table value.

    ``--guest-os measured`` with no such VM is a ``PlanRequestError`` naming the flag.
    """
    measured = measured_guest_os(
        [
            float(w.guest_memory_used_bytes)
            for w in snapshot.workloads
            if w.kind is WorkloadKind.VM
            and w.running
            and w.guest_memory_used_bytes is not None
            and in_scope(w, scopes)
        ]
    )
    if measured is None:
        if plan_settings.guest_os == MEASURED:
            try:
                guest_os_baseline(MEASURED, plan_settings)
            except ValueError as exc:
                raise PlanRequestError(str(exc)) from None
        return plan_settings, ""
    memory, vms = measured
    table = guest_os_baseline(
        plan_settings.guest_os if plan_settings.guest_os != MEASURED else MEASURED_DISK_FROM
    )
    note = (
        f"guest OS measured: {human_bytes(memory)} median guest used over {vms} VM(s) "
        f"(table {table.name}: {human_bytes(table.memory)})"
    )
    return replace(plan_settings, measured_guest_os_memory=memory, measured_guest_os_vms=vms), note


def _disk_for(host: HostSample, paths: Sequence[str]) -> DiskUsage | None:
    for path in paths:
        for disk in host.disks:
            if disk.path == path:
                return disk
    return None


# The source that tells where each kind keeps its data.
_DISK_SOURCES = {kind: source for source, kind in SOURCE_KINDS.items()}


def _data_disk(
    snapshot: Snapshot, paths: Sequence[str], kind: WorkloadKind
) -> tuple[DiskUsage | None, str]:
    """The filesystem a kind's disks go to, the first one known when its own is not, and why
    it was the first one ("" when it is the kind's own)."""
    host = snapshot.host
    if host is None:
        return None, ""
    disk = _disk_for(host, paths)
    where = "libvirt storage pool" if kind is WorkloadKind.VM else "Docker data root"
    hung = [c for c in host.disk_checks if c.name in paths and not c.up]
    if disk is None and hung:
        # A filesystem that does not answer is unknown, not another filesystem's free space.
        return None, f"its {where} {hung[0].name} does not answer ({hung[0].last_error})"
    if disk is not None or not host.disks:
        return disk, ""
    source = _DISK_SOURCES[kind]
    down = any(s.name == source and not s.up for s in snapshot.sources)
    why = f"{source} is down, so its {where} is not known" if down else f"no {where} found"
    return host.disks[0], f"{why}: planned on {host.disks[0].path}, the first filesystem known"


def _capacity(
    host: HostSample,
    disk: DiskUsage | None,
    declared: Mapping[Resource, float],
    kind: WorkloadKind,
    why_no_disk: str = "",
) -> HostCapacity:
    """The capacity one kind is planned against; a disk not seen (and not declared) is unknown,
    for ``why_no_disk`` when it is known why.

    The huge page pools are memory only their users can have: they are taken out of the
    memory total and its use (MemAvailable never counts them), and planned on their own.
    """
    pools = host.hugepages_bytes
    measured_total = Resources(
        cpu=float(host.cpu_cores),
        memory=float(max(0, host.memory_bytes - pools)),
        disk=float(disk.total_bytes) if disk else 0.0,
    )
    used = Resources(
        cpu=0.0,
        memory=float(max(0, host.memory_bytes - host.memory_available_bytes - pools)),
        disk=float(disk.total_bytes - disk.free_bytes) if disk else 0.0,
    )
    total = Resources(*(declared.get(r, measured_total.get(r)) for r in RESOURCES))
    unknown: tuple[tuple[Resource, str], ...] = ()
    if disk is None and Resource.DISK not in declared:
        where = "libvirt storage pool" if kind is WorkloadKind.VM else "Docker data root"
        unknown = (
            (
                Resource.DISK,
                f"{why_no_disk} (or declare it: --capacity disk=SIZE)"
                if why_no_disk
                else f"no filesystem is visible to densityd: its {where} is not mounted in "
                "here (or declare it: --capacity disk=SIZE)",
            ),
        )
    return HostCapacity(
        total=total,
        used=used,
        declared=frozenset(declared),
        unknown=unknown,
        hugepages=hugepage_spaces(host),
    )


def hugepage_spaces(host: HostSample) -> tuple[HugepageSpace, ...]:
    """The host's huge page pools as the planner counts them: in use = total - available."""
    return tuple(
        HugepageSpace(
            size=pool.size_bytes,
            total=float(pool.total * pool.size_bytes),
            used=float(pool.total * pool.size_bytes - pool.available_bytes),
            default=pool.default,
        )
        for pool in host.hugepages
    )


@dataclass(frozen=True, slots=True)
class PlanContext:
    """The inputs shared by every answer of one plan."""

    snapshot: Snapshot
    demands: tuple[WorkloadDemand, ...]
    history: History
    settings: PlanSettings
    disks: Mapping[WorkloadKind, DiskUsage | None]
    declared: Mapping[Resource, float]
    scopes: tuple[str, ...]
    notes: tuple[str, ...]
    # Why a kind was planned on another kind's filesystem, by kind (absent: on its own).
    disk_fallbacks: Mapping[WorkloadKind, str] = field(default_factory=dict)
    # ``inputs(kind)`` once made: every answer of a plan asks for it again.
    _inputs: dict[WorkloadKind, PlanInputs] = field(default_factory=dict, compare=False, repr=False)

    @staticmethod
    def _elsewhere(disk: DiskUsage | None, other: DiskUsage | None) -> bool:
        """Whether ``other`` is known to be another filesystem than ``disk``."""
        return disk is not None and other is not None and other.device != disk.device

    def inputs(self, kind: WorkloadKind) -> PlanInputs:
        """The planner's inputs for one kind: its data disk, and what lives on it."""
        found = self._inputs.get(kind)
        if found is None:
            found = self._inputs[kind] = self._make_inputs(kind)
        return found

    def _make_inputs(self, kind: WorkloadKind) -> PlanInputs:
        host = self.snapshot.host
        if host is None:
            raise PlanRequestError("the host could not be sampled, so there is nothing to plan")
        disk = self.disks.get(kind)
        trend = self.history.trend
        if any(self._elsewhere(disk, other) for k, other in self.disks.items() if k != kind):
            # The other kind's data lives on another filesystem: its disk trend is not this one's.
            trend = with_disk_of(trend, self.history.kind_trends.get(kind, ()))
        demands = []
        for demand in self.demands:
            if self._elsewhere(disk, self.disks.get(demand.kind)):
                # Its data lives on another filesystem: it takes nothing of this one.
                demand = replace(
                    demand,
                    demand=replace(demand.demand, disk=0.0),
                    disk_limit=0.0,
                    disk_bytes=0.0,
                )
            demands.append(demand)
        history_seconds = max((d.history_seconds for d in self.demands), default=0.0)
        images = frozenset(w.image for w in self.snapshot.workloads if w.image)
        return PlanInputs(
            timestamp=self.snapshot.timestamp,
            host=replace(
                _capacity(host, disk, self.declared, kind, self.disk_fallbacks.get(kind, "")),
                image_bytes_present=images,
            ),
            workloads=tuple(demands),
            trend=trend,
            history_seconds=history_seconds,
        )


def plan_context(
    snapshot: Snapshot,
    history: History,
    settings: Settings,
    *,
    data_dirs: Mapping[WorkloadKind, Sequence[str]],
    rates: Mapping[str, float] | None = None,
    carried: Sequence[str] = (),
    source_notes: Sequence[str] = (),
) -> PlanContext:
    """Turn a snapshot and its history into the planner's per-workload demand.

    ``carried`` names the down sources whose last-known workloads the snapshot holds
    (``inputs.last_known``), and ``source_notes`` says so.
    """
    plan_settings = shim_settings(settings.plan_settings(), snapshot.host)
    rates = rates or {}
    demands = tuple(
        workload_demand(
            sample,
            history.workloads.get((str(sample.kind), sample.id)),
            plan_settings,
            cpu_rate=rates.get(sample.id),
        )
        for sample in snapshot.workloads
        if in_scope(sample, settings.scopes)
    )
    plan_settings, calibration = calibrate_qemu(demands, plan_settings)
    plan_settings, guest_note = guest_os_settings(plan_settings, snapshot, settings.scopes)
    declared_parts = settings.declared_capacity
    declared: dict[Resource, float] = {}
    if declared_parts is not None:
        for resource in RESOURCES:
            value = declared_parts.get(resource)
            if value is not None:
                declared[resource] = value
    notes = [history.note, calibration, *([guest_note] if guest_note else [])]
    disks: dict[WorkloadKind, DiskUsage | None] = {}
    fallbacks: dict[WorkloadKind, str] = {}
    for kind in KINDS:
        disks[kind], why = _data_disk(snapshot, data_dirs.get(kind, ()), kind)
        if why:
            fallbacks[kind] = why
            notes.append(f"{kind} disk: {why}")
    if settings.scopes:
        notes.append(
            f"scope {', '.join(settings.scopes)}: {len(demands)} of "
            f"{len(snapshot.workloads)} workloads count"
        )
    down = [s.name for s in snapshot.sources if not s.up and s.name not in carried]
    if down:
        notes.append(f"source(s) down, their workloads are missing: {', '.join(down)}")
    notes.extend(source_notes)
    return PlanContext(
        snapshot=snapshot,
        demands=demands,
        history=history,
        settings=plan_settings,
        disks=disks,
        declared=declared,
        scopes=tuple(settings.scopes),
        notes=tuple(notes),
        disk_fallbacks=fallbacks,
    )
