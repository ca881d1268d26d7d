"""The libvirt source: every VM's CPU, memory and disk, running or not.

The only module that imports ``libvirt``. It keeps one read-only connection
(``openReadOnly``) with keepalive and a close callback, and per pass lists the domains and
asks their stats in bulk (state, CPU, balloon, vCPU, interface, block; ``NOWAIT`` so that a
domain busy in another job, a migration say, does not hold the call), split across a few
concurrent calls from ``PARALLEL_STATS_FROM`` domains on (``domain_stats``). A domain's XML
(configured memory, vCPUs, disks, libosinfo OS) is read once and again only when the domain
appears, changes (state, vCPUs, memory, disk count) or a lifecycle event names it.

What ``getAllDomainStats`` returns for a running TCG domain (trimmed)::

    {'state.state': 1, 'cpu.time': 700068000, 'balloon.current': 131072,
     'balloon.maximum': 131072, 'balloon.rss': 42304, 'vcpu.current': 1,
     'vcpu.maximum': 1, 'vcpu.0.state': 1, 'vcpu.0.time': 140000000, 'vcpu.0.delay': 41625950,
     'net.count': 1, 'net.0.name': 'vnet0', 'net.0.rx.bytes': 90, 'net.0.rx.pkts': 1,
     'net.0.rx.errs': 0, 'net.0.rx.drop': 0, 'net.0.tx.bytes': 0, 'net.0.tx.pkts': 0, ...
     'block.count': 1, 'block.0.name': 'vda', 'block.0.path': '/var/lib/.../vm.raw',
     'block.0.rd.bytes': 512, 'block.0.wr.bytes': 0, 'block.0.allocation': 0,
     'block.0.capacity': 67108864, 'block.0.physical': 4096}

Sizes in ``balloon.*`` are KiB; ``balloon.rss`` is the QEMU process's resident set, the VM's
host-side memory footprint. ``net.N.*`` are the host-side device's counters as the guest sees
them (rx: what the guest received); an interface with no host device (``type='user'``) has only
``net.count``. ``vcpu.N.delay`` (Linux, libvirt 8.1+; 9.0 here has it) is the ns the vCPU
thread waited runnable for a host CPU (schedstat), i.e. steal time as the guest would see it.
host-side memory footprint.

For a local hypervisor, a running VM's pressure (cgroup v2) and CPU throttling come from its
cgroup, where libvirt puts it (``cgroups.machine_cgroup_paths``: ``machine/qemu-ID-NAME
.libvirt-qemu``, or ``machine.slice/machine-qemu\\x2dID\\x2dNAME.scope`` under systemd); its
path is looked for once per domain ID and kept.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from densityd.collect.sources.balloon import CURRENT, GuestStats, Seen, guest_stats
from densityd.collect.sources.base import SourceUnavailable
from densityd.collect.sources.cgroups import CgroupReader, CgroupSignals
from densityd.collect.sources.host import parse_meminfo
from densityd.collect.sources.libvirt_xml import DomainConfig, parse_domain_xml, pool_target_path
from densityd.model import (
    BlockDevice,
    NetworkInterface,
    NodeInfo,
    SourceReading,
    WorkloadKind,
    WorkloadSample,
)

log = logging.getLogger("densityd.sources.libvirt")

STATE_NAMES = {
    0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
    6: "crashed", 7: "pmsuspended",
}  # fmt: skip
# States in which the QEMU process exists and holds the guest's memory.
ACTIVE_STATES = frozenset({1, 2, 3, 4, 7})

_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)
# NOWAIT (libvirt >= 4.5) skips stats that need a domain job lock held by another job.
_NOWAIT = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)

# From this many domains the bulk call is split across concurrent calls: libvirtd queries
# each domain's QEMU monitor in turn within one call, and serves up to 5 calls of one client
# at once (max_client_requests), so chunks run side by side (8 TCG VMs: 75 ms -> 44 ms).
# Below it one call costs less than the threads' handoff.
PARALLEL_STATS_FROM = 4
STATS_WORKERS = 4


def domain_stats(
    conn: Any, domains: Sequence[Any], pool: ThreadPoolExecutor | None
) -> list[tuple[Any, dict[str, Any]]]:
    """Stats of ``domains`` (listed by the caller), ``STATS_WORKERS`` chunks at a time.

    A domain that vanished after the listing (destroyed, undefined) never fails the others:
    libvirt skips it, or, where it reports ``VIR_ERR_NO_DOMAIN`` for the chunk, the chunk's
    domains are asked one by one and the vanished one is left out.
    """
    if pool is None or len(domains) < PARALLEL_STATS_FROM:
        return _chunk_stats(conn, list(domains))
    chunks = [list(domains[i::STATS_WORKERS]) for i in range(STATS_WORKERS)]
    futures = [pool.submit(_chunk_stats, conn, chunk) for chunk in chunks if chunk]
    return [record for future in futures for record in future.result()]


def _chunk_stats(conn: Any, domains: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
    if not domains:
        return []
    try:
        return list(conn.domainListGetStats(domains, _STATS, _NOWAIT))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
    if len(domains) == 1:
        return []  # the one that vanished
    return [record for domain in domains for record in _chunk_stats(conn, [domain])]


_event_loop_lock = threading.Lock()
_event_loop_started = False


def _ignore_libvirt_errors(_context: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; densityd reports them itself."""


def start_event_loop() -> None:
    """Run libvirt's default event loop on a daemon thread (keepalive and callbacks need it).

    It must be registered before the first connection is opened, and only once a process.
    """
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.registerErrorHandler(_ignore_libvirt_errors, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def _int(stats: Mapping[str, Any], key: str) -> int | None:
    """An integer stat; anything else libvirt could hand over (text, a double) is not known."""
    value = stats.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _kib(stats: Mapping[str, Any], key: str) -> int | None:
    value = _int(stats, key)
    return value * 1024 if value is not None else None


def block_devices(stats: Mapping[str, Any]) -> tuple[BlockDevice, ...]:
    """The ``block.N.*`` entries of one domain's stats as devices."""
    devices = []
    # Each device has keys of its own in the record, so a count beyond the record's size is
    # garbage: bounded by it, a bad count cannot make a pass build millions of devices.
    count = min(_int(stats, "block.count") or 0, len(stats))
    for index in range(count):
        prefix = f"block.{index}."
        # For a file, "physical" is what it occupies on the host's disk; "allocation" is the
        # highest written offset, which is 0 for a raw file however much it holds.
        on_disk = _int(stats, prefix + "physical")
        devices.append(
            BlockDevice(
                name=str(stats.get(prefix + "name", index)),
                path=str(stats.get(prefix + "path", "")),
                bytes=on_disk if on_disk is not None else _int(stats, prefix + "allocation"),
                capacity_bytes=_int(stats, prefix + "capacity"),
                read_bytes=_int(stats, prefix + "rd.bytes"),
                written_bytes=_int(stats, prefix + "wr.bytes"),
            )
        )
    return tuple(devices)


def network_interfaces(stats: Mapping[str, Any]) -> tuple[NetworkInterface, ...]:
    """The ``net.N.*`` entries of one domain's stats as interfaces (their host device names).

    An interface without a name has no host-side device to count (QEMU's user networking):
    it is left out rather than given counters nobody measured.
    """
    interfaces = []
    count = min(_int(stats, "net.count") or 0, len(stats))  # bounded as in block_devices
    for index in range(count):
        prefix = f"net.{index}."
        name = stats.get(prefix + "name")
        if not isinstance(name, str) or not name:
            continue
        interfaces.append(
            NetworkInterface(
                name=name,
                receive_bytes=_int(stats, prefix + "rx.bytes"),
                receive_packets=_int(stats, prefix + "rx.pkts"),
                receive_drops=_int(stats, prefix + "rx.drop"),
                receive_errors=_int(stats, prefix + "rx.errs"),
                transmit_bytes=_int(stats, prefix + "tx.bytes"),
                transmit_packets=_int(stats, prefix + "tx.pkts"),
                transmit_drops=_int(stats, prefix + "tx.drop"),
                transmit_errors=_int(stats, prefix + "tx.errs"),
            )
        )
    return tuple(interfaces)


def vcpu_delay_seconds(stats: Mapping[str, Any]) -> float | None:
    """The ``vcpu.N.delay`` of every vCPU summed, in seconds; None where libvirt gives none.

    ``vcpu.maximum`` vCPUs are listed (offline ones too), so the sum only grows while the
    domain runs.
    """
    count = min(_int(stats, "vcpu.maximum") or _int(stats, "vcpu.current") or 0, len(stats))
    delays = [_int(stats, f"vcpu.{index}.delay") for index in range(count)]
    known = [d for d in delays if d is not None]
    return sum(known) / 1e9 if known else None


def hugepage_bytes(memory_bytes: int | None, page_bytes: int | None) -> int | None:
    """Guest RAM in whole huge pages (QEMU rounds the backing up to the page size)."""
    if memory_bytes is None or page_bytes is None or page_bytes <= 0:
        return None
    return -(-memory_bytes // page_bytes) * page_bytes


def _sum(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def guest_memory_used(stats: Mapping[str, Any]) -> int | None:
    """Guest memory in use as the guest's balloon driver reports it (available - usable)."""
    available = _kib(stats, "balloon.available")
    usable = _kib(stats, "balloon.usable")
    if available is None or usable is None:
        return None
    return max(0, available - usable)


def vm_sample(
    uuid: str,
    config: DomainConfig,
    stats: Mapping[str, Any],
    devices: tuple[BlockDevice, ...],
    *,
    read_at: float | None = None,
    guest: GuestStats | None = None,
    default_hugepage_bytes: int | None = None,
    signals: CgroupSignals | None = None,
) -> WorkloadSample:
    """One VM's sample from its stats (read at ``read_at``), its configuration, its disks.

    ``guest`` says whether the balloon figures are current (``balloon.guest_stats``); without
    it they are taken as current (a one-off reading has nothing to compare with).
    ``default_hugepage_bytes`` is the host's default huge page size, for a VM whose
    ``<hugepages/>`` names none (None: not known, so neither is its page size).
    """
    state = _int(stats, "state.state") or 0
    active = state in ACTIVE_STATES
    cpu_time = _int(stats, "cpu.time")
    vcpus = _int(stats, "vcpu.current") or config.vcpus
    memory_limit = _kib(stats, "balloon.maximum") or config.memory_bytes
    page_size = (config.hugepage_size_bytes or default_hugepage_bytes) if config.hugepages else None
    cgroup = signals if active and signals is not None else CgroupSignals()
    return WorkloadSample(
        kind=WorkloadKind.VM,
        id=uuid,
        name=config.name,
        image="",
        os=config.os,
        state=STATE_NAMES.get(state, str(state)),
        running=active,
        cpu_seconds=cpu_time / 1e9 if active and cpu_time is not None else None,
        cpu_limit_cores=float(vcpus) if vcpus and vcpus > 0 else None,
        memory_bytes=_kib(stats, "balloon.rss") if active else None,
        memory_limit_bytes=memory_limit,
        disk_bytes=_sum([d.bytes for d in devices]),
        disk_limit_bytes=_sum([d.capacity_bytes for d in devices]),
        disk_read_bytes=_sum([d.read_bytes for d in devices]) if active else None,
        disk_written_bytes=_sum([d.written_bytes for d in devices]) if active else None,
        guest_memory_used_bytes=(
            guest_memory_used(stats)
            if active and (guest is None or guest.status == CURRENT)
            else None
        ),
        guest_stats_status=guest.status if active and guest is not None else "",
        guest_stats_age_seconds=guest.age_seconds if active and guest is not None else None,
        block_devices=devices,
        cpu_read_at=read_at if active and cpu_time is not None else None,
        interfaces=network_interfaces(stats) if active else (),
        vcpu_delay_seconds=vcpu_delay_seconds(stats) if active else None,
        hugepage_size_bytes=page_size,
        hugepage_bytes=hugepage_bytes(memory_limit, page_size),
        cpu_pressure=cgroup.cpu_pressure,
        memory_pressure=cgroup.memory_pressure,
        io_pressure=cgroup.io_pressure,
        cpu_periods=cgroup.cpu_periods,
        cpu_throttled_periods=cgroup.cpu_throttled_periods,
        cpu_throttled_seconds=cgroup.cpu_throttled_seconds,
    )


def node_info(conn: Any) -> NodeInfo | None:
    """The host's CPU model and topology from libvirt's ``getInfo`` (read once a connection)."""
    try:
        model, _memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
    except libvirt.libvirtError:
        return None
    return NodeInfo(
        cpu_model=str(model),
        cpus=int(cpus),
        mhz=int(mhz),
        numa_nodes=int(nodes),
        sockets_per_node=int(sockets),
        cores_per_socket=int(cores),
        threads_per_core=int(threads),
    )


@dataclass(frozen=True, slots=True)
class _DomainMeta:
    fingerprint: tuple[Any, ...]
    config: DomainConfig


def _default_hugepage_size() -> int | None:
    """This kernel's default huge page size (``Hugepagesize`` in /proc/meminfo, the same in
    every namespace), the size of a ``<hugepages/>`` that names none."""
    try:
        return parse_meminfo(Path("/proc/meminfo").read_text()).get("Hugepagesize")
    except OSError:
        return None


def _is_local(uri: str) -> bool:
    """Whether the URI names this host's hypervisor (no transport, no remote host)."""
    scheme, _, rest = uri.partition("://")
    transport = scheme.partition("+")[2]
    return transport in ("", "unix") and not rest.split("/", 1)[0].strip("@")


class LibvirtSource:
    """Samples every domain of one libvirt connection, read-only."""

    name = "libvirt"

    def __init__(
        self,
        uri: str = "qemu:///system",
        keepalive_interval: int = 5,
        keepalive_count: int = 3,
        cgroup_root: Path | str | None = "/sys/fs/cgroup",
    ) -> None:
        """``cgroup_root``: where VMs' cgroups are read (only for a local QEMU hypervisor;
        ``None``: not read)."""
        self.uri = uri
        local_qemu = _is_local(uri) and uri.startswith("qemu")
        self._cgroups = CgroupReader(cgroup_root) if cgroup_root and local_qemu else None
        # Per VM, its domain ID and the cgroup path found for it.
        self._cgroup_paths: dict[str, tuple[int, str]] = {}
        self._keepalive = (keepalive_interval, keepalive_count)
        self._conn: Any = None
        self._connect_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._meta: dict[str, _DomainMeta] = {}
        self._dirty: set[str] = set()
        self._dirty_lock = threading.Lock()
        self._pool_paths: tuple[str, ...] = ()
        self._node: NodeInfo | None = None
        # Per VM, the last balloon.last-update seen and when: how stale guest figures are told.
        self._balloon_seen: dict[str, Seen] = {}
        self._default_hugepage_bytes = _default_hugepage_size() if _is_local(uri) else None

    # -- connection -------------------------------------------------------------------

    def _connect(self) -> Any:
        with self._connect_lock:
            if self._conn is not None and self._conn.isAlive():
                return self._conn
            self._drop()
            start_event_loop()
            try:
                conn = libvirt.openReadOnly(self.uri)
            except libvirt.libvirtError as exc:
                hint = " (is libvirtd running?)" if _is_local(self.uri) else ""
                raise SourceUnavailable(
                    f"cannot connect to libvirt at {self.uri}: {exc.get_error_message()}{hint}"
                ) from exc
            conn.registerCloseCallback(self._on_close, None)
            # A driver opened in-process (test:///) has no keepalive; events are only an
            # optimisation (fingerprints catch changes anyway): neither is worth failing for.
            with contextlib.suppress(libvirt.libvirtError):
                conn.setKeepAlive(*self._keepalive)
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
                )
            self._meta.clear()
            self._node = node_info(conn)
            self._conn = conn
            return conn

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        log.debug("libvirt connection to %s closed (reason %d)", self.uri, reason)
        self._conn = None  # the next pass reconnects

    def _on_lifecycle(
        self, _conn: Any, domain: Any, _event: int, _detail: int, _opaque: Any
    ) -> None:
        with self._dirty_lock:
            self._dirty.add(domain.UUIDString())

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):  # already broken: nothing to release
                conn.close()

    def probe(self) -> str:
        """Connect and describe the hypervisor and its domains."""
        conn = self._connect()
        try:
            version = conn.getLibVersion()
            hypervisor = conn.getType()
            domains = conn.listAllDomains()
        except libvirt.libvirtError as exc:
            raise SourceUnavailable(f"libvirt at {self.uri}: {exc.get_error_message()}") from exc
        running = sum(1 for d in domains if d.isActive())
        major, minor, micro = version // 1_000_000, version // 1000 % 1000, version % 1000
        return (
            f"libvirt {major}.{minor}.{micro} at {self.uri} ({hypervisor}, read-only): "
            f"{len(domains)} domains, {running} running"
        )

    def close(self) -> None:
        """Close the connection (and the stats threads)."""
        with self._connect_lock:
            self._drop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _stats_pool(self) -> ThreadPoolExecutor:
        """The threads the bulk stats call is split across, made at the first pass."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(STATS_WORKERS, thread_name_prefix="libvirt-stats")
        return self._pool

    # -- one pass ---------------------------------------------------------------------

    def sample(self) -> SourceReading:
        """One bulk stats call, metadata for new or changed domains, one sample per domain."""
        conn = self._connect()
        try:
            records = domain_stats(conn, conn.listAllDomains(0), self._stats_pool())
            read_at = time.time()
        except libvirt.libvirtError as exc:
            if not conn.isAlive():
                self._drop()
            raise SourceUnavailable(f"libvirt at {self.uri}: {exc.get_error_message()}") from exc
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        seen: set[str] = set()
        samples = []
        try:
            for domain, stats in records:
                uuid = domain.UUIDString()
                meta = self._metadata(domain, uuid, stats, force=uuid in dirty)
                if meta is None:
                    continue  # undefined or destroyed (transient) after the stats call
                seen.add(uuid)
                samples.append(self._vm(domain, uuid, stats, meta, read_at))
        except BaseException:
            with self._dirty_lock:  # keep the marks for the next pass to act on
                self._dirty |= dirty
            raise
        for gone in set(self._meta) - seen:
            del self._meta[gone]
        for gone in set(self._balloon_seen) - seen:
            del self._balloon_seen[gone]
        for gone in set(self._cgroup_paths) - seen:
            del self._cgroup_paths[gone]
        self._pool_paths = self._read_pool_paths(conn)
        return SourceReading(workloads=tuple(samples), node=self._node)

    def _metadata(
        self, domain: Any, uuid: str, stats: Mapping[str, Any], force: bool
    ) -> _DomainMeta | None:
        fingerprint = (
            domain.name(),
            stats.get("state.state"),
            stats.get("vcpu.maximum"),
            stats.get("balloon.maximum"),
            stats.get("block.count"),
        )
        cached = self._meta.get(uuid)
        if cached is not None and cached.fingerprint == fingerprint and not force:
            return cached
        try:
            config = parse_domain_xml(domain.XMLDesc(0))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        meta = _DomainMeta(fingerprint, config)
        self._meta[uuid] = meta
        return meta

    def _vm(
        self,
        domain: Any,
        uuid: str,
        stats: Mapping[str, Any],
        meta: _DomainMeta,
        read_at: float | None = None,
    ) -> WorkloadSample:
        """One VM's sample; only its configured disks count (a CD-ROM is not its storage)."""
        guest: GuestStats | None = None
        if int(stats.get("state.state", 0)) in ACTIVE_STATES:
            targets = {disk.target for disk in meta.config.disks}
            devices = tuple(d for d in block_devices(stats) if d.name in targets)
            guest = guest_stats(
                stats,
                meta.config.balloon_model,
                meta.config.balloon_period,
                self._balloon_seen.get(uuid),
                time.monotonic(),
            )
            if guest.seen is not None:
                self._balloon_seen[uuid] = guest.seen
            else:
                self._balloon_seen.pop(uuid, None)
            signals = self._signals(domain, uuid, meta.config)
        else:
            devices = self._inactive_devices(domain, meta)
            self._balloon_seen.pop(uuid, None)
            self._cgroup_paths.pop(uuid, None)
            signals = None
        return vm_sample(
            uuid,
            meta.config,
            stats,
            devices,
            read_at=read_at,
            guest=guest,
            signals=signals,
            default_hugepage_bytes=self._default_hugepage_bytes,
        )

    def _signals(self, domain: Any, uuid: str, config: DomainConfig) -> CgroupSignals | None:
        """A running VM's pressure and throttling from its cgroup, found once per domain ID
        (a restarted domain has a new ID, and a new cgroup); looked for again while not found."""
        if self._cgroups is None:
            return None
        domain_id = int(domain.ID())
        cached = self._cgroup_paths.get(uuid)
        if cached is None or cached[0] != domain_id:
            path = self._cgroups.find_machine(config.partition, domain_id, config.name)
            if path is None:
                log.debug("no cgroup found for VM %s (ID %d)", config.name, domain_id)
                self._cgroup_paths.pop(uuid, None)
                return None
            cached = (domain_id, path)
            self._cgroup_paths[uuid] = cached
        return self._cgroups.read_signals(cached[1], memory=False)

    @staticmethod
    def _inactive_devices(domain: Any, meta: _DomainMeta) -> tuple[BlockDevice, ...]:
        """A shut-off VM's disks: stats has none, but ``blockInfo`` still reads the images."""
        devices = []
        for disk in meta.config.disks:
            try:
                capacity, allocation, _physical = domain.blockInfo(disk.target)
            except libvirt.libvirtError:
                capacity = allocation = None  # an image that is missing or not a plain file
            devices.append(
                BlockDevice(
                    name=disk.target, path=disk.source, bytes=allocation, capacity_bytes=capacity
                )
            )
        return tuple(devices)

    def _read_pool_paths(self, conn: Any) -> tuple[str, ...]:
        """Target directories of the active storage pools (images live there)."""
        if not _is_local(self.uri):
            return ()  # the paths are on another host
        paths = []
        try:
            for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
                path = pool_target_path(pool.XMLDesc(0))
                if path:
                    paths.append(path)
        except libvirt.libvirtError:
            return self._pool_paths  # keep the last known; the pool list is not essential
        return tuple(paths)

    @property
    def pool_paths(self) -> tuple[str, ...]:
        """Image directories of the active storage pools, as of the last pass."""
        return self._pool_paths
