"""The Grafana dashboards in grafana/: well-formed, on densityd's own metrics, valid PromQL.

No Grafana server can run here, so the checks are the ones Grafana would otherwise make on
import (ids, layout, variables) plus PromQL syntax through ``promtool check rules``; that each
query returns data is tests/integration/test_dashboards_prometheus.py's job.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from tests import paths

ROOT = paths.ROOT
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = ("densityd-host.json", "densityd-fleet.json")
README = (ROOT / "README.md").read_text()
# Grafana's own variables the panels use, with values that suit a 1 s scrape interval.
GLOBALS = {"__rate_interval": "5s", "__interval": "1s", "__range": "1m"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
METRIC = re.compile(r"\b(densityd_\w+)")


@dataclass(frozen=True)
class Query:
    """One target of one panel."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def where(self) -> str:
        """The query's place, for failure messages."""
        return f"{self.dashboard} / {self.panel!r} / {self.ref_id}: {self.expr}"


def load(name: str) -> dict[str, Any]:
    """A committed dashboard."""
    document: dict[str, Any] = json.loads((GRAFANA / name).read_text())
    return document


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and panels inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(name: str) -> list[Query]:
    """Every target of every panel of a dashboard."""
    return [
        Query(name, panel["title"], target["refId"], target["expr"])
        for panel in panels(load(name))
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with its ``$name`` / ``${name}`` variables replaced as Grafana would."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        known = {**GLOBALS, **values}
        if name not in known:
            raise KeyError(f"no value for ${name} in {expr}")
        return known[name]

    return VARIABLE.sub(value, expr)


def documented_metrics() -> set[str]:
    """The metric names in the README's metric table."""
    return set(re.findall(r"^\| `(densityd_\w+)", README, re.MULTILINE))


def promtool() -> str:
    """promtool's path; skip without it, unless CI demands every backend."""
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool is not installed (Debian package prometheus)"
        if os.environ.get("DENSITYD_REQUIRE_BACKENDS") == "1":
            pytest.fail(f"backend required but missing: {reason}")
        pytest.skip(reason)
    assert path is not None
    return path


def generator() -> ModuleType:
    """grafana/generate.py as a module."""
    spec = importlib.util.spec_from_file_location("densityd_grafana", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: its dataclasses look their module up while being created.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_committed_json_is_what_the_generator_writes(tmp_path: Path) -> None:
    module = generator()
    assert sorted(module.dashboards()) == sorted(DASHBOARD_FILES)
    assert module.main(["--check"]) == 0, "run python grafana/generate.py"
    assert module.main(["--check", "--directory", str(tmp_path)]) == 1
    module.main(["--directory", str(tmp_path)])
    for name in DASHBOARD_FILES:
        assert (tmp_path / name).read_text() == (GRAFANA / name).read_text()


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_field_is_one_of_grafanas_dashboard_schema(name: str) -> None:
    """Decoded by grafana-foundation-sdk's typed models of Grafana's schema and encoded back,
    the committed file is unchanged: a field the schema does not know would be dropped."""
    plugins.register_default_plugins()
    document = load(name)
    document.pop("__requires")  # import metadata, not part of the dashboard model
    decoded = model.Dashboard.from_json(document)
    assert json.loads(json.dumps(decoded, cls=JSONEncoder)) == document


def test_the_schema_check_can_fail() -> None:
    """A panel key Grafana does not know does not survive the round trip."""
    plugins.register_default_plugins()
    document = load("densityd-host.json")
    document.pop("__requires")
    document["panels"][1]["colour"] = "red"
    decoded = model.Dashboard.from_json(document)
    assert json.loads(json.dumps(decoded, cls=JSONEncoder)) != document


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_has_a_prometheus_datasource_and_a_host_variable(name: str) -> None:
    dashboard = load(name)
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == name.removesuffix(".json")
    assert "densityd" in dashboard["tags"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    instance = variables["instance"]
    assert instance["type"] == "query"
    assert instance["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert instance["query"]["query"] == "label_values(densityd_build_info, instance)"
    assert instance["multi"] is (name == "densityd-fleet.json")


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_panel_queries_the_datasource_variable_for_the_chosen_hosts(name: str) -> None:
    found = [p for p in panels(load(name)) if p["type"] != "row"]
    assert len(found) >= 10
    for panel in found:
        title = panel["title"]
        assert title and panel["description"], panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["fieldConfig"]["defaults"]["unit"], title
        assert panel["targets"], title
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], title
            expr = target["expr"]
            assert expr.strip(), title
            # Every selector of a densityd metric is narrowed to the chosen hosts.
            for metric in METRIC.finditer(expr):
                rest = expr[metric.end() :]
                assert rest.startswith('{instance=~"$instance"'), (title, expr)


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panel_ids_are_unique_and_panels_do_not_overlap(name: str) -> None:
    found = list(panels(load(name)))
    ids = [p["id"] for p in found]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in found:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_metric_is_one_densityd_exports(name: str) -> None:
    documented = documented_metrics()
    assert len(documented) > 40
    used: set[str] = set()
    for query in queries(name):
        names = set(METRIC.findall(query.expr))
        assert names, query.where()
        assert names <= documented, f"not in the README's table: {query.where()}"
        used |= names
    assert len(used) >= 10


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_variable_used_is_defined(name: str) -> None:
    dashboard = load(name)
    defined = {v["name"] for v in dashboard["templating"]["list"]} | set(GLOBALS)
    text = json.dumps(dashboard["panels"]) + json.dumps(dashboard["templating"])
    used = {a or b for a, b in VARIABLE.findall(text)}
    # ${__field.labels.version} is a display name, not a query variable.
    used -= {"__field"}
    assert used and used <= defined, used - defined


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool has no PromQL check of its own: the queries go in as recording rules."""
    binary = promtool()
    found = [q for name in DASHBOARD_FILES for q in queries(name)]
    rules = [
        {
            "record": f"dashboard:query_{index}",
            "expr": substitute(q.expr, {"instance": "host-a:9847", "datasource": "prometheus"}),
        }
        for index, q in enumerate(found)
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run(
        [binary, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_a_broken_query_fails_the_promql_check(tmp_path: Path) -> None:
    """The check above can fail: promtool rejects a query with a syntax error."""
    binary = promtool()
    path = tmp_path / "broken.rules.yml"
    rule = {"record": "dashboard:broken", "expr": "sum by (kind (densityd_build_info)"}
    path.write_text(json.dumps({"groups": [{"name": "broken", "rules": [rule]}]}))
    done = subprocess.run([binary, "check", "rules", str(path)], capture_output=True, timeout=60)
    assert done.returncode != 0


def test_substitute_replaces_both_forms_and_refuses_unknown_variables() -> None:
    assert substitute('x{a=~"$instance"}[$__rate_interval]', {"instance": "h:1"}) == (
        'x{a=~"h:1"}[5s]'
    )
    assert substitute("${datasource}", {"datasource": "p"}) == "p"
    with pytest.raises(KeyError):
        substitute("$nope", {})
