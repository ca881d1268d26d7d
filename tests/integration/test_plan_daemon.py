"""The daemon's planning against the real Docker engine: history recorded at every pass,
``densityd_plan_*`` gauges, ``/api/v1/plan``, and ``densityd plan`` reading the history the
daemon left behind, across a restart."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.integration.backends import Containers, Daemon, Series, promtool, value_of

pytestmark = pytest.mark.integration

HISTORY = "history.sqlite3"


def _remaining(series: Series) -> dict[frozenset[tuple[str, str]], float]:
    return {
        labels: value
        for (name, labels), value in series.items()
        if name == "densityd_plan_remaining"
    }


def _has_container_plan(series: Series) -> bool:
    return any(
        ("kind", "container") in labels and ("profile", "median-container") in labels
        for labels in _remaining(series)
    )


def _wait_until_recorded(daemon: Daemon, workload_id: str) -> None:
    """Wait until a pass holding the workload has been written to the history.

    A pass holds what its sources answered within half an interval, so the first one after a
    start may not hold the container yet; and a pass is served before it is recorded.
    """
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_bytes", id=workload_id) is not None,
        what=f"{workload_id} sampled",
    )
    seen = time.time()
    daemon.wait_for(
        lambda s: (value_of(s, "densityd_history_last_write_timestamp_seconds") or 0) > seen,
        what=f"a pass with {workload_id} recorded",
    )


def test_daemon_records_history_and_exports_the_plan(
    containers: Containers,
    start_daemon: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    containers.run("--memory", "64m", command="exec sleep 3600")
    containers.run(command="exec sleep 3600")
    daemon = start_daemon("--no-libvirt")
    series = daemon.wait_for(_has_container_plan, what="densityd_plan_remaining for containers")
    daemon.wait_for(
        lambda s: value_of(s, "densityd_history_up") == 1.0, what="densityd_history_up 1"
    )

    (labels, value), *_ = (
        (labels, value)
        for labels, value in _remaining(series).items()
        if ("kind", "container") in labels
    )
    assert "bound" not in dict(labels)  # the binding resource is a series of its own
    bound = [
        dict(labels)["resource"]
        for (name, labels), one in series.items()
        if name == "densityd_plan_bound" and ("kind", "container") in labels and one == 1
    ]
    assert len(bound) >= 1 and set(bound) <= {"cpu", "memory", "disk"}, bound
    assert value >= 0 and value == int(value)
    for family in ("densityd_plan_usable_bytes", "densityd_plan_free_bytes"):
        usable = value_of(series, family, kind="container", view="demand", resource="memory")
        assert usable is not None and usable > 0, family
    assert (tmp_path / "state" / HISTORY).exists()

    text = daemon.metrics_text()
    check = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_plan_api_answers_like_the_cli_schema(
    containers: Containers, start_daemon: Callable[..., Daemon]
) -> None:
    containers.run(command="exec sleep 3600")
    daemon = start_daemon("--no-libvirt")
    daemon.wait_for(_has_container_plan, what="a first plan")

    response = requests.get(
        f"{daemon.url}/api/v1/plan",
        params={"profile": "web=cpu=0.5,memory=256Mi,disk=1Gi", "kind": "container"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["schema"] == "densityd.plan/v1"
    kinds_views = {(a["kind"], a["view"]) for a in document["answers"]}
    assert kinds_views == {("container", "demand"), ("container", "allocation")}
    assert {a["profile"] for a in document["answers"]} == {"web"}
    memory = document["answers"][0]["cost"]["memory_bytes"]
    assert memory >= 256 * 1024 * 1024  # the profile plus the shim

    compared = requests.get(
        f"{daemon.url}/api/v1/plan",
        params={"profile": "cpu=0.5,memory=256Mi", "compare": "1"},
        timeout=10,
    ).json()
    assert compared["comparison"]["container_remaining"] >= compared["comparison"]["vm_remaining"]

    for params, named in (
        ({"profile": "cpu=0.5,memory=12Qi"}, "memory"),
        ({"kind": "pod"}, "kind"),
        ({"like": "no-such-workload"}, "no-such-workload"),
        ({"bogus": "1"}, "bogus"),
    ):
        bad = requests.get(f"{daemon.url}/api/v1/plan", params=params, timeout=10)
        assert bad.status_code == 400, (params, bad.text)
        assert named in bad.json()["error"]


def test_cli_plan_reads_the_history_the_daemon_left_across_a_restart(
    containers: Containers, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    name_id = containers.run(command="exec sleep 3600")
    daemon = start_daemon("--no-libvirt")
    daemon.wait_for(_has_container_plan, what="a first plan")
    _wait_until_recorded(daemon, name_id)
    assert daemon.stop() == 0
    database = tmp_path / "state" / HISTORY
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    restarted = start_daemon("--no-libvirt")
    _wait_until_recorded(restarted, name_id)
    assert restarted.stop() == 0

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "densityd",
            "plan",
            "-o",
            "json",
            "--no-libvirt",
            "--state-dir",
            str(tmp_path / "state"),
            "--like",
            name_id[:12],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["host"]["history_seconds"] > 0, document["host"]
    assert not any("no local history" in note for note in document["assumptions"]["notes"])
    assert {a["kind"] for a in document["answers"]} == {"container"}
