"""Hypothesis fuzzing of the parsers of what the kernel, the Engine and libvirt hand densityd.

Property: a parser returns a value of its documented type or raises its documented error
(``ValueError``); never any other exception. The cgroup file parsers skip lines they cannot
read (a kernel adding a field must not break a pass), so they never raise at all. The
quantity and profile parsers are fuzzed where they are tested, in
``tests/unit/planner/test_quantity.py`` (``test_parsers_give_a_finite_number_or_a_quantity_error``
and ``test_resources_and_profiles_give_a_value_or_a_quantity_error``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from densityd.collect.sources.cgroups import (
    CgroupStats,
    container_cgroup_path,
    expand_systemd_slice,
    parse_blkio_v1,
    parse_flat_keyed,
    parse_io_stat_v2,
    parse_proc_cgroup,
)
from densityd.collect.sources.docker_stats import (
    count_cpuset,
    cpu_limit_cores,
    parse_docker_size,
    parse_stats,
    storage_limit_bytes,
)
from densityd.collect.sources.libvirt import block_devices, vm_sample
from densityd.collect.sources.libvirt_xml import DomainConfig
from tests import paths

FIXTURES = paths.FIXTURES

# Text close to the kernel's formats, so that the parsers' interesting branches are reached.
KERNEL_ALPHABET = "0123456789 \n\t=:-,./abcdefgiklmnoprstuwxyz_RWeadTotl"
kernel_text = st.text(max_size=200) | st.text(alphabet=KERNEL_ALPHABET, max_size=200)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_like = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
STATS_KEYS = {
    "memory_stats": ["usage", "limit", "stats"],
    "cpu_stats": ["cpu_usage"],
    "blkio_stats": ["io_service_bytes_recursive"],
}
DETAIL_KEYS = ["total_inactive_file", "total_rss", "total_cache", "inactive_file", "anon", "file"]


@st.composite
def stats_documents(draw: st.DrawFn) -> dict[str, Any]:
    """An Engine stats document: the real keys with arbitrary JSON (or real) values."""
    document: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), json_like, max_size=2))
    for section, keys in STATS_KEYS.items():
        if draw(st.booleans()):
            document[section] = draw(json_like)
            continue
        document[section] = {key: draw(json_like) for key in keys if draw(st.booleans())}
    memory = document.get("memory_stats")
    if isinstance(memory, dict) and draw(st.booleans()):
        memory["usage"] = draw(st.integers(min_value=0, max_value=2**64))
        memory["stats"] = {key: draw(json_like | st.integers()) for key in DETAIL_KEYS}
    cpu = document.get("cpu_stats")
    if isinstance(cpu, dict) and draw(st.booleans()):
        cpu["cpu_usage"] = {"total_usage": draw(st.integers(min_value=0, max_value=2**64))}
    blkio = document.get("blkio_stats")
    if isinstance(blkio, dict) and draw(st.booleans()):
        entry = st.dictionaries(st.sampled_from(["op", "value", "major"]), json_like)
        blkio["io_service_bytes_recursive"] = draw(st.lists(entry | json_like, max_size=3))
    return document


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(kernel_text)
def test_flat_keyed_files_always_parse(text: str) -> None:
    parsed = parse_flat_keyed(text)
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in parsed.items())


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(kernel_text)
def test_blkio_and_io_stat_files_always_parse(text: str) -> None:
    for parser in (parse_blkio_v1, parse_io_stat_v2):
        devices = parser(text)
        assert len({d.device for d in devices}) == len(devices)  # one entry per device
        for device in devices:
            assert re.fullmatch(r"[0-9]+:[0-9]+", device.device)
            assert device.read_bytes >= 0 and device.written_bytes >= 0


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(kernel_text, st.sampled_from([1, 2]))
def test_proc_cgroup_files_always_parse(text: str, version: int) -> None:
    path = parse_proc_cgroup(text, version)
    assert path is None or not path.startswith("/")


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(st.text(max_size=60), st.text(max_size=60), st.sampled_from(["systemd", "cgroupfs"]))
def test_cgroup_paths_are_a_path_or_a_value_error(
    container_id: str, parent: str, driver: str
) -> None:
    try:
        path = container_cgroup_path(container_id, parent, driver)  # type: ignore[arg-type]
    except ValueError as exc:
        assert "not a systemd slice" in str(exc)
        return
    assert not path.startswith("/")


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(st.text(max_size=60) | st.text(alphabet="-.abslice/", max_size=20))
def test_systemd_slices_expand_or_raise_value_error(name: str) -> None:
    try:
        expanded = expand_systemd_slice(name)
    except ValueError as exc:
        assert repr(name) in str(exc)
        return
    assert expanded == "" or expanded.endswith(name)


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(stats_documents())
def test_stats_documents_give_stats_none_or_a_value_error(document: dict[str, Any]) -> None:
    try:
        parsed = parse_stats(document)
    except ValueError as exc:
        assert "stats document" in str(exc)
        return
    if parsed is not None:
        assert isinstance(parsed, CgroupStats)
        assert parsed.working_set_bytes >= 0
        assert isinstance(parsed.read_bytes, int) and isinstance(parsed.written_bytes, int)


def test_recorded_stats_documents_still_parse() -> None:
    for name in ("stats-v1-20.10.json", "stats-v2-24.0.json"):
        assert parse_stats(json.loads((FIXTURES / "docker" / name).read_text())) is not None


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(st.text(max_size=30) | st.text(alphabet="0123456789-, ", max_size=20))
def test_cpusets_count_or_raise_value_error(text: str) -> None:
    try:
        count = count_cpuset(text)
    except ValueError:
        return
    assert count is None or count >= 1


def test_a_reversed_cpuset_range_is_an_error_not_zero_cores() -> None:
    """Found by the fuzzer: ``1-0`` counted 0 CPUs, a 0-core limit."""
    with pytest.raises(ValueError, match="not a cpuset"):
        count_cpuset("1-0")


@pytest.mark.parametrize(
    "document",
    [
        {"memory_stats": [1], "cpu_stats": {}},
        {"memory_stats": {}, "cpu_stats": True},
        {
            "memory_stats": {"usage": 1, "stats": {"inactive_file": "x"}},
            "cpu_stats": {"cpu_usage": {"total_usage": 1}},
        },
        {
            "memory_stats": {"usage": 1},
            "cpu_stats": {"cpu_usage": {"total_usage": 1}},
            "blkio_stats": {"io_service_bytes_recursive": [None]},
        },
    ],
)
def test_malformed_stats_documents_raise_value_error(document: dict[str, Any]) -> None:
    """Found by the fuzzer: these raised AttributeError or TypeError."""
    with pytest.raises(ValueError, match="malformed Engine stats document"):
        parse_stats(document)


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(st.text(max_size=30) | st.text(alphabet="0123456789.kmgtpKMGTPiB ", max_size=12))
def test_docker_sizes_parse_or_raise_value_error(text: str) -> None:
    try:
        size = parse_docker_size(text)
    except ValueError:
        return
    assert size >= 0
    assert storage_limit_bytes({"StorageOpt": {"size": text}}) == (size if text else None)


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "NanoCpus": st.integers(min_value=0, max_value=2**63),
            "CpuQuota": st.integers(min_value=-1, max_value=2**40),
            "CpuPeriod": st.integers(min_value=0, max_value=2**40),
            "CpusetCpus": st.text(alphabet="0123456789-,", max_size=12),
        },
    )
)
def test_cpu_limits_of_engine_typed_host_configs(host_config: dict[str, Any]) -> None:
    try:
        cores = cpu_limit_cores(host_config)
    except ValueError:
        return  # a cpuset the kernel would refuse
    assert cores is None or (cores > 0 and math.isfinite(cores))


# What virDomainGetStatsRecord hands over: typed parameters (int, bool, float, str).
libvirt_values = (
    st.integers(min_value=-(2**63), max_value=2**64)
    | st.booleans()
    | st.floats(allow_nan=True)
    | st.text(max_size=10)
)
DOMSTATS_KEYS = [
    "state.state",
    "state.reason",
    "cpu.time",
    "vcpu.current",
    "vcpu.maximum",
    "balloon.rss",
    "balloon.maximum",
    "balloon.current",
    "balloon.available",
    "balloon.usable",
    "block.count",
    *(
        f"block.{index}.{field}"
        for index in range(3)
        for field in ("name", "path", "physical", "allocation", "capacity", "rd.bytes", "wr.bytes")
    ),
]


@st.composite
def domstats_records(draw: st.DrawFn) -> dict[str, Any]:
    """A getAllDomainStats record: the real keys (some missing) with arbitrary typed values."""
    record: dict[str, Any] = {}
    for key in DOMSTATS_KEYS:
        if draw(st.booleans()):
            record[key] = draw(libvirt_values)
    if draw(st.booleans()):
        # libvirt's real count; a huge one would only make the loop long, not fail.
        record["block.count"] = draw(st.integers(min_value=0, max_value=3))
    return record


@settings(deadline=None)  # timing is not the property; a loaded CI host is slow
@given(domstats_records(), st.integers(min_value=0, max_value=64))
def test_domstats_records_always_give_a_sample(record: dict[str, Any], vcpus: int) -> None:
    config = DomainConfig(
        name="vm", uuid="uuid", memory_bytes=2**30, vcpus=vcpus or None, os="", disks=()
    )
    devices = block_devices(record)
    sample = vm_sample("uuid", config, record, devices)
    assert sample.name == "vm"
    assert len(sample.block_devices) == len(devices)
    for value in (sample.memory_bytes, sample.disk_bytes, sample.disk_limit_bytes):
        assert value is None or isinstance(value, int)
    assert sample.cpu_limit_cores is None or sample.cpu_limit_cores > 0


@pytest.mark.parametrize(
    "record",
    [
        {"block.count": "", "state.state": ""},
        {"block.count": 1, "block.0.physical": "12", "block.0.capacity": 5},
        {"state.state": 1, "vcpu.current": "0", "cpu.time": 1.5},
    ],
)
def test_non_integer_domain_stats_are_unknown_not_a_crash(record: dict[str, Any]) -> None:
    """Found by the fuzzer: int("") raised, "12" + 5 raised, vcpu "0" gave a 0-core limit."""
    config = DomainConfig(name="vm", uuid="u", memory_bytes=None, vcpus=None, os="", disks=())
    sample = vm_sample("u", config, record, block_devices(record))
    assert sample.cpu_limit_cores is None and sample.cpu_seconds is None
    assert sample.disk_limit_bytes in (None, 5)


def test_a_huge_block_count_is_bounded_by_the_record() -> None:
    """Found by the fuzzer: block.count = 2**64 made one pass build devices until out of memory."""
    record = {"block.count": 2**64, "block.0.name": "vda", "block.0.physical": 4096}
    devices = block_devices(record)
    assert len(devices) <= len(record)
    assert devices[0].name == "vda" and devices[0].bytes == 4096
