"""Fleet planning through a real Prometheus scraping three real densityd daemons.

Debian's ``prometheus`` runs on a loopback port with its own config and a temporary TSDB,
scraping every second three daemons on loopback ports, each declaring a different memory
capacity. They all see this machine's Docker engine, so each is scoped to this test's
containers. ``densityd plan --prometheus`` must then answer, per host, what that daemon's own
``/api/v1/plan`` answers (within one slot: the two read the same data a moment apart), and
the fleet's total must be the sum of the hosts'.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from densityd.plan.inputs.promql import FleetQuery, Queries
from tests.integration.backends import Containers, Daemon, PrometheusServer, free_port

pytestmark = pytest.mark.integration

JOB = "densityd-fleet"
PROFILE = "web=cpu=0.1,memory=128Mi"
CAPACITIES = ("2Gi", "3Gi", "4Gi")
WINDOW = "5m"
RATE_INTERVAL = "5s"


def plan(*args: str) -> subprocess.CompletedProcess[str]:
    """``densityd plan ARGS`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "densityd", "plan", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def fleet_plan(prometheus: PrometheusServer, *args: str) -> dict[str, Any]:
    """The fleet plan's JSON document."""
    done = plan(
        "--prometheus",
        prometheus.url,
        "--selector",
        f'{{job="{JOB}"}}',
        "--window",
        WINDOW,
        "--rate-interval",
        RATE_INTERVAL,
        "-o",
        "json",
        *args,
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def local_plan(daemon: Daemon) -> dict[str, Any]:
    """The daemon's own headline answer and per-view answers for the profile, as containers."""
    response = requests.get(
        f"{daemon.url}/api/v1/plan", params={"profile": PROFILE, "kind": "container"}, timeout=10
    )
    response.raise_for_status()
    answers = response.json()["answers"]
    headline = next(a for a in answers if a["headline"])
    return {
        "remaining": headline["remaining"],
        "by_view": {a["view"]: a["remaining"] for a in answers},
    }


def wait_for_history(prometheus: PrometheusServer, scope: str, expected: int) -> None:
    """Until Prometheus holds a CPU percentile for every in-scope workload on every host."""
    query = FleetQuery(
        selector=f'{{job="{JOB}",name=~"{scope}"}}', window_seconds=300, rate_interval_seconds=5
    )
    promql = Queries(query).cpu_percentile
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = prometheus.query(promql)
        basis = prometheus.query(f'densityd_plan_capacity_cores{{job="{JOB}"}}')
        if len(found) >= expected and len(basis) >= 2 * len(CAPACITIES):
            return
        time.sleep(0.5)
    raise AssertionError(f"only {len(found)} of {expected} CPU percentiles in Prometheus")


def test_each_hosts_fleet_answer_is_its_own_plan_and_the_total_their_sum(
    containers: Containers,
    start_daemon: Callable[..., Daemon],
    start_prometheus: Callable[[Sequence[str]], PrometheusServer],
    tmp_path: Path,
) -> None:
    prefix = f"densityd-fleet-{uuid.uuid4().hex[:6]}"
    containers.run(name=f"{prefix}-idle", command="exec sleep 3600")
    containers.run("--memory", "96m", name=f"{prefix}-limited", command="exec sleep 3600")
    containers.run(
        "--tmpfs",
        "/data:size=100m",
        name=f"{prefix}-filled",
        command="dd if=/dev/zero of=/data/x bs=1M count=40 && exec sleep 3600",
    )
    daemons = [
        start_daemon(
            "--no-libvirt",
            "--capacity",
            f"memory={memory}",
            "--scope",
            f"{prefix}-*",
            "--state-dir",
            str(tmp_path / f"state-{memory}"),
        )
        for memory in CAPACITIES
    ]
    prometheus = start_prometheus([d.url.removeprefix("http://") for d in daemons])
    wait_for_history(prometheus, f"{prefix}-.*", expected=3 * len(daemons))

    document = fleet_plan(prometheus, "--profile", PROFILE, "--kind", "container")
    locals_ = {d.url.removeprefix("http://"): local_plan(d) for d in daemons}

    assert document["schema"] == "densityd.fleet-plan/v1"
    assert document["fleet"]["hosts"] == len(daemons)
    assert document["fleet"]["workloads"] == {"container": 3 * len(daemons), "vm": 0}
    hosts = {h["host"]: h for h in document["hosts"]}
    assert set(hosts) == set(locals_)
    for name, local in locals_.items():
        host = hosts[name]
        assert abs(host["remaining"] - local["remaining"]) <= 1, (name, host, local)
        for view, remaining in local["by_view"].items():
            assert abs(host["by_view"][view]["remaining"] - remaining) <= 1, (name, view)
        assert host["declared"] == ["memory"] and host["scope"] == [f"{prefix}-*"]
    (answer,) = document["answers"]
    assert answer["remaining"] == sum(h["remaining"] for h in hosts.values())
    assert abs(answer["remaining"] - sum(local["remaining"] for local in locals_.values())) <= 3
    # The declared capacities differ, and so do the answers: more memory, more slots.
    by_capacity = [hosts[d.url.removeprefix("http://")]["remaining"] for d in daemons]
    assert by_capacity == sorted(by_capacity) and by_capacity[0] < by_capacity[-1]

    # Without subqueries (range queries, the percentile computed locally): the same answers.
    ranged = fleet_plan(prometheus, "--profile", PROFILE, "--kind", "container", "--no-subqueries")
    assert ranged["fleet"]["subqueries"] is False
    for host in ranged["hosts"]:
        assert abs(host["remaining"] - hosts[host["host"]]["remaining"]) <= 1

    # Two shapes packed together, with new hosts for the overflow.
    packed = fleet_plan(
        prometheus,
        "--profile",
        PROFILE,
        "--profile",
        "db=cpu=0.25,memory=512Mi",
        "--count",
        "web=12",
        "--count",
        "db=4",
        "--new-host",
        "cpu=2,memory=2Gi,disk=10Gi",
    )
    packing = packed["packing"]
    for shape in packing["shapes"]:
        assert shape["placed"] + shape["placed_new"] + shape["unplaced"] == shape["requested"]
    for placement in packing["placements"]:
        # No host takes more web copies than it has room for on its own.
        assert placement["counts"].get("web", 0) <= hosts[placement["host"]]["remaining"]
    assert packing["new_hosts_needed"] == len(packing["new_hosts"])
    assert packing["gap"] == packing["new_hosts_needed"] - packing["lower_bound"] >= 0

    table = plan("--prometheus", prometheus.url, "--window", WINDOW, "--profile", PROFILE)
    assert table.returncode == 0, table.stderr
    assert f"Fleet plan for {len(daemons)} hosts from {prometheus.url}" in table.stdout
    assert "container web: " in table.stdout and f"more on {len(daemons)} hosts" in table.stdout


def test_a_selector_that_matches_nothing_names_the_metrics(
    start_prometheus: Callable[[Sequence[str]], PrometheusServer],
) -> None:
    prometheus = start_prometheus([f"127.0.0.1:{free_port()}"])
    done = plan("--prometheus", prometheus.url, "--selector", '{job="no-such-job"}')
    assert done.returncode == 2, done.stdout + done.stderr
    assert "densityd_plan_capacity_cores" in done.stderr
    assert "densityd_workload_info" in done.stderr
    assert prometheus.url in done.stderr and 'job="no-such-job"' in done.stderr
    assert done.stdout == ""

    bad = plan("--prometheus", prometheus.url, "--selector", '{job=~"("}')
    assert bad.returncode == 2
    assert "rejected the query (HTTP 400, bad_data)" in bad.stderr


def test_an_unreachable_prometheus_exits_1_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = plan("--prometheus", url, "--prometheus-timeout", "5")
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == f"densityd plan: cannot reach Prometheus at {url}: Connection refused"
    )


def test_packing_works_on_this_hosts_own_data(tmp_path: Path) -> None:
    done = plan(
        "--no-libvirt",
        "--state-dir",
        str(tmp_path),
        "--capacity",
        "memory=2Gi",
        "--profile",
        PROFILE,
        "--profile",
        "db=memory=512Mi",
        "--count",
        "web=30",
        "--count",
        "db=2",
        "--new-host",
        "cpu=2,memory=2Gi,disk=10Gi",
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["schema"] == "densityd.plan/v1"
    assert {a["profile"] for a in document["answers"]} == {"web", "db"}
    packing = document["packing"]
    assert len(packing["placements"]) <= 1
    shapes = {s["name"]: s for s in packing["shapes"]}
    # 30 web of 141 MiB and 2 db of 525 MiB do not fit in 2 GiB less the reserve.
    assert shapes["web"]["placed_new"] + shapes["db"]["placed_new"] > 0
    assert packing["new_hosts_needed"] >= packing["lower_bound"] >= 1
