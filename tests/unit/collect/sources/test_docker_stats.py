"""The Engine JSON parsers against recorded and format-faithful documents.

``stats-v1-20.10.json``, ``stats-stopped-20.10.json`` and ``inspect-20.10.json`` were recorded
from this machine's Docker 20.10 (cgroup v1) for a container run with ``--memory 128m --cpus
0.5`` that had written 20 MiB to a tmpfs; ``stats-v2-24.0.json`` is a Docker 24 document on
cgroup v2 (``memory_stats.stats`` with ``anon``/``file``/``inactive_file`` and no ``total_*``
keys, lowercase ``read``/``write`` blkio ops, no per-CPU usage).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from densityd.collect.sources.cgroups import CgroupReader, CgroupSignals, CgroupStats, DeviceIO
from densityd.collect.sources.docker_stats import (
    blkio_devices,
    count_cpuset,
    cpu_limit_cores,
    parse_docker_size,
    parse_stats,
    storage_limit_bytes,
)
from tests import paths

FIXTURES = paths.FIXTURES


def load(name: str) -> Any:
    return json.loads((FIXTURES / "docker" / name).read_text())


def test_parse_stats_recorded_v1() -> None:
    assert parse_stats(load("stats-v1-20.10.json")) == CgroupStats(
        cpu_seconds=0.052140763,
        memory_usage_bytes=21340160,
        working_set_bytes=21340160,
        rss_bytes=53248,
        cache_bytes=20971520,
        read_bytes=0,
        written_bytes=0,
    )


def test_parse_stats_recorded_v1_agrees_with_the_cgroup_files() -> None:
    # Recorded from the same container a moment apart: the two paths must agree.
    from_api = parse_stats(load("stats-v1-20.10.json"))
    from_files = CgroupReader(FIXTURES / "cgroup/v1-cgroupfs").read("docker/abc123")
    assert from_api == dataclasses.replace(from_files, signals=CgroupSignals())


def test_parse_stats_v1_uses_hierarchical_total_keys() -> None:
    document = load("stats-v1-20.10.json")
    stats = document["memory_stats"]["stats"]
    stats["inactive_file"] = 1  # this cgroup only; the total_* keys include children
    stats["total_inactive_file"] = 1_000_000
    stats["rss"] = 1
    stats["cache"] = 2
    parsed = parse_stats(document)
    assert parsed is not None
    assert parsed.working_set_bytes == 21340160 - 1_000_000
    assert parsed.rss_bytes == 53248
    assert parsed.cache_bytes == 20971520


def test_parse_stats_v2_docker_24() -> None:
    assert parse_stats(load("stats-v2-24.0.json")) == CgroupStats(
        cpu_seconds=83.412345,
        memory_usage_bytes=55308288,
        working_set_bytes=55308288 - 31600640,
        rss_bytes=4845568,
        cache_bytes=46878720,
        read_bytes=4902912 + 106496,
        written_bytes=1327104 + 36864,
        devices=(DeviceIO("259:0", 4902912, 1327104), DeviceIO("8:0", 106496, 36864)),
    )


def test_parse_stats_v2_agrees_with_the_v2_cgroup_files() -> None:
    from_api = parse_stats(load("stats-v2-24.0.json"))
    from_files = CgroupReader(FIXTURES / "cgroup/v2-systemd").read(
        "system.slice/docker-abc123.scope"
    )
    # The stats API carries none of the starvation signals (pressure, throttling, OOM kills).
    assert from_api == dataclasses.replace(from_files, signals=CgroupSignals())


def test_parse_stats_v2_working_set_floored_at_zero() -> None:
    document = load("stats-v2-24.0.json")
    document["memory_stats"]["stats"]["inactive_file"] = 60_000_000
    parsed = parse_stats(document)
    assert parsed is not None
    assert parsed.working_set_bytes == 0


def test_parse_stats_v1_capitalised_blkio_ops_are_summed() -> None:
    document = load("stats-v1-20.10.json")
    document["blkio_stats"]["io_service_bytes_recursive"] = [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 8192},
        {"major": 8, "minor": 0, "op": "Sync", "value": 12288},
        {"major": 8, "minor": 0, "op": "Total", "value": 12288},
        {"major": 8, "minor": 16, "op": "Read", "value": 1000},
        {"major": 8, "minor": 16, "op": "Write", "value": 1},
    ]
    parsed = parse_stats(document)
    assert parsed is not None
    assert (parsed.read_bytes, parsed.written_bytes) == (5096, 8193)
    assert parsed.devices == (DeviceIO("8:0", 4096, 8192), DeviceIO("8:16", 1000, 1))


def test_blkio_devices_skip_entries_without_a_device_number_or_a_count() -> None:
    entries = [
        {"major": 8, "minor": 0, "op": "read", "value": 10},
        {"op": "read", "value": 20},  # no device: it cannot be a series of its own
        {"major": 8, "minor": 0, "op": "write", "value": "junk"},
        {"major": 8, "minor": 0, "op": "read", "value": 5},  # the same device twice: added up
    ]
    assert blkio_devices(entries) == (DeviceIO("8:0", 15, 0),)
    assert blkio_devices(None) == ()


def test_parse_stats_of_a_stopped_container_is_none() -> None:
    document = load("stats-stopped-20.10.json")
    assert document["memory_stats"] == {}  # the recorded document really is empty there
    assert parse_stats(document) is None


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"memory_stats": {"usage": 1}},
        {"cpu_stats": {"cpu_usage": {"total_usage": 1}}},
        {"memory_stats": None, "cpu_stats": None},
    ],
)
def test_parse_stats_incomplete_documents_are_none(document: dict[str, Any]) -> None:
    assert parse_stats(document) is None


def test_cpu_limit_from_recorded_inspect() -> None:
    host_config = load("inspect-20.10.json")[0]["HostConfig"]
    assert cpu_limit_cores(host_config) == 0.5
    assert storage_limit_bytes(host_config) is None


@pytest.mark.parametrize(
    ("host_config", "expected"),
    [
        ({"NanoCpus": 1_500_000_000}, 1.5),
        ({"CpuQuota": 50_000, "CpuPeriod": 100_000}, 0.5),
        ({"CpuQuota": 150_000, "CpuPeriod": 50_000}, 3.0),
        ({"CpuQuota": 25_000, "CpuPeriod": 0}, 0.25),  # 0 means the kernel default, 100 ms
        ({"CpuQuota": -1, "CpuPeriod": 100_000}, None),  # -1: no quota
        ({"CpusetCpus": "0-3,8"}, 5.0),
        ({"NanoCpus": 8_000_000_000, "CpusetCpus": "0-3,8"}, 5.0),
        ({"NanoCpus": 1_500_000_000, "CpusetCpus": "0-3,8"}, 1.5),
        ({"CpuQuota": 400_000, "CpuPeriod": 100_000, "CpusetCpus": "2"}, 1.0),
        ({"NanoCpus": 0, "CpuQuota": 0, "CpuPeriod": 0, "CpusetCpus": ""}, None),
        ({}, None),
    ],
)
def test_cpu_limit_cores(host_config: dict[str, Any], expected: float | None) -> None:
    assert cpu_limit_cores(host_config) == expected


def test_count_cpuset() -> None:
    assert count_cpuset("0-3,8") == 5
    assert count_cpuset("0") == 1
    assert count_cpuset("0-1, 4-5") == 4
    assert count_cpuset("") is None
    assert count_cpuset("  ") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20G", 20 * 2**30),
        ("512m", 512 * 2**20),
        ("1.5g", 3 * 2**29),
        ("10GB", 10 * 2**30),
        ("10GiB", 10 * 2**30),
        ("100k", 102400),
        ("4096", 4096),
        ("2T", 2 * 2**40),
    ],
)
def test_parse_docker_size(text: str, expected: int) -> None:
    assert parse_docker_size(text) == expected


@pytest.mark.parametrize("text", ["", "bad", "G", "-1G", "20X", "1.2.3g", "20 G B"])
def test_parse_docker_size_rejects_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_docker_size(text)


def test_storage_limit_bytes() -> None:
    assert storage_limit_bytes({"StorageOpt": {"size": "20G"}}) == 20 * 2**30
    assert storage_limit_bytes({"StorageOpt": {"size": "512m"}}) == 512 * 2**20
    assert storage_limit_bytes({"StorageOpt": {}}) is None
    assert storage_limit_bytes({"StorageOpt": None}) is None
    assert storage_limit_bytes({}) is None
    with pytest.raises(ValueError):
        storage_limit_bytes({"StorageOpt": {"size": "lots"}})
