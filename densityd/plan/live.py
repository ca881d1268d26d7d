"""The daemon's running plan: recomputed at every pass, exported, and served as JSON.

At each snapshot the configured profiles (default: the median container and the median VM)
are planned against the local history and exported as ``densityd_plan_*`` gauges;
``/api/v1/plan`` answers any profile on demand from the same snapshot and history. The
history is followed in memory (``history.window.FollowedHistory``): a pass reads the file
only when its summaries can have changed otherwise than by the pass just recorded (a new
hour or day of the window, a prune), with the same answers as reading it whole.

What each plan is made against is exported too (``inputs.basis.PlanBasis``), so that
``densityd plan --prometheus`` can rebuild this host's planner inputs from Prometheus and
answer as the host itself would.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from densityd.config import Settings
from densityd.history.store import HistoryStore
from densityd.history.window import FollowedHistory
from densityd.model import Snapshot, WorkloadKind, cpu_rates
from densityd.plan.answer import (
    headlines,
    plan_answers,
    plan_document,
    recommendations,
    rightsized_answers,
)
from densityd.plan.core.model import Answer, Profile, Resource
from densityd.plan.core.quantity import parse_profile
from densityd.plan.core.rightsize import Recommendation
from densityd.plan.inputs.basis import PlanBasis, plan_basis
from densityd.plan.inputs.last_known import Carried, LastKnown
from densityd.plan.inputs.local import HistoryReads, PlanContext, plan_context, read_history
from densityd.plan.request import PlanRequest, PlanRequestError

log = logging.getLogger("densityd.plan")


class LivePlan:
    """Plans at every snapshot; a Prometheus collector of the answers."""

    def __init__(
        self,
        settings: Settings,
        data_dirs: Callable[[], Mapping[WorkloadKind, Sequence[str]]],
        store: Callable[[], HistoryStore | None],
        *,
        follow_history: bool = True,
    ) -> None:
        self._settings = settings
        self._data_dirs = data_dirs
        self._store = store
        # False reads the whole history at every pass (the reference the tests compare to).
        self._follow_history = follow_history
        self._followed: FollowedHistory | None = None
        self._profiles: tuple[Profile, ...] = tuple(
            parse_profile(text, option="plan_profiles") for text in settings.plan_profiles
        )
        self._lock = threading.Lock()
        self._last_known = LastKnown(settings.interval)
        self._carried: Carried | None = None
        self._previous: Snapshot | None = None
        self._context: PlanContext | None = None
        self._answers: tuple[Answer, ...] = ()
        self._rightsized: tuple[Answer, ...] = ()
        self._recommendations: tuple[Recommendation, ...] = ()
        self._basis: PlanBasis | None = None
        self._unplannable = ""  # why the latest passes could not be planned, once logged

    def update(self, snapshot: Snapshot) -> None:
        """Replan for a new snapshot; a failure is logged and leaves the gauges empty."""
        carried = self._last_known.carry(snapshot)
        if carried.withheld and not (self._carried and self._carried.withheld):
            log.warning("plans withheld: %s", "; ".join(carried.notes))
        try:
            context = self._build_context(carried)
            found: list[Answer] = []
            resized: list[Answer] = []
            for request in self._requests():
                found.extend(plan_answers(context, request))
                resized.extend(rightsized_answers(context, request))
            running = [
                r
                for r, d in zip(recommendations(context), context.demands, strict=True)
                if d.running
            ]
            basis: PlanBasis | None = plan_basis(context)
        except PlanRequestError as exc:
            # A setting this host cannot serve yet (--guest-os measured with no VM reporting
            # guest memory): said once, not at every pass, and no plan series meanwhile.
            if str(exc) != self._unplannable:
                log.warning("no plans: %s", exc)
                self._unplannable = str(exc)
            context, found, basis, resized, running = None, [], None, [], []
        except Exception:  # never let planning take the sampler down with it
            log.exception("planning failed for this pass")
            context, found, basis, resized, running = None, [], None, [], []
        else:
            if self._unplannable:
                log.info("plans are back")
                self._unplannable = ""
        if carried.withheld:
            # Past the grace a number would be a guess: no series rather than a wrong one.
            found, basis, resized, running = [], None, [], []
        with self._lock:
            self._previous = carried.snapshot
            self._carried = carried
            self._context = context
            self._answers = tuple(found)
            self._rightsized = tuple(resized)
            self._recommendations = tuple(running)
            self._basis = basis

    def _history(self) -> HistoryReads | None:
        """The store's reads, followed in memory unless told otherwise."""
        store = self._store()
        if store is None or not self._follow_history:
            return store
        if self._followed is None or self._followed.store is not store:
            self._followed = FollowedHistory(store)  # a store reopened starts afresh
        return self._followed

    def _build_context(self, carried: Carried) -> PlanContext:
        snapshot = carried.snapshot
        history = read_history(self._history(), snapshot, self._settings)
        return plan_context(
            snapshot,
            history,
            self._settings,
            data_dirs=self._data_dirs(),
            rates=cpu_rates(self._previous, snapshot),
            carried=carried.carried,
            source_notes=carried.notes,
        )

    def _requests(self) -> list[PlanRequest]:
        if not self._profiles:
            return [PlanRequest()]  # each kind for its own median workload
        return [PlanRequest(profile=p, compare=True) for p in self._profiles]

    def document(self, request: PlanRequest) -> dict[str, Any] | None:
        """The ``densityd.plan/v1`` document for a request, ``None`` before the first pass.

        Raises ``PlanRequestError`` for a request that cannot be answered.
        """
        with self._lock:
            context = self._context
        if context is None:
            return None
        document = plan_document(context, request)
        store = self._store()
        # Which history this plan read: ``densityd plan`` uses the answer only for its own.
        document["host"]["history_file"] = None if store is None else str(store.path.absolute())
        return document

    def describe(self) -> Iterator[Metric]:
        """The plan families, without samples."""
        yield from self._families(())
        yield from self._rightsize_families((), ())
        yield from self._basis_families(None)
        yield from self._carried_families(None)

    def collect(self) -> Iterator[Metric]:
        """Slots left, time to full, usable/used/free per kind and view, and the basis."""
        with self._lock:
            found, basis, carried = self._answers, self._basis, self._carried
            resized, recommended = self._rightsized, self._recommendations
        yield from self._families(found)
        yield from self._rightsize_families(resized, recommended)
        yield from self._basis_families(basis)
        yield from self._carried_families(carried)

    @staticmethod
    def _rightsize_families(
        resized: Sequence[Answer], recommended: Sequence[Recommendation]
    ) -> Iterator[Metric]:
        """Each running workload's recommendation and over-provisioning (``core.rightsize``),
        and the slots left if every workload were resized to its recommendation."""
        labels = ["kind", "id", "name"]
        cpu = GaugeMetricFamily(
            "densityd_workload_recommended_cpu_cores",
            "Recommended CPU: the percentile of the CPU rate over the planning window (a VM: "
            "whole vCPUs, never more than it has).",
            labels=labels,
        )
        memory = GaugeMetricFamily(
            "densityd_workload_recommended_memory_bytes",
            "Recommended memory: the window's maximum footprint plus the buffer (a VM: guest "
            "RAM, less QEMU's overhead, at least the guest OS baseline, at most what it has).",
            labels=labels,
        )
        over_cpu = GaugeMetricFamily(
            "densityd_workload_overprovisioned_cpu_cores",
            "CPU limit (a VM: vCPUs) minus the recommendation, never negative; absent "
            "without a limit.",
            labels=labels,
        )
        over_memory = GaugeMetricFamily(
            "densityd_workload_overprovisioned_memory_bytes",
            "Memory limit (a VM: guest RAM) minus the recommendation, never negative; absent "
            "without a limit.",
            labels=labels,
        )
        remaining = GaugeMetricFamily(
            "densityd_plan_rightsized_remaining",
            "How many more workloads of the profile would fit if every workload were resized "
            "to its recommendation (the stricter of the resized allocation view and the "
            "demand view, which resizing does not change).",
            labels=["kind", "profile"],
        )
        for item in recommended:
            key = [str(item.kind), item.id, item.name]
            cpu.add_metric(key, item.cpu)
            memory.add_metric(key, item.memory)
            if item.overprovisioned_cpu is not None:
                over_cpu.add_metric(key, item.overprovisioned_cpu)
            if item.overprovisioned_memory is not None:
                over_memory.add_metric(key, item.overprovisioned_memory)
        for answer in headlines(resized):
            if answer.remaining is not None:
                remaining.add_metric([str(answer.kind), answer.profile], answer.remaining)
        yield from (cpu, memory, over_cpu, over_memory, remaining)

    @staticmethod
    def _carried_families(carried: Carried | None) -> Iterator[Metric]:
        """How old the workloads plans use are, and whether plans are withheld."""
        age = GaugeMetricFamily(
            "densityd_plan_workloads_age_seconds",
            "Age of the workloads of each source that plans count: 0 when its latest pass "
            "succeeded, more while plans carry its last-known workloads over missed passes.",
            labels=["source"],
        )
        withheld = GaugeMetricFamily(
            "densityd_plan_withheld",
            "1 while plan series are withheld: a source has been down past the grace of "
            "3 passes, so a plan would be a guess.",
        )
        if carried is not None:
            for source, seconds in sorted(carried.ages.items()):
                age.add_metric([source], seconds)
            withheld.add_metric([], 1.0 if carried.withheld else 0.0)
        yield from (age, withheld)

    @staticmethod
    def _basis_families(basis: PlanBasis | None) -> Iterator[Metric]:
        """What the plans were made against (``PlanBasis``), for the fleet planner."""
        cores = GaugeMetricFamily(
            "densityd_plan_capacity_cores",
            "CPU cores plans count as the host's total (declared with capacity, else measured).",
            labels=["kind"],
        )
        capacity = GaugeMetricFamily(
            "densityd_plan_capacity_bytes",
            "Memory, and the disk holding the kind's data, plans count as the host's total "
            "(declared with capacity, else measured).",
            labels=["kind", "resource"],
        )
        used = GaugeMetricFamily(
            "densityd_plan_host_used_bytes",
            "The host's measured use that plans start from: memory total minus available, "
            "the data disk's size minus its free space.",
            labels=["kind", "resource"],
        )
        declared = GaugeMetricFamily(
            "densityd_plan_declared",
            "1 for each resource whose capacity is declared (capacity setting).",
            labels=["resource"],
        )
        scope = GaugeMetricFamily(
            "densityd_plan_scope",
            "1 for each glob on workload names or IDs that limits which workloads plans count.",
            labels=["glob"],
        )
        disk = GaugeMetricFamily(
            "densityd_plan_data_disk_info",
            "1 for the filesystem each kind's disks go to: its path and device number.",
            labels=["kind", "path", "device"],
        )
        overhead = GaugeMetricFamily(
            "densityd_plan_measured_overhead_bytes",
            "Per-kind overhead measured on this host: the containerd shims' median resident "
            "set (item shim), QEMU's base overhead calibrated from VMs (item qemu_base).",
            labels=["kind", "item"],
        )
        if basis is not None:
            for kind, resource, value in basis.capacity:
                if resource is Resource.CPU:
                    cores.add_metric([str(kind)], value)
                else:
                    capacity.add_metric([str(kind), str(resource)], value)
            for kind, resource, value in basis.used:
                used.add_metric([str(kind), str(resource)], value)
            for resource in basis.declared:
                declared.add_metric([str(resource)], 1.0)
            for glob in basis.scopes:
                scope.add_metric([glob], 1.0)
            for kind, path, device in basis.disks:
                disk.add_metric([str(kind), path, str(device)], 1.0)
            for kind, item, value in basis.overheads:
                overhead.add_metric([str(kind), item], value)
        yield from (cores, capacity, used, declared, scope, disk, overhead)

    @staticmethod
    def _families(found: Sequence[Answer]) -> Iterator[Metric]:
        # The binding resource is a series of its own, not a label of the value: a value
        # series whose labels change with it would restart every alert's for: timer.
        remaining = GaugeMetricFamily(
            "densityd_plan_remaining",
            "How many more workloads of the profile fit (the stricter view).",
            labels=["kind", "profile"],
        )
        bound = GaugeMetricFamily(
            "densityd_plan_bound",
            "1 for the resource that runs out first in densityd_plan_remaining's answer "
            "(cpu, memory, disk, or hugepages for a VM profile backed by huge pages).",
            labels=["kind", "profile", "resource"],
        )
        by_view = GaugeMetricFamily(
            "densityd_plan_view_remaining",
            "How many more workloads of the profile fit in one view.",
            labels=["kind", "profile", "view"],
        )
        view_bound = GaugeMetricFamily(
            "densityd_plan_view_bound",
            "1 for the resource that runs out first in one view's answer.",
            labels=["kind", "profile", "view", "resource"],
        )
        time_to_full = GaugeMetricFamily(
            "densityd_plan_time_to_full_seconds",
            "Seconds until the host is full at the current demand trend (absent when demand "
            "is flat or falling).",
            labels=["kind", "profile"],
        )
        per_resource: dict[tuple[str, str], GaugeMetricFamily] = {}
        for quantity, text in (
            ("usable", "Capacity workloads may use: (total - reserved) x ratio x target fill"),
            ("used", "Capacity in use, counting system usage in the demand view"),
            ("free", "Usable capacity not yet used"),
        ):
            per_resource[(quantity, "cores")] = GaugeMetricFamily(
                f"densityd_plan_{quantity}_cores", f"{text}, CPU cores.", labels=["kind", "view"]
            )
            per_resource[(quantity, "bytes")] = GaugeMetricFamily(
                f"densityd_plan_{quantity}_bytes",
                f"{text}, memory, disk and (for a hugepage VM profile) hugepages bytes.",
                labels=["kind", "view", "resource"],
            )
        for item in headlines(found):
            if item.remaining is not None:
                remaining.add_metric([str(item.kind), item.profile], item.remaining)
            if item.bound is not None:
                bound.add_metric([str(item.kind), item.profile, str(item.bound)], 1)
            if item.time_to_full_seconds is not None:
                time_to_full.add_metric([str(item.kind), item.profile], item.time_to_full_seconds)
        seen: set[tuple[str, str, Resource]] = set()
        for item in found:
            kind, view = str(item.kind), str(item.view)
            if item.remaining is not None:
                by_view.add_metric([kind, item.profile, view], item.remaining)
            if item.bound is not None:
                view_bound.add_metric([kind, item.profile, view, str(item.bound)], 1)
            for answer in item.resources:
                # Capacity does not depend on the profile: once per kind, view and resource
                # (huge pages are in the answers of hugepage profiles only).
                if (kind, view, answer.resource) in seen:
                    continue
                seen.add((kind, view, answer.resource))
                if not answer.known:
                    continue  # an unknown capacity is no series, never a 0
                for quantity, value in (
                    ("usable", answer.usable),
                    ("used", answer.used),
                    ("free", answer.free),
                ):
                    if answer.resource is Resource.CPU:
                        per_resource[(quantity, "cores")].add_metric([kind, view], value)
                    else:
                        per_resource[(quantity, "bytes")].add_metric(
                            [kind, view, str(answer.resource)], value
                        )
        yield from (remaining, bound, by_view, view_bound, time_to_full)
        yield from per_resource.values()
