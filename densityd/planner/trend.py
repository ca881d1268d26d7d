"""When the host fills up if demand keeps growing as it did over the window (DESIGN §6).

A least-squares line through the total demand per resource; only a rising line gives a time
to full, and only over enough history to mean something.
"""

from __future__ import annotations

from collections.abc import Sequence

from densityd.planner.model import RESOURCES, Resource, Resources, TrendPoint

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
    result: dict[Resource, float | None] = dict.fromkeys(RESOURCES)
    if len(trend) < 2:
        return result
    times = [point.timestamp for point in trend]
    span = max(times) - min(times)
    if span < min_span_seconds or span <= 0:
        return result
    for resource in RESOURCES:
        values = [point.demand.get(resource) for point in trend]
        rate = slope(list(zip(times, values, strict=True)))
        scale = max(1.0, max(abs(v) for v in values))
        if rate is None or rate * span <= _FLAT * scale:
            continue
        result[resource] = free.get(resource) / rate
    return result
