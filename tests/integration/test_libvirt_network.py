"""A VM's network counters and vCPU delay checked against ``virsh`` at the same time.

The VM needs an interface with a host-side device: ``<interface type='user'>`` (QEMU's user
networking) has none, and libvirt 9.0 then reports only ``net.count`` (seen here; no series).
``<interface type='ethernet'>`` makes libvirt create a tap (``vnetN``) with no bridge, which
is all that is needed: frames the host writes into the tap are what the guest receives. A
BIOS-only guest never starts its NIC, and QEMU then reads nothing from the tap: frames written
into it vanish, counted nowhere (seen here). Booting from the network starts it: the NIC's
iPXE ROM sends DHCP requests (the guest's transmit side, a few hundred bytes every few
seconds) and takes what comes (its receive side), so the test writes known traffic in.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.integration.backends import Daemon, VMs, parse_domstats, value_of, virsh

pytestmark = pytest.mark.integration

ETHERNET = "<interface type='ethernet'><model type='virtio'/></interface>"
FRAMES = 300
FRAME_BYTES = 1000


@pytest.fixture
def daemon(start_daemon, libvirt_ready: str) -> Daemon:  # type: ignore[no-untyped-def]
    """A daemon sampling VMs (only) every second."""
    return start_daemon("--no-docker", "--libvirt-uri", libvirt_ready)  # type: ignore[no-any-return]


def tap_of(name: str) -> str:
    """The host device of the VM's one interface (``virsh domiflist``)."""
    lines = [line.split() for line in virsh("domiflist", name).splitlines()[2:] if line.strip()]
    assert len(lines) == 1, lines
    return lines[0][0]


def send_frames(device: str, count: int, size: int) -> None:
    """Write ``count`` broadcast Ethernet frames of ``size`` bytes into a tap: the guest's rx."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
        raw.bind((device, 0))
        # Broadcast destination, a locally administered source, the experimental EtherType.
        header = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5"
        for _ in range(count):
            raw.send(header + b"\x00" * (size - len(header)))


def domifstat(name: str, device: str) -> dict[str, int]:
    """``virsh domifstat``: ``vnet0 rx_bytes 90`` lines as {"rx_bytes": 90, ...}."""
    values = {}
    for line in virsh("domifstat", name, device).splitlines():
        parts = line.split()
        if len(parts) == 3:
            values[parts[1]] = int(parts[2])
    return values


def test_a_vms_interface_counters_match_domifstat(daemon: Daemon, vms: VMs) -> None:
    uuid = vms.define(memory_mib=64, interface=ETHERNET, network_boot=True)
    name = virsh("domname", uuid)
    device = tap_of(name)
    labels = {"id": uuid, "interface": device}
    received = "densityd_workload_network_receive_bytes_total"
    daemon.wait_for(lambda s: value_of(s, received, **labels) is not None, what="vnet counters")
    before = domifstat(name, device)
    send_frames(device, FRAMES, FRAME_BYTES)
    # The daemon's pass after the frames went in, then virsh at once: meanwhile iPXE may
    # send a DHCP request or two and the host an IPv6 frame (2 KiB, 8 packets allowed).
    series = daemon.wait_for(
        lambda s: (
            (value_of(s, received, **labels) or 0) >= before["rx_bytes"] + FRAMES * FRAME_BYTES
        ),
        what="the frames in the VM's rx counter",
    )
    after = domifstat(name, device)
    assert after["rx_bytes"] - before["rx_bytes"] >= FRAMES * FRAME_BYTES
    for key, metric, slack in (
        ("rx_bytes", "receive_bytes", 2048),
        ("rx_packets", "receive_packets", 8),
        ("rx_drop", "receive_drops", 0),
        ("rx_errs", "receive_errors", 0),
        ("tx_bytes", "transmit_bytes", 2048),
        ("tx_packets", "transmit_packets", 8),
        ("tx_drop", "transmit_drops", 0),
        ("tx_errs", "transmit_errors", 0),
    ):
        got = value_of(series, f"densityd_workload_network_{metric}_total", **labels)
        assert got is not None, metric
        assert 0 <= after[key] - got <= slack, (metric, got, after[key])
    # iPXE's DHCP requests: the guest did transmit.
    assert after["tx_packets"] > 0
    # The tap's own counters, host side, are the mirror: what the guest received the host sent.
    tap_sent = int(Path(f"/sys/class/net/{device}/statistics/tx_bytes").read_text())
    assert abs(tap_sent - after["rx_bytes"]) <= 2048


def test_a_user_mode_interface_has_no_network_series(daemon: Daemon, vms: VMs) -> None:
    uuid = vms.define(memory_mib=64, interface="<interface type='user'/>")
    name = virsh("domname", uuid)
    stats = parse_domstats(virsh("domstats", name, "--interface"))
    assert stats.get("net.count") == "1" and "net.0.name" not in stats  # libvirt 9.0 here
    series = daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_bytes", id=uuid) is not None,
        what="the VM",
    )
    assert not [
        key
        for key in series
        if key[0].startswith("densityd_workload_network_") and ("id", uuid) in key[1]
    ]


def vcpu_delay(name: str) -> float | None:
    """``vcpu.N.delay`` summed over the VM's vCPUs, in seconds (None: libvirt gives none)."""
    stats = parse_domstats(virsh("domstats", name, "--vcpu"))
    delays = [int(v) for k, v in stats.items() if k.startswith("vcpu.") and k.endswith(".delay")]
    return sum(delays) / 1e9 if delays else None


def test_vcpu_delay_matches_domstats_and_only_grows(daemon: Daemon, vms: VMs) -> None:
    uuid = vms.define(memory_mib=64, vcpus=2)
    name = virsh("domname", uuid)
    metric = "densityd_vm_vcpu_delay_seconds_total"
    if vcpu_delay(name) is None:
        # libvirt without vcpu.N.delay (before 8.1, or no schedstat): absent, never 0.
        series = daemon.wait_for(
            lambda s: value_of(s, "densityd_workload_memory_bytes", id=uuid) is not None
        )
        assert value_of(series, metric, id=uuid) is None
        return
    readings: list[float] = []
    for _ in range(3):
        series = daemon.wait_for(lambda s: value_of(s, metric, id=uuid) is not None, what=metric)
        got = value_of(series, metric, id=uuid)
        truth = vcpu_delay(name)
        assert got is not None and truth is not None
        # The scrape is at most one 1 s pass old: two vCPUs wait at most 2 s (+1 s slack).
        assert 0 <= truth - got <= 2 * 1.5, (got, truth)
        readings.append(got)
        time.sleep(1.2)
    assert readings == sorted(readings)
    # Two TCG vCPU threads on this 2-core host share it with QEMU's other threads: they wait.
    assert readings[-1] > 0
