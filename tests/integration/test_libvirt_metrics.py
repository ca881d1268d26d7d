"""densityd's VM figures checked against ``virsh domstats`` and ``virsh dominfo``.

Real QEMU domains under TCG (no KVM here): with no OS they idle in the BIOS at about 40 MB of
QEMU RSS, and they are real running domains with real stats. Each test reads the ground truth
right after a scrape; the tolerances are stated where they are used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from densityd.collect.sources.libvirt import PARALLEL_STATS_FROM, STATS_WORKERS, domain_stats
from tests.integration.backends import (
    VM_PREFIX,
    Daemon,
    Series,
    VMs,
    parse_dominfo,
    parse_domstats,
    promtool,
    value_of,
    virsh,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def daemon(start_daemon, libvirt_ready: str) -> Daemon:  # type: ignore[no-untyped-def]
    """A daemon sampling VMs (only) every second."""
    return start_daemon("--no-docker", "--libvirt-uri", libvirt_ready)  # type: ignore[no-any-return]


def has_vm(uuid: str, metric: str = "densityd_workload_memory_bytes"):  # type: ignore[no-untyped-def]
    """A predicate: the VM has a sample of ``metric``."""
    return lambda series: value_of(series, metric, id=uuid) is not None


def test_running_vms_of_different_sizes_match_virsh(daemon: Daemon, vms: VMs) -> None:
    """vCPUs, guest RAM, QEMU RSS, CPU time and disks agree with domstats and dominfo."""
    shapes = {
        vms.define(memory_mib=128, vcpus=1, disks_mib=(64,), written_mib=8): (128, 1, (64,)),
        vms.define(memory_mib=256, vcpus=2, disks_mib=(128,)): (256, 2, (128,)),
        vms.define(memory_mib=192, vcpus=1, disks_mib=(32, 48), written_mib=4): (192, 1, (32, 48)),
    }
    daemon.wait_for(lambda s: all(has_vm(u)(s) for u in shapes), timeout=30, what="three VMs")
    time.sleep(1.5)  # let the BIOS settle so that RSS is steady

    for uuid, (memory_mib, vcpus, disks_mib) in shapes.items():
        series = daemon.scrape()
        name = virsh("domname", uuid)
        stats = parse_domstats(virsh("domstats", name))
        info = parse_dominfo(virsh("dominfo", name))

        assert info["CPU(s)"] == str(vcpus) == stats["vcpu.current"]
        assert value_of(series, "densityd_workload_cpu_limit_cores", id=uuid) == vcpus

        assert info["Max memory"] == f"{memory_mib * 1024} KiB"
        assert int(stats["balloon.maximum"]) * 1024 == memory_mib * MiB
        assert value_of(series, "densityd_workload_memory_limit_bytes", id=uuid) == memory_mib * MiB

        # QEMU's RSS moves by a few pages while the BIOS idles: 4 MiB covers it.
        rss = value_of(series, "densityd_workload_memory_bytes", id=uuid)
        assert rss is not None
        assert abs(rss - int(stats["balloon.rss"]) * 1024) <= 4 * MiB
        assert 10 * MiB < rss < memory_mib * MiB + 128 * MiB

        # The scrape is at most one 1 s interval old, and a TCG vCPU uses at most one core per
        # vCPU: the later virsh reading may be ahead by up to vcpus * (1 s + 0.5 s slack).
        cpu = value_of(series, "densityd_workload_cpu_seconds_total", id=uuid)
        assert cpu is not None
        assert 0 <= int(stats["cpu.time"]) / 1e9 - cpu <= vcpus * 1.5

        # Disk images do not change while the BIOS idles: exact.
        capacities = [int(stats[f"block.{i}.capacity"]) for i in range(int(stats["block.count"]))]
        physical = [int(stats[f"block.{i}.physical"]) for i in range(int(stats["block.count"]))]
        assert capacities == [size * MiB for size in disks_mib]
        assert value_of(series, "densityd_workload_disk_limit_bytes", id=uuid) == sum(capacities)
        assert value_of(series, "densityd_workload_disk_bytes", id=uuid) == sum(physical)
        for index, capacity in enumerate(capacities):
            device = stats[f"block.{index}.name"]
            assert (
                value_of(series, "densityd_vm_block_capacity_bytes", id=uuid, device=device)
                == capacity
            )
            # Per device, never summed (a sum drops when a disk is unplugged).
            for metric, key in (("read", "rd"), ("written", "wr")):
                exported = f"densityd_workload_disk_{metric}_bytes_total"
                assert value_of(series, exported, id=uuid, device=device) == int(
                    stats[f"block.{index}.{key}.bytes"]
                )
        assert value_of(series, "densityd_workload_info", id=uuid, kind="vm", state="running") == 1

    written = next(u for u, shape in shapes.items() if shape[0] == 128)
    # The first image holds 8 MiB of data: its host-side size is at least that.
    assert (value_of(daemon.scrape(), "densityd_workload_disk_bytes", id=written) or 0) >= 8 * MiB


def test_shut_off_vm_is_listed_with_its_configured_sizes(daemon: Daemon, vms: VMs) -> None:
    """A defined but stopped VM claims capacity when started: info and limits, no usage."""
    uuid = vms.define(memory_mib=384, vcpus=2, disks_mib=(96,), start=False)

    def listed(series: Series) -> bool:
        return value_of(series, "densityd_workload_info", id=uuid, state="shutoff") == 1

    series = daemon.wait_for(listed, what="the shut-off VM")
    info = parse_dominfo(virsh("dominfo", uuid))
    assert info["State"] == "shut off"
    assert value_of(series, "densityd_workload_memory_limit_bytes", id=uuid) == 384 * MiB
    assert value_of(series, "densityd_workload_cpu_limit_cores", id=uuid) == 2
    assert value_of(series, "densityd_workload_disk_limit_bytes", id=uuid) == 96 * MiB
    assert value_of(series, "densityd_workload_memory_bytes", id=uuid) is None
    assert value_of(series, "densityd_workload_cpu_seconds_total", id=uuid) is None

    virsh("start", uuid)
    series = daemon.wait_for(has_vm(uuid), what="the VM once started")
    assert value_of(series, "densityd_workload_info", id=uuid, state="running") == 1


def test_os_from_libosinfo_metadata(daemon: Daemon, vms: VMs) -> None:
    """The libosinfo OS ID in a domain's metadata becomes the ``os`` label of its info."""
    uuid = vms.define(os_id="http://debian.org/debian/12")
    series = daemon.wait_for(has_vm(uuid, "densityd_workload_info"), what="the VM")
    assert (
        value_of(series, "densityd_workload_info", id=uuid, os="http://debian.org/debian/12") == 1
    )


def test_destroyed_vm_disappears_after_the_next_pass(daemon: Daemon, vms: VMs) -> None:
    """A transient VM destroyed is gone from every series after the next pass."""
    uuid = vms.define(transient=True)
    daemon.wait_for(has_vm(uuid), what="the transient VM")
    virsh("destroy", uuid)
    gone_at = time.time()
    series = daemon.wait_for(
        lambda s: (value_of(s, "densityd_last_pass_timestamp_seconds") or 0) > gone_at + 0.1,
        what="a pass after the destroy",
    )
    assert [name for (name, labels) in series if ("id", uuid) in labels] == []


def test_hostile_vm_names_give_valid_exposition(daemon: Daemon, vms: VMs) -> None:
    """Quotes, backslashes and non-ASCII in VM names: promtool accepts the live scrape."""
    hostile = ["densityd-test-q\"uo'te", "densityd-test-back\\slash", "densityd-test-ünï-€-🚀"]
    uuids = {vms.define(name=name, start=False): name for name in hostile}
    series = daemon.wait_for(
        lambda s: all(value_of(s, "densityd_workload_info", id=u) == 1 for u in uuids),
        what="the hostile names",
    )
    for uuid, name in uuids.items():
        assert value_of(series, "densityd_workload_info", id=uuid, name=name) == 1
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=daemon.metrics_text(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sample_lists_vms_beside_containers(vms: VMs, libvirt_ready: str) -> None:
    """``densityd sample -o json`` shows the VM with the same sizes as virsh."""
    uuid = vms.define(memory_mib=160, vcpus=2)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "densityd",
            "sample",
            "-o",
            "json",
            "--cpu-window",
            "0.5",
            "--libvirt-uri",
            libvirt_ready,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    [mine] = [w for w in document["workloads"] if w["id"] == uuid]
    assert mine["kind"] == "vm" and mine["state"] == "running"
    assert mine["memory_limit_bytes"] == 160 * MiB and mine["cpu_limit_cores"] == 2
    assert "source libvirt: found libvirt" in result.stderr
    assert {s["name"] for s in document["sources"]} >= {"docker", "libvirt", "host"}


def test_storage_pool_directory_and_cpu_info_on_the_host(daemon: Daemon, vms: VMs) -> None:
    """An active dir pool's target gets densityd_host_disk_*; libvirt's node info is exported."""
    pool = f"densityd-test-pool-{vms.workdir.name[-8:]}"
    target = vms.workdir / "pool"
    target.mkdir()
    virsh("pool-define-as", pool, "dir", "--target", str(target))
    try:
        virsh("pool-start", pool)
        series = daemon.wait_for(
            lambda s: value_of(s, "densityd_host_disk_bytes", path=str(target)) is not None,
            what="the pool directory's filesystem",
        )
        stat = os.statvfs(target)
        assert value_of(series, "densityd_host_disk_bytes", path=str(target)) == (
            stat.f_blocks * stat.f_frsize
        )
        # Free space moves with everything else writing to /tmp: within 64 MiB.
        free = value_of(series, "densityd_host_disk_free_bytes", path=str(target))
        assert free is not None and abs(free - stat.f_bavail * stat.f_frsize) <= 64 * MiB
        info = parse_dominfo(virsh("nodeinfo"))
        assert (
            value_of(
                series,
                "densityd_host_cpu_info",
                model=info["CPU model"],
                mhz=info["CPU frequency"].split()[0],
            )
            == 1
        )
    finally:
        virsh("pool-destroy", pool, check=False)
        virsh("pool-undefine", pool, check=False)


def test_stats_split_across_calls_survive_a_domain_vanished_after_the_listing(
    vms: VMs, libvirt_ready: str
) -> None:
    """From ``PARALLEL_STATS_FROM`` domains the bulk stats call is split across concurrent
    calls; a domain destroyed and undefined between the listing and those calls is left out
    and every other domain's stats are there, split or not."""
    import libvirt  # only the sources import it in densityd; the test drives libvirt itself

    uuids = [
        vms.define(memory_mib=64, disks_mib=(8,), name=f"{VM_PREFIX}split-{i}")
        for i in range(PARALLEL_STATS_FROM + 1)
    ]
    conn = libvirt.open(libvirt_ready)
    try:
        listed = [conn.lookupByUUIDString(uuid) for uuid in uuids]
        vanished = listed[2]
        vanished.destroy()
        vanished.undefine()
        with ThreadPoolExecutor(STATS_WORKERS) as pool:
            for where in (pool, None):
                records = domain_stats(conn, listed, where)
                got = {domain.UUIDString(): stats for domain, stats in records}
                assert set(got) == set(uuids) - {uuids[2]}, where
                for uuid, stats in got.items():
                    assert stats["state.state"] == 1, (uuid, stats)
                    assert stats["cpu.time"] > 0, (uuid, stats)
    finally:
        conn.close()
