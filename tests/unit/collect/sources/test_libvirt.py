"""The libvirt source on libvirt's test driver (the pure functions: ``test_libvirt_stats.py``).

The recorded stats and XML are described in ``libvirt_recorded.py``.

The source is exercised on libvirt's in-process test driver, never on a daemon:

- ``test:///default`` is one driver state shared by every connection of this process (while
  one stays open), so a writable connection here can define, start and destroy domains the
  source's read-only connection sees, and their lifecycle events reach it;
- ``test:///.../testnode.xml`` is a private state per connection, read from the fixture file:
  a running domain and a shut-off one (``<test:runstate>5</test:runstate>``).

The test driver's stats hold only ``state.*``, so memory and vCPUs come from the XML; tests
derive what to expect from the libvirt API on a connection of their own (``virDomainGetInfo``
is what ``virsh dominfo`` prints).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import pytest

from densityd.collect.sources.base import SourceUnavailable
from densityd.collect.sources.libvirt import (
    LibvirtSource,
    start_event_loop,
)
from densityd.collect.sources.libvirt_xml import parse_domain_xml
from densityd.model import BlockDevice, WorkloadKind
from tests.unit.collect.sources.libvirt_recorded import (
    FIXTURES,
    LIBVIRT_STATES,
    RECORDED_PATH,
    load,
)

NODE_URI = f"test://{FIXTURES / 'testnode.xml'}"
DEFAULT_URI = "test:///default"
PREFIX = "densityd-unit-"  # domains these tests create on test:///default
LIBOSINFO = "http://libosinfo.org/xmlns/libvirt/domain/1.0"
MiB = 1024**2


def domain_xml(name: str, *, memory_mib: int = 64, os_id: str = "", disks: str = "") -> str:
    metadata = (
        f"<metadata><libosinfo:libosinfo xmlns:libosinfo='{LIBOSINFO}'>"
        f"<libosinfo:os id='{os_id}'/></libosinfo:libosinfo></metadata>"
        if os_id
        else ""
    )
    return (
        f"<domain type='test'><name>{name}</name><uuid>{uuidlib.uuid4()}</uuid>{metadata}"
        f"<memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
        f"<devices>{disks}</devices></domain>"
    )


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the timeout")
        time.sleep(0.01)


def define_seen(source: LibvirtSource, admin: Any, xml: str) -> Any:
    """Define a domain once the source listens, and wait for its DEFINED event to arrive.

    Events come on libvirt's event thread; a test that waits for a later event must not
    mistake this one for it.
    """
    source.probe()  # connected, so its lifecycle callback is registered
    domain = admin.defineXML(xml)
    uuid = domain.UUIDString()
    wait_until(lambda: uuid in source._dirty)
    return domain


def error_code_of(call: Callable[[], object]) -> int:
    try:
        call()
    except libvirt.libvirtError as exc:
        code: int = exc.get_error_code()
        return code
    raise AssertionError("no libvirtError")


# -- the source on libvirt's test driver ----------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _event_loop() -> None:
    # Registered before any connection opens, as the source itself does.
    start_event_loop()


@pytest.fixture
def admin() -> Iterator[Any]:
    """A writable connection to test:///default; removes the domains a test left there."""
    conn = libvirt.open(DEFAULT_URI)
    yield conn
    for domain in conn.listAllDomains():
        if domain.name().startswith(PREFIX):
            persistent = domain.isPersistent()  # a transient one is gone once destroyed
            if domain.isActive():
                domain.destroy()
            if persistent:
                domain.undefine()
    conn.close()


@pytest.fixture
def source() -> Iterator[LibvirtSource]:
    src = LibvirtSource(DEFAULT_URI)
    yield src
    src.close()


@pytest.fixture
def node_source() -> Iterator[LibvirtSource]:
    src = LibvirtSource(NODE_URI)
    yield src
    src.close()


@pytest.fixture
def xml_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, str]]:
    """(connection, UUID) of every ``virDomain.XMLDesc`` call, through the real method."""
    calls: list[tuple[Any, str]] = []
    original = libvirt.virDomain.XMLDesc

    def counting(self: Any, flags: int = 0) -> str:
        calls.append((self._conn, self.UUIDString()))
        result: str = original(self, flags)
        return result

    monkeypatch.setattr(libvirt.virDomain, "XMLDesc", counting)
    return calls


def reads_not_by(admin: Any, calls: list[tuple[Any, str]]) -> list[str]:
    return [uuid for conn, uuid in calls if conn is not admin]


def patch_stats(
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Any, list[tuple[Any, dict[str, Any]]]], list[tuple[Any, dict[str, Any]]]],
) -> None:
    """Pass what the real ``domainListGetStats`` returned through ``change(conn, records)``."""
    original = libvirt.virConnect.domainListGetStats

    def wrapped(
        self: Any, domains: list[Any], stats: int = 0, flags: int = 0
    ) -> list[tuple[Any, dict[str, Any]]]:
        return change(self, original(self, domains, stats, flags))

    monkeypatch.setattr(libvirt.virConnect, "domainListGetStats", wrapped)


def test_probe_names_the_uri_and_counts_domains(source: LibvirtSource, admin: Any) -> None:
    domains = admin.listAllDomains()
    running = sum(1 for d in domains if d.isActive())
    major, minor, micro = (
        libvirt.getVersion() // 1_000_000,
        libvirt.getVersion() // 1000 % 1000,
        libvirt.getVersion() % 1000,
    )
    text = source.probe()
    assert text.startswith(f"libvirt {major}.{minor}.{micro} at {DEFAULT_URI} (TEST, read-only)")
    assert text.endswith(f": {len(domains)} domains, {running} running")
    # The driver state is shared in-process: a domain defined here shows up there.
    admin.defineXML(domain_xml(PREFIX + "probe"))
    assert source.probe().endswith(f": {len(domains) + 1} domains, {running} running")


def test_sample_reports_the_test_drivers_domains(source: LibvirtSource, admin: Any) -> None:
    reading = source.sample()
    assert reading.host is None
    by_id = {w.id: w for w in reading.workloads}
    assert set(by_id) == {d.UUIDString() for d in admin.listAllDomains()}
    test = admin.lookupByName("test")
    # virDomainGetInfo is what `virsh -c test:///default dominfo test` prints.
    state, max_memory_kib, _memory_kib, vcpus, _cpu_time = test.info()
    workload = by_id[test.UUIDString()]
    assert workload.kind is WorkloadKind.VM
    assert workload.name == test.name() == "test"
    assert workload.state == LIBVIRT_STATES[state]
    assert workload.running is bool(test.isActive())
    assert workload.cpu_limit_cores == float(vcpus)
    assert workload.memory_limit_bytes == max_memory_kib * 1024
    assert workload.image == ""
    # The test driver has no CPU, balloon or block stats: unknown, never 0.
    assert (workload.cpu_seconds, workload.memory_bytes, workload.disk_bytes) == (None,) * 3


def test_sample_reads_the_active_pools_target_paths(source: LibvirtSource, admin: Any) -> None:
    assert source.pool_paths == ()
    source.sample()
    expected = tuple(
        ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
        for pool in admin.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
    )
    assert expected  # the default test driver has one pool
    assert source.pool_paths == expected


def test_second_sample_reuses_the_cached_metadata(
    source: LibvirtSource, admin: Any, xml_reads: list[tuple[Any, str]]
) -> None:
    first = source.sample()
    assert sorted(reads_not_by(admin, xml_reads)) == sorted(w.id for w in first.workloads)
    xml_reads.clear()
    second = source.sample()
    assert reads_not_by(admin, xml_reads) == []
    assert second == first


def test_lifecycle_event_makes_the_next_sample_read_the_xml_again(
    source: LibvirtSource, admin: Any, xml_reads: list[tuple[Any, str]]
) -> None:
    # A shut-off domain whose configuration changes: the test driver's stats (state only)
    # stay the same, so only the DEFINED event can tell the source.
    domain = define_seen(source, admin, domain_xml(PREFIX + "redefined"))
    uuid = domain.UUIDString()
    before = {w.id: w for w in source.sample().workloads}[uuid]
    assert (before.state, before.os, before.memory_limit_bytes) == ("shutoff", "", 64 * MiB)
    xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    xml = xml.replace("<memory unit='KiB'>65536</memory>", "<memory unit='KiB'>131072</memory>")
    xml = xml.replace(
        "</uuid>",
        f"</uuid><metadata><libosinfo:libosinfo xmlns:libosinfo='{LIBOSINFO}'>"
        "<libosinfo:os id='http://debian.org/debian/12'/></libosinfo:libosinfo></metadata>",
    )
    admin.defineXML(xml)
    wait_until(lambda: uuid in source._dirty)  # the event thread delivered it

    xml_reads.clear()
    after = {w.id: w for w in source.sample().workloads}[uuid]
    assert reads_not_by(admin, xml_reads) == [uuid]  # that domain only
    assert (after.os, after.memory_limit_bytes) == ("http://debian.org/debian/12", 128 * MiB)
    xml_reads.clear()
    source.sample()
    assert reads_not_by(admin, xml_reads) == []  # the mark was used up


@pytest.mark.parametrize(
    "change",
    [
        {"state.state": libvirt.VIR_DOMAIN_PAUSED},
        {"vcpu.maximum": 8},
        {"balloon.maximum": 4 * 1024 * 1024},
        {"block.count": 0},
    ],
)
def test_fingerprint_change_makes_the_next_sample_read_the_xml_again(
    source: LibvirtSource,
    admin: Any,
    xml_reads: list[tuple[Any, str]],
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, int],
) -> None:
    target = admin.lookupByName("test").UUIDString()
    source.sample()

    def altered(_conn: Any, records: list[tuple[Any, dict[str, Any]]]) -> Any:
        return [(d, {**s, **change} if d.UUIDString() == target else s) for d, s in records]

    patch_stats(monkeypatch, altered)
    xml_reads.clear()
    source.sample()
    assert reads_not_by(admin, xml_reads) == [target]
    xml_reads.clear()
    source.sample()  # the same changed values again: the new fingerprint is cached
    assert reads_not_by(admin, xml_reads) == []


def test_metadata_of_a_vanished_domain_is_dropped(source: LibvirtSource, admin: Any) -> None:
    transient = admin.createXML(domain_xml(PREFIX + "vanish"))
    uuid = transient.UUIDString()
    assert uuid in {w.id for w in source.sample().workloads}
    assert uuid in source._meta
    transient.destroy()  # a transient domain is gone once destroyed
    assert uuid not in {w.id for w in source.sample().workloads}
    assert uuid not in source._meta
    assert source._meta  # the others stay cached


def test_domain_destroyed_between_stats_and_xml_is_skipped(
    source: LibvirtSource,
    admin: Any,
    xml_reads: list[tuple[Any, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transient = admin.createXML(domain_xml(PREFIX + "race"))
    uuid = transient.UUIDString()
    errors: list[int] = []

    def destroy_after_stats(conn: Any, records: list[tuple[Any, dict[str, Any]]]) -> Any:
        if conn is not admin and any(d.UUIDString() == uuid for d, _ in records):
            transient.destroy()  # really gone: its XMLDesc now fails with VIR_ERR_NO_DOMAIN
            errors.append(error_code_of(lambda: admin.lookupByUUIDString(uuid)))
        return records

    patch_stats(monkeypatch, destroy_after_stats)
    reading = source.sample()
    assert errors == [libvirt.VIR_ERR_NO_DOMAIN]
    assert uuid in reads_not_by(admin, xml_reads)  # the source did try to read its XML
    ids = {w.id for w in reading.workloads}
    assert uuid not in ids
    assert admin.lookupByName("test").UUIDString() in ids
    assert uuid not in source._meta


def test_another_xml_error_fails_the_pass(
    source: LibvirtSource, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = libvirt.virDomain.XMLDesc

    def invalid_flags(self: Any, flags: int = 0) -> str:
        result: str = original(self, 1 << 30)  # a real VIR_ERR_INVALID_ARG from the driver
        return result

    monkeypatch.setattr(libvirt.virDomain, "XMLDesc", invalid_flags)
    with pytest.raises(libvirt.libvirtError) as raised:
        source.sample()
    assert raised.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
    monkeypatch.undo()
    assert {w.name for w in source.sample().workloads} >= {"test"}


def test_lifecycle_mark_survives_a_failed_pass(
    source: LibvirtSource, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    domain = define_seen(source, admin, domain_xml(PREFIX + "stale"))
    uuid = domain.UUIDString()
    assert {w.id: w for w in source.sample().workloads}[uuid].os == ""
    xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).replace(
        "</uuid>",
        f"</uuid><metadata><libosinfo:libosinfo xmlns:libosinfo='{LIBOSINFO}'>"
        "<libosinfo:os id='http://debian.org/debian/12'/></libosinfo:libosinfo></metadata>",
    )
    admin.defineXML(xml)
    wait_until(lambda: uuid in source._dirty)

    original = libvirt.virDomain.XMLDesc

    def fail_once(self: Any, flags: int = 0) -> str:
        monkeypatch.setattr(libvirt.virDomain, "XMLDesc", original)
        result: str = original(self, 1 << 30)  # a real libvirtError (VIR_ERR_INVALID_ARG)
        return result

    monkeypatch.setattr(libvirt.virDomain, "XMLDesc", fail_once)
    with pytest.raises(libvirt.libvirtError):
        source.sample()  # e.g. a transient RPC error on that domain
    after = {w.id: w for w in source.sample().workloads}[uuid]
    assert after.os == "http://debian.org/debian/12"


def test_running_vm_disk_totals_leave_out_the_cdrom(
    source: LibvirtSource, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = load("stats-running-cdrom.json")  # vda (disk) and sda (cdrom), from QEMU
    assert (recorded["block.1.name"], recorded["block.1.capacity"]) == ("sda", 8388608)
    disks = (
        f"<disk type='file' device='disk'><source file='{RECORDED_PATH}'/>"
        "<target dev='vda' bus='virtio'/></disk>"
        "<disk type='file' device='cdrom'><source file='/tmp/install.iso'/>"
        "<target dev='sda' bus='sata'/><readonly/></disk>"
    )
    uuid = admin.createXML(domain_xml(PREFIX + "cdrom", disks=disks)).UUIDString()

    def qemu_stats(_conn: Any, records: list[tuple[Any, dict[str, Any]]]) -> Any:
        return [(d, recorded if d.UUIDString() == uuid else s) for d, s in records]

    patch_stats(monkeypatch, qemu_stats)
    workload = {w.id: w for w in source.sample().workloads}[uuid]
    assert [d.name for d in workload.block_devices] == ["vda"]
    assert (workload.disk_bytes, workload.disk_limit_bytes) == (4096, 67108864)


def test_close_then_sample_reconnects_and_reads_the_xml_again(
    source: LibvirtSource, admin: Any, xml_reads: list[tuple[Any, str]]
) -> None:
    first = source.sample()
    source.close()
    xml_reads.clear()
    assert source.sample() == first
    assert sorted(reads_not_by(admin, xml_reads)) == sorted(w.id for w in first.workloads)


# -- a test-driver node file: a running and a shut-off domain --------------------------------


def test_probe_node_file(node_source: LibvirtSource) -> None:
    assert node_source.probe().endswith(f"at {NODE_URI} (TEST, read-only): 2 domains, 1 running")


def test_sample_node_file_running_and_shut_off(node_source: LibvirtSource) -> None:
    reading = node_source.sample()
    # A connection of our own: the same file, a separate state.
    conn = libvirt.openReadOnly(NODE_URI)
    try:
        expected = {}
        for domain in conn.listAllDomains():
            state, max_memory_kib, _memory, vcpus, _cpu = domain.info()
            config = parse_domain_xml(domain.XMLDesc(0))
            active = bool(domain.isActive())
            devices: tuple[BlockDevice, ...] = ()
            if not active:
                devices = tuple(
                    BlockDevice(
                        name=d.target,
                        path=d.source,
                        bytes=domain.blockInfo(d.target)[1],
                        capacity_bytes=domain.blockInfo(d.target)[0],
                    )
                    for d in config.disks
                )
            expected[domain.UUIDString()] = (
                domain.name(),
                LIBVIRT_STATES[state],
                active,
                float(vcpus),
                max_memory_kib * 1024,
                config.os,
                devices,
            )
    finally:
        conn.close()
    got = {
        w.id: (
            w.name,
            w.state,
            w.running,
            w.cpu_limit_cores,
            w.memory_limit_bytes,
            w.os,
            w.block_devices,
        )
        for w in reading.workloads
    }
    assert got == expected
    assert {w.name: w.state for w in reading.workloads} == {"web-1": "running", "db-off": "shutoff"}
    off = next(w for w in reading.workloads if w.name == "db-off")
    # The CD-ROM (sda) is not among a shut-off VM's disks; vdb's size comes from blockInfo.
    assert [d.name for d in off.block_devices] == ["vdb"]
    assert off.disk_bytes == off.block_devices[0].bytes is not None
    assert off.disk_limit_bytes == off.block_devices[0].capacity_bytes is not None
    usage = (off.cpu_seconds, off.memory_bytes, off.disk_read_bytes, off.guest_memory_used_bytes)
    assert usage == (None, None, None, None)
    assert node_source.pool_paths == ("/var/lib/libvirt/images",)


def test_shut_off_disk_that_blockinfo_cannot_read_has_unknown_size(
    node_source: LibvirtSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = libvirt.virDomain.blockInfo

    def unreadable(self: Any, path: str, flags: int = 0) -> Any:
        return original(self, "/no/such/image", flags)  # a real libvirtError

    monkeypatch.setattr(libvirt.virDomain, "blockInfo", unreadable)
    off = next(w for w in node_source.sample().workloads if w.name == "db-off")
    assert off.block_devices == (
        BlockDevice(name="vdb", path="/var/lib/libvirt/images/db-off.raw"),
    )
    assert (off.disk_bytes, off.disk_limit_bytes) == (None, None)
    assert off.memory_limit_bytes == 1024**3  # the rest of the sample is intact


def test_shut_off_disk_bytes_are_blockinfos_allocation(
    node_source: LibvirtSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test driver answers allocation == physical; replay what QEMU's driver answered for
    # the recorded VM shut off (capacity, allocation, physical): the sparse 64 MiB file
    # occupies nothing yet, and its apparent size is not what it uses.
    recorded = [67108864, 0, 67108864]
    monkeypatch.setattr(libvirt.virDomain, "blockInfo", lambda self, path, flags=0: recorded)
    off = next(w for w in node_source.sample().workloads if w.name == "db-off")
    assert (off.disk_bytes, off.disk_limit_bytes) == (0, 67108864)


# -- connection failure and the event loop --------------------------------------------------


def test_unreachable_daemon_is_source_unavailable_naming_the_uri() -> None:
    uri = "qemu:///system?socket=/nonexistent/sock"
    src = LibvirtSource(uri)
    try:
        for call in (src.probe, src.sample):
            with pytest.raises(SourceUnavailable) as raised:
                call()
            message = str(raised.value)
            assert uri in message
            assert "/nonexistent/sock" in message.split(uri, 1)[1]  # libvirt's own reason
            assert message.endswith("(is libvirtd running?)")
            assert isinstance(raised.value.__cause__, libvirt.libvirtError)
    finally:
        src.close()


def test_start_event_loop_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    start_event_loop()
    registered: list[int] = []
    monkeypatch.setattr(libvirt, "virEventRegisterDefaultImpl", lambda: registered.append(1))
    threads = [threading.Thread(target=start_event_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    start_event_loop()
    assert registered == []
    loops = [t for t in threading.enumerate() if t.name == "libvirt-events"]
    assert len(loops) == 1
    assert loops[0].daemon and loops[0].is_alive()


def test_start_event_loop_first_calls_race_to_one_loop() -> None:
    # In a fresh interpreter, where the loop has not been started yet.
    script = """
import threading, libvirt
from densityd.collect.sources.libvirt import start_event_loop
calls = []
real = libvirt.virEventRegisterDefaultImpl
libvirt.virEventRegisterDefaultImpl = lambda: calls.append(1) or real()
gate = threading.Barrier(8)
def go():
    gate.wait()
    start_event_loop()
workers = [threading.Thread(target=go) for _ in range(8)]
for w in workers: w.start()
for w in workers: w.join()
start_event_loop()
print(len(calls), sum(t.name == "libvirt-events" for t in threading.enumerate()))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["1", "1"]


def test_node_info_matches_the_drivers_get_info(source: LibvirtSource, admin: Any) -> None:
    model, _memory, cpus, mhz, nodes, sockets, cores, threads = admin.getInfo()
    reading = source.sample()
    assert reading.node is not None
    assert (reading.node.cpu_model, reading.node.cpus, reading.node.mhz) == (model, cpus, mhz)
    assert (
        reading.node.numa_nodes,
        reading.node.sockets_per_node,
        reading.node.cores_per_socket,
        reading.node.threads_per_core,
    ) == (nodes, sockets, cores, threads)
