"""The cgroup parsers against recorded trees: v1 from this machine, v2 written in its format.

``v1-cgroupfs`` was recorded from Docker 20.10 (cgroupfs driver, cgroup v1) for a container
run with ``--memory 128m --cpus 0.5 --tmpfs /data:size=200m`` after it wrote 20 MiB to the
tmpfs; ``v1-systemd`` holds the same files in the systemd driver's layout (with the co-mounted
``cpu,cpuacct`` directory systemd hosts have). The v2 trees follow the kernel's cgroup-v2
documentation: ``v2-systemd`` as a 6.1 kernel prints it, ``v2-cgroupfs`` as 5.10 does, without
``io.stat`` because the io controller is not enabled in ``docker/cgroup.subtree_control``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from densityd.collect.sources.cgroups import (
    CgroupDriver,
    CgroupReader,
    CgroupStats,
    DeviceIO,
    container_cgroup_path,
    expand_systemd_slice,
    in_private_namespace,
    parse_blkio_v1,
    parse_flat_keyed,
    parse_io_stat_v2,
    parse_proc_cgroup,
    working_set,
)
from tests import paths

FIXTURES = paths.FIXTURES
CGROUP = FIXTURES / "cgroup"
RECORDED_ID = "e493e77271b8bb12f7833443ca038137fec12b681c2d33d776566df2a315c476"

# What the recorded v1 files say (cpuacct.usage, memory.usage_in_bytes, memory.stat).
V1_EXPECTED = CgroupStats(
    cpu_seconds=0.052140763,
    memory_usage_bytes=21340160,
    working_set_bytes=21340160,  # total_inactive_file is 0: the 20 MiB are tmpfs (shmem)
    rss_bytes=53248,
    cache_bytes=20971520,
    read_bytes=0,  # the recorded blkio file is just "Total 0" (tmpfs writes no block I/O)
    written_bytes=0,
)

# What the recorded v2 io.stat says, per device (an NVMe disk and a SATA one).
V2_DEVICES = (DeviceIO("259:0", 4902912, 1327104), DeviceIO("8:0", 106496, 36864))

# A cgroup v1 blkio file for a container that read and wrote on two disks, in the format
# Documentation/admin-guide/cgroup-v1/blkio-controller.rst gives (4.19+ adds Discard).
BLKIO_V1_TWO_DEVICES = """\
8:16 Read 1048576
8:16 Write 8192
8:16 Sync 1056768
8:16 Async 0
8:16 Discard 0
8:16 Total 1056768
8:0 Read 4096
8:0 Write 2097152
8:0 Sync 4096
8:0 Async 2097152
8:0 Discard 0
8:0 Total 2101248
Total 3158016
"""


def test_v1_tree_is_detected_as_v1() -> None:
    reader = CgroupReader(CGROUP / "v1-cgroupfs")
    assert reader.version == 1
    assert reader.available()


@pytest.mark.parametrize(
    ("tree", "path"),
    [
        ("v1-cgroupfs", "docker/abc123"),
        ("v1-systemd", "system.slice/docker-abc123.scope"),
    ],
)
def test_v1_read_recorded_container(tree: str, path: str) -> None:
    reader = CgroupReader(CGROUP / tree)
    assert reader.read(path) == V1_EXPECTED


def test_v1_systemd_tree_uses_the_comounted_cpu_cpuacct_directory() -> None:
    reader = CgroupReader(CGROUP / "v1-systemd")
    assert reader.available()
    assert reader.read("system.slice/docker-abc123.scope").cpu_seconds == pytest.approx(0.052140763)


def test_v1_blkio_sums_read_and_write_over_devices(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    shutil.copytree(CGROUP / "v1-cgroupfs", root)
    blkio = root / "blkio/docker/abc123/blkio.throttle.io_service_bytes_recursive"
    blkio.write_text(BLKIO_V1_TWO_DEVICES)
    stats = CgroupReader(root).read("docker/abc123")
    assert stats.read_bytes == 1048576 + 4096
    assert stats.written_bytes == 8192 + 2097152
    assert stats.devices == (DeviceIO("8:16", 1048576, 8192), DeviceIO("8:0", 4096, 2097152))


def test_v1_blkio_falls_back_to_the_cfq_file(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    shutil.copytree(CGROUP / "v1-cgroupfs", root)
    directory = root / "blkio/docker/abc123"
    (directory / "blkio.throttle.io_service_bytes_recursive").unlink()
    (directory / "blkio.io_service_bytes_recursive").write_text(BLKIO_V1_TWO_DEVICES)
    stats = CgroupReader(root).read("docker/abc123")
    assert (stats.read_bytes, stats.written_bytes) == (1052672, 2105344)


def test_v1_without_blkio_reports_unknown_io(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    shutil.copytree(CGROUP / "v1-cgroupfs", root)
    shutil.rmtree(root / "blkio")
    stats = CgroupReader(root).read("docker/abc123")
    assert stats.read_bytes is None
    assert stats.written_bytes is None
    assert stats.memory_usage_bytes == 21340160


def test_v1_working_set_subtracts_total_inactive_file(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    shutil.copytree(CGROUP / "v1-cgroupfs", root)
    stat = root / "memory/docker/abc123/memory.stat"
    stat.write_text(
        stat.read_text()
        .replace("\ninactive_file 0\n", "\ninactive_file 1\n")  # non-hierarchical: ignored
        .replace("total_inactive_file 0", "total_inactive_file 4096000")
    )
    assert CgroupReader(root).read("docker/abc123").working_set_bytes == 21340160 - 4096000


def test_v1_working_set_is_floored_at_zero(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    shutil.copytree(CGROUP / "v1-cgroupfs", root)
    stat = root / "memory/docker/abc123/memory.stat"
    stat.write_text(
        stat.read_text().replace("total_inactive_file 0", "total_inactive_file 30000000")
    )
    assert CgroupReader(root).read("docker/abc123").working_set_bytes == 0


def test_v2_trees_are_detected_as_v2() -> None:
    for tree in ("v2-systemd", "v2-cgroupfs"):
        reader = CgroupReader(CGROUP / tree)
        assert reader.version == 2
        assert reader.available()


def test_v2_systemd_read() -> None:
    stats = CgroupReader(CGROUP / "v2-systemd").read("system.slice/docker-abc123.scope")
    assert stats == CgroupStats(
        cpu_seconds=83.412345,
        memory_usage_bytes=55308288,
        working_set_bytes=55308288 - 31600640,
        rss_bytes=4845568,
        cache_bytes=46878720,
        read_bytes=4902912 + 106496,
        written_bytes=1327104 + 36864,
        devices=V2_DEVICES,
    )


def test_v2_cgroupfs_read_without_io_stat() -> None:
    stats = CgroupReader(CGROUP / "v2-cgroupfs").read("docker/abc123")
    assert stats == CgroupStats(
        cpu_seconds=2.500017,
        memory_usage_bytes=21508096,
        working_set_bytes=21508096,  # inactive_file 0
        rss_bytes=126976,
        cache_bytes=20971520,
        read_bytes=None,
        written_bytes=None,
    )


def test_v2_working_set_floored_when_inactive_file_exceeds_usage() -> None:
    stats = CgroupReader(CGROUP / "v2-cgroupfs").read("docker/def456")
    assert stats.memory_usage_bytes == 8192000
    assert stats.working_set_bytes == 0  # inactive_file 8519680 > memory.current
    assert stats.cpu_seconds == pytest.approx(0.015)


def test_working_set() -> None:
    assert working_set(1000, 400) == 600
    assert working_set(1000, 1000) == 0
    assert working_set(1000, 1001) == 0


def test_parse_flat_keyed_skips_lines_that_are_not_key_integer() -> None:
    text = "usage_usec 10\nbogus\nname value\nthree parts here\nsystem_usec 3\n"
    assert parse_flat_keyed(text) == {"usage_usec": 10, "system_usec": 3}


def test_parse_blkio_v1_per_device() -> None:
    assert parse_blkio_v1(BLKIO_V1_TWO_DEVICES) == (
        DeviceIO("8:16", 1048576, 8192),
        DeviceIO("8:0", 4096, 2097152),
    )
    assert parse_blkio_v1("Total 0\n") == ()
    assert parse_blkio_v1("") == ()


def test_parse_blkio_v1_adds_up_a_device_listed_twice_and_skips_bad_lines() -> None:
    text = "8:0 Read 10\n8:0 Read 5\nsda Read 7\n8:0 Write x\n8:1 Write 3\n8:0 Total 15\n"
    assert parse_blkio_v1(text) == (DeviceIO("8:0", 15, 0), DeviceIO("8:1", 0, 3))


def test_parse_io_stat_v2_per_device_ignores_discards() -> None:
    text = (CGROUP / "v2-systemd/system.slice/docker-abc123.scope/io.stat").read_text()
    assert parse_io_stat_v2(text) == V2_DEVICES
    assert parse_io_stat_v2("") == ()
    assert parse_io_stat_v2("\n8:0\n") == ()  # a device with no counters yet


# The same two files a moment later, after one device went away (8:16 on v1, the NVMe disk
# 259:0 on v2) and the one left read 4 KiB more.
BLKIO_V1_ONE_LEFT = """\
8:0 Read 8192
8:0 Write 2097152
8:0 Sync 8192
8:0 Async 2097152
8:0 Discard 0
8:0 Total 2105344
Total 2105344
"""
IO_STAT_V2_ONE_LEFT = "8:0 rbytes=110592 wbytes=36864 rios=10 wios=4 dbytes=4096 dios=1\n"


@pytest.mark.parametrize(
    ("tree", "path", "io_file", "before_text", "after_text"),
    [
        (
            "v1-cgroupfs",
            "docker/abc123",
            "blkio/docker/abc123/blkio.throttle.io_service_bytes_recursive",
            BLKIO_V1_TWO_DEVICES,
            BLKIO_V1_ONE_LEFT,
        ),
        (
            "v2-systemd",
            "system.slice/docker-abc123.scope",
            "system.slice/docker-abc123.scope/io.stat",
            None,  # the recorded file
            IO_STAT_V2_ONE_LEFT,
        ),
    ],
)
def test_a_device_leaving_between_two_readings_leaves_the_others_counting_up(
    tmp_path: Path,
    tree: str,
    path: str,
    io_file: str,
    before_text: str | None,
    after_text: str,
) -> None:
    """A removed disk leaves the file: the sum drops, but each device left only grows."""
    root = tmp_path / "cgroup"
    shutil.copytree(CGROUP / tree, root)
    file = root / io_file
    if before_text is not None:
        file.write_text(before_text)
    reader = CgroupReader(root)
    before = reader.read(path)
    file.write_text(after_text)
    after = reader.read(path)

    assert after.read_bytes is not None and before.read_bytes is not None
    assert after.read_bytes < before.read_bytes  # the fault: the sum goes down
    earlier = {d.device: d for d in before.devices}
    assert len(earlier) == 2 and [d.device for d in after.devices] == ["8:0"]
    [left] = after.devices
    assert left.read_bytes == earlier["8:0"].read_bytes + 4096
    assert left.written_bytes == earlier["8:0"].written_bytes


@pytest.mark.parametrize(
    ("tree", "driver", "expected"),
    [
        ("v1-cgroupfs", "cgroupfs", "docker/abc123"),
        ("v1-systemd", "systemd", "system.slice/docker-abc123.scope"),
        ("v2-cgroupfs", "cgroupfs", "docker/abc123"),
        ("v2-systemd", "systemd", "system.slice/docker-abc123.scope"),
        # The engine's driver is only a first guess: the other layout is tried next.
        ("v1-cgroupfs", "systemd", "docker/abc123"),
        ("v2-systemd", "cgroupfs", "system.slice/docker-abc123.scope"),
    ],
)
def test_resolve_by_driver_layout(tree: str, driver: CgroupDriver, expected: str) -> None:
    reader = CgroupReader(CGROUP / tree)
    assert reader.resolve("abc123", "", driver) == expected
    assert reader.exists(expected)


def test_resolve_returns_none_when_missing() -> None:
    for tree in ("v1-cgroupfs", "v1-systemd", "v2-cgroupfs", "v2-systemd"):
        reader = CgroupReader(CGROUP / tree)
        assert reader.resolve("fff999", "", "cgroupfs") is None
        assert reader.resolve("fff999", "", "systemd") is None


def test_resolve_with_cgroup_parent(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    source = CGROUP / "v2-systemd/system.slice/docker-abc123.scope"
    shutil.copytree(source, root / "tenants.slice/tenants-a.slice/docker-abc123.scope")
    (root / "cgroup.controllers").write_text("cpu io memory pids\n")
    reader = CgroupReader(root)
    assert (
        reader.resolve("abc123", "tenants-a.slice", "systemd")
        == "tenants.slice/tenants-a.slice/docker-abc123.scope"
    )
    shutil.copytree(source, root / "batch/abc123")
    assert reader.resolve("abc123", "/batch", "cgroupfs") == "batch/abc123"


def test_resolve_falls_back_to_proc_pid_cgroup_v1(tmp_path: Path) -> None:
    # A container whose cgroup is neither where the driver nor the inspect data says: the
    # process's own /proc/PID/cgroup (recorded from the container above) tells where it is.
    root = tmp_path / "cgroup"
    for controller in ("cpuacct", "memory", "blkio"):
        shutil.copytree(
            CGROUP / "v1-cgroupfs" / controller / "docker/abc123",
            root / controller / "docker" / RECORDED_ID,
        )
    reader = CgroupReader(root)
    proc_text = (FIXTURES / "proc/cgroup-v1-docker").read_text()
    assert reader.resolve("abc123", "", "cgroupfs") is None
    path = reader.resolve("abc123", "", "cgroupfs", proc_text)
    assert path == f"docker/{RECORDED_ID}"
    assert reader.read(path) == V1_EXPECTED


def test_resolve_falls_back_to_proc_pid_cgroup_v2(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    shutil.copytree(CGROUP / "v2-cgroupfs", root)
    shutil.move(root / "docker/abc123", root / "kubepods/pod1/abc123")
    reader = CgroupReader(root)
    assert reader.resolve("abc123", "", "cgroupfs") is None
    assert reader.resolve("abc123", "", "cgroupfs", "0::/kubepods/pod1/abc123\n") == (
        "kubepods/pod1/abc123"
    )
    assert reader.resolve("abc123", "", "cgroupfs", "0::/elsewhere\n") is None


def test_parse_proc_cgroup_recorded_v1() -> None:
    text = (FIXTURES / "proc/cgroup-v1-docker").read_text()
    assert parse_proc_cgroup(text, 1) == f"docker/{RECORDED_ID}"  # the memory line
    assert parse_proc_cgroup(text, 2) == f"docker/{RECORDED_ID}"  # the hybrid "0::" line
    assert parse_proc_cgroup("4:memory:/a\n", 2) is None
    assert parse_proc_cgroup("0::/a\n", 1) is None
    assert parse_proc_cgroup("5:cpu,memory:/x/y\n", 1) == "x/y"


@pytest.mark.parametrize(
    ("slice_name", "expected"),
    [
        ("a-b-c.slice", "a.slice/a-b.slice/a-b-c.slice"),
        ("system.slice", "system.slice"),
        ("-.slice", ""),
        ("", ""),
    ],
)
def test_expand_systemd_slice(slice_name: str, expected: str) -> None:
    assert expand_systemd_slice(slice_name) == expected


@pytest.mark.parametrize(
    "slice_name",
    ["foo", "system.scope", ".slice", "-a.slice", "a--b.slice", "a-.slice", "a/b.slice"],
)
def test_expand_systemd_slice_rejects_invalid_names(slice_name: str) -> None:
    with pytest.raises(ValueError, match="not a systemd slice"):
        expand_systemd_slice(slice_name)


def test_container_cgroup_path() -> None:
    assert container_cgroup_path("abc", "", "cgroupfs") == "docker/abc"
    assert container_cgroup_path("abc", "/custom/", "cgroupfs") == "custom/abc"
    assert container_cgroup_path("abc", "", "systemd") == "system.slice/docker-abc.scope"
    assert container_cgroup_path("abc", "my-app.slice", "systemd") == (
        "my.slice/my-app.slice/docker-abc.scope"
    )
    assert container_cgroup_path("abc", "-.slice", "systemd") == "docker-abc.scope"


@pytest.mark.parametrize(
    ("tree", "path", "vanishing"),
    [
        ("v1-cgroupfs", "docker/abc123", "cpuacct/docker/abc123"),
        ("v1-cgroupfs", "docker/abc123", "memory/docker/abc123"),
        ("v2-systemd", "system.slice/docker-abc123.scope", "system.slice/docker-abc123.scope"),
    ],
)
def test_read_of_a_vanished_cgroup_raises_oserror(
    tmp_path: Path, tree: str, path: str, vanishing: str
) -> None:
    root = tmp_path / "cgroup"
    shutil.copytree(CGROUP / tree, root)
    reader = CgroupReader(root)
    reader.read(path)  # present: reads fine
    shutil.rmtree(root / vanishing)
    with pytest.raises(OSError):
        reader.read(path)


def test_missing_root_is_not_available(tmp_path: Path) -> None:
    reader = CgroupReader(tmp_path / "nothing")
    assert reader.version == 1
    assert not reader.available()


# Issue 14: densityd in a container with a private cgroup namespace reads other processes'
# cgroups relative to its own namespace root (recorded on this host: "/../<id>" on v1; on a
# v2 systemd host "0::/../../system.slice/docker-<id>.scope", DESIGN §4.2).


@pytest.mark.parametrize(
    ("init_cgroup", "private"),
    [
        ("0::/../..\n", True),  # v2, from a container's own namespace
        ("12:memory:/..\n11:pids:/..\n", True),  # v1, as recorded here with --cgroupns=private
        ("0::/init.scope\n", False),  # v2 systemd host, the host's namespace
        ("12:memory:/\n0::/\n", False),  # v1 host without systemd
    ],
)
def test_in_private_namespace_is_told_from_the_hosts_init(
    tmp_path: Path, init_cgroup: str, private: bool
) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cgroup").write_text(init_cgroup)
    assert in_private_namespace(tmp_path) is private
    assert in_private_namespace(tmp_path / "absent") is False


def test_a_path_from_a_private_namespace_is_resolved_where_the_climb_reaches_the_root(
    tmp_path: Path,
) -> None:
    """v2, systemd: densityd in system.slice/docker-D.scope climbs two levels to the root."""
    root = tmp_path / "cgroup"
    shutil.copytree(CGROUP / "v2-systemd", root)
    shutil.move(root / "system.slice/docker-abc123.scope", root / "mytest.slice/docker-X.scope")
    reader = CgroupReader(root)
    assert reader.resolve("X", "", "systemd") is None  # not where the driver puts it
    relative = "0::/../../mytest.slice/docker-X.scope\n"
    assert reader.resolve("X", "", "systemd", relative) == "mytest.slice/docker-X.scope"


def test_a_path_from_a_private_namespace_is_searched_for_below_where_they_meet(
    tmp_path: Path,
) -> None:
    """v1, cgroupfs: densityd in docker/D climbs one level, to docker/: the rest is searched."""
    root = tmp_path / "cgroup"
    for controller in ("cpuacct", "memory", "blkio"):
        shutil.copytree(
            CGROUP / "v1-cgroupfs" / controller / "docker/abc123",
            root / controller / "custom" / "parent" / RECORDED_ID,
        )
    reader = CgroupReader(root)
    relative = f"12:memory:/../{RECORDED_ID}\n"
    assert reader.resolve(RECORDED_ID, "", "cgroupfs") is None
    path = reader.resolve(RECORDED_ID, "", "cgroupfs", relative)
    assert path == f"custom/parent/{RECORDED_ID}"
    assert reader.read(path) == V1_EXPECTED
    # Two matches are no answer (never the wrong container), nor is a climb in the middle.
    shutil.copytree(root / "memory/custom", root / "memory/other")
    assert reader.resolve(RECORDED_ID, "", "cgroupfs", relative) is None
    assert reader.from_other_namespace(f"../custom/../{RECORDED_ID}") is None
