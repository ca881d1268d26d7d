"""The Prometheus text format of metric families, as client_python writes it, in less time.

``prometheus_client.generate_latest`` checks and escapes every metric and label name at every
sample (its UTF-8 name support), which is most of what rendering a snapshot costs: about 45 %
of the daemon's CPU at 50 containers. The names densityd exports are the same few hundred at
every pass, so here each is escaped once (by client_python's own functions) and remembered,
and a label value is escaped only when it holds a character that needs it. The output is byte
for byte ``generate_latest``'s, with its default escaping (``tests/unit/serve/
test_text_format.py`` holds them equal on whole snapshots and on hostile names).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# Samples client_python moves out of a family into a gauge family of their own, after it.
_SPLIT_SUFFIXES = ("_created", "_gsum", "_gcount")
# How many names are remembered: far more than densityd exports, bounded for hostile labels.
_NAME_CACHE_SIZE = 4096


@lru_cache(maxsize=_NAME_CACHE_SIZE)
def _metric_name(name: str) -> str:
    return escape_metric_name(name)


@lru_cache(maxsize=_NAME_CACHE_SIZE)
def _label_name(name: str) -> str:
    return escape_label_name(name)


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _help(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def _sample_line(sample: Sample) -> str:
    name = _metric_name(sample.name)
    value: str = floatToGoString(sample.value)  # type: ignore[no-untyped-call]
    timestamp = "" if sample.timestamp is None else f" {int(float(sample.timestamp) * 1000):d}"
    labels = sample.labels
    if not labels:
        return f"{name} {value}{timestamp}\n"
    pairs = ",".join(f'{_label_name(key)}="{_label_value(labels[key])}"' for key in sorted(labels))
    return f"{name}{{{pairs}}} {value}{timestamp}\n"


def _exposed_name_and_type(metric: Metric) -> tuple[str, str]:
    """The family's name and type as the text format has them (OpenMetrics munged)."""
    name, kind = metric.name, metric.type
    if kind == "counter":
        return name + "_total", kind
    if kind == "info":
        return name + "_info", "gauge"
    if kind == "stateset":
        return name, "gauge"
    if kind == "gaugehistogram":
        return name, "histogram"
    if kind == "unknown":
        return name, "untyped"
    return name, kind


def text_exposition(metrics: Iterable[Metric]) -> bytes:
    """The text exposition (format 0.0.4) of ``metrics``, as ``generate_latest`` writes it."""
    output: list[str] = []
    for metric in metrics:
        name, kind = _exposed_name_and_type(metric)
        exposed = _metric_name(name)
        documentation = _help(metric.documentation)
        output.append(f"# HELP {exposed} {documentation}\n# TYPE {exposed} {kind}\n")
        split_names = {metric.name + suffix: suffix for suffix in _SPLIT_SUFFIXES}
        split: dict[str, list[str]] = {}
        for sample in metric.samples:
            suffix = split_names.get(sample.name)
            if suffix is None:
                output.append(_sample_line(sample))
            else:
                split.setdefault(suffix, []).append(_sample_line(sample))
        for suffix, lines in sorted(split.items()):
            family = _metric_name(metric.name + suffix)
            output.append(f"# HELP {family} {documentation}\n# TYPE {family} gauge\n")
            output.extend(lines)
    return "".join(output).encode("utf-8")
