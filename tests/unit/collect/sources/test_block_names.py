"""Device names from a sysfs tree, and the Docker source's I/O per named device.

``tests/fixtures/sys/dev/block`` holds ``uevent`` files: ``254:0`` (vda) and ``253:0``
(zram0) recorded from this machine, ``8:0`` (sda) and ``259:0`` (nvme0n1) written in the same
format for the devices of the recorded Docker 24 stats document.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from densityd.collect.sources.block_names import BlockDeviceNames
from densityd.collect.sources.docker import DockerSource
from tests import paths
from tests.unit.collect.sources.test_docker_labels import fake_source

SYS = paths.FIXTURES / "sys"
DOCKER = paths.FIXTURES / "docker"


def test_names_come_from_the_uevent_devname() -> None:
    names = BlockDeviceNames(SYS)
    assert names.name("254:0") == "vda"
    assert names.name("253:0") == "zram0"
    assert names.name("259:0") == "nvme0n1"


def test_an_unknown_or_malformed_number_is_named_by_itself() -> None:
    names = BlockDeviceNames(SYS)
    assert names.name("9:9") == "9:9"  # no such device in this tree
    assert names.name("../../etc") == "../../etc"  # never used as a path
    assert BlockDeviceNames(None).name("254:0") == "254:0"  # another host's numbers


def test_a_uevent_without_a_usable_devname_falls_back_to_the_number(tmp_path: Path) -> None:
    for device, text in (("8:0", "MAJOR=8\nMINOR=0\n"), ("8:1", "DEVNAME=a b\n")):
        (tmp_path / "dev/block" / device).mkdir(parents=True)
        (tmp_path / "dev/block" / device / "uevent").write_text(text)
    names = BlockDeviceNames(tmp_path)
    assert (names.name("8:0"), names.name("8:1")) == ("8:0", "8:1")


def test_a_name_is_read_once_and_forgotten_after_a_pass_without_it(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path / "sys")
    names = BlockDeviceNames(tmp_path / "sys")
    assert names.name("8:0") == "sda"
    names.forget_unasked()
    # Renamed on disk: a remembered name is not read again while the device is in use.
    (tmp_path / "sys/dev/block/8:0/uevent").write_text("DEVNAME=dm-7\n")
    assert names.name("8:0") == "sda"
    names.forget_unasked()
    names.forget_unasked()  # a pass in which no container used 8:0: its number may be reused
    assert names.name("8:0") == "dm-7"


def source_over(stats: dict[str, Any], docker_host: str) -> DockerSource:
    """A Docker source over the recorded inspect and ``stats``, naming devices from ``SYS``."""
    inspect = json.loads((DOCKER / "inspect-20.10.json").read_text())[0]
    return fake_source(inspect, stats, docker_host=docker_host, sys_root=SYS)


def device_io(source: DockerSource) -> dict[str, tuple[int | None, int | None]]:
    (workload,) = source.sample().workloads
    return {d.name: (d.read_bytes, d.written_bytes) for d in workload.block_devices}


def test_docker_source_names_devices_and_loses_one_between_two_passes() -> None:
    stats = json.loads((DOCKER / "stats-v2-24.0.json").read_text())
    source = source_over(stats, "unix:///nonexistent.sock")
    try:
        assert device_io(source) == {"nvme0n1": (4902912, 1327104), "sda": (106496, 36864)}
        entries = stats["blkio_stats"]["io_service_bytes_recursive"]
        for entry in entries:
            entry["value"] += 4096 if entry["major"] == 8 else 0
        entries[:] = [entry for entry in entries if entry["major"] == 8]  # the NVMe disk left
        assert device_io(source) == {"sda": (110592, 40960)}
    finally:
        source.close()


def test_a_remote_engines_devices_keep_their_numbers() -> None:
    # Its numbers are another host's: this host's sysfs would give them wrong names.
    stats = json.loads((DOCKER / "stats-v2-24.0.json").read_text())
    source = source_over(stats, "tcp://192.0.2.1:2375")
    try:
        assert set(device_io(source)) == {"259:0", "8:0"}
    finally:
        source.close()
