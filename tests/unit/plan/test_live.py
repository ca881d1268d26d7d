"""The daemon's running plan: gauges per pass, and ``/api/v1/plan`` through the WSGI app."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client.parser import text_string_to_metric_families

from densityd.collect.sampler import SnapshotHolder
from densityd.config import load_settings
from densityd.model import Snapshot, SourceStatus, WorkloadKind
from densityd.plan.live import LivePlan
from densityd.plan.request import PlanRequest
from densityd.serve.exporter import Exposition, render
from densityd.serve.web import WSGIApp, make_app
from tests.unit.plan.inputs.test_local import DIRS, container, snapshot, vm

MIB = 1024 * 1024


def live_plan(**flags: object) -> LivePlan:
    settings = load_settings({"state_dir": Path("/nonexistent"), **flags})
    return LivePlan(settings, data_dirs=lambda: DIRS, store=lambda: None)


def samples(plan: LivePlan) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = render(None, extra=[plan]).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_default_profiles_are_each_kinds_median() -> None:
    plan = live_plan()
    plan.update(snapshot(container("web", 100 * MIB), vm("db")))
    found = samples(plan)
    remaining = {
        dict(labels)["kind"]: (dict(labels), v)
        for (n, labels), v in found.items()
        if n == "densityd_plan_remaining"
    }
    assert set(remaining) == {"container", "vm"}
    assert remaining["container"][0]["profile"] == "median-container"
    assert remaining["vm"][0]["profile"] == "median-vm"
    # The binding resource is a series of its own: the value series has no label that moves.
    assert set(remaining["container"][0]) == {"kind", "profile"}
    bound = [dict(labels) for (n, labels), v in found.items() if n == "densityd_plan_bound"]
    assert {b["kind"] for b in bound} == {"container", "vm"}
    assert all(b["resource"] in {"cpu", "memory", "disk"} for b in bound)
    assert all(v == 1 for (n, _), v in found.items() if n.endswith("_bound"))
    views = {dict(labels)["view"] for (n, labels) in found if n == "densityd_plan_view_remaining"}
    assert views == {"demand", "allocation"}
    view_bound = {dict(labels)["view"] for (n, labels) in found if n == "densityd_plan_view_bound"}
    assert view_bound == {"demand", "allocation"}
    usable = [
        v
        for (n, labels), v in found.items()
        if n == "densityd_plan_usable_bytes" and ("resource", "memory") in labels
    ]
    assert len(usable) == 4 and all(v > 0 for v in usable)  # 2 kinds x 2 views


def test_configured_profiles_are_planned_as_both_kinds() -> None:
    plan = live_plan(plan_profiles=["web=cpu=0.5,memory=256Mi", "db=cpu=2,memory=4Gi"])
    plan.update(snapshot(container("web", 100 * MIB)))
    keys = {
        (dict(labels)["kind"], dict(labels)["profile"])
        for (n, labels) in samples(plan)
        if n == "densityd_plan_remaining"
    }
    assert keys == {(k, p) for k in ("container", "vm") for p in ("web", "db")}


def test_before_a_pass_no_plan_series() -> None:
    found = samples(live_plan())
    assert not [n for (n, _) in found if n.startswith("densityd_plan_")]


def test_a_failing_plan_leaves_the_gauges_empty_and_does_not_raise() -> None:
    plan = live_plan()
    plan.update(snapshot(container("web", 100 * MIB)))
    broken = snapshot(container("web", 100 * MIB))
    object.__setattr__(broken, "host", None)  # nothing to plan against
    plan.update(broken)
    assert not [n for (n, _) in samples(plan) if n == "densityd_plan_remaining"]


def test_guest_os_measured_without_a_reporting_vm_is_said_once_not_at_every_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = live_plan(guest_os="measured")
    caplog.set_level(logging.INFO, logger="densityd.plan")
    for _ in range(3):
        plan.update(snapshot(container("web", 100 * MIB), vm("db")))  # no guest memory
    assert not [n for (n, _) in samples(plan) if n == "densityd_plan_remaining"]
    lines = [r for r in caplog.records if r.name == "densityd.plan"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING, lines
    assert "guest_os" in lines[0].getMessage() or "guest-os" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)  # no traceback


def call(app: WSGIApp, path: str, query: str = "") -> tuple[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": query}
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = status

    body = b"".join(app(environ, start_response))
    return captured["status"], json.loads(body)


@pytest.fixture
def plan_app() -> tuple[WSGIApp, LivePlan]:
    holder = SnapshotHolder()
    plan = live_plan()
    return make_app(Exposition(holder), holder, max_age=60.0, plan=plan), plan


def test_api_before_the_first_pass_is_503(plan_app: tuple[WSGIApp, LivePlan]) -> None:
    app, _ = plan_app
    status, body = call(app, "/api/v1/plan")
    assert status.startswith("503") and "pass" in body["error"]


def test_api_answers_a_profile_for_a_kind(plan_app: tuple[WSGIApp, LivePlan]) -> None:
    app, plan = plan_app
    plan.update(snapshot(container("web", 100 * MIB), vm("db")))
    status, body = call(
        app, "/api/v1/plan", "profile=cpu%3D0.5%2Cmemory%3D256Mi&kind=vm&view=demand"
    )
    assert status.startswith("200"), body
    assert body["schema"] == "densityd.plan/v1"
    assert [(a["kind"], a["view"]) for a in body["answers"]] == [("vm", "demand")]
    status, body = call(app, "/api/v1/plan", "like=web&compare=true")
    assert status.startswith("200"), body
    assert body["comparison"]["container_remaining"] >= body["comparison"]["vm_remaining"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("profile=cpu%3Dlots", "cpu"),
        ("kind=pod", "kind"),
        ("view=best", "view"),
        ("like=ghost", "ghost"),
        ("profile=cpu%3D1&like=web", "not both"),
        ("colour=red", "colour"),
    ],
)
def test_api_bad_requests_are_400_naming_the_part(
    plan_app: tuple[WSGIApp, LivePlan], query: str, named: str
) -> None:
    app, plan = plan_app
    plan.update(snapshot(container("web", 100 * MIB)))
    status, body = call(app, "/api/v1/plan", query)
    assert status.startswith("400"), body
    assert named in body["error"]


def test_kinds_are_the_label_values() -> None:
    assert [str(k) for k in WorkloadKind] == ["container", "vm"]


def _pass(at: float, up: bool) -> Snapshot:
    """A pass of a host with two 512 MiB-limited containers, Docker up or missing its pass."""
    limited = [
        container(name, 100 * MIB, memory_limit_bytes=512 * MIB, cpu_limit_cores=1.0)
        for name in ("web", "db")
    ]
    taken = snapshot(*(limited if up else ()), timestamp=at)
    status = SourceStatus("docker", up, 0.01, 0, at if up else None, "" if up else "deadline")
    return dataclasses.replace(taken, sources=(status,))


def _plan_series(plan: LivePlan) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for (name, labels), value in samples(plan).items():
        found.setdefault(name, {})[labels] = value
    return found


def test_a_missed_docker_pass_keeps_the_plan_and_a_long_outage_withholds_it() -> None:
    """Issue 12: one missed pass dropped every container's limits (allocation 2 -> 14 slots)."""
    plan = live_plan(interval=15, plan_profiles=["web=cpu=1,memory=512Mi"])
    plan.update(_pass(1000.0, up=True))
    before = _plan_series(plan)
    assert before["densityd_plan_view_remaining"]
    plan.update(_pass(1015.0, up=False))  # one pass missed its deadline
    during = _plan_series(plan)
    for family in ("densityd_plan_remaining", "densityd_plan_view_remaining"):
        assert during[family] == before[family], family
    assert during["densityd_plan_workloads_age_seconds"] == {
        frozenset({("source", "docker")}): 15.0
    }
    assert during["densityd_plan_withheld"] == {frozenset(): 0.0}
    document = plan.document(PlanRequest(kind=WorkloadKind.CONTAINER))
    assert document is not None
    notes = document["assumptions"]["notes"]
    assert any("docker missed its latest pass(es)" in note for note in notes), notes
    assert not any("their workloads are missing" in note for note in notes), notes

    plan.update(_pass(1000.0 + 4 * 15, up=False))  # down past 3 intervals: no guess
    after = _plan_series(plan)
    assert "densityd_plan_remaining" not in after and "densityd_plan_bound" not in after
    assert "densityd_plan_capacity_bytes" not in after  # the fleet path plans nothing from it
    assert after["densityd_plan_withheld"] == {frozenset(): 1.0}

    plan.update(_pass(1090.0, up=True))  # back: published again, fresh
    back = _plan_series(plan)
    assert back["densityd_plan_remaining"] == before["densityd_plan_remaining"]
    assert back["densityd_plan_withheld"] == {frozenset(): 0.0}
    assert back["densityd_plan_workloads_age_seconds"] == {frozenset({("source", "docker")}): 0.0}


def test_following_the_history_plans_as_reading_it_whole(tmp_path: Path) -> None:
    """Issue 16: the live plan follows the history in memory; every pass's series and
    documents equal those of a plan that reads the whole history at that pass."""
    from densityd.history.schema import DAY, HOUR
    from densityd.history.store import HistoryStore
    from tests.unit.history.test_window import STEP, T0, Run
    from tests.unit.plan.inputs.test_local import host

    run = Run(seed=12)
    for _ in range(5):
        run.add()
    run.add(WorkloadKind.VM)
    run.add(WorkloadKind.VM)
    with HistoryStore.open(tmp_path, raw_seconds=HOUR, retention_seconds=2 * DAY) as store:
        plans = [
            LivePlan(
                load_settings({"state_dir": tmp_path, "interval": STEP, **flags}),
                data_dirs=lambda: DIRS,
                store=lambda: store,
                follow_history=follow,
            )
            for flags in ({}, {"window": "1h", "plan_profiles": ["small=cpu=0.5,memory=256Mi"]})
            for follow in (True, False)
        ]
        ts = float(T0)
        for step in range(100):  # past the end of an hour and of a day, with prunes
            if step % 17 == 3:
                run.add(run.rng.choice(list(WorkloadKind)))
            if step % 23 == 7:
                del run.workloads[run.rng.choice(sorted(run.workloads))]
            if step % 29 == 5:
                wid = run.rng.choice(sorted(run.workloads))
                w = run.workloads[wid]
                run.workloads[wid] = dataclasses.replace(
                    w, name=w.name + "-x", cpu_limit_cores=2.0, memory_limit_bytes=1 << 30
                )
            taken = dataclasses.replace(run.snapshot(ts), host=host())
            docker_up = step % 41 not in (20, 21)  # Docker misses two passes now and then
            status = SourceStatus("docker", docker_up, 0.01, 0, ts if docker_up else None)
            if not docker_up:
                taken = dataclasses.replace(
                    taken, workloads=tuple(w for w in taken.workloads if w.kind is WorkloadKind.VM)
                )
            taken = dataclasses.replace(taken, sources=(status,))
            store.record(taken)
            if step % 20 == 19:
                store.maintain(ts)
            for plan in plans:
                plan.update(taken)
            for followed, whole in (plans[0:2], plans[2:4]):
                assert samples(followed) == samples(whole), step
                for request in (PlanRequest(), PlanRequest(compare=True)):
                    assert followed.document(request) == whole.document(request), step
            ts += STEP
        assert store.changes().rewrites > 0  # prunes happened
        assert (
            samples(plans[0])[
                "densityd_plan_remaining",
                frozenset({("kind", "container"), ("profile", "median-container")}),
            ]
            >= 0
        )
