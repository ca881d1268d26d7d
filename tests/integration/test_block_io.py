"""Block I/O counters stay monotonic when a device goes away, on the real backends.

A sum over devices drops when one of them is removed, and Prometheus reads a counter that
drops as a reset: the whole new value counts as an increase. Each test removes a real device
while a daemon samples every second, scrapes throughout, and checks the ground truth (the sum
really dropped) and the exposition (no ``_total`` I/O series ever went down; the removed
device's series ended).

- Container: a zram device made for the test (``/sys/class/zram-control/hot_add``) is written
  from inside a container, then removed (``hot_remove``), which takes it out of the
  container's blkio file. On cgroup v1 with this kernel (6.18), ``blkio.throttle.io_service_bytes``
  counts only I/O to devices with a throttle rule, hence the ``--device-*-bps`` flags.
- VM: a TCG domain with no OS tries to boot from its SCSI disk first, so the BIOS reads that
  disk's boot sector; the SCSI disk is then hot-unplugged with ``virsh detach-disk --live`` (a
  SCSI disk leaves at once; a virtio one would wait for a guest OS to release it).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.backends import (
    Containers,
    Daemon,
    DockerCLI,
    Series,
    VMs,
    missing_backend,
    parse_domstats,
    promtool,
    value_of,
    virsh,
)

pytestmark = pytest.mark.integration

KiB = 1024
IO_COUNTERS = (
    "densityd_workload_disk_read_bytes_total",
    "densityd_workload_disk_written_bytes_total",
)
# A throttle rule far above what a test writes: it only makes cgroup v1 count the device.
THROTTLE = "1gb"
ZRAM_CONTROL = Path("/sys/class/zram-control")

IoSeries = dict[tuple[str, str], float]


def io_series(series: Series, workload_id: str) -> IoSeries:
    """The workload's I/O counter samples, by (metric, device)."""
    return {
        (name, dict(labels).get("device", "")): value
        for (name, labels), value in series.items()
        if name in IO_COUNTERS and ("id", workload_id) in labels
    }


def scrape_until(
    daemon: Daemon,
    workload_id: str,
    done: Callable[[IoSeries], bool],
    what: str,
    timeout: float = 30,
) -> list[IoSeries]:
    """Every scrape's I/O series of the workload, until ``done`` holds for the latest one."""
    scrapes: list[IoSeries] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scrapes.append(io_series(daemon.scrape(), workload_id))
        if done(scrapes[-1]):
            return scrapes
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {scrapes[-1:]}")


def scrape_after_a_pass(daemon: Daemon, workload_id: str, since: float) -> list[IoSeries]:
    """The workload's I/O series in every scrape until one shows a pass started after ``since``."""
    scrapes: list[IoSeries] = []

    def passed(series: Series) -> bool:
        scrapes.append(io_series(series, workload_id))
        return (value_of(series, "densityd_last_pass_timestamp_seconds") or 0) > since

    daemon.wait_for(passed, what="a pass after the removal")
    return scrapes


def assert_monotonic(scrapes: list[IoSeries]) -> None:
    """No series is ever lower than in an earlier scrape (a series may end, not drop)."""
    highest: IoSeries = {}
    for index, scrape in enumerate(scrapes):
        for key, value in scrape.items():
            assert value >= highest.get(key, 0), f"{key} went down at scrape {index}: {scrapes}"
            highest[key] = value


def disk_of(path: str) -> tuple[str, str]:
    """The whole disk holding ``path`` (not a partition of it), as (name, MAJ:MIN)."""
    number = os.stat(path).st_dev
    block = Path("/sys/dev/block") / f"{os.major(number)}:{os.minor(number)}"
    if (block / "partition").exists():
        block = block.resolve().parent  # a partition's directory sits in its disk's
    name = next(
        line.partition("=")[2]
        for line in (block / "uevent").read_text().splitlines()
        if line.startswith("DEVNAME=")
    )
    return name, (block / "dev").read_text().strip()


def blkio_written(container_id: str) -> dict[str, int]:
    """Bytes written per device number, from the container's v1 blkio throttle file."""
    path = Path("/sys/fs/cgroup/blkio/docker", container_id)
    written = {}
    for line in (path / "blkio.throttle.io_service_bytes_recursive").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "Write":
            written[parts[0]] = int(parts[2])
    return written


@pytest.fixture
def zram() -> Iterator[tuple[str, str]]:
    """A new 16 MiB zram device, as (name, MAJ:MIN); removed afterwards if still there."""
    if not (ZRAM_CONTROL / "hot_add").exists():
        missing_backend("no /sys/class/zram-control (modprobe zram)")
    index = (ZRAM_CONTROL / "hot_add").read_text().strip()
    name = f"zram{index}"
    try:
        (Path("/sys/block") / name / "disksize").write_text("16M")
        number = (Path("/sys/block") / name / "dev").read_text().strip()
        deadline = time.monotonic() + 5
        while not Path("/dev", name).exists():  # devtmpfs makes the node, no udev needed
            assert time.monotonic() < deadline, f"/dev/{name} never appeared"
            time.sleep(0.05)
        yield name, number
    finally:
        if (Path("/sys/block") / name).exists():
            (ZRAM_CONTROL / "hot_remove").write_text(index)


@pytest.fixture
def daemon(start_daemon, docker_cli: DockerCLI) -> Daemon:  # type: ignore[no-untyped-def]
    """A daemon sampling containers (only) every second."""
    return start_daemon("--no-libvirt")  # type: ignore[no-any-return]


def test_container_device_removed_keeps_every_io_counter_monotonic(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI, zram: tuple[str, str]
) -> None:
    """A zram device leaves the container's blkio file: its series ends, none goes down."""
    removable, number = zram
    root_disk, root_number = disk_of(docker_cli("info", "--format", "{{.DockerRootDir}}"))
    flags = ["--device", f"/dev/{removable}"]
    for device in (f"/dev/{removable}", f"/dev/{root_disk}"):
        flags += ["--device-read-bps", f"{device}:{THROTTLE}"]
        flags += ["--device-write-bps", f"{device}:{THROTTLE}"]
    writer = containers.run(
        *flags,
        command=f"dd if=/dev/zero of=/dev/{removable} bs=64k count=16 oflag=direct"
        " && dd if=/dev/zero of=/blob bs=64k count=8 oflag=direct && exec sleep 3600",
    )
    written = "densityd_workload_disk_written_bytes_total"

    def all_written(io: IoSeries) -> bool:
        return sum(v for (name, _), v in io.items() if name == written) >= (1024 + 512) * KiB

    before = scrape_until(daemon, writer, all_written, "the writes to both devices")
    truth = blkio_written(writer)
    (ZRAM_CONTROL / "hot_remove").write_text(removable.removeprefix("zram"))
    after_truth = blkio_written(writer)
    assert sum(after_truth.values()) < sum(truth.values())  # the fault: the sum dropped
    after = scrape_after_a_pass(daemon, writer, time.time())

    assert_monotonic(before + after)
    # dd is done and the container idle: the file's per-device counts are the exported ones,
    # named as the kernel names them.
    assert before[-1][(written, removable)] == truth[number] == 1024 * KiB
    assert before[-1][(written, root_disk)] == truth[root_number] >= 512 * KiB
    assert number not in after_truth
    assert {device for _, device in after[-1]} == {root_disk}
    assert after[-1][(written, root_disk)] == after_truth[root_number]
    assert_promtool_accepts(daemon.metrics_text())


def assert_promtool_accepts(text: str) -> None:
    """``promtool check metrics`` finds nothing to say about ``text``."""
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def block_stats(name: str, key: str) -> dict[str, int]:
    """``block.N.<key>`` of a domain by disk target, from ``virsh domstats --block``."""
    stats = parse_domstats(virsh("domstats", "--block", name))
    return {
        stats[f"block.{index}.name"]: int(stats[f"block.{index}.{key}"])
        for index in range(int(stats["block.count"]))
    }


def test_vm_disk_hot_unplugged_keeps_every_io_counter_monotonic(
    start_daemon: Callable[..., Daemon], vms: VMs, libvirt_ready: str
) -> None:
    """``virsh detach-disk --live`` of a read disk: its series ends, none goes down."""
    daemon = start_daemon("--no-docker", "--libvirt-uri", libvirt_ready)
    uuid = vms.define(disks_mib=(64,), scsi_disks_mib=(32,))
    name = virsh("domname", uuid)
    read = "densityd_workload_disk_read_bytes_total"

    def boot_sector_read(io: IoSeries) -> bool:  # the BIOS read sda's (vda's is never tried)
        return sum(v for (metric, _), v in io.items() if metric == read) >= 512

    before = scrape_until(daemon, uuid, boot_sector_read, "the BIOS reading the SCSI disk")
    truth = block_stats(name, "rd.bytes")
    virsh("detach-disk", name, "sda", "--live")
    after_truth = block_stats(name, "rd.bytes")
    assert sum(after_truth.values()) < sum(truth.values())  # the fault: the sum dropped
    after = scrape_after_a_pass(daemon, uuid, time.time())

    assert_monotonic(before + after)
    assert set(truth) == {"sda", "vda"} and set(after_truth) == {"vda"}
    # The BIOS is done reading (it retries only after 60 s): the counts are steady.
    assert before[-1][(read, "sda")] == truth["sda"] >= 512
    assert (read, "vda") in before[-1]
    assert {device for _, device in after[-1]} == {"vda"}
    assert after[-1][(read, "vda")] == after_truth["vda"]
    assert_promtool_accepts(daemon.metrics_text())
