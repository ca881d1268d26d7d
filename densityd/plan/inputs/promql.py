"""The PromQL ``densityd plan --prometheus`` sends: selectors, windows, rates and percentiles.

``FleetQuery`` says what to read (which series, how hosts are told apart, over what window);
``Queries`` turns it into the queries ``inputs.fleet`` sends, for example::

    max_over_time(densityd_workload_memory_bytes{job="densityd"}[1209600s])
    quantile_over_time(0.95, rate(densityd_workload_cpu_seconds_total{job="densityd"}[110s])
        [1209600s:110s])

``quantile`` computes a percentile the way ``quantile_over_time`` does, for engines that
reject subqueries (the rate then comes from range queries).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from densityd.plan.core.model import Resource

# The series the fleet planner reads, for the error that says none were found.
BASIS_METRICS: tuple[str, ...] = (
    "densityd_plan_capacity_cores",
    "densityd_plan_capacity_bytes",
    "densityd_plan_host_used_bytes",
    "densityd_plan_declared",
    "densityd_plan_scope",
    "densityd_plan_data_disk_info",
    "densityd_plan_measured_overhead_bytes",
)


WORKLOAD_METRICS: tuple[str, ...] = (
    "densityd_workload_info",
    "densityd_workload_cpu_limit_cores",
    "densityd_workload_memory_bytes",
    "densityd_workload_memory_limit_bytes",
    "densityd_workload_disk_bytes",
    "densityd_workload_disk_limit_bytes",
)


CPU_COUNTER = "densityd_workload_cpu_seconds_total"


MEMORY = "densityd_workload_memory_bytes"


DISK = "densityd_workload_disk_bytes"
HOST_MEMORY = "densityd_host_memory_bytes"  # one sample per host and scrape


# Prometheus refuses range queries of more than 11,000 points; subqueries are held to it too,
# so a long window widens the rate's slices rather than making huge answers.
MAX_POINTS = 11_000


HOUR = 3600.0


DAY = 86400.0


# The local history's trend is hourly while its hourly rows last (48 h), else daily.
HOURLY_TREND_SECONDS = 48 * HOUR


_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class FleetQuery:
    """What to read: which series (``selector``), how hosts are told apart, over what window.

    ``rate_interval`` is the slice the CPU rate is taken over (``rate(x[1m])``), at least
    four scrape intervals; ``subqueries`` off computes the percentile from range queries.
    """

    selector: str = ""
    host_label: str = "instance"
    window_seconds: float = 14 * DAY
    rate_interval_seconds: float = 60.0
    percentile: float = 0.95
    subqueries: bool = True

    def __post_init__(self) -> None:
        matchers(self.selector)
        if not _LABEL_NAME.fullmatch(self.host_label):
            raise ValueError(f"--host-label: {self.host_label!r} is not a label name")
        if not 0 < self.percentile <= 1:
            raise ValueError(f"percentile {self.percentile} is not in (0, 1]")

    @property
    def step_seconds(self) -> float:
        """The rate's slice: the rate interval, widened to keep the window within MAX_POINTS."""
        return float(
            max(math.ceil(self.rate_interval_seconds), math.ceil(self.window_seconds / MAX_POINTS))
        )

    @property
    def trend_seconds(self) -> float:
        """The trend's period: an hour within 48 h, else a day (as the local history)."""
        return HOUR if self.window_seconds <= HOURLY_TREND_SECONDS else DAY


def matchers(selector: str) -> str:
    """The label matchers inside a selector: ``{job="densityd"}`` -> ``job="densityd"``.

    The braces may be left out; an empty selector matches every series. Prometheus checks
    the matchers themselves (a bad one is its 400, with its parse error).
    """
    text = selector.strip()
    if text.startswith("{") != text.endswith("}"):
        raise ValueError(f'--selector: {selector!r} has unbalanced braces (example: {{job="x"}})')
    if text.startswith("{"):
        text = text[1:-1].strip()
    if "{" in text or "}" in text:
        raise ValueError(f'--selector: {selector!r} is not one selector (example: {{job="x"}})')
    return text.rstrip(",").strip()


def series(metric: str, selector: str) -> str:
    """``metric{matchers}`` for one metric name."""
    inner = matchers(selector)
    return f"{metric}{{{inner}}}" if inner else metric


def series_of(metrics: Sequence[str], selector: str) -> str:
    """One selector for several metric names: ``{__name__=~"a|b",matchers}``."""
    names = "|".join(re.escape(m) for m in metrics)
    inner = matchers(selector)
    return f'{{__name__=~"{names}"{"," + inner if inner else ""}}}'


def duration(seconds: float) -> str:
    """Seconds as a PromQL duration, whole seconds rounded up: ``300s``."""
    return f"{max(1, math.ceil(seconds))}s"


@dataclass(frozen=True, slots=True)
class Queries:
    """The PromQL the fleet planner sends, built from a ``FleetQuery``."""

    query: FleetQuery

    @property
    def basis(self) -> str:
        """Every host's plan basis, in one instant query."""
        return series_of(BASIS_METRICS, self.query.selector)

    @property
    def workloads(self) -> str:
        """Every workload's metadata, limits and footprints now, in one instant query."""
        return series_of(WORKLOAD_METRICS, self.query.selector)

    @property
    def memory_max(self) -> str:
        """Each workload's largest memory footprint over the window."""
        window = duration(self.query.window_seconds)
        return f"max_over_time({series(MEMORY, self.query.selector)}[{window}])"

    @property
    def disk_min(self) -> str:
        """Each workload's smallest disk footprint over the window (its growth's start)."""
        window = duration(self.query.window_seconds)
        return f"min_over_time({series(DISK, self.query.selector)}[{window}])"

    @property
    def cpu_rate(self) -> str:
        """Each workload's CPU rate over one slice: what the percentile is taken of."""
        step = duration(self.query.step_seconds)
        return f"rate({series(CPU_COUNTER, self.query.selector)}[{step}])"

    @property
    def cpu_percentile(self) -> str:
        """The percentile of each workload's CPU rate over the window (a subquery)."""
        return (
            f"quantile_over_time({self.query.percentile:g}, "
            f"{self.cpu_rate}[{self._subquery_range}])"
        )

    @property
    def seen(self) -> str:
        """When each workload's memory was sampled: the first one gives its history's span."""
        return f"timestamp({series(MEMORY, self.query.selector)})"

    @property
    def first_seen(self) -> str:
        """When each workload was first sampled within the window (a subquery)."""
        return f"min_over_time({self.seen}[{self._subquery_range}])"

    def trend(self) -> dict[Resource, str]:
        """Per resource, each workload's share of the trend over one trend period."""
        period = duration(self.query.trend_seconds)
        sel = self.query.selector
        return {
            Resource.CPU: f"rate({series(CPU_COUNTER, sel)}[{period}])",
            Resource.MEMORY: f"max_over_time({series(MEMORY, sel)}[{period}])",
            Resource.DISK: f"last_over_time({series(DISK, sel)}[{period}])",
        }

    def presence(self) -> tuple[str, str]:
        """How many times each workload, and each host, was scraped in one trend period.

        A workload weighs in the trend by the share of its host's scrapes it was in, as the
        local history weighs it by its share of the passes: six container IDs of a service
        redeployed six times a period are one service's worth.
        """
        period = duration(self.query.trend_seconds)
        sel = self.query.selector
        return (
            f"count_over_time({series(MEMORY, sel)}[{period}])",
            f"count_over_time({series(HOST_MEMORY, sel)}[{period}])",
        )

    @property
    def _subquery_range(self) -> str:
        return f"{duration(self.query.window_seconds)}:{duration(self.query.step_seconds)}"


def quantile(phi: float, values: Sequence[float]) -> float | None:
    """The ``phi`` quantile as PromQL's ``quantile_over_time`` computes it; ``None`` if empty.

    Sorted values, rank ``phi * (n - 1)``, linear interpolation between its neighbours.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = phi * (len(ordered) - 1)
    lower = max(0, math.floor(rank))
    upper = min(len(ordered) - 1, lower + 1)
    weight = rank - lower
    return ordered[lower] * (1 - weight) + ordered[upper] * weight
