"""The demand trend: least-squares slope and time to full."""

from __future__ import annotations

import pytest

from densityd.plan.core.model import GIB, MIB, Resource, Resources, TrendPoint
from densityd.plan.core.trend import slope, time_to_full

T0 = 1_700_000_000.0  # a real epoch: the slope must survive timestamps this large


def test_slope_of_a_line_and_of_noisy_points() -> None:
    assert slope([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) == 2.0
    # mean x 1.5, mean y 1: Sxy = 1.5 + 0 - 0.5 + 3 = 4, Sxx = 5
    assert slope([(0.0, 0.0), (1.0, 1.0), (2.0, 0.0), (3.0, 3.0)]) == pytest.approx(0.8)
    assert slope([(3.0, 5.0), (1.0, 1.0)]) == 2.0  # order does not matter
    assert slope([(0.0, 5.0), (10.0, 0.0)]) == -0.5


def test_slope_survives_epoch_timestamps() -> None:
    points = [(T0 + 60.0 * i, 8 * GIB + 1000.0 * 60.0 * i) for i in range(100)]
    assert slope(points) == pytest.approx(1000.0, rel=1e-9)


def test_no_slope_without_two_distinct_times() -> None:
    assert slope([]) is None
    assert slope([(T0, 1.0)]) is None
    assert slope([(T0, 1.0), (T0, 2.0)]) is None


def _trend(step: float, count: int, cpu: float, memory: float, disk: float) -> list[TrendPoint]:
    """``count`` points ``step`` seconds apart, each resource growing by the given rate/s."""
    return [
        TrendPoint(
            timestamp=T0 + step * i,
            demand=Resources(
                cpu=2.0 + cpu * step * i,
                memory=4 * GIB + memory * step * i,
                disk=100 * GIB + disk * step * i,
            ),
        )
        for i in range(count)
    ]


def test_time_to_full_is_free_over_a_rising_slope() -> None:
    trend = _trend(60.0, 61, cpu=0.0, memory=1 * MIB, disk=-1 * MIB)
    full = time_to_full(trend, Resources(cpu=4.0, memory=3600 * MIB, disk=10 * GIB))
    assert full[Resource.MEMORY] == pytest.approx(3600.0)
    assert full[Resource.CPU] is None  # flat
    assert full[Resource.DISK] is None  # falling


def test_a_full_resource_is_full_now() -> None:
    trend = _trend(60.0, 20, cpu=0.001, memory=0.0, disk=0.0)
    assert time_to_full(trend, Resources())[Resource.CPU] == 0.0


def test_float_noise_in_a_flat_series_is_not_growth() -> None:
    # The mean of three 0.1s is 0.10000000000000002: a naive slope sees a tiny rise.
    trend = [TrendPoint(T0 + 600.0 * i, Resources(0.1, 0.1, 0.1)) for i in range(3)]
    assert set(time_to_full(trend, Resources(1.0, 1.0, 1.0)).values()) == {None}


def test_no_time_to_full_from_too_little_history() -> None:
    rising = _trend(60.0, 10, cpu=1.0, memory=1 * MIB, disk=1 * MIB)  # spans 9 minutes
    free = Resources(cpu=4.0, memory=1 * GIB, disk=1 * GIB)
    assert set(time_to_full(rising, free).values()) == {None}
    assert time_to_full(rising, free, min_span_seconds=300.0)[Resource.CPU] == pytest.approx(4.0)
    assert set(time_to_full(rising[:1], free, min_span_seconds=0.0).values()) == {None}
    assert set(time_to_full([], free).values()) == {None}
    assert list(time_to_full([], free)) == [Resource.CPU, Resource.MEMORY, Resource.DISK]
