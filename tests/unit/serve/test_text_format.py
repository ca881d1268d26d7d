"""densityd's text writer against client_python's ``generate_latest``: the same bytes, on
whole snapshots, on hostile names and values, and on every family type and sample shape."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from densityd.collect.sampler import SnapshotHolder
from densityd.serve.exporter import SnapshotCollector, render
from densityd.serve.text_format import text_exposition
from tests.unit.serve.test_exporter import HOSTILE, container, hostile_snapshot, snapshot, vm

CLOCK = 1_700_000_000.0


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def _client_python(*collectors: Collector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


def _snapshot_collector(snap: object) -> SnapshotCollector:
    holder = SnapshotHolder()
    holder.publish(snap)  # type: ignore[arg-type]
    return SnapshotCollector(holder, clock=lambda: CLOCK)


def test_a_snapshot_renders_as_client_python_renders_it() -> None:
    snap = snapshot(container(), vm())
    expected = _client_python(_snapshot_collector(snap))
    assert render(snap, clock=lambda: CLOCK) == expected
    assert b"densityd_workload_memory_bytes{" in expected  # not an empty comparison


def test_hostile_names_and_values_render_as_client_python_renders_them() -> None:
    snap = hostile_snapshot()
    expected = _client_python(_snapshot_collector(snap))
    assert render(snap, clock=lambda: CLOCK) == expected
    assert expected.count(b"densityd_workload_info{") == len(HOSTILE)


def test_no_snapshot_renders_as_client_python_renders_it() -> None:
    holder = SnapshotHolder()
    assert render(None) == _client_python(SnapshotCollector(holder))


def test_every_family_type_and_sample_shape_renders_as_client_python_renders_it() -> None:
    counter = CounterMetricFamily(
        "c", 'help with \\ and\nnewline and "quotes"', labels=["a", "b"], created=1.5
    )
    counter.add_metric(["x", 'y"\\\n🚀'], 3.0, created=12.25, timestamp=1_700_000_000.123)
    counter.add_metric(["", "z"], float("inf"))
    gauge = GaugeMetricFamily("g", "gauge", labels=["le.bad-name", "ok"])
    gauge.add_metric(["1", "2"], float("nan"))
    gauge.add_metric(["3", "4"], -0.0)
    gauge.add_metric(["5", "6"], 1e21)
    plain = GaugeMetricFamily("bad-name.here", "a name to escape", value=42)
    info = InfoMetricFamily("build", "build info", value={"version": "1.0", "commit": "a\nb"})
    stateset = StateSetMetricFamily("state", "a state set", value={"up": True, "down": False})
    histogram = GaugeHistogramMetricFamily(
        "gh", "a gauge histogram", buckets=[("1.0", 2), ("+Inf", 3)], gsum_value=4.5
    )
    summary = SummaryMetricFamily("s", "a summary", count_value=2, sum_value=3.5)
    unknown = UnknownMetricFamily("u", "untyped", value=-7)
    families = [counter, gauge, plain, info, stateset, histogram, summary, unknown]
    assert text_exposition(families) == _client_python(_Families(families))
