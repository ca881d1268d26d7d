"""The libvirt source's pure functions over the recorded stats (``libvirt_recorded``)."""

from __future__ import annotations

from typing import Any

import libvirt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from densityd.collect.sources.libvirt import (
    ACTIVE_STATES,
    STATE_NAMES,
    _is_local,
    block_devices,
    guest_memory_used,
    vm_sample,
)
from densityd.model import BlockDevice, WorkloadKind, WorkloadSample
from tests.unit.collect.sources.libvirt_recorded import (
    LIBVIRT_STATES,
    RECORDED_PATH,
    RECORDED_UUID,
    config_of,
    load,
)

MiB = 1024**2


RUNNING = load("stats-running.json")


SHUTOFF = load("stats-shutoff.json")


RUNNING_CONFIG = config_of("domain-running.xml")


SHUTOFF_CONFIG = config_of("domain-shutoff.xml")


RECORDED_VDA = BlockDevice(
    name="vda",
    path=RECORDED_PATH,
    bytes=4096,
    capacity_bytes=67108864,
    read_bytes=512,
    written_bytes=0,
)


def with_second_disk(stats: dict[str, Any]) -> dict[str, Any]:
    """The recorded running stats plus a second disk ``vdb`` in the same key format."""
    return {
        **stats,
        "block.count": 2,
        "block.1.name": "vdb",
        "block.1.path": "/srv/vm/data.qcow2",
        "block.1.allocation": 2_097_152,
        "block.1.physical": 3_211_264,
        "block.1.capacity": 10_737_418_240,
        "block.1.rd.bytes": 1_000_000,
        "block.1.wr.bytes": 250_000,
    }


def test_block_devices_recorded_running() -> None:
    # bytes is "physical" (what the file occupies), not "allocation" (0 for a raw file).
    assert RUNNING["block.0.allocation"] == 0
    assert block_devices(RUNNING) == (RECORDED_VDA,)


def test_block_devices_two_disks_in_index_order() -> None:
    assert block_devices(with_second_disk(RUNNING)) == (
        RECORDED_VDA,
        BlockDevice(
            name="vdb",
            path="/srv/vm/data.qcow2",
            bytes=3_211_264,
            capacity_bytes=10_737_418_240,
            read_bytes=1_000_000,
            written_bytes=250_000,
        ),
    )


def test_block_devices_falls_back_to_allocation_and_tolerates_missing_keys() -> None:
    stats = {"block.count": 2, "block.0.allocation": 8192, "block.1.name": "vdb"}
    assert block_devices(stats) == (
        BlockDevice(name="0", path="", bytes=8192),
        BlockDevice(name="vdb", path=""),
    )


def test_block_devices_without_block_stats() -> None:
    assert block_devices({"state.state": 1, "state.reason": 0}) == ()


def test_recorded_shutoff_stats_report_the_apparent_size_as_physical() -> None:
    # Why the source reads a shut-off VM's disks with blockInfo instead: libvirt 9 puts the
    # sparse file's apparent size (64 MiB) in block.0.physical once the domain is off, where
    # a running domain's physical is what the file occupies (4096).
    assert block_devices(SHUTOFF) == (
        BlockDevice(name="vda", path=RECORDED_PATH, bytes=67108864, capacity_bytes=67108864),
    )


def test_guest_memory_used_absent_without_a_guest_balloon_driver() -> None:
    # The recorded VM idles in the BIOS: no guest driver, so no available/usable.
    assert "balloon.available" not in RUNNING
    assert guest_memory_used(RUNNING) is None
    assert guest_memory_used({**RUNNING, "balloon.available": 1000}) is None
    assert guest_memory_used({**RUNNING, "balloon.usable": 1000}) is None


def test_guest_memory_used_is_available_minus_usable_in_bytes() -> None:
    stats = {**RUNNING, "balloon.available": 118_000, "balloon.usable": 90_500}
    assert guest_memory_used(stats) == (118_000 - 90_500) * 1024


def test_guest_memory_used_is_never_negative() -> None:
    assert guest_memory_used({"balloon.available": 1000, "balloon.usable": 4000}) == 0


@given(st.integers(0, 2**40), st.integers(0, 2**40))
def test_guest_memory_used_property(available: int, usable: int) -> None:
    used = guest_memory_used({"balloon.available": available, "balloon.usable": usable})
    assert used == max(0, available - usable) * 1024
    assert used is not None and used >= 0


def test_vm_sample_recorded_running() -> None:
    devices = block_devices(RUNNING)
    sample = vm_sample(RECORDED_UUID, RUNNING_CONFIG, RUNNING, devices)
    assert sample == WorkloadSample(
        kind=WorkloadKind.VM,
        id=RECORDED_UUID,
        name="densityd-unit-rec",
        image="",
        os="http://debian.org/debian/12",
        state="running",
        running=True,
        cpu_seconds=pytest.approx(0.775278),
        cpu_limit_cores=1.0,
        memory_bytes=42156 * 1024,  # balloon.rss: the QEMU process, KiB
        memory_limit_bytes=131072 * 1024,  # balloon.maximum, KiB
        disk_bytes=4096,
        disk_limit_bytes=67108864,
        disk_read_bytes=512,
        disk_written_bytes=0,
        guest_memory_used_bytes=None,
        block_devices=devices,
        vcpu_delay_seconds=pytest.approx(0.007416962),  # vcpu.0.delay, ns
    )


def test_vm_sample_sums_two_disks() -> None:
    stats = with_second_disk(RUNNING)
    sample = vm_sample(RECORDED_UUID, RUNNING_CONFIG, stats, block_devices(stats))
    assert sample.disk_bytes == 4096 + 3_211_264
    assert sample.disk_limit_bytes == 67108864 + 10_737_418_240
    assert sample.disk_read_bytes == 512 + 1_000_000
    assert sample.disk_written_bytes == 0 + 250_000
    assert [d.name for d in sample.block_devices] == ["vda", "vdb"]


def test_vm_sample_prefers_live_stats_to_the_config() -> None:
    # A live vCPU hot-plug and a guest that reports its own memory use.
    stats = {
        **RUNNING,
        "vcpu.current": 2,
        "balloon.maximum": 262144,
        "balloon.available": 100_000,
        "balloon.usable": 60_000,
    }
    sample = vm_sample(RECORDED_UUID, RUNNING_CONFIG, stats, ())
    assert sample.cpu_limit_cores == 2.0
    assert sample.memory_limit_bytes == 262144 * 1024
    assert sample.guest_memory_used_bytes == 40_000 * 1024
    assert sample.disk_bytes is None and sample.disk_limit_bytes is None  # no devices: unknown


def test_vm_sample_recorded_shutoff_has_no_usage() -> None:
    # libvirt 9 still reports cpu.time and balloon.* for a shut-off domain; only limits count.
    assert SHUTOFF["cpu.time"] > 0
    devices = (BlockDevice(name="vda", path=RECORDED_PATH, bytes=0, capacity_bytes=67108864),)
    sample = vm_sample(RECORDED_UUID, SHUTOFF_CONFIG, SHUTOFF, devices)
    assert sample == WorkloadSample(
        kind=WorkloadKind.VM,
        id=RECORDED_UUID,
        name="densityd-unit-rec",
        os="http://debian.org/debian/12",
        state="shutoff",
        running=False,
        cpu_seconds=None,
        cpu_limit_cores=1.0,
        memory_bytes=None,
        memory_limit_bytes=128 * MiB,
        disk_bytes=0,
        disk_limit_bytes=67108864,
        disk_read_bytes=None,
        disk_written_bytes=None,
        guest_memory_used_bytes=None,
        block_devices=devices,
    )


def test_vm_sample_shutoff_with_state_stats_only_takes_limits_from_the_config() -> None:
    # What the test driver (and libvirt before 9) returns for a shut-off domain.
    config = config_of("domain-overlay-cdrom.xml")  # 2 GiB, <vcpu current='1'>4</vcpu>
    sample = vm_sample(config.uuid, config, {"state.state": 5, "state.reason": 2}, ())
    assert (sample.state, sample.running) == ("shutoff", False)
    assert sample.memory_limit_bytes == 2 * 1024**3
    assert sample.cpu_limit_cores == 1.0
    assert sample.name == "web-overlay"
    assert sample.os == "http://ubuntu.com/ubuntu/22.04"
    usage = (sample.cpu_seconds, sample.memory_bytes, sample.disk_bytes, sample.disk_read_bytes)
    assert usage == (None, None, None, None)


def test_state_names_are_libvirts() -> None:
    assert STATE_NAMES == LIBVIRT_STATES


@pytest.mark.parametrize(
    ("state", "name", "active"),
    [
        (libvirt.VIR_DOMAIN_NOSTATE, "nostate", False),
        (libvirt.VIR_DOMAIN_RUNNING, "running", True),
        (libvirt.VIR_DOMAIN_BLOCKED, "blocked", True),
        (libvirt.VIR_DOMAIN_PAUSED, "paused", True),
        (libvirt.VIR_DOMAIN_SHUTDOWN, "shutdown", True),
        (libvirt.VIR_DOMAIN_SHUTOFF, "shutoff", False),
        (libvirt.VIR_DOMAIN_CRASHED, "crashed", False),
        (libvirt.VIR_DOMAIN_PMSUSPENDED, "pmsuspended", True),
        (42, "42", False),
    ],
)
def test_vm_sample_state(state: int, name: str, active: bool) -> None:
    stats = {**RUNNING, "state.state": state}
    sample = vm_sample(RECORDED_UUID, RUNNING_CONFIG, stats, block_devices(stats))
    assert sample.state == name
    assert sample.running is active
    assert (state in ACTIVE_STATES) is active
    # Usage only while a QEMU process exists; limits either way.
    assert sample.memory_bytes == (42156 * 1024 if active else None)
    assert sample.cpu_seconds == (pytest.approx(0.775278) if active else None)
    assert sample.disk_read_bytes == (512 if active else None)
    assert sample.memory_limit_bytes == 128 * MiB


def test_vm_sample_without_state_is_nostate() -> None:
    sample = vm_sample(RECORDED_UUID, RUNNING_CONFIG, {}, ())
    assert (sample.state, sample.running, sample.cpu_limit_cores) == ("nostate", False, 1.0)


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("qemu:///system", True),
        ("qemu:///session", True),
        ("qemu:///system?socket=/run/libvirt/libvirt-sock", True),
        ("test:///default", True),
        ("qemu://host.example/system", False),
        ("qemu+ssh://root@host.example/system", False),
        ("qemu+tls://host.example/system", False),
    ],
)
def test_is_local(uri: str, local: bool) -> None:
    assert _is_local(uri) is local


def test_unix_transport_is_local() -> None:
    assert _is_local("qemu+unix:///system")
