"""When the host fills up if demand keeps growing as it did over the window (DESIGN §6).

A least-squares line through the total demand per resource; only a rising line gives a time
to full, and only over enough history to mean something.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from densityd.plan.core.model import RESOURCES, Resource, Resources, TrendPoint

# A rise this small relative to the values is float noise from a flat series (the mean of
# identical floats need not equal them), not growth.
_FLAT = 1e-9


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of ``(x, y)`` points; ``None`` with fewer than two distinct x."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    # Centred sums: timestamps are ~1.7e9, and raw sums of their squares lose the slope.
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx


def time_to_full(
    trend: Sequence[TrendPoint], free: Resources, min_span_seconds: float = 600.0
) -> dict[Resource, float | None]:
    """Seconds until each resource's ``free`` is used up at the trend's slope.

    ``None`` for a resource whose demand is flat or falling, and for every resource when the
    trend has fewer than two points or spans less than ``min_span_seconds``.
    """
    times = times_to_full(trend, tuple(free.get(r) for r in RESOURCES), min_span_seconds)
    return dict(zip(RESOURCES, times, strict=True))


def summed(trends: Iterable[Sequence[TrendPoint]]) -> tuple[TrendPoint, ...]:
    """The trends added up per timestamp (a point missing from one trend counts as 0)."""
    points: dict[float, list[float]] = {}
    for trend in trends:
        for point in trend:
            total = points.setdefault(point.timestamp, [0.0, 0.0, 0.0])
            total[0] += point.demand.cpu
            total[1] += point.demand.memory
            total[2] += point.demand.disk
    return tuple(TrendPoint(timestamp=t, demand=Resources(*points[t])) for t in sorted(points))


def with_disk_of(
    trend: Sequence[TrendPoint], disk_trend: Sequence[TrendPoint]
) -> tuple[TrendPoint, ...]:
    """``trend`` with its disk taken from ``disk_trend`` (0 at a time it has no point).

    What one kind's filesystem sees when the other kind keeps its data on another one: the
    CPU and memory of every workload, the disk of those whose data lives here.
    """
    disk = {point.timestamp: point.demand.disk for point in disk_trend}
    return tuple(
        TrendPoint(
            timestamp=point.timestamp,
            demand=Resources(
                cpu=point.demand.cpu,
                memory=point.demand.memory,
                disk=disk.get(point.timestamp, 0.0),
            ),
        )
        for point in trend
    )


_NO_TREND: tuple[float | None, ...] = (None, None, None)


def times_to_full(
    trend: Sequence[TrendPoint], free: Sequence[float], min_span_seconds: float
) -> tuple[float | None, ...]:
    """``time_to_full`` as a tuple in ``RESOURCES`` order, for the fleet's hot loop.

    ``slope`` inlined, with the times' mean and spread computed once for the three resources:
    called per resource it was half the time of a 10,000-host fleet answer.
    """
    if len(trend) < 2:
        return _NO_TREND
    times = [point.timestamp for point in trend]
    span = max(times) - min(times)
    if span < min_span_seconds or span <= 0:
        return _NO_TREND
    n = len(times)
    mean_x = sum(times) / n
    # Centred sums: timestamps are ~1.7e9, and raw sums of their squares lose the slope.
    dx = [x - mean_x for x in times]
    sxx = sum([d**2 for d in dx])
    if sxx == 0:
        return _NO_TREND
    series = (
        [point.demand.cpu for point in trend],
        [point.demand.memory for point in trend],
        [point.demand.disk for point in trend],
    )
    result: list[float | None] = []
    for values, room in zip(series, free, strict=True):
        mean_y = sum(values) / n
        rate = sum([d * (y - mean_y) for d, y in zip(dx, values, strict=True)]) / sxx
        scale = max(1.0, max(map(abs, values)))
        result.append(None if rate * span <= _FLAT * scale else room / rate)
    return tuple(result)
