"""Container labels: only allowlisted keys are read, and environment variables never are.

Drives ``DockerSource`` over a recorded inspect document (``inspect-20.10.json``) given a
secret environment variable and labels, through a stand-in for the SDK's ``APIClient`` that
answers the calls one pass makes (the real engine is covered by
``tests/integration/test_hostile_names.py``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from densityd.collect.sources.docker import DockerSource, _EngineInfo, allowlisted_labels
from tests import paths

FIXTURES = paths.FIXTURES / "docker"
SECRET = "hunter2"


def test_allowlisted_labels_keep_allowlist_order_and_fill_missing_keys() -> None:
    labels = {"team": "a", "secret": SECRET, "tier": "web"}
    assert allowlisted_labels(labels, ["tier", "team", "owner"]) == (
        ("tier", "web"),
        ("team", "a"),
        ("owner", ""),
    )
    assert allowlisted_labels(None, ["team"]) == (("team", ""),)
    assert allowlisted_labels(labels, []) == ()


class FakeClient:
    """Answers ``containers``, ``inspect_container``, ``stats`` and ``events`` from fixtures."""

    def __init__(self, inspect: dict[str, Any], stats: dict[str, Any]) -> None:
        self.inspect = inspect
        self.stats_document = stats

    def containers(self, **_kwargs: bool) -> list[dict[str, Any]]:
        return [
            {
                "Id": self.inspect["Id"],
                "Names": [self.inspect["Name"]],
                "Image": self.inspect["Config"]["Image"],
                "State": "running",
                "Labels": self.inspect["Config"]["Labels"],
            }
        ]

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        assert container_id == self.inspect["Id"]
        return self.inspect

    def stats(self, container_id: str, stream: bool, one_shot: bool = False) -> dict[str, Any]:
        return self.stats_document

    def events(self, **_kwargs: Any) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        pass


def source_over(labels: dict[str, str], allowlist: list[str]) -> DockerSource:
    inspect = copy.deepcopy(json.loads((FIXTURES / "inspect-20.10.json").read_text())[0])
    inspect["Config"]["Env"] = [f"SECRET={SECRET}", "PATH=/usr/bin"]
    inspect["Config"]["Labels"] = labels
    stats = json.loads((FIXTURES / "stats-v1-20.10.json").read_text())
    return fake_source(inspect, stats, label_allowlist=allowlist)


def fake_source(inspect: dict[str, Any], stats: dict[str, Any], **options: Any) -> DockerSource:
    """A Docker source on the stats API path whose engine answers ``inspect`` and ``stats``."""
    source = DockerSource(
        **{"docker_host": "unix:///nonexistent.sock", **options},
        cgroup_root="/nonexistent",
        stats_mode="api",
        api_workers=1,
    )
    source._client = FakeClient(inspect, stats)
    source._engine = _EngineInfo("20.10", "cgroupfs", 1, "/var/lib/docker", "1.41")
    return source


def test_a_sample_holds_only_allowlisted_labels_and_no_environment() -> None:
    source = source_over({"team": 'pay"ments', "secret": SECRET}, ["team", "owner"])
    try:
        (workload,) = source.sample().workloads
    finally:
        source.close()
    assert workload.labels == (("team", 'pay"ments'), ("owner", ""))
    assert workload.memory_bytes is not None  # the pass really read usage
    assert SECRET not in repr(workload)


def test_without_an_allowlist_no_label_is_read() -> None:
    source = source_over({"team": "payments", "secret": SECRET}, [])
    try:
        (workload,) = source.sample().workloads
    finally:
        source.close()
    assert workload.labels == ()
    assert SECRET not in repr(workload)


def test_a_repeated_allowlist_key_is_read_once() -> None:
    source = source_over({"team": "payments"}, ["team", "team"])
    try:
        (workload,) = source.sample().workloads
    finally:
        source.close()
    assert workload.labels == (("team", "payments"),)
