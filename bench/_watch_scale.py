"""The watch-cost benchmark's scale sweep: a pass's cost per container and per VM, as a fit.

Helpers of ``watch_cost.py``, not a benchmark: one point per container count (a fresh
``DockerSource``, its steady passes timed in-process by ``_docker_measure``) and per VM count
(a fresh ``LibvirtSource`` by ``_libvirt_pass``), and the least-squares line
``cost = a + b * n`` through them with its R².
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class ScalePoint:
    """One size: workloads the pass saw, its steady wall and CPU (medians, seconds)."""

    n: int  # the benchmark's own workloads
    seen: int  # all the pass listed (other tests' containers on the same engine too)
    wall_s: float
    cpu_s: float
    setup_s: float  # starting the workloads added at this size
    engine_cpu_per_pass_s: float | None = None  # libvirtd per stats call (VMs only)
    # Containers only: a steady pass against reading its cgroup files alone, interleaved.
    interleaved_pass_s: float | None = None
    files_alone_s: float | None = None
    files: int = 0

    @property
    def files_ratio(self) -> float | None:
        if self.interleaved_pass_s is None or not self.files_alone_s:
            return None
        return self.interleaved_pass_s / self.files_alone_s


@dataclass(frozen=True)
class Fit:
    """``y = a + b * x`` by least squares, and R²."""

    a: float
    b: float
    r2: float
    points: int

    def summary(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "r2": self.r2, "points": self.points}


def fit(xs: Sequence[float], ys: Sequence[float]) -> Fit | None:
    """The least-squares line through the points (None for fewer than 2, or one x)."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    slope, intercept = statistics.linear_regression(xs, ys)
    mean = statistics.fmean(ys)
    total = sum((y - mean) ** 2 for y in ys)
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1.0 - residual / total if total > 0 else 1.0
    return Fit(intercept, slope, r2, len(xs))


def fits(points: Sequence[ScalePoint]) -> dict[str, Fit | None]:
    """Wall and CPU of a pass against the workloads it saw."""
    xs = [float(p.seen) for p in points]
    return {
        "wall": fit(xs, [p.wall_s for p in points]),
        "cpu": fit(xs, [p.cpu_s for p in points]),
    }
