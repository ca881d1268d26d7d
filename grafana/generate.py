"""Write densityd's Grafana dashboards, ``densityd-host.json`` and ``densityd-fleet.json``.

The dashboards are built with Grafana's own typed builders (``grafana-foundation-sdk``, the
``dev`` extra): every panel, query, threshold, override and variable is a typed object of
Grafana's dashboard schema (v39, Grafana 10.x and 11.x), so a field Grafana does not know or
a value of the wrong type fails here, without a Grafana server. The JSON is committed; this
script is where it is edited. Run it after a change and commit its output:

    python grafana/generate.py            # rewrites grafana/*.json next to this file
    python grafana/generate.py --check    # exits 1 when the committed JSON is out of date

Every panel queries the data source chosen in the ``datasource`` variable, and every query
selects the hosts of the ``instance`` variable (one host on the host dashboard, any number
on the fleet dashboard). Only metrics densityd exports are used (README, "Metrics").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as builder
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_models

HERE = Path(__file__).resolve().parent
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
HOST = 'instance=~"$instance"'
WIDTH = 24
CORES = "suffix: cores"
RED, ORANGE, GREEN = "red", "orange", "green"
SCHEMA_VERSION = 39

Json = dict[str, Any]


def steps(*pairs: tuple[float | None, str]) -> builder.ThresholdsConfig:
    """Absolute thresholds from ``(value, colour)`` pairs; the first value is the base."""
    return (
        builder.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=colour) for value, colour in pairs])
    )


# Few slots left is bad: red at 0, orange below 5, green from 5.
SLOTS = ((None, RED), (1, ORANGE), (5, GREEN))
# A share of usable capacity in use: green, orange from 80 %, red from 90 %.
SHARE = ((None, GREEN), (0.8, ORANGE), (0.9, RED))
UP = ((None, RED), (1, GREEN))
# Seconds since something last happened: green, orange from 10 minutes, red from 30.
AGE = ((None, GREEN), (600, ORANGE), (1800, RED))
# A count of bad events: green at 0, red from 1.
ANY = ((None, GREEN), (1, RED))
# Time to full: red within a week, orange within 30 days.
FULL = ((None, RED), (7 * 86400, ORANGE), (30 * 86400, GREEN))
UP_MAPPING = [
    model.ValueMap(
        options={
            "0": model.ValueMappingResult(text="down", color=RED, index=0),
            "1": model.ValueMappingResult(text="up", color=GREEN, index=1),
        }
    )
]


@dataclass
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False

    def build(self, ref_id: str) -> prometheus.Dataquery:
        """The target as a typed Prometheus query."""
        query = (
            prometheus.Dataquery()
            .datasource(DATASOURCE)
            .ref_id(ref_id)
            .expr(self.expr)
            .legend_format(self.legend or "__auto")
            .editor_mode(prom_models.QueryEditorMode.CODE)
        )
        query = query.instant() if self.instant or self.table else query.range()
        fmt = (
            prom_models.PromQueryFormat.TABLE
            if self.table
            else prom_models.PromQueryFormat.TIME_SERIES
        )
        return query.format(fmt)


@dataclass
class Override:
    """Field properties for the fields a matcher picks (``byName``, ``byFrameRefID``)."""

    matcher: str
    options: str
    properties: Json


@dataclass
class Panel:
    """One panel: its type, title, queries, size and display options."""

    type: str
    title: str
    description: str
    targets: Sequence[Target]
    w: int
    h: int
    unit: str = "short"
    thresholds: Sequence[tuple[float | None, str]] = ((None, GREEN),)
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    no_value: str | None = None
    mappings: list[model.ValueMap] = field(default_factory=list)
    color_mode: str | None = None
    transformations: list[model.DataTransformerConfig] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    stack: bool = False

    def build(self, panel_id: int, x: int, y: int) -> Builder[model.Panel]:
        """The panel as a typed builder of its plugin, at ``(x, y)``."""
        # Each plugin's builder has the same field-config methods, but no common typed base.
        made: Any = _PLUGINS[self.type](self)
        made = (
            made.id(panel_id)
            .title(self.title)
            .description(self.description)
            .datasource(DATASOURCE)
            .grid_pos(model.GridPos(x=x, y=y, w=self.w, h=self.h))
            .unit(self.unit)
            .thresholds(steps(*self.thresholds))
            .mappings(list(self.mappings))
            .targets([t.build(chr(ord("A") + i)) for i, t in enumerate(self.targets)])
            .transformations(list(self.transformations))
        )
        color = (
            model.FieldColorModeId.THRESHOLDS
            if self.type in STATLIKE
            else (model.FieldColorModeId.PALETTE_CLASSIC)
        )
        made = made.color_scheme(builder.FieldColor().mode(color))
        if self.min is not None:
            made = made.min(self.min)
        if self.max is not None:
            made = made.max(self.max)
        if self.decimals is not None:
            made = made.decimals(self.decimals)
        if self.no_value is not None:
            made = made.no_value(self.no_value)
        for override in self.overrides:
            made = made.with_override(
                model.MatcherConfig(id_val=override.matcher, options=override.options),
                [
                    model.DynamicConfigValue(id_val=k, value=v)
                    for k, v in override.properties.items()
                ],
            )
        built: Builder[model.Panel] = made
        return built


STATLIKE = {"stat", "bargauge", "gauge", "table"}


def _reduce() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def _stat(panel: Panel) -> stat.Panel:
    mode = common_models.BigValueColorMode(panel.color_mode or "background")
    return (
        stat.Panel()
        .reduce_options(_reduce())
        .color_mode(mode)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .text_mode(common_models.BigValueTextMode.VALUE_AND_NAME)
        .justify_mode(common_models.BigValueJustifyMode.AUTO)
        .orientation(common_models.VizOrientation.AUTO)
    )


def _bargauge(panel: Panel) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .reduce_options(_reduce())
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .value_mode(common_models.BarGaugeValueMode.COLOR)
    )


def _timeseries(panel: Panel) -> timeseries.Panel:
    stacking = common_models.StackingMode.NORMAL if panel.stack else common_models.StackingMode.NONE
    return (
        timeseries.Panel()
        .draw_style(common_models.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10 if panel.stack else 0)
        .show_points(common_models.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(common.StackingConfig().mode(stacking).group("A"))
        .legend(
            common.VizLegendOptions()
            .display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.RIGHT)
            .show_legend(True)
        )
        .tooltip(
            common.VizTooltipOptions()
            .mode(common_models.TooltipDisplayMode.MULTI)
            .sort(common_models.SortOrder.DESCENDING)
        )
    )


def _table(panel: Panel) -> table.Panel:
    return (
        table.Panel()
        .show_header(True)
        .cell_height(common_models.TableCellHeight.SM)
        .footer(common.TableFooterOptions().show(False).reducer([]))
    )


_PLUGINS: dict[str, Any] = {
    "stat": _stat,
    "bargauge": _bargauge,
    "timeseries": _timeseries,
    "table": _table,
}


@dataclass
class Row:
    """A row title followed by its panels, laid out left to right."""

    title: str
    panels: Sequence[Panel]


def merge_table(
    rename: dict[str, str], hide: Sequence[str] = ()
) -> list[model.DataTransformerConfig]:
    """Transformations that join instant table queries on their labels into one table."""
    hidden = {"Time": True, "__name__": True, "job": True, **{name: True for name in hide}}
    return [
        model.DataTransformerConfig(id_val="merge", options={}),
        model.DataTransformerConfig(
            id_val="organize",
            options={"excludeByName": hidden, "renameByName": rename, "indexByName": {}},
        ),
    ]


def color_background_when_zero(name: str) -> Override:
    """The named column red while it is 0, green above."""
    return Override(
        "byName",
        name,
        {
            "custom.cellOptions": {"type": "color-background"},
            "thresholds": steps((None, RED), (1e-9, GREEN)).build(),
        },
    )


def layout(dashboard: builder.Dashboard, rows: Sequence[Row]) -> builder.Dashboard:
    """Rows and panels with ids from 1 and positions that fill rows of 24 columns."""
    y = 0
    next_id = 1
    for row in rows:
        made = builder.Row(row.title).id(next_id).collapsed(False)
        made = made.grid_pos(model.GridPos(x=0, y=y, w=WIDTH, h=1))
        dashboard = dashboard.with_row(made)
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.w > WIDTH:
                x, y, line_height = 0, y + line_height, 0
            dashboard = dashboard.with_panel(panel.build(next_id, x, y))
            next_id += 1
            x += panel.w
            line_height = max(line_height, panel.h)
        y += line_height
    return dashboard


def variables(dashboard: builder.Dashboard, multi: bool) -> builder.Dashboard:
    """The data source variable and the host (``instance``) variable."""
    query = "label_values(densityd_build_info, instance)"
    source = (
        builder.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .hide(model.VariableHide.DONT_HIDE)
        .multi(False)
        .include_all(False)
    )
    instance = (
        builder.QueryVariable("instance")
        .label("Hosts" if multi else "Host")
        .datasource(DATASOURCE)
        .query({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .hide(model.VariableHide.DONT_HIDE)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .regex("")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        instance = instance.all_value(".+")
    return dashboard.with_variable(source).with_variable(instance)


def dashboard(uid: str, title: str, description: str, rows: Sequence[Row], multi: bool) -> Json:
    """A whole dashboard document."""
    made = (
        builder.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["densityd", "capacity", "docker", "libvirt"])
        .timezone("browser")
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .version(1)
        .time("now-6h", "now")
        .link(
            builder.DashboardLink("densityd dashboards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["densityd"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
    )
    made = layout(variables(made, multi), rows)
    document: Json = json.loads(json.dumps(made.build(), cls=JSONEncoder))
    document["schemaVersion"] = SCHEMA_VERSION
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        **document,
    }


def resource_table(title: str, metric: str, unit: str, selector: str, what: str) -> Panel:
    """Usable, used and free of one resource per kind and view, as one table."""
    labels = f"{HOST}{selector}"
    return Panel(
        "table",
        title,
        f"{what} per kind and view. Usable = (total - reserved) x ratio x target fill; used "
        "counts limits in the allocation view and measured demand (with system usage) in the "
        "demand view; free = usable - used.",
        [
            Target(f"densityd_plan_usable_{metric}{{{labels}}}", table=True),
            Target(f"densityd_plan_used_{metric}{{{labels}}}", table=True),
            Target(f"densityd_plan_free_{metric}{{{labels}}}", table=True),
        ],
        w=8,
        h=6,
        unit=unit,
        transformations=merge_table(
            {"Value #A": "usable", "Value #B": "used", "Value #C": "free"},
            hide=("instance", "resource"),
        ),
        overrides=[color_background_when_zero("free")],
    )


def host_rows() -> list[Row]:
    """The panels of the host dashboard."""
    rate = f"rate(densityd_workload_cpu_seconds_total{{{HOST}}}[$__rate_interval])"
    vm = f'{HOST},kind="vm"'
    plan = Row(
        "Capacity plan: how many more fit",
        [
            Panel(
                "stat",
                "Slots left",
                "How many more workloads of each configured profile fit as each kind, by the "
                "stricter of the allocation and demand views (densityd_plan_remaining).",
                [Target(f"densityd_plan_remaining{{{HOST}}}", "{{kind}} {{profile}}")],
                w=8,
                h=6,
                thresholds=SLOTS,
                decimals=0,
            ),
            Panel(
                "table",
                "Slots left per view, and the binding resource",
                "Each view's answer and the resource that runs out first "
                "(densityd_plan_view_remaining, densityd_plan_view_bound).",
                [
                    Target(
                        f"densityd_plan_view_remaining{{{HOST}}}"
                        " * on (instance, job, kind, profile, view) group_left (resource)"
                        f" densityd_plan_view_bound{{{HOST}}}",
                        table=True,
                    )
                ],
                w=10,
                h=6,
                transformations=merge_table(
                    {"Value": "slots left", "resource": "binding resource"}, hide=("instance",)
                ),
            ),
            Panel(
                "stat",
                "Time to full",
                "When the host fills at the least-squares trend of demand over the planning "
                "window; 'not filling' when demand is flat or falling or the history is "
                "shorter than 10 minutes.",
                [Target(f"densityd_plan_time_to_full_seconds{{{HOST}}}", "{{kind}} {{profile}}")],
                w=6,
                h=6,
                unit="s",
                thresholds=FULL,
                no_value="not filling",
            ),
        ],
    )
    resources = Row(
        "Per resource: usable, used and free, in both views",
        [
            resource_table("CPU", "cores", CORES, "", "CPU cores"),
            resource_table("Memory", "bytes", "bytes", ',resource="memory"', "Memory"),
            resource_table("Disk", "bytes", "bytes", ',resource="disk"', "The data disk"),
            Panel(
                "timeseries",
                "Used share of usable capacity",
                "used / usable per kind, view and resource: the plan's fill level over time.",
                [
                    Target(
                        f"densityd_plan_used_cores{{{HOST}}}"
                        f" / densityd_plan_usable_cores{{{HOST}}}",
                        "{{kind}} {{view}} cpu",
                    ),
                    Target(
                        f"densityd_plan_used_bytes{{{HOST}}}"
                        f" / densityd_plan_usable_bytes{{{HOST}}}",
                        "{{kind}} {{view}} {{resource}}",
                    ),
                ],
                w=16,
                h=8,
                unit="percentunit",
                min=0,
                thresholds=SHARE,
            ),
            Panel(
                "bargauge",
                "Host filesystems used",
                "Share of each filesystem densityd watches (Docker's data root, libvirt's "
                "pool directories) that is used.",
                [
                    Target(
                        f"1 - densityd_host_disk_free_bytes{{{HOST}}}"
                        f" / densityd_host_disk_bytes{{{HOST}}}",
                        "{{path}}",
                        instant=True,
                    ),
                    Target(
                        f"1 - densityd_host_memory_available_bytes{{{HOST}}}"
                        f" / densityd_host_memory_bytes{{{HOST}}}",
                        "memory (MemAvailable)",
                        instant=True,
                    ),
                ],
                w=8,
                h=8,
                unit="percentunit",
                min=0,
                max=1,
                thresholds=SHARE,
            ),
        ],
    )
    top = Row(
        "Top workloads",
        [
            Panel(
                "bargauge",
                "Top CPU",
                "The 10 workloads using the most CPU, in cores.",
                [Target(f"topk(10, {rate})", "{{kind}} {{name}}", instant=True)],
                w=8,
                h=8,
                unit=CORES,
                min=0,
                decimals=2,
            ),
            Panel(
                "bargauge",
                "Top memory",
                "The 10 largest host-side memory footprints: working set for a container, "
                "QEMU's resident set for a VM.",
                [
                    Target(
                        f"topk(10, densityd_workload_memory_bytes{{{HOST}}})",
                        "{{kind}} {{name}}",
                        instant=True,
                    )
                ],
                w=8,
                h=8,
                unit="bytes",
                min=0,
            ),
            Panel(
                "bargauge",
                "Top disk",
                "The 10 largest disk users: a container's writable layer, the bytes a VM's "
                "images occupy on the host.",
                [
                    Target(
                        f"topk(10, densityd_workload_disk_bytes{{{HOST}}})",
                        "{{kind}} {{name}}",
                        instant=True,
                    )
                ],
                w=8,
                h=8,
                unit="bytes",
                min=0,
            ),
            Panel(
                "timeseries",
                "CPU per workload",
                "CPU used per workload, in cores.",
                [Target(rate, "{{kind}} {{name}}")],
                w=12,
                h=8,
                unit=CORES,
                min=0,
            ),
            Panel(
                "timeseries",
                "Block I/O per workload",
                "Bytes read plus written per second, per workload (all its devices).",
                [
                    # The counters are per device (a sum over devices drops when a disk is
                    # unplugged): rate each device's, then add up a workload's devices.
                    Target(
                        "sum without (device) ("
                        f"rate(densityd_workload_disk_read_bytes_total{{{HOST}}}"
                        "[$__rate_interval])"
                        f" + rate(densityd_workload_disk_written_bytes_total{{{HOST}}}"
                        "[$__rate_interval]))",
                        "{{kind}} {{name}}",
                    )
                ],
                w=12,
                h=8,
                unit="Bps",
                min=0,
            ),
        ],
    )
    kinds = Row(
        "Containers against VMs",
        [
            Panel(
                "timeseries",
                "Memory per workload",
                "Host-side footprint per workload, stacked: containers' working sets and VMs' "
                "QEMU resident sets.",
                [Target(f"densityd_workload_memory_bytes{{{HOST}}}", "{{kind}} {{name}}")],
                w=12,
                h=8,
                unit="bytes",
                min=0,
                stack=True,
            ),
            Panel(
                "bargauge",
                "Average footprint per workload, by kind",
                "Mean host-side memory of one running workload of each kind.",
                [
                    Target(
                        f"avg by (kind) (densityd_workload_memory_bytes{{{HOST}}})",
                        "{{kind}}",
                        instant=True,
                    )
                ],
                w=6,
                h=4,
                unit="bytes",
                min=0,
            ),
            Panel(
                "stat",
                "Running workloads",
                "Running containers and VMs.",
                [
                    Target(
                        f'count by (kind) (densityd_workload_info{{{HOST},state="running"}})',
                        "{{kind}}",
                    )
                ],
                w=6,
                h=4,
                decimals=0,
                color_mode="none",
            ),
            Panel(
                "stat",
                "Overhead per workload",
                "What one more workload costs beyond itself, as measured here: the containerd "
                "shim's median resident set per container; QEMU's base overhead per VM once "
                "calibrated from VMs that touched all their RAM.",
                [Target(f"densityd_plan_measured_overhead_bytes{{{HOST}}}", "{{kind}} {{item}}")],
                w=12,
                h=4,
                unit="bytes",
                color_mode="none",
            ),
            Panel(
                "table",
                "VMs: guest RAM, QEMU's footprint and overhead",
                "Per VM: configured guest RAM, QEMU's resident set on the host, the footprint "
                "beyond guest RAM (RSS - guest RAM; negative while the guest has not touched "
                "all its RAM) and the overhead densityd's planner assumes for it "
                "(oVirt's model: 64 MiB + RAM/512 + 8 MiB per vCPU).",
                [
                    Target(f"densityd_workload_memory_limit_bytes{{{vm}}}", table=True),
                    Target(f"densityd_workload_memory_bytes{{{vm}}}", table=True),
                    Target(
                        f"densityd_workload_memory_bytes{{{vm}}}"
                        f" - densityd_workload_memory_limit_bytes{{{vm}}}",
                        table=True,
                    ),
                    Target(
                        f"67108864 + densityd_workload_memory_limit_bytes{{{vm}}} / 512"
                        f" + 8388608 * densityd_workload_cpu_limit_cores{{{vm}}}",
                        table=True,
                    ),
                ],
                w=24,
                h=6,
                unit="bytes",
                transformations=merge_table(
                    {
                        "Value #A": "guest RAM",
                        "Value #B": "QEMU resident set",
                        "Value #C": "beyond guest RAM",
                        "Value #D": "modelled QEMU overhead",
                    },
                    hide=("instance", "id", "kind"),
                ),
            ),
        ],
    )
    health = Row(
        "Source health",
        [
            Panel(
                "stat",
                "Sources",
                "Whether each source's latest pass succeeded, and whether the latest pass was "
                "recorded in the local history.",
                [
                    Target(f"densityd_source_up{{{HOST}}}", "{{source}}"),
                    Target(f"densityd_history_up{{{HOST}}}", "history"),
                ],
                w=8,
                h=4,
                thresholds=UP,
                mappings=UP_MAPPING,
            ),
            Panel(
                "stat",
                "Since last success",
                "Seconds since each source last succeeded; the writable-layer scan "
                "(docker_disk) runs only every disk_interval, 5 minutes by default.",
                [
                    Target(
                        f"time() - densityd_source_last_success_timestamp_seconds{{{HOST}}}",
                        "{{source}}",
                    )
                ],
                w=8,
                h=4,
                unit="s",
                thresholds=AGE,
            ),
            Panel(
                "stat",
                "Source errors in the time range",
                "Failed or timed-out passes per source over the dashboard's time range.",
                [
                    Target(
                        f"increase(densityd_source_errors_total{{{HOST}}}[$__range])",
                        "{{source}}",
                        instant=True,
                    ),
                    Target(
                        f"increase(densityd_history_errors_total{{{HOST}}}[$__range])",
                        "history",
                        instant=True,
                    ),
                ],
                w=8,
                h=4,
                decimals=0,
                thresholds=ANY,
            ),
            Panel(
                "timeseries",
                "Pass duration",
                "How long each source's latest pass took, and the whole sampling pass.",
                [
                    Target(f"densityd_source_duration_seconds{{{HOST}}}", "{{source}}"),
                    Target(f"densityd_last_pass_duration_seconds{{{HOST}}}", "whole pass"),
                ],
                w=12,
                h=7,
                unit="s",
                min=0,
            ),
            Panel(
                "stat",
                "Data age",
                "Age of the latest sampling pass, of the writable-layer sizes (scanned every "
                "disk_interval) and of the latest history write.",
                [
                    Target(f"time() - densityd_last_pass_timestamp_seconds{{{HOST}}}", "pass"),
                    Target(f"densityd_docker_disk_usage_age_seconds{{{HOST}}}", "writable layers"),
                    Target(
                        f"time() - densityd_history_last_write_timestamp_seconds{{{HOST}}}",
                        "history write",
                    ),
                ],
                w=6,
                h=7,
                unit="s",
                thresholds=AGE,
            ),
            Panel(
                "stat",
                "History size and version",
                "The local history database with its write-ahead log, and densityd's version.",
                [
                    Target(f"densityd_history_size_bytes{{{HOST}}}", "history"),
                    Target(f"densityd_build_info{{{HOST}}}", "densityd {{version}}"),
                ],
                w=6,
                h=7,
                unit="bytes",
                color_mode="none",
                overrides=[
                    Override(
                        "byFrameRefID",
                        "B",
                        {"unit": "short", "displayName": "${__field.labels.version}"},
                    )
                ],
            ),
        ],
    )
    return [plan, resources, top, kinds, *signal_rows(), rightsizing_row(), health]


def signal_rows() -> list[Row]:
    """Pressure, OOM kills, CPU throttling, network, vCPU delay and hugepages on one host."""

    def rate(metric: str, extra: str = "") -> str:
        return f"rate({metric}{{{HOST}{extra}}}[$__rate_interval])"

    stalls = Row(
        "Pressure, OOM kills and CPU throttling",
        [
            Panel(
                "timeseries",
                "Pressure stall per workload",
                "Share of time each workload's tasks were stalled on a resource (PSI, cgroup v2 "
                "only): 'some' = at least one task waiting, 'full' = all of them.",
                [
                    Target(
                        rate("densityd_workload_pressure_seconds_total"),
                        "{{kind}} {{name}} {{resource}} {{level}}",
                    )
                ],
                w=12,
                h=8,
                unit="percentunit",
                min=0,
            ),
            Panel(
                "timeseries",
                "Host pressure stall",
                "Share of time the host's tasks were stalled on CPU, memory or I/O "
                "(/proc/pressure), by level.",
                [Target(rate("densityd_host_pressure_seconds_total"), "{{resource}} {{level}}")],
                w=12,
                h=8,
                unit="percentunit",
                min=0,
            ),
            Panel(
                "bargauge",
                "OOM kills in the time range",
                "Processes the kernel's OOM killer killed in each container over the dashboard's "
                "time range (its memory limit was reached).",
                [
                    Target(
                        f"increase(densityd_container_oom_kills_total{{{HOST}}}[$__range])",
                        "{{name}}",
                        instant=True,
                    )
                ],
                w=8,
                h=8,
                decimals=0,
                min=0,
                thresholds=ANY,
            ),
            Panel(
                "timeseries",
                "CPU throttled share",
                "Share of CFS periods in which each workload was throttled by its CPU quota "
                "(only workloads with a quota have periods).",
                [
                    Target(
                        f"{rate('densityd_workload_cpu_throttled_periods_total')}"
                        f" / {rate('densityd_workload_cpu_periods_total')}",
                        "{{kind}} {{name}}",
                    )
                ],
                w=8,
                h=8,
                unit="percentunit",
                min=0,
                max=1,
            ),
            Panel(
                "timeseries",
                "CPU throttled time",
                "Seconds per second each workload's tasks spent throttled by its CPU quota.",
                [
                    Target(
                        rate("densityd_workload_cpu_throttled_seconds_total"), "{{kind}} {{name}}"
                    )
                ],
                w=8,
                h=8,
                unit="s",
                min=0,
            ),
        ],
    )
    network = Row(
        "Network, vCPU delay and hugepages",
        [
            Panel(
                "timeseries",
                "Network received per workload",
                "Bytes received per second, per workload and interface.",
                [
                    Target(
                        rate("densityd_workload_network_receive_bytes_total"),
                        "{{kind}} {{name}} {{interface}}",
                    )
                ],
                w=12,
                h=8,
                unit="Bps",
                min=0,
            ),
            Panel(
                "timeseries",
                "Network transmitted per workload",
                "Bytes transmitted per second, per workload and interface.",
                [
                    Target(
                        rate("densityd_workload_network_transmit_bytes_total"),
                        "{{kind}} {{name}} {{interface}}",
                    )
                ],
                w=12,
                h=8,
                unit="Bps",
                min=0,
            ),
            Panel(
                "timeseries",
                "vCPU delay per VM",
                "Seconds per second a VM's vCPUs were runnable but waiting for a host CPU "
                "(summed over its vCPUs): the host is CPU-oversubscribed when it rises.",
                [Target(rate("densityd_vm_vcpu_delay_seconds_total"), "{{name}}")],
                w=12,
                h=8,
                unit="s",
                min=0,
            ),
            Panel(
                "bargauge",
                "Hugepages",
                "The host's hugepage pools per page size: total, and free.",
                [
                    Target(
                        f"densityd_host_hugepages_bytes{{{HOST}}}", "{{size}} total", instant=True
                    ),
                    Target(
                        f"densityd_host_hugepages_free_bytes{{{HOST}}}",
                        "{{size}} free",
                        instant=True,
                    ),
                ],
                w=12,
                h=8,
                unit="bytes",
                min=0,
            ),
        ],
    )
    return [stalls, network]


def rightsizing_row() -> Row:
    """Each workload's recommendation next to its limit, and the slots resizing would give."""
    return Row(
        "Rightsizing: recommended against limits",
        [
            Panel(
                "stat",
                "Slots left today and if resized",
                "How many more of each profile fit (densityd_plan_remaining), and how many "
                "would if every workload's limits were set to its recommendation "
                "(densityd_plan_rightsized_remaining: resizing frees allocation, not demand).",
                [
                    Target(f"densityd_plan_remaining{{{HOST}}}", "{{kind}} {{profile}} today"),
                    Target(
                        f"densityd_plan_rightsized_remaining{{{HOST}}}",
                        "{{kind}} {{profile}} resized",
                    ),
                ],
                w=8,
                h=8,
                thresholds=SLOTS,
                decimals=0,
            ),
            Panel(
                "bargauge",
                "Most over-provisioned memory",
                "The 10 workloads whose memory limit (a VM: guest RAM) is furthest above their "
                "recommendation: the window's maximum footprint plus the buffer.",
                [
                    Target(
                        f"topk(10, densityd_workload_overprovisioned_memory_bytes{{{HOST}}})",
                        "{{kind}} {{name}}",
                        instant=True,
                    )
                ],
                w=8,
                h=8,
                unit="bytes",
                min=0,
            ),
            Panel(
                "bargauge",
                "Most over-provisioned CPU",
                "The 10 workloads whose CPU limit (a VM: vCPUs) is furthest above their "
                "recommendation: the percentile of their CPU rate.",
                [
                    Target(
                        f"topk(10, densityd_workload_overprovisioned_cpu_cores{{{HOST}}})",
                        "{{kind}} {{name}}",
                        instant=True,
                    )
                ],
                w=8,
                h=8,
                unit=CORES,
                min=0,
                decimals=2,
            ),
            Panel(
                "table",
                "Recommended against limit, per workload",
                "Per workload: its limits, the recommendation rightsizing would set them to, "
                "and the difference (never negative; empty without a limit).",
                [
                    Target(f"densityd_workload_cpu_limit_cores{{{HOST}}}", table=True),
                    Target(f"densityd_workload_recommended_cpu_cores{{{HOST}}}", table=True),
                    Target(f"densityd_workload_overprovisioned_cpu_cores{{{HOST}}}", table=True),
                    Target(f"densityd_workload_memory_limit_bytes{{{HOST}}}", table=True),
                    Target(f"densityd_workload_recommended_memory_bytes{{{HOST}}}", table=True),
                    Target(f"densityd_workload_overprovisioned_memory_bytes{{{HOST}}}", table=True),
                ],
                w=24,
                h=8,
                transformations=merge_table(
                    {
                        "Value #A": "CPU limit",
                        "Value #B": "CPU recommended",
                        "Value #C": "CPU over-provisioned",
                        "Value #D": "memory limit",
                        "Value #E": "memory recommended",
                        "Value #F": "memory over-provisioned",
                    },
                    hide=("instance", "id"),
                ),
                overrides=[
                    Override("byRegexp", "memory .*", {"unit": "bytes"}),
                    Override("byRegexp", "CPU .*", {"unit": CORES, "decimals": 2}),
                ],
            ),
            Panel(
                "timeseries",
                "Over-provisioned in total",
                "Memory promised beyond the recommendations, summed per kind, over time.",
                [
                    Target(
                        f"sum by (kind) (densityd_workload_overprovisioned_memory_bytes{{{HOST}}})",
                        "{{kind}}",
                    )
                ],
                w=24,
                h=7,
                unit="bytes",
                min=0,
                stack=True,
            ),
        ],
    )


def fleet_rows() -> list[Row]:
    """The panels of the fleet dashboard."""
    totals = Row(
        "Fleet totals",
        [
            Panel(
                "stat",
                "Hosts",
                "Hosts running densityd.",
                [Target(f"count(densityd_build_info{{{HOST}}})", "hosts")],
                w=3,
                h=4,
                decimals=0,
                color_mode="none",
            ),
            Panel(
                "stat",
                "Running workloads",
                "Running containers and VMs on all the hosts.",
                [
                    Target(
                        f'count by (kind) (densityd_workload_info{{{HOST},state="running"}})',
                        "{{kind}}",
                    )
                ],
                w=5,
                h=4,
                decimals=0,
                color_mode="none",
            ),
            Panel(
                "stat",
                "Slots left in the fleet",
                "The sum over hosts of how many more of each profile fit, by the stricter view "
                "(exact for one shape; `densityd plan --prometheus` packs several).",
                [
                    Target(
                        f"sum by (kind, profile) (densityd_plan_remaining{{{HOST}}})",
                        "{{kind}} {{profile}}",
                    )
                ],
                w=8,
                h=4,
                thresholds=SLOTS,
                decimals=0,
            ),
            Panel(
                "stat",
                "Hosts with a source down",
                "Hosts where a source's latest pass failed.",
                [
                    Target(
                        f"count(count by (instance) (densityd_source_up{{{HOST}}} == 0))"
                        " or vector(0)",
                        "hosts",
                    )
                ],
                w=4,
                h=4,
                decimals=0,
                thresholds=ANY,
            ),
            Panel(
                "stat",
                "CPU cores",
                "CPU cores of all the hosts.",
                [Target(f"sum(densityd_host_cpu_cores{{{HOST}}})", "cores")],
                w=4,
                h=4,
                unit=CORES,
                color_mode="none",
            ),
            Panel(
                "stat",
                "Memory",
                "Memory of all the hosts, and what is available for new work.",
                [
                    Target(f"sum(densityd_host_memory_bytes{{{HOST}}})", "total"),
                    Target(f"sum(densityd_host_memory_available_bytes{{{HOST}}})", "available"),
                ],
                w=8,
                h=4,
                unit="bytes",
                color_mode="none",
            ),
            Panel(
                "bargauge",
                "Free CPU in the fleet",
                "Usable CPU not yet used, summed over hosts, per kind and view.",
                [
                    Target(
                        f"sum by (kind, view) (densityd_plan_free_cores{{{HOST}}})",
                        "{{kind}} {{view}}",
                        instant=True,
                    )
                ],
                w=8,
                h=6,
                unit=CORES,
                decimals=1,
            ),
            Panel(
                "bargauge",
                "Free memory and disk in the fleet",
                "Usable memory and data disk not yet used, summed over hosts, per kind and view.",
                [
                    Target(
                        f"sum by (kind, view, resource) (densityd_plan_free_bytes{{{HOST}}})",
                        "{{kind}} {{view}} {{resource}}",
                        instant=True,
                    )
                ],
                w=8,
                h=6,
                unit="bytes",
            ),
        ],
    )
    per_host = Row(
        "Slots left per host",
        [
            Panel(
                "bargauge",
                "Slots left per host",
                "How many more of each profile fit on each host, by the stricter view, and the "
                "resource that binds.",
                [
                    Target(
                        f"densityd_plan_remaining{{{HOST}}}"
                        " * on (instance, job, kind, profile) group_left (resource)"
                        f" densityd_plan_bound{{{HOST}}}",
                        "{{instance}} {{kind}} {{profile}} ({{resource}})",
                        instant=True,
                    )
                ],
                w=12,
                h=10,
                thresholds=SLOTS,
                min=0,
                decimals=0,
            ),
            Panel(
                "table",
                "Slots left per host and view",
                "Each host's answer in each view, and the binding resource.",
                [
                    Target(
                        f"densityd_plan_view_remaining{{{HOST}}}"
                        " * on (instance, job, kind, profile, view) group_left (resource)"
                        f" densityd_plan_view_bound{{{HOST}}}",
                        table=True,
                    )
                ],
                w=12,
                h=10,
                transformations=merge_table(
                    {"Value": "slots left", "resource": "binding resource"}
                ),
            ),
            Panel(
                "timeseries",
                "Slots left over time",
                "How the answers moved.",
                [
                    Target(
                        f"densityd_plan_remaining{{{HOST}}}",
                        "{{instance}} {{kind}} {{profile}}",
                    )
                ],
                w=24,
                h=8,
                min=0,
                decimals=0,
            ),
        ],
    )
    closest = Row(
        "Hosts closest to full",
        [
            Panel(
                "bargauge",
                "Fewest slots left",
                "The 10 host, kind and profile answers with the fewest slots left.",
                [
                    Target(
                        f"bottomk(10, densityd_plan_remaining{{{HOST}}}"
                        " * on (instance, job, kind, profile) group_left (resource)"
                        f" densityd_plan_bound{{{HOST}}})",
                        "{{instance}} {{kind}} {{profile}} ({{resource}})",
                        instant=True,
                    )
                ],
                w=8,
                h=8,
                thresholds=SLOTS,
                min=0,
                decimals=0,
            ),
            Panel(
                "bargauge",
                "Fullest hosts",
                "The 10 highest shares of usable capacity in use in the demand view, per host, "
                "kind and resource.",
                [
                    Target(
                        f'topk(10, densityd_plan_used_cores{{{HOST},view="demand"}}'
                        f" / densityd_plan_usable_cores{{{HOST}}})",
                        "{{instance}} {{kind}} cpu",
                        instant=True,
                    ),
                    Target(
                        f'topk(10, densityd_plan_used_bytes{{{HOST},view="demand"}}'
                        f" / densityd_plan_usable_bytes{{{HOST}}})",
                        "{{instance}} {{kind}} {{resource}}",
                        instant=True,
                    ),
                ],
                w=8,
                h=8,
                unit="percentunit",
                min=0,
                max=1,
                thresholds=SHARE,
            ),
            Panel(
                "bargauge",
                "Soonest full",
                "The 10 hosts that fill first at their demand trend.",
                [
                    Target(
                        f"bottomk(10, densityd_plan_time_to_full_seconds{{{HOST}}})",
                        "{{instance}} {{kind}} {{profile}}",
                        instant=True,
                    )
                ],
                w=8,
                h=8,
                unit="s",
                thresholds=FULL,
                no_value="no host is filling",
            ),
            Panel(
                "table",
                "Hosts by binding resource",
                "How many hosts each resource binds, per kind and profile.",
                [
                    Target(
                        f"count by (kind, profile, resource) (densityd_plan_bound{{{HOST}}})",
                        table=True,
                    )
                ],
                w=24,
                h=6,
                transformations=merge_table({"Value": "hosts", "resource": "binding resource"}),
            ),
        ],
    )
    return [totals, per_host, closest]


def dashboards() -> dict[str, Json]:
    """Every dashboard by file name."""
    return {
        "densityd-host.json": dashboard(
            "densityd-host",
            "densityd / Host",
            "One host's capacity plan, workloads, containers against VMs, and source health.",
            host_rows(),
            multi=False,
        ),
        "densityd-fleet.json": dashboard(
            "densityd-fleet",
            "densityd / Fleet",
            "Slots left per host, the hosts closest to full, and fleet totals.",
            fleet_rows(),
            multi=True,
        ),
    }


def render(document: Json) -> str:
    """A dashboard as the committed file holds it."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboards, or with ``--check`` tell whether the files are up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--directory", type=Path, default=HERE)
    args = parser.parse_args(argv)
    stale = []
    for name, document in dashboards().items():
        path = args.directory / name
        text = render(document)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date (run python grafana/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
