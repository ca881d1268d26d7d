"""The plan flags as ``/api/v1/plan`` queries, and the settings a daemon's answer must match.

The daemon side (``web.plan_request_from_query``) parses each query back: a round trip
through both halves shows the command asks exactly what its flags say."""

from __future__ import annotations

from densityd.config import load_settings
from densityd.plan.inputs.daemon import configured, plan_queries
from densityd.serve.web import plan_request_from_query


def test_each_profile_is_one_query_that_the_daemon_reads_back() -> None:
    queries = plan_queries(
        ["web=cpu=0.5,memory=512Mi", "db=cpu=2,memory=8Gi"],
        None,
        "vm",
        compare=False,
        view="demand",
    )
    assert len(queries) == 2
    requests = [plan_request_from_query(query) for query in queries]
    assert [r.profile.name if r.profile else None for r in requests] == ["web", "db"]
    assert {str(r.kind) for r in requests} == {"vm"}
    assert all([str(v) for v in r.views] == ["demand"] for r in requests)


def test_like_and_compare_without_a_profile_are_one_query() -> None:
    (query,) = plan_queries([], "web-1", None, compare=True, view="both")
    request = plan_request_from_query(query)
    assert request.like == "web-1"
    assert request.compare
    assert request.profile is None
    assert len(request.views) == 2


def test_the_configured_settings_name_what_a_user_sets() -> None:
    mine = configured(load_settings({"target_fill": 0.8, "capacity": "cpu=8,disk=1Ti"}, None))
    assert mine["target_fill"] == 0.8
    # A declared disk is compared by name only: the document does not carry its size.
    assert mine["declared"] == {"cpu": 8.0, "disk": None}
    assert mine["sources"] == ["docker", "libvirt"]
    assert mine["scope"] == "all workloads"
