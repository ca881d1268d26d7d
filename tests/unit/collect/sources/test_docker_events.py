"""The event stream's marks, and the passes that consume them: what a pass asks the engine.

Events are the ones Docker 20.10 sent for one container's life (``events-20.10.jsonl``:
create, start, rename, update, an exec, an OOM kill, pause, unpause, kill, die, destroy) and
those Podman 4.3's compatible endpoint sent (``podman/events-4.3.jsonl``). The passes run over
a stand-in for the SDK's ``APIClient`` that counts its calls; the stream itself, its
reconnections and the real engines are covered by ``tests/integration/test_docker_discovery.py``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from densityd.collect.sources.docker import DockerSource, _EngineInfo
from densityd.collect.sources.docker_events import classify, since_parameter
from tests import paths

DOCKER = paths.FIXTURES / "docker"
PODMAN = paths.FIXTURES / "podman"


def recorded_events(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_docker_events_are_classified_by_what_they_change() -> None:
    events = recorded_events(DOCKER / "events-20.10.jsonl")
    kinds = {event["Action"]: classify(event) for event in events}
    assert kinds.pop("oom") == "oom"
    assert kinds.pop("destroy") == "removed"
    ignored = {action for action, kind in kinds.items() if kind == "ignored"}
    assert ignored == {action for action in kinds if action.startswith("exec")}, kinds
    changed = {action for action, kind in kinds.items() if kind == "changed"}
    assert {"create", "start", "rename", "update", "pause", "unpause", "kill", "die"} == changed


def test_podman_compat_events_mark_their_containers_changed() -> None:
    events = recorded_events(PODMAN / "events-4.3.jsonl")
    assert {classify(event) for event in events} == {"changed"}
    assert classify({"Type": "container", "Action": "remove", "id": "abc"}) == "removed"
    assert classify({"Type": "container", "Action": "something-new", "id": "abc"}) == "changed"
    assert classify({"Type": "image", "Action": "delete", "id": "abc"}) == "ignored"
    health = {"Type": "container", "Action": "health_status: healthy", "id": "abc"}
    assert classify(health) == "ignored"


def test_since_keeps_the_nanoseconds() -> None:
    assert since_parameter(1796141036906995098) == "1796141036.906995098"
    assert since_parameter(1796141036000000005) == "1796141036.000000005"


class CountingClient:
    """Answers a pass's calls for one recorded container and counts them."""

    def __init__(self, inspect: dict[str, Any]) -> None:
        self.inspect = inspect
        self.present = True
        self.calls: list[str] = []

    def containers(self, **_kwargs: bool) -> list[dict[str, Any]]:
        self.calls.append("list")
        if not self.present:
            return []
        return [
            {
                "Id": self.inspect["Id"],
                "Names": [self.inspect["Name"]],
                "Image": self.inspect["Config"]["Image"],
                "State": self.inspect["State"]["Status"],
            }
        ]

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        self.calls.append("inspect")
        return self.inspect

    def close(self) -> None:
        pass


def _event(action: str, container_id: str, nanos: int, **attributes: str) -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": action,
        "id": container_id,
        "Actor": {"ID": container_id, "Attributes": attributes},
        "timeNano": nanos,
    }


def test_a_steady_pass_asks_nothing_and_a_change_costs_its_inspect() -> None:
    inspect = copy.deepcopy(json.loads((DOCKER / "inspect-20.10.json").read_text())[0])
    inspect["State"]["Status"] = "exited"  # no usage to read: only discovery is at work
    container_id = inspect["Id"]
    source = DockerSource(docker_host="unix:///nonexistent.sock", cgroup_root="/nonexistent")
    client = CountingClient(inspect)
    source._client = client
    source._engine = _EngineInfo("20.10", "cgroupfs", 1, "/var/lib/docker", "1.41")
    events = source._events
    events._connected.set()  # as if the stream were open: its thread is never started
    try:
        (first,) = source.sample().workloads
        assert client.calls == ["list", "inspect"]  # the resync after the stream opened
        assert first.name == inspect["Name"].lstrip("/")

        client.calls.clear()
        for _ in range(3):
            assert len(source.sample().workloads) == 1
        assert client.calls == []  # steady: no Engine call at all

        inspect["Name"] = "/renamed"
        events._on_event(_event("rename", container_id, 10**18, name="renamed"))
        events._on_event(_event("exec_start: sh", container_id, 10**18 + 1))
        (renamed,) = source.sample().workloads
        assert client.calls == ["inspect"] and renamed.name == "renamed"

        # Killed by the OOM killer and removed before the next pass: gone, still counted.
        client.calls.clear()
        client.present = False
        events._on_event(_event("oom", container_id, 10**18 + 2, name="renamed"))
        events._on_event(_event("oom", container_id, 10**18 + 2, name="renamed"))  # a replay
        events._on_event(_event("destroy", container_id, 10**18 + 3, name="renamed"))
        reading = source.sample()
        assert client.calls == [] and reading.workloads == ()
        ((kills),) = reading.removed_oom_kills
        assert (kills.id, kills.name, kills.kills) == (container_id, "renamed", 1)

        # The stream reconnected: the pass lists again, and gives its marks back on failure.
        events._changes.resync = True
        source.sample()
        assert client.calls == ["list"]
    finally:
        source.close()


def test_a_failed_pass_gives_its_marks_back() -> None:
    inspect = copy.deepcopy(json.loads((DOCKER / "inspect-20.10.json").read_text())[0])
    source = DockerSource(docker_host="unix:///nonexistent.sock", cgroup_root="/nonexistent")
    source._events._on_event(_event("update", inspect["Id"], 1))
    changes = source._events.take()
    source._events.give_back(changes)
    again = source._events.take()
    assert again.dirty == {inspect["Id"]} and again.resync
    source.close()
