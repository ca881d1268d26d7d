"""The host source against a recorded ``/proc/meminfo`` (this machine's) and real directories."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from densityd.collect.sources import host as host_module
from densityd.collect.sources.host import (
    HostSource,
    ShimRssReader,
    disk_usage,
    parse_meminfo,
    read_host_pressure,
    read_ksm,
    read_shim_rss,
)
from densityd.model import DiskUsage, Pressure, SourceReading
from tests import paths

PROC = paths.FIXTURES / "proc"


def test_parse_meminfo_recorded() -> None:
    values = parse_meminfo((PROC / "meminfo").read_text())
    assert values["MemTotal"] == 24683656 * 1024
    assert values["MemFree"] == 23925004 * 1024
    assert values["MemAvailable"] == 24286468 * 1024
    assert values["Hugepagesize"] == 2048 * 1024
    assert values["HugePages_Total"] == 0
    assert len(values) == 54  # one entry per line of the recorded file


def test_parse_meminfo_counts_are_not_scaled() -> None:
    text = "MemTotal:        2048 kB\nHugePages_Total:      12\nHugePages_Free:        3\n\n"
    assert parse_meminfo(text) == {
        "MemTotal": 2097152,
        "HugePages_Total": 12,
        "HugePages_Free": 3,
    }


def test_host_source_reads_the_injected_proc_root(tmp_path: Path) -> None:
    source = HostSource(proc_root=PROC, disk_paths=lambda: [str(tmp_path)])
    reading = source.sample()
    assert isinstance(reading, SourceReading)
    assert reading.workloads == ()
    host = reading.host
    assert host is not None
    assert host.cpu_cores == (os.cpu_count() or 1)
    assert host.memory_bytes == 24683656 * 1024
    assert host.memory_available_bytes == 24286468 * 1024
    assert [d.path for d in host.disks] == [str(tmp_path)]
    stat = os.statvfs(tmp_path)
    disk = host.disks[0]
    assert disk.total_bytes == stat.f_blocks * stat.f_frsize
    assert 0 < disk.free_bytes <= disk.total_bytes


def test_host_source_skips_missing_none_and_duplicate_paths(tmp_path: Path) -> None:
    other = tmp_path / "images"
    other.mkdir()
    paths = [None, str(tmp_path), str(tmp_path / "missing"), str(other), str(tmp_path), ""]
    host = HostSource(proc_root=PROC, disk_paths=lambda: paths).sample().host
    assert host is not None
    assert [d.path for d in host.disks] == [str(tmp_path), str(other)]


def test_host_source_asks_for_disk_paths_on_every_sample(tmp_path: Path) -> None:
    # The Docker data root becomes known only once Docker is reached: ask each time.
    paths: list[str | None] = [None]
    source = HostSource(proc_root=PROC, disk_paths=lambda: paths)
    first = source.sample().host
    paths[0] = str(tmp_path)
    second = source.sample().host
    assert first is not None and first.disks == ()
    assert second is not None and [d.path for d in second.disks] == [str(tmp_path)]


def test_host_source_without_memavailable_uses_memfree(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:  1000 kB\nMemFree:  300 kB\nBuffers:  10 kB\n")
    host = HostSource(proc_root=tmp_path).sample().host
    assert host is not None
    assert (host.memory_bytes, host.memory_available_bytes) == (1024000, 307200)
    assert host.disks == ()


def test_host_source_fails_without_meminfo(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        HostSource(proc_root=tmp_path).sample()


def test_probe_describes_the_host() -> None:
    text = HostSource(proc_root=PROC).probe()
    assert text == f"{os.cpu_count() or 1} CPU cores, 23.5 GiB memory"


def test_disk_usage(tmp_path: Path) -> None:
    usage = disk_usage(str(tmp_path))
    stat = os.statvfs(tmp_path)
    assert isinstance(usage, DiskUsage)
    assert usage.path == str(tmp_path)
    assert usage.total_bytes == stat.f_blocks * stat.f_frsize
    assert usage.total_bytes > 0
    assert disk_usage(str(tmp_path / "missing")) is None  # not here: skipped, not a failure


def test_a_hung_filesystem_costs_only_its_own_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statvfs that never returns: the host's figures and the other paths stay current."""
    hung, healthy = tmp_path / "nfs", tmp_path / "local"
    hung.mkdir()
    healthy.mkdir()
    gate, calls = threading.Event(), []
    real_statvfs = os.statvfs

    def statvfs(path: str) -> os.statvfs_result:
        calls.append(path)
        if path == str(hung):
            gate.wait(30)
        return real_statvfs(path)

    monkeypatch.setattr(host_module.os, "statvfs", statvfs)
    source = HostSource(
        proc_root=PROC, disk_paths=lambda: [str(hung), str(healthy)], disk_timeout=0.8
    )
    try:
        started = time.monotonic()
        first = source.sample().host
        assert time.monotonic() - started < 0.5 + 0.5  # the wait for paths, and a margin
        assert first is not None and first.memory_bytes > 0
        assert [d.path for d in first.disks] == [str(healthy)]
        pending = {c.name: c for c in first.disk_checks}[str(hung)]
        assert (pending.up, pending.last_error) == (False, "no answer yet")  # not known yet
        assert pending.errors_total == 0  # not a failure (yet): within its deadline
        time.sleep(0.5)  # past the hung call's deadline (0.8 s)
        for _ in range(3):
            host = source.sample().host
            assert host is not None and host.cpu_cores > 0
            assert [d.path for d in host.disks] == [str(healthy)]
            checks = {c.name: c for c in host.disk_checks}
            assert checks[str(healthy)].up
            assert not checks[str(hung)].up
            assert "deadline" in checks[str(hung)].last_error
            assert checks[str(hung)].errors_total == 1
        assert calls.count(str(hung)) == 1  # the stuck call is never started twice
        gate.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(host.disks) < 2:
            time.sleep(0.05)
            host = source.sample().host
            assert host is not None
        assert {d.path for d in host.disks} == {str(hung), str(healthy)}
        assert all(c.up for c in host.disk_checks)
    finally:
        gate.set()


def test_read_ksm_counts_pages_in_bytes(tmp_path: Path) -> None:
    (tmp_path / "pages_shared").write_text("3\n")
    (tmp_path / "pages_sharing").write_text("11\n")
    page = os.sysconf("SC_PAGE_SIZE")
    assert read_ksm(tmp_path) == (3 * page, 11 * page)


def test_read_ksm_without_ksm_is_unknown(tmp_path: Path) -> None:
    assert read_ksm(tmp_path / "absent") == (None, None)


def test_host_source_reports_ksm(tmp_path: Path) -> None:
    ksm = tmp_path / "ksm"
    ksm.mkdir()
    (ksm / "pages_shared").write_text("2\n")
    (ksm / "pages_sharing").write_text("5\n")
    host = HostSource(proc_root=PROC, ksm_dir=ksm).sample().host
    assert host is not None
    assert host.ksm_sharing_bytes == 5 * os.sysconf("SC_PAGE_SIZE")


def _process(proc: Path, pid: int, comm: str, rss_kb: int | None) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "comm").write_text(comm + "\n")
    status = f"Name:\t{comm}\nState:\tS (sleeping)\nPid:\t{pid}\n"
    if rss_kb is not None:
        status += f"VmRSS:\t   {rss_kb} kB\nRssAnon:\t    4096 kB\n"
    (proc / str(pid) / "status").write_text(status)


def test_read_shim_rss_finds_v1_and_v2_shims_only(tmp_path: Path) -> None:
    _process(tmp_path, 10, "containerd-shim", 13120)
    _process(tmp_path, 11, "containerd-shim", 12800)  # runc-v2 shims' comm is truncated too
    _process(tmp_path, 12, "containerd", 40000)
    _process(tmp_path, 13, "dockerd", 90000)
    _process(tmp_path, 14, "containerd-shim", None)  # a zombie has no VmRSS
    (tmp_path / "self").mkdir()
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\n")
    assert sorted(read_shim_rss(tmp_path)) == [12800 * 1024, 13120 * 1024]


def test_the_shim_reader_reads_again_only_shims_and_new_processes(tmp_path: Path) -> None:
    _process(tmp_path, 10, "containerd-shim", 13120)
    _process(tmp_path, 12, "dockerd", 90000)
    reader = ShimRssReader(tmp_path)
    assert reader.read() == (13120 * 1024,)
    assert reader.read() == (13120 * 1024,)  # dockerd seen at a second pass
    # dockerd's status is not read again (it would count as a shim now); the shim's RSS is.
    (tmp_path / "12" / "status").write_text("Name:\tcontainerd-shim\nVmRSS:\t1 kB\n")
    (tmp_path / "10" / "status").write_text("Name:\tcontainerd-shim\nVmRSS:\t14000 kB\n")
    _process(tmp_path, 20, "containerd-shim", 9000)  # a new container's shim
    assert sorted(reader.read()) == [9000 * 1024, 14000 * 1024]
    shutil.rmtree(tmp_path / "10")  # its container is gone
    assert reader.read() == (9000 * 1024,)


def test_a_process_caught_before_it_execs_a_shim_is_read_again(tmp_path: Path) -> None:
    """containerd forks, then execs the shim: listed in between, the PID is containerd's."""
    _process(tmp_path, 30, "containerd", 40000)
    reader = ShimRssReader(tmp_path)
    assert reader.read() == ()
    (tmp_path / "30" / "status").write_text("Name:\tcontainerd-shim\nVmRSS:\t12000 kB\n")
    assert reader.read() == (12000 * 1024,)


def test_read_shim_rss_without_proc_is_empty(tmp_path: Path) -> None:
    assert read_shim_rss(tmp_path / "missing") == ()


def test_disk_usage_device_tells_filesystems_apart(tmp_path: Path) -> None:
    assert disk_usage(str(tmp_path)).device == os.stat(tmp_path).st_dev
    assert disk_usage("/proc").device != disk_usage(str(tmp_path)).device


def test_host_pressure_from_the_recorded_proc_pressure() -> None:
    """``tests/fixtures/proc/pressure`` was recorded from this host (kernel 6.18, psi=1)."""
    recorded = {
        resource: [
            int(field.split("=")[1]) / 1e6
            for line in (PROC / "pressure" / resource).read_text().splitlines()
            for field in line.split()
            if field.startswith("total=")
        ]
        for resource in ("cpu", "memory", "io")
    }
    host = HostSource(proc_root=PROC).sample().host
    assert host is not None
    for resource, pressure in (
        ("cpu", host.cpu_pressure),
        ("memory", host.memory_pressure),
        ("io", host.io_pressure),
    ):
        assert pressure == Pressure(*recorded[resource]), resource


def test_host_pressure_absent_without_psi_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "meminfo").write_text((PROC / "meminfo").read_text())
    source = HostSource(proc_root=tmp_path)
    with caplog.at_level("INFO", logger="densityd.sources.host"):
        for _ in range(3):
            host = source.sample().host
            assert host is not None
            assert (host.cpu_pressure, host.memory_pressure, host.io_pressure) == (None,) * 3
    said = [r.getMessage() for r in caplog.records if "pressure" in r.getMessage()]
    assert len(said) == 1
    assert "the kernel has no PSI" in said[0]


def test_host_pressure_eopnotsupp_is_psi_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Booted with psi=0, /proc/pressure/* exist but reading them gives EOPNOTSUPP."""

    def psi_off(self: Path, *args: object, **kwargs: object) -> str:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported", str(self))

    monkeypatch.setattr(Path, "read_text", psi_off)
    pressures, reason = read_host_pressure(PROC / "pressure")
    assert pressures == (None, None, None)
    assert reason is not None and "EOPNOTSUPP" in reason and "psi=0" in reason
