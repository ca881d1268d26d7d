"""Podman behind the Docker source: engine detection, cgroup layouts and the compat API's ways.

The documents under ``tests/fixtures/podman`` were recorded from Debian's Podman 4.3.1
(``podman system service``, rootful, cgroupfs manager, cgroup v1) on the Docker-compatible
API (``/v1.41/...``) for a container run with ``--memory 128m --cpus 0.5
--tmpfs /data:size=200m`` after it wrote 30 MiB to the tmpfs; ``v1-podman-cgroupfs`` holds the
same container's cgroup files. The systemd manager's layout (``machine.slice/libpod-<id>.scope``,
v1 and v2) cannot run here, so its trees are the recorded Docker trees moved to that path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from densityd.collect.sources.cgroups import (
    CgroupLimits,
    CgroupReader,
    DeviceIO,
    container_cgroup_path,
    parse_cpu_max,
)
from densityd.collect.sources.docker import DockerSource, _EngineInfo, engine_of
from densityd.collect.sources.docker_stats import (
    cpu_limit_cores,
    parse_stats,
    unswap_device_numbers,
)
from tests import paths

PODMAN = paths.FIXTURES / "podman"
CGROUP = paths.FIXTURES / "cgroup"
PODMAN_ID = "217dfd6f70818bfda56f5e4426fc2202eec1fa5f0f02f6589caf2a0b62e14509"
RENAMED_ID = "222308a280b89579f8b82e2eac741d02cfc682570b15c63239c5a2f28de97755"


def recorded(name: str) -> Any:
    return json.loads((PODMAN / name).read_text())


def test_podman_is_told_apart_from_docker_by_its_version_document() -> None:
    assert engine_of(recorded("version-4.3.json")) == ("podman", "4.3.1")
    docker_version = {
        "Platform": {"Name": "Docker Engine - Community"},
        "Components": [{"Name": "Engine", "Version": "24.0.7"}],
        "Version": "24.0.7",
    }
    assert engine_of(docker_version) == ("docker", "24.0.7")
    assert engine_of({"Version": "20.10.24+dfsg1"}) == ("docker", "20.10.24+dfsg1")
    assert engine_of({}) == ("docker", "unknown")


@pytest.mark.parametrize(
    ("parent", "driver", "expected"),
    [
        ("", "cgroupfs", f"libpod_parent/libpod-{PODMAN_ID}"),
        ("/capped", "cgroupfs", f"capped/libpod-{PODMAN_ID}"),
        ("", "systemd", f"machine.slice/libpod-{PODMAN_ID}.scope"),
        ("team-a.slice", "systemd", f"team.slice/team-a.slice/libpod-{PODMAN_ID}.scope"),
    ],
)
def test_podman_cgroup_layouts(parent: str, driver: Any, expected: str) -> None:
    assert container_cgroup_path(PODMAN_ID, parent, driver, "podman") == expected


def test_docker_layouts_are_unchanged() -> None:
    assert container_cgroup_path("abc", "", "cgroupfs") == "docker/abc"
    assert container_cgroup_path("abc", "", "systemd") == "system.slice/docker-abc.scope"


def test_recorded_podman_v1_cgroupfs_tree_is_found_and_read() -> None:
    reader = CgroupReader(CGROUP / "v1-podman-cgroupfs")
    path = reader.resolve(PODMAN_ID, "", "cgroupfs", engine="podman")
    assert path == f"libpod_parent/libpod-{PODMAN_ID}"
    stats = reader.read(path)
    assert stats.cpu_seconds == pytest.approx(0.036079105)
    assert stats.memory_usage_bytes == 31862784
    assert stats.working_set_bytes == 31862784  # the 30 MiB are tmpfs: no inactive file
    assert (stats.rss_bytes, stats.cache_bytes) == (49152, 31461376)


def test_the_recorded_proc_cgroup_names_the_libpod_cgroup() -> None:
    """A Podman cgroup found through ``/proc/PID/cgroup`` when the layouts are not it."""
    root_tree = CGROUP / "v1-podman-cgroupfs"
    reader = CgroupReader(root_tree)
    text = (PODMAN / "proc-cgroup-v1-cgroupfs.txt").read_text()
    # As if the engine had been asked the other manager: the layouts miss, /proc finds it.
    assert reader.resolve(PODMAN_ID, "/elsewhere", "cgroupfs", text, "podman") == (
        f"libpod_parent/libpod-{PODMAN_ID}"
    )


def moved_tree(tmp_path: Path, tree: str, docker_path: str, podman_path: str) -> Path:
    """A recorded Docker tree with its container moved to where Podman puts it."""
    root = tmp_path / tree
    shutil.copytree(CGROUP / tree, root)
    for hierarchy in [root, *[p for p in root.iterdir() if p.is_dir()]]:
        source = hierarchy / docker_path
        if source.is_dir():
            target = hierarchy / podman_path
            target.parent.mkdir(parents=True, exist_ok=True)
            source.rename(target)
    return root


@pytest.mark.parametrize(
    ("tree", "docker_path"),
    [
        ("v1-systemd", "system.slice/docker-abc123.scope"),
        ("v2-systemd", "system.slice/docker-abc123.scope"),
    ],
)
def test_podman_systemd_layout_on_v1_and_v2(tmp_path: Path, tree: str, docker_path: str) -> None:
    podman_path = f"machine.slice/libpod-{PODMAN_ID}.scope"
    root = moved_tree(tmp_path, tree, docker_path, podman_path)
    reader = CgroupReader(root)
    assert reader.resolve(PODMAN_ID, "", "systemd", engine="podman") == podman_path
    # The engine reported the other manager (a mixed setup): the other layout is tried too.
    assert reader.resolve(PODMAN_ID, "", "cgroupfs", engine="podman") == podman_path
    assert reader.read(podman_path).memory_usage_bytes > 0


def test_podman_one_shot_stats_parse_without_a_memory_breakdown() -> None:
    """Podman's stats carry no ``memory_stats.stats`` and an empty ``precpu_stats``."""
    document = recorded("stats-v1-4.3.json")
    assert document["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert "stats" not in document["memory_stats"]
    stats = parse_stats(document)
    assert stats is not None
    assert stats.cpu_seconds == pytest.approx(0.036079105)  # the cumulative counter, not precpu
    assert stats.memory_usage_bytes == 31862784
    assert stats.working_set_bytes == 31862784  # nothing to subtract: usage as it is
    assert (stats.rss_bytes, stats.cache_bytes) == (None, None)  # unknown, never 0
    # Podman 4.3 swaps major and minor: its cgroup file says 254:0 (/dev/vda here).
    assert stats.devices == (DeviceIO("0:254", 4096, 0),)


def test_swapped_device_numbers_are_turned_only_when_the_reverse_is_a_device() -> None:
    devices = (DeviceIO("0:254", 4096, 0), DeviceIO("8:0", 1, 2), DeviceIO("0:7", 3, 4))
    existing = {"254:0", "8:0", "0:7", "7:0"}
    assert unswap_device_numbers(devices, existing.__contains__) == (
        DeviceIO("254:0", 4096, 0),  # 0:254 is no device, 254:0 is
        DeviceIO("8:0", 1, 2),  # right already
        DeviceIO("0:7", 3, 4),  # both exist: left as reported
    )


def test_podman_inspect_limits() -> None:
    inspect = recorded("inspect-4.3.json")
    assert cpu_limit_cores(inspect["HostConfig"]) == 0.5
    assert inspect["HostConfig"]["Memory"] == 128 * 1024 * 1024


def test_podman_size_rw_is_reported_as_it_is() -> None:
    (listed,) = recorded("containers-size-4.3.json")
    assert listed["Id"] == PODMAN_ID
    assert listed["SizeRw"] == 12  # Podman counts the few bytes it writes itself


def test_compat_events_carry_docker_names() -> None:
    """The compat endpoint says ``die`` (libpod's own name is ``died``), like Docker."""
    actions = [json.loads(line)["Action"] for line in (PODMAN / "events-4.3.jsonl").open()]
    assert "die" in actions and "died" not in actions
    assert {"rename", "start", "restart"} <= set(actions)


def test_probe_says_podman() -> None:
    source = DockerSource(docker_host="unix:///nonexistent.sock", cgroup_root="/nonexistent")
    source._engine = _EngineInfo("4.3.1", "cgroupfs", 1, "/var/lib/containers", "1.41", "podman")
    source._client = object()
    try:
        assert source.probe().startswith("Podman 4.3.1 at unix:///nonexistent.sock (API 1.41")
    finally:
        source._client = None
        source.close()


def test_v1_limits_are_read_from_the_cgroup(tmp_path: Path) -> None:
    """As ``podman update --memory 64m --cpus 0.25`` left them on this host (v1)."""
    root = tmp_path / "v1"
    shutil.copytree(CGROUP / "v1-podman-cgroupfs", root)
    path = f"libpod_parent/libpod-{PODMAN_ID}"
    (root / "memory" / path / "memory.limit_in_bytes").write_text("67108864\n")
    (root / "cpu" / path).mkdir(parents=True)
    (root / "cpu" / path / "cpu.cfs_quota_us").write_text("25000\n")
    (root / "cpu" / path / "cpu.cfs_period_us").write_text("100000\n")
    assert CgroupReader(root).read_limits(path) == CgroupLimits(64 * 1024 * 1024, 0.25)
    # No limit: the largest page-aligned long, and a quota of -1.
    (root / "memory" / path / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "cpu" / path / "cpu.cfs_quota_us").write_text("-1\n")
    assert CgroupReader(root).read_limits(path) == CgroupLimits(None, None)


def test_v2_limits_are_read_from_the_cgroup(tmp_path: Path) -> None:
    podman_path = f"machine.slice/libpod-{PODMAN_ID}.scope"
    root = moved_tree(tmp_path, "v2-systemd", "system.slice/docker-abc123.scope", podman_path)
    (root / podman_path / "memory.max").write_text("134217728\n")
    (root / podman_path / "cpu.max").write_text("50000 100000\n")
    assert CgroupReader(root).read_limits(podman_path) == CgroupLimits(128 * 1024 * 1024, 0.5)
    (root / podman_path / "memory.max").write_text("max\n")
    (root / podman_path / "cpu.max").write_text("max 100000\n")
    assert CgroupReader(root).read_limits(podman_path) == CgroupLimits(None, None)
    assert parse_cpu_max("150000 100000") == 1.5
