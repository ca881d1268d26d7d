"""The daemon's running plan: recomputed at every pass, exported, and served as JSON.

At each snapshot the configured profiles (default: the median container and the median VM)
are planned against the local history and exported as ``densityd_plan_*`` gauges;
``/api/v1/plan`` answers any profile on demand from the same snapshot and history.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from densityd.config import Settings
from densityd.model import Snapshot, WorkloadKind
from densityd.planner.model import Answer, Profile, Resource
from densityd.planner.quantity import parse_profile
from densityd.planning import (
    PlanContext,
    PlanRequest,
    cpu_rates,
    headlines,
    plan_answers,
    plan_context,
    plan_document,
    read_history,
)
from densityd.store import HistoryStore

log = logging.getLogger("densityd.plan")


class LivePlan:
    """Plans at every snapshot; a Prometheus collector of the answers."""

    def __init__(
        self,
        settings: Settings,
        data_dirs: Callable[[], Mapping[WorkloadKind, Sequence[str]]],
        store: Callable[[], HistoryStore | None],
    ) -> None:
        self._settings = settings
        self._data_dirs = data_dirs
        self._store = store
        self._profiles: tuple[Profile, ...] = tuple(
            parse_profile(text, option="plan_profiles") for text in settings.plan_profiles
        )
        self._lock = threading.Lock()
        self._previous: Snapshot | None = None
        self._context: PlanContext | None = None
        self._answers: tuple[Answer, ...] = ()

    def update(self, snapshot: Snapshot) -> None:
        """Replan for a new snapshot; a failure is logged and leaves the gauges empty."""
        try:
            context = self._build_context(snapshot)
            found: list[Answer] = []
            for request in self._requests():
                found.extend(plan_answers(context, request))
        except Exception:  # never let planning take the sampler down with it
            log.exception("planning failed for this pass")
            context, found = None, []
        with self._lock:
            self._previous = snapshot
            self._context = context
            self._answers = tuple(found)

    def _build_context(self, snapshot: Snapshot) -> PlanContext:
        history = read_history(self._store(), snapshot.timestamp, self._settings)
        return plan_context(
            snapshot,
            history,
            self._settings,
            data_dirs=self._data_dirs(),
            rates=cpu_rates(self._previous, snapshot),
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
        return plan_document(context, request)

    def describe(self) -> Iterator[Metric]:
        """The plan families, without samples."""
        return self._families(())

    def collect(self) -> Iterator[Metric]:
        """Slots left, time to full, and usable/used/free per kind and view."""
        with self._lock:
            found = self._answers
        return self._families(found)

    @staticmethod
    def _families(found: Sequence[Answer]) -> Iterator[Metric]:
        remaining = GaugeMetricFamily(
            "densityd_plan_remaining",
            "How many more workloads of the profile fit (the stricter view), and the resource "
            "that binds.",
            labels=["kind", "profile", "bound"],
        )
        by_view = GaugeMetricFamily(
            "densityd_plan_view_remaining",
            "How many more workloads of the profile fit in one view.",
            labels=["kind", "profile", "view", "bound"],
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
                f"{text}, memory and disk bytes.",
                labels=["kind", "view", "resource"],
            )
        for item in headlines(found):
            if item.remaining is not None:
                remaining.add_metric(
                    [str(item.kind), item.profile, str(item.bound or "")], item.remaining
                )
            if item.time_to_full_seconds is not None:
                time_to_full.add_metric([str(item.kind), item.profile], item.time_to_full_seconds)
        seen: set[tuple[str, str]] = set()
        for item in found:
            kind, view = str(item.kind), str(item.view)
            if item.remaining is not None:
                by_view.add_metric(
                    [kind, item.profile, view, str(item.bound or "")], item.remaining
                )
            if (kind, view) in seen:
                continue  # capacity does not depend on the profile: once per kind and view
            seen.add((kind, view))
            for answer in item.resources:
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
        yield from (remaining, by_view, time_to_full)
        yield from per_resource.values()
