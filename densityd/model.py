"""The data densityd passes between its parts: samples, source status and snapshots.

Sources turn their backend into these frozen dataclasses; nothing from an SDK leaks past a
source. Every quantity is in base units (bytes, seconds, cores). ``None`` means "not known" or
"unlimited" and is never exported as 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class WorkloadKind(StrEnum):
    """What a workload is: the ``kind`` label on every workload series."""

    CONTAINER = "container"
    VM = "vm"


@dataclass(frozen=True, slots=True)
class BlockDevice:
    """One block device of a workload: a VM's virtual disk, or a host disk a container used.

    A VM's disk has its host-side size, capacity and I/O; a container's has only the bytes
    read and written through its cgroup (``name`` is the host's device name, or ``MAJ:MIN``
    when that cannot be told). The I/O counters are per device so that each one only grows:
    a sum over devices drops when a device goes away.
    """

    name: str
    path: str
    bytes: int | None = None
    capacity_bytes: int | None = None
    read_bytes: int | None = None
    written_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkInterface:
    """One network interface of a workload: a VM's host-side tap (libvirt's ``net.N.*``,
    counted from the guest's side), or an interface in a container's network namespace.

    Counters are per interface, never summed, for the same reason as ``BlockDevice``'s.
    """

    name: str
    receive_bytes: int | None = None
    receive_packets: int | None = None
    receive_drops: int | None = None
    receive_errors: int | None = None
    transmit_bytes: int | None = None
    transmit_packets: int | None = None
    transmit_drops: int | None = None
    transmit_errors: int | None = None


@dataclass(frozen=True, slots=True)
class HugepagePool:
    """The host's pool of huge pages of one size (``/sys/kernel/mm/hugepages/hugepages-NkB``).

    Counts are pages. ``free`` includes the ``reserved`` pages (promised to a mapping, not yet
    faulted in), so the pages a new user can still have are ``free - reserved``. ``surplus``
    pages are above ``nr_hugepages`` (overcommitted); ``total`` includes them.
    """

    size_bytes: int
    total: int
    free: int
    reserved: int
    surplus: int | None = None
    default: bool = False

    @property
    def available_bytes(self) -> int:
        """Bytes of this pool a new user can still get: free, less the reserved pages."""
        return max(0, self.free - self.reserved) * self.size_bytes


@dataclass(frozen=True, slots=True)
class Pressure:
    """Stall time from one pressure (PSI) file, in seconds since boot or since the cgroup's birth.

    ``some``: time in which at least one task was stalled on the resource; ``full``: time in
    which all non-idle tasks were at once. Each is ``None`` where the file has no such line
    (``full`` in ``cpu.pressure`` before 5.13 at the host level).
    """

    some_seconds: float | None = None
    full_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class WorkloadSample:
    """One container or VM as seen in one sampling pass.

    ``memory_bytes`` is the host-side footprint: a container's working set (usage minus
    inactive file cache), a VM's QEMU resident set.
    """

    kind: WorkloadKind
    id: str
    name: str
    image: str = ""
    state: str = "running"
    running: bool = True
    cpu_seconds: float | None = None
    cpu_limit_cores: float | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    memory_usage_bytes: int | None = None
    memory_rss_bytes: int | None = None
    memory_cache_bytes: int | None = None
    disk_bytes: int | None = None
    disk_limit_bytes: int | None = None
    # Summed over ``block_devices`` for ``densityd sample``; never exported as a counter, since
    # the sum drops when a device is removed (the exporter exports each device's counter).
    disk_read_bytes: int | None = None
    disk_written_bytes: int | None = None
    # Only when the guest's figures are current (``guest_stats_status == "current"``); the
    # status says why not otherwise ("" for containers and VMs not running).
    guest_memory_used_bytes: int | None = None
    guest_stats_status: str = ""
    guest_stats_age_seconds: float | None = None
    os: str = ""
    block_devices: tuple[BlockDevice, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    # When ``cpu_seconds`` was read (Unix seconds): a pass reads its workloads one after
    # another, after listing and inspecting them, so the pass's start is not the reading's.
    cpu_read_at: float | None = None
    # Per interface; () when none is known or the workload shares the host's network.
    interfaces: tuple[NetworkInterface, ...] = ()
    # A VM's vCPUs' time runnable but not running (libvirt's vcpu.N.delay summed), in seconds.
    vcpu_delay_seconds: float | None = None
    # A VM whose RAM is backed by huge pages: the page size, and the guest RAM they hold
    # (which its QEMU resident set does not count).
    hugepage_size_bytes: int | None = None
    hugepage_bytes: int | None = None
    # Starvation signals, from the workload's cgroup (None: not known, never exported as 0).
    # Pressure needs cgroup v2 (cpu.pressure, memory.pressure, io.pressure).
    cpu_pressure: Pressure | None = None
    memory_pressure: Pressure | None = None
    io_pressure: Pressure | None = None
    # CFS bandwidth: enforcement periods, those throttled, and the time throttled.
    cpu_periods: int | None = None
    cpu_throttled_periods: int | None = None
    cpu_throttled_seconds: float | None = None
    # Kills by the OOM killer in this container (cgroup counter and the Engine's oom events).
    oom_kills: int | None = None
    # Memory protection and throttle points, only where set (v2 memory.min/low/high, v1 soft
    # limit); None for max/unlimited and for v2 low/min of 0.
    memory_min_bytes: int | None = None
    memory_low_bytes: int | None = None
    memory_high_bytes: int | None = None
    memory_soft_limit_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """Size and free space of the filesystem holding one path.

    ``device`` (``st_dev``) tells whether two paths share one filesystem, and so one free
    space.
    """

    path: str
    total_bytes: int
    free_bytes: int
    device: int = 0


@dataclass(frozen=True, slots=True)
class HostSample:
    """The host's capacity and what is still available.

    ``container_shim_rss_bytes`` holds the resident set of each containerd shim process seen
    (one per running container): what a container costs beyond its own processes.
    ``disk_checks`` says, per data path (``name``), whether its filesystem answered within its
    deadline and when it last did; ``disks`` holds only those that did.
    ``cgroup_namespace_private``: densityd runs in a cgroup namespace of its own.
    ``hugepages`` holds the huge page pools, whose memory is in ``memory_bytes`` but can serve
    only users of huge pages (``hugepages_bytes``).
    """

    cpu_cores: int
    memory_bytes: int
    memory_available_bytes: int
    disks: tuple[DiskUsage, ...] = ()
    ksm_shared_bytes: int | None = None
    ksm_sharing_bytes: int | None = None
    container_shim_rss_bytes: tuple[int, ...] = ()
    disk_checks: tuple[SourceStatus, ...] = ()
    cgroup_namespace_private: bool = False
    # Per page size, smallest first; () where the kernel has no huge pages.
    hugepages: tuple[HugepagePool, ...] = ()
    # Memory the huge page pools hold (``Hugetlb`` in /proc/meminfo, else summed from the
    # pools): part of MemTotal, never of MemAvailable.
    hugepages_bytes: int = 0
    # /proc/pressure/{cpu,memory,io}; None where the kernel has no PSI.
    cpu_pressure: Pressure | None = None
    memory_pressure: Pressure | None = None
    io_pressure: Pressure | None = None


@dataclass(frozen=True, slots=True)
class OomKills:
    """The OOM kills counted for a container that is no longer listed (removed), kept for a
    while after it left so that the kill that ended it is still scraped."""

    id: str
    name: str
    kills: int


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """The host's CPU topology as the hypervisor reports it (libvirt's node info)."""

    cpu_model: str
    cpus: int
    mhz: int
    numa_nodes: int
    sockets_per_node: int
    cores_per_socket: int
    threads_per_core: int


@dataclass(frozen=True, slots=True)
class ContainerEngine:
    """The engine behind the Docker API source: Docker itself, or Podman's compatible API."""

    name: str  # "docker" or "podman"
    version: str
    api_version: str


@dataclass(frozen=True, slots=True)
class SourceReading:
    """What one source returned from one pass."""

    workloads: tuple[WorkloadSample, ...] = ()
    host: HostSample | None = None
    node: NodeInfo | None = None
    engine: ContainerEngine | None = None
    removed_oom_kills: tuple[OomKills, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """How one source (or background job) fared, for the self-monitoring metrics."""

    name: str
    up: bool
    duration_seconds: float
    errors_total: int
    last_success_timestamp: float | None
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one sampling pass saw; replaced as a whole, never changed in place."""

    timestamp: float
    workloads: tuple[WorkloadSample, ...] = ()
    host: HostSample | None = None
    node: NodeInfo | None = None
    sources: tuple[SourceStatus, ...] = ()
    engine: ContainerEngine | None = None
    disk_usage_timestamp: float | None = None
    pass_duration_seconds: float = 0.0
    # Removed containers' OOM kill counts (``OomKills``); the listed ones' are on their sample.
    removed_oom_kills: tuple[OomKills, ...] = ()


def cpu_rates(first: Snapshot | None, second: Snapshot) -> dict[str, float]:
    """CPU use in cores per workload ID between two snapshots of the same workloads.

    The time between the two readings of each counter (``cpu_read_at``) where both are
    known, else between the two passes.
    """
    if first is None:
        return {}
    before = {
        w.id: (w.cpu_seconds, first.timestamp if w.cpu_read_at is None else w.cpu_read_at)
        for w in first.workloads
        if w.cpu_seconds is not None
    }
    rates: dict[str, float] = {}
    for workload in second.workloads:
        previous = before.get(workload.id)
        if previous is None or workload.cpu_seconds is None:
            continue
        then = second.timestamp if workload.cpu_read_at is None else workload.cpu_read_at
        elapsed = then - previous[1]
        if elapsed > 0:
            rates[workload.id] = max(0.0, workload.cpu_seconds - previous[0]) / elapsed
    return rates
