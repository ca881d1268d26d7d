"""The cgroup parsers against recorded trees: v1 from this machine, v2 written in its format.

``v1-cgroupfs`` was recorded from Docker 20.10 (cgroupfs driver, cgroup v1) for a container
run with ``--memory 128m --cpus 0.5 --tmpfs /data:size=200m`` after it wrote 20 MiB to the
tmpfs; ``v1-systemd`` holds the same files in the systemd driver's layout (with the co-mounted
``cpu,cpuacct`` directory systemd hosts have). The v2 trees follow the kernel's cgroup-v2
documentation: ``v2-systemd`` as a 6.1 kernel prints it, ``v2-cgroupfs`` as 5.10 does, without
``io.stat`` because the io controller is not enabled in ``docker/cgroup.subtree_control``.

The starvation signals: ``v1-cgroupfs``'s ``cpu.stat``, ``memory.oom_control`` and
``memory.soft_limit_in_bytes`` were recorded from a container run here with ``--cpus 0.2
--memory 32m --memory-reservation 16m`` whose ``dd bs=64M`` was OOM-killed before it burned
CPU with ``yes``; the v2 pressure, ``memory.events`` and ``memory.{min,low,high}`` files follow
Documentation/accounting/psi.rst and cgroup-v2.rst (``v2-cgroupfs`` has no pressure files: a
kernel without PSI). No kernel here lacks PSI, so ``EOPNOTSUPP`` (``psi=0``) is given by a
reader that raises it, as the kernel does.
"""

from __future__ import annotations

import dataclasses
import errno
import shutil
from pathlib import Path

import pytest

from densityd.collect.sources import cgroups
from densityd.collect.sources.cgroups import (
    CgroupDriver,
    CgroupReader,
    CgroupSignals,
    CgroupStats,
    DeviceIO,
    container_cgroup_path,
    expand_systemd_slice,
    in_private_namespace,
    libvirt_machine_name,
    machine_cgroup_paths,
    parse_blkio_v1,
    parse_flat_keyed,
    parse_io_stat_v2,
    parse_memory_protection,
    parse_pressure,
    parse_proc_cgroup,
    parse_soft_limit_v1,
    parse_throttling,
    read_oom_kill_counter,
    working_set,
)
from densityd.model import Pressure
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
    signals=CgroupSignals(
        cpu_periods=33,
        cpu_throttled_periods=30,
        cpu_throttled_seconds=2.072156091,
        oom_kills=1,
        memory_soft_limit_bytes=16 * 2**20,
    ),
)

V2_SIGNALS = CgroupSignals(
    cpu_pressure=Pressure(4.812004, 0.0),
    memory_pressure=Pressure(0.250913, 0.198771),
    io_pressure=Pressure(0.07712, 0.070311),
    cpu_periods=1200,
    cpu_throttled_periods=31,
    cpu_throttled_seconds=2.203411,
    oom_kills=2,
    memory_min_bytes=None,  # 0: not set
    memory_low_bytes=64 * 2**20,
    memory_high_bytes=None,  # max
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
        signals=V2_SIGNALS,
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
        # No pressure files (a kernel without PSI), no memory.events, no memory.min/low/high.
        signals=CgroupSignals(cpu_periods=0, cpu_throttled_periods=0, cpu_throttled_seconds=0.0),
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
    for controller in ("cpuacct", "cpu", "memory", "blkio"):
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
    for controller in ("cpuacct", "cpu", "memory", "blkio"):
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


# -- starvation signals -------------------------------------------------------------------

# /proc/pressure/cpu of a 5.13+ kernel (it has a "full" line) and of an older one (only "some").
PSI_CPU = (
    "some avg10=26.20 avg60=33.10 avg300=13.30 total=1282194789\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)
PSI_CPU_OLD = "some avg10=0.00 avg60=0.00 avg300=0.00 total=8860601\n"


def test_parse_pressure_some_and_full_in_seconds() -> None:
    assert parse_pressure(PSI_CPU) == Pressure(1282.194789, 0.0)


def test_parse_pressure_without_a_full_line() -> None:
    assert parse_pressure(PSI_CPU_OLD) == Pressure(8.860601, None)


def test_parse_pressure_skips_malformed_lines() -> None:
    text = "some avg10=1 total=-5\nfull total=12\nbogus total=99\n\n"
    assert parse_pressure(text) == Pressure(None, 1.2e-05)
    assert parse_pressure("") == Pressure(None, None)


def test_parse_throttling_v1_in_nanoseconds_v2_in_microseconds() -> None:
    v1 = parse_flat_keyed("nr_periods 33\nnr_throttled 30\nthrottled_time 2072156091\n")
    assert parse_throttling(v1, 1) == (33, 30, 2.072156091)
    v2 = parse_flat_keyed(
        "usage_usec 5\nnr_periods 1200\nnr_throttled 31\nthrottled_usec 2203411\n"
    )
    assert parse_throttling(v2, 2) == (1200, 31, 2.203411)


def test_parse_throttling_without_the_cpu_controller_is_unknown() -> None:
    # A v2 cgroup without the cpu controller prints only the usage lines.
    stat = parse_flat_keyed("usage_usec 5\nuser_usec 3\nsystem_usec 2\n")
    assert parse_throttling(stat, 2) == (None, None, None)
    assert parse_throttling({}, 1) == (None, None, None)


def test_oom_kill_from_memory_events_and_oom_control() -> None:
    events = "low 0\nhigh 12\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n"
    assert parse_flat_keyed(events)["oom_kill"] == 2
    control = (CGROUP / "v1-cgroupfs/memory/docker/abc123/memory.oom_control").read_text()
    assert parse_flat_keyed(control) == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 1}


def test_memory_protection_only_where_set() -> None:
    assert parse_memory_protection("max\n", zero_is_unset=False) is None
    assert parse_memory_protection("0\n", zero_is_unset=True) is None  # min, low: 0 is unset
    assert parse_memory_protection("0\n", zero_is_unset=False) == 0  # high 0: set (and harsh)
    assert parse_memory_protection("67108864\n", zero_is_unset=True) == 64 * 2**20
    assert parse_memory_protection("garbage", zero_is_unset=True) is None


def test_v1_soft_limit_unlimited_is_not_set() -> None:
    assert parse_soft_limit_v1("9223372036854771712\n") is None
    assert parse_soft_limit_v1("16777216\n") == 16 * 2**20
    assert parse_soft_limit_v1("") is None


def test_v1_signals_have_no_pressure_and_say_why_once(caplog: pytest.LogCaptureFixture) -> None:
    cgroups._LOGGED.clear()
    reader = CgroupReader(CGROUP / "v1-cgroupfs")
    with caplog.at_level("INFO", logger="densityd.sources.cgroups"):
        for _ in range(3):
            assert reader.read("docker/abc123").signals == V1_EXPECTED.signals
    messages = [r.getMessage() for r in caplog.records if "pressure" in r.getMessage()]
    assert messages == [
        "per-workload pressure (PSI) is not exported: the host is on cgroup v1, which has no "
        "per-cgroup PSI"
    ]


def test_v2_without_pressure_files_is_a_kernel_without_psi(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cgroups._LOGGED.clear()
    reader = CgroupReader(CGROUP / "v2-cgroupfs")
    with caplog.at_level("INFO", logger="densityd.sources.cgroups"):
        reader.read("docker/abc123")
        reader.read("docker/def456")
    assert reader.pressure_unavailable is not None
    assert "the kernel has no PSI" in reader.pressure_unavailable
    assert sum("pressure (PSI) is not exported" in r.getMessage() for r in caplog.records) == 1


def test_v2_pressure_eopnotsupp_is_psi_off_and_not_tried_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Booted with psi=0 the files are there, but reading them fails with EOPNOTSUPP."""
    cgroups._LOGGED.clear()
    real_read = cgroups.read_kernel_file
    pressure_reads: list[str] = []

    def psi_off(path: str) -> str:
        if path.endswith(".pressure"):
            pressure_reads.append(path)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported", path)
        return real_read(path)

    monkeypatch.setattr(cgroups, "read_kernel_file", psi_off)
    reader = CgroupReader(CGROUP / "v2-systemd")
    with caplog.at_level("INFO", logger="densityd.sources.cgroups"):
        for _ in range(3):
            stats = reader.read("system.slice/docker-abc123.scope")
            assert stats.signals == dataclasses.replace(
                V2_SIGNALS, cpu_pressure=None, memory_pressure=None, io_pressure=None
            )
    assert len(pressure_reads) == 1  # known unavailable after the first failure
    assert reader.pressure_unavailable is not None
    assert "EOPNOTSUPP" in reader.pressure_unavailable
    assert sum("pressure (PSI) is not exported" in r.getMessage() for r in caplog.records) == 1


def test_pressure_of_a_cgroup_removed_while_read_does_not_turn_psi_off(tmp_path: Path) -> None:
    reader = CgroupReader(CGROUP / "v2-systemd")
    assert reader._pressure(str(tmp_path / "gone")) == (None, None, None)
    assert reader.pressure_unavailable is None


def test_libvirt_machine_name_as_libvirt_makes_it() -> None:
    assert libvirt_machine_name(1, "densityd-test-sigprobe") == "qemu-1-densityd-test-sigprobe"
    # Runs of - and . become one, leading and trailing ones go, other characters are dropped.
    assert libvirt_machine_name(7, "..web--1_ü.x.") == "qemu-7-web-1.x"
    assert len(libvirt_machine_name(12, "a" * 100)) == 64


def test_machine_cgroup_paths_v1_cgroupfs_and_systemd_scopes() -> None:
    assert machine_cgroup_paths("/machine", 3, "vm-a") == (
        "machine/qemu-3-vm-a.libvirt-qemu",
        "machine.slice/machine-qemu\\x2d3\\x2dvm\\x2da.scope",
    )
    assert machine_cgroup_paths("/machine/tenant", 3, "b") == (
        "machine/tenant.partition/qemu-3-b.libvirt-qemu",
        "machine.slice/machine-tenant.slice/machine-qemu\\x2d3\\x2db.scope",
    )


def _v2_machine_tree(root: Path, scope: str) -> None:
    """A cgroup v2 tree holding one VM the way libvirt places it under systemd."""
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    directory = root / "machine.slice" / scope
    directory.mkdir(parents=True)
    (directory / "cpu.stat").write_text(
        "usage_usec 912\nuser_usec 500\nsystem_usec 412\nnr_periods 40\n"
        "nr_throttled 4\nthrottled_usec 51000\n"
    )
    for resource, total in (("cpu", 7000), ("memory", 0), ("io", 1500)):
        (directory / f"{resource}.pressure").write_text(
            f"some avg10=0.00 avg60=0.00 avg300=0.00 total={total}\n"
            f"full avg10=0.00 avg60=0.00 avg300=0.00 total={total // 2}\n"
        )


def test_vm_signals_on_v2_from_the_libvirt_scope(tmp_path: Path) -> None:
    """The guest has no libvirt: a VM's v2 scope is checked in libvirt's layout here."""
    scope = "machine-qemu\\x2d4\\x2dweb.scope"
    _v2_machine_tree(tmp_path, scope)
    reader = CgroupReader(tmp_path)
    path = reader.find_machine("/machine", 4, "web")
    assert path == f"machine.slice/{scope}"
    assert reader.read_signals(path, memory=False) == CgroupSignals(
        cpu_pressure=Pressure(0.007, 0.0035),
        memory_pressure=Pressure(0.0, 0.0),
        io_pressure=Pressure(0.0015, 0.00075),
        cpu_periods=40,
        cpu_throttled_periods=4,
        cpu_throttled_seconds=0.051,
    )


def test_find_machine_by_domain_id_when_the_name_was_cut_otherwise(tmp_path: Path) -> None:
    _v2_machine_tree(tmp_path, "machine-qemu\\x2d9\\x2dshort.scope")
    reader = CgroupReader(tmp_path)
    assert reader.find_machine("/machine", 9, "a-name-libvirt-cut") == (
        "machine.slice/machine-qemu\\x2d9\\x2dshort.scope"
    )
    assert reader.find_machine("/machine", 19, "short") is None  # qemu-1 is not qemu-19
    # Two candidates (one left by an earlier libvirtd): ambiguous, not a guess.
    (tmp_path / "machine.slice/machine-qemu\\x2d9\\x2dold.scope").mkdir()
    assert reader.find_machine("/machine", 9, "a-name-libvirt-cut") is None


def test_find_machine_on_v1_in_the_cpu_hierarchy(tmp_path: Path) -> None:
    for controller in ("memory", "cpuacct", "cpu"):
        (tmp_path / controller).mkdir()
    directory = tmp_path / "cpu/machine/qemu-2-vm.libvirt-qemu"
    directory.mkdir(parents=True)
    (directory / "cpu.stat").write_text("nr_periods 27\nnr_throttled 3\nthrottled_time 5000000\n")
    reader = CgroupReader(tmp_path)
    path = reader.find_machine("/machine", 2, "vm")
    assert path == "machine/qemu-2-vm.libvirt-qemu"
    assert reader.read_signals(path, memory=False) == CgroupSignals(
        cpu_periods=27, cpu_throttled_periods=3, cpu_throttled_seconds=0.005
    )


@pytest.mark.parametrize(
    ("tree", "path", "kills"),
    [
        ("v1-cgroupfs", "docker/abc123", V1_EXPECTED.signals.oom_kills),
        ("v2-systemd", "system.slice/docker-abc123.scope", V2_SIGNALS.oom_kills),
    ],
)
def test_the_oom_kill_counter_alone_is_the_one_the_signals_read(
    tree: str, path: str, kills: int | None
) -> None:
    """What the events and notices threads read: the same counter as a pass."""
    reader = CgroupReader(CGROUP / tree)
    alone = read_oom_kill_counter(reader.oom_kills_file(path))
    assert alone == kills == reader.read_signals(path).oom_kills
    # The cgroup already removed:
    assert read_oom_kill_counter(reader.oom_kills_file("docker/gone")) is None
