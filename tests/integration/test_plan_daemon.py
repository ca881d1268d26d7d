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

import bcrypt
import pytest
import requests

from tests.integration.backends import (
    Containers,
    Daemon,
    Series,
    free_port,
    promtool,
    value_of,
)

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


def run_plan(*args: str) -> subprocess.CompletedProcess[str]:
    """``densityd plan`` as a user runs it, with the given flags."""
    return subprocess.run(
        [sys.executable, "-m", "densityd", "plan", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_plan_is_the_running_daemons_answer_when_it_plans_alike(
    containers: Containers, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Where a daemon runs with the command's settings, ``densityd plan`` prints its answer
    (and says so) instead of sampling; with other settings, another history, ``--no-daemon``
    or no daemon on the port, it samples here, saying why when a daemon did answer."""
    name_id = containers.run(command="exec sleep 3600")
    daemon = start_daemon("--no-libvirt", "--target-fill", "0.8")
    daemon.wait_for(_has_container_plan, what="a first plan")
    _wait_until_recorded(daemon, name_id)
    port = daemon.url.rsplit(":", 1)[1]
    common = ("--listen-address", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state"))
    same = (*common, "--no-libvirt", "--target-fill", "0.8")
    profiles = ("--profile", "small=cpu=0.25,memory=64Mi", "--profile", "big=cpu=1,memory=1Gi")

    asked = run_plan("-o", "json", *same, *profiles)
    assert asked.returncode == 0, asked.stderr
    assert f"answered by the daemon at http://127.0.0.1:{port}" in asked.stderr, asked.stderr
    document = json.loads(asked.stdout)
    assert document["source"] == {"daemon": f"http://127.0.0.1:{port}"}
    assert document["host"]["history_file"] == str((tmp_path / "state" / HISTORY).absolute())
    # The daemon's own answers, both profiles, as /api/v1/plan gives them.
    served = [
        requests.get(
            f"{daemon.url}/api/v1/plan", params={"profile": profile, "view": "both"}, timeout=10
        ).json()["answers"]
        for profile in profiles[1::2]
    ]
    expected = [(a["profile"], a["view"], a["remaining"]) for answers in served for a in answers]
    got = [(a["profile"], a["view"], a["remaining"]) for a in document["answers"]]
    assert got == expected
    assert {a["profile"] for a in document["answers"]} == {"small", "big"}

    table = run_plan(*same, "--like", name_id[:12])
    assert table.returncode == 0, table.stderr
    assert "answered by the daemon" in table.stderr
    assert "Plan for host" in table.stdout

    rejected = run_plan(*same, "--like", "no-such-workload")
    assert rejected.returncode == 2
    assert "no-such-workload" in rejected.stderr

    for flags, why in (
        ((*common, "--no-libvirt"), "plans with other settings (target_fill): sampling here"),
        (
            ("--listen-address", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "other")),
            "plans with other settings (history_file, sources, target_fill): sampling here",
        ),
        ((*same, "--no-daemon"), None),
        (("--listen-address", f"127.0.0.1:{free_port()}", "--no-libvirt", *common[2:]), None),
    ):
        sampled = run_plan("-o", "json", *flags)
        assert sampled.returncode == 0, (flags, sampled.stderr)
        if why is None:
            assert "densityd plan:" not in sampled.stderr, (flags, sampled.stderr)
        else:
            assert why in sampled.stderr, (flags, sampled.stderr)
        assert "source" not in json.loads(sampled.stdout), flags


def test_cli_plan_samples_when_the_daemon_asks_for_basic_auth(
    containers: Containers, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """The command has no password to give: it says so and samples (/api/v1/plan is not
    asked without credentials)."""
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users: {{prometheus: '{hashed}'}}\n")
    daemon = start_daemon("--no-libvirt", "--web-config-file", str(web))
    port = daemon.url.rsplit(":", 1)[1]
    flags = ("--listen-address", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state"))
    result = run_plan("-o", "json", *flags, "--no-libvirt", "--web-config-file", str(web))
    assert result.returncode == 0, result.stderr
    assert f"the daemon at http://127.0.0.1:{port} asks for basic auth: sampling here" in (
        result.stderr
    )
    assert "source" not in json.loads(result.stdout)
