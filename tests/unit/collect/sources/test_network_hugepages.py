"""Parsers for network interfaces (``/proc/PID/net/dev``, libvirt's ``net.N.*``), vCPU delay,
huge page pools (sysfs) and a domain's ``<memoryBacking>``."""

from __future__ import annotations

from pathlib import Path

import pytest

from densityd.collect.sources.host import HostSource, read_hugepages
from densityd.collect.sources.libvirt import (
    hugepage_bytes,
    network_interfaces,
    vcpu_delay_seconds,
    vm_sample,
)
from densityd.collect.sources.libvirt_xml import parse_domain_xml
from densityd.collect.sources.netdev import parse_net_dev
from densityd.model import HugepagePool, NetworkInterface
from tests.paths import FIXTURES
from tests.unit.collect.sources.libvirt_recorded import RECORDED_UUID, config_of, load

MiB = 1024**2
NET_DEV = FIXTURES / "proc" / "net-dev"


def test_net_dev_of_a_bridge_container_leaves_out_lo() -> None:
    # Recorded in a container on a user-defined bridge network, right after it started.
    text = (NET_DEV / "bridge-container.txt").read_text()
    assert parse_net_dev(text) == (
        NetworkInterface(
            name="eth0",
            receive_bytes=200,
            receive_packets=2,
            receive_drops=0,
            receive_errors=0,
            transmit_bytes=0,
            transmit_packets=0,
            transmit_drops=0,
            transmit_errors=0,
        ),
    )


def test_net_dev_of_a_container_without_network_has_no_interface() -> None:
    assert parse_net_dev((NET_DEV / "network-none.txt").read_text()) == ()


def test_net_dev_columns_and_numbers_glued_to_the_name() -> None:
    # The kernel prints "%6s:%8lu": a long count follows the colon without a blank.
    line = "vethab12:123456789012 7 1 2 0 0 0 3 98765 6 4 5 0 0 0 0"
    (interface,) = parse_net_dev(line)
    assert interface == NetworkInterface(
        name="vethab12",
        receive_bytes=123456789012,
        receive_packets=7,
        receive_errors=1,
        receive_drops=2,
        transmit_bytes=98765,
        transmit_packets=6,
        transmit_errors=4,
        transmit_drops=5,
    )


@pytest.mark.parametrize("line", ["eth0: 1 2 3", "eth0: a b c d e f g h i j k l m n o p", ""])
def test_net_dev_lines_that_are_not_counters_are_skipped(line: str) -> None:
    assert parse_net_dev(line) == ()


# What libvirt 9.0 answered here for a TCG VM with <interface type='ethernet'> (a tap) and one
# with <interface type='user'> (no host device: only the count).
ETHERNET_STATS = {
    "net.count": 1,
    "net.0.name": "vnet0",
    "net.0.rx.bytes": 90,
    "net.0.rx.pkts": 1,
    "net.0.rx.errs": 0,
    "net.0.rx.drop": 0,
    "net.0.tx.bytes": 0,
    "net.0.tx.pkts": 0,
    "net.0.tx.errs": 0,
    "net.0.tx.drop": 0,
}


def test_libvirt_net_stats_per_interface() -> None:
    assert network_interfaces(ETHERNET_STATS) == (
        NetworkInterface("vnet0", 90, 1, 0, 0, 0, 0, 0, 0),
    )


def test_a_user_mode_interface_has_no_counters_to_export() -> None:
    assert network_interfaces({"net.count": 1}) == ()


def test_a_count_beyond_the_record_builds_nothing() -> None:
    assert network_interfaces({"net.count": 10**9, "net.0.name": "vnet0"}) == (
        NetworkInterface("vnet0"),
    )


def test_vcpu_delay_is_summed_over_vcpus_in_seconds() -> None:
    stats = {"vcpu.maximum": 2, "vcpu.0.delay": 41_625_950, "vcpu.1.delay": 1_000_000_000}
    assert vcpu_delay_seconds(stats) == pytest.approx(1.04162595)


def test_vcpu_delay_is_absent_not_zero_when_libvirt_gives_none() -> None:
    # libvirt before 8.1, or a hypervisor without schedstat: vcpu.N.time but no delay.
    assert vcpu_delay_seconds({"vcpu.maximum": 1, "vcpu.0.time": 5}) is None
    assert vcpu_delay_seconds({}) is None


def test_a_running_sample_carries_interfaces_and_delay_and_a_stopped_one_neither() -> None:
    config = config_of("domain-running.xml")
    running = {**load("stats-running.json"), **ETHERNET_STATS}
    sample = vm_sample(RECORDED_UUID, config, running, ())
    assert sample.interfaces == network_interfaces(ETHERNET_STATS)
    assert sample.vcpu_delay_seconds == pytest.approx(0.007416962)
    stopped = vm_sample(RECORDED_UUID, config, {**running, "state.state": 5}, ())
    assert stopped.interfaces == () and stopped.vcpu_delay_seconds is None


DOMAIN = """<domain type='qemu'><name>hp</name><uuid>21a31a1a-51b4-4fef-a715-3ba9c40616a3</uuid>
<memory unit='MiB'>{memory}</memory><vcpu>1</vcpu>{backing}<devices/></domain>"""


@pytest.mark.parametrize(
    ("backing", "expected"),
    [
        ("", (False, None)),
        ("<memoryBacking><allocation mode='immediate'/></memoryBacking>", (False, None)),
        ("<memoryBacking><hugepages/></memoryBacking>", (True, None)),
        (
            "<memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>",
            (True, 2 * MiB),
        ),
        (
            "<memoryBacking><hugepages><page size='1' unit='G'/></hugepages></memoryBacking>",
            (
                True,
                1024 * MiB,
            ),
        ),
        # KiB when no unit is given; the page without a nodeset covers the nodes not named.
        (
            "<memoryBacking><hugepages><page size='1048576' nodeset='0'/>"
            "<page size='2048'/></hugepages></memoryBacking>",
            (True, 2 * MiB),
        ),
    ],
)
def test_memory_backing(backing: str, expected: tuple[bool, int | None]) -> None:
    config = parse_domain_xml(DOMAIN.format(memory=128, backing=backing))
    assert (config.hugepages, config.hugepage_size_bytes) == expected


def test_a_hugepage_vm_takes_its_ram_in_whole_pages_of_the_default_size() -> None:
    config = parse_domain_xml(
        DOMAIN.format(memory=65, backing="<memoryBacking><hugepages/></memoryBacking>")
    )
    stats = {"state.state": 1, "balloon.maximum": 65 * 1024}
    sample = vm_sample("u", config, stats, (), default_hugepage_bytes=2 * MiB)
    assert sample.hugepage_size_bytes == 2 * MiB
    assert sample.hugepage_bytes == 66 * MiB  # 65 MiB rounded up to 33 pages of 2 MiB
    # The default size not known (a remote host): neither is the VM's page size.
    unknown = vm_sample("u", config, stats, ())
    assert unknown.hugepage_size_bytes is None and unknown.hugepage_bytes is None


def test_hugepage_bytes_rounds_up() -> None:
    assert hugepage_bytes(128 * MiB, 2 * MiB) == 128 * MiB
    assert hugepage_bytes(1, 2 * MiB) == 2 * MiB
    assert hugepage_bytes(None, 2 * MiB) is None
    assert hugepage_bytes(128 * MiB, None) is None


def write_pool(root: Path, kib: int, **counts: int) -> None:
    directory = root / f"hugepages-{kib}kB"
    directory.mkdir(parents=True)
    for name, value in counts.items():
        (directory / name).write_text(f"{value}\n")


def test_hugepage_pools_from_sysfs(tmp_path: Path) -> None:
    # The layout of /sys/kernel/mm/hugepages on this x86 host (2 MiB and 1 GiB sizes).
    write_pool(
        tmp_path,
        2048,
        nr_hugepages=40,
        free_hugepages=8,
        resv_hugepages=2,
        surplus_hugepages=0,
        nr_overcommit_hugepages=0,
    )
    write_pool(tmp_path, 1048576, nr_hugepages=0, free_hugepages=0, resv_hugepages=0)
    (tmp_path / "not-a-pool").mkdir()
    pools = read_hugepages(tmp_path, 2 * MiB)
    assert pools == (
        HugepagePool(size_bytes=2 * MiB, total=40, free=8, reserved=2, surplus=0, default=True),
        HugepagePool(size_bytes=1024 * MiB, total=0, free=0, reserved=0, surplus=None),
    )
    assert pools[0].available_bytes == 6 * 2 * MiB


def test_no_hugepage_directory_means_no_pools(tmp_path: Path) -> None:
    assert read_hugepages(tmp_path / "missing", None) == ()


def test_the_host_sample_counts_the_pools_memory_from_meminfo(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "meminfo").write_text(
        "MemTotal: 1048576 kB\nMemAvailable: 524288 kB\nHugePages_Total: 40\n"
        "Hugepagesize: 2048 kB\nHugetlb: 81920 kB\n"
    )
    write_pool(tmp_path / "hp", 2048, nr_hugepages=40, free_hugepages=40, resv_hugepages=0)
    host = HostSource(proc_root=proc, hugepages_dir=tmp_path / "hp", ksm_dir=tmp_path).sample()
    assert host.host is not None
    assert host.host.hugepages_bytes == 80 * MiB
    assert host.host.hugepages[0].default
