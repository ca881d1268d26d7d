"""The planner's inputs and answers: plain frozen dataclasses, no I/O.

The CLI, the daemon and the fleet mode build ``PlanInputs`` from wherever their data comes
from (a fresh sample, the local history, Prometheus); the planner turns them into ``Answer``s.
Quantities are base units: cores, bytes, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from densityd.model import WorkloadKind

MIB = 1024 * 1024
GIB = 1024 * MIB


class Resource(StrEnum):
    """A resource the planner counts."""

    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    # Only for a VM profile backed by huge pages (``Profile.hugepages``): the host's pool of
    # that page size, in bytes. Not in RESOURCES, which every answer has.
    HUGEPAGES = "hugepages"


class View(StrEnum):
    """How a workload's size is counted.

    ``allocation``: its limits and configured sizes (what was promised); ``demand``: what it
    was measured to use over the window (what it takes).
    """

    ALLOCATION = "allocation"
    DEMAND = "demand"


RESOURCES: tuple[Resource, ...] = (Resource.CPU, Resource.MEMORY, Resource.DISK)


@dataclass(frozen=True, slots=True)
class Resources:
    """One number per resource: cores, bytes, bytes (and huge page bytes, 0 unless asked)."""

    cpu: float = 0.0
    memory: float = 0.0
    disk: float = 0.0
    hugepages: float = 0.0

    def get(self, resource: Resource) -> float:
        """The value for one resource."""
        return float(getattr(self, resource.value))


@dataclass(frozen=True, slots=True)
class PartialResources:
    """Per-resource values where some may be left out (``--capacity memory=1Gi``)."""

    cpu: float | None = None
    memory: float | None = None
    disk: float | None = None

    def get(self, resource: Resource) -> float | None:
        """The value for one resource, ``None`` when not given."""
        value = getattr(self, resource.value)
        return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Profile:
    """The shape of one more workload, as each view counts it.

    ``image_bytes`` is paid once per host (image layers are shared), and only when the image
    is not already present. ``guest_os`` is set when the profile already includes a guest OS
    (it was taken from an existing VM); otherwise asking about it as a VM adds the guest-OS
    baseline. ``origin`` says where the shape came from, for the report
    (``"given"``, ``"like web-1"``, ``"median container"``, ``"default"``).

    ``image`` names the image, so a host that already holds it (``HostCapacity.
    image_bytes_present``) is not charged for it again. ``memory_includes_overhead`` is set
    when ``demand.memory`` was measured as a QEMU resident set, which already holds QEMU's
    own overhead (a shape taken from an existing VM): the demand view does not add it again.
    """

    name: str
    demand: Resources
    allocation: Resources
    origin: str = "given"
    image_bytes: float = 0.0
    image_present: bool = False
    includes_guest_os: bool = False
    vcpus: int | None = None
    disk_is_overlay: bool = False
    image: str = ""
    memory_includes_overhead: bool = False
    # As a VM, its RAM (and the guest OS's) is in huge pages of ``hugepage_size`` bytes (None:
    # the host's default size) and costs the host's pool of that size, not its memory.
    hugepages: bool = False
    hugepage_size: int | None = None


@dataclass(frozen=True, slots=True)
class WorkloadDemand:
    """One existing workload as the planner sees it, in both views.

    ``allocation`` fields are ``None`` where the workload has no limit (the planner then
    counts it at its demand and says so). ``demand`` is measured: CPU as the chosen
    percentile of the rate, memory as the window maximum plus the buffer, disk as current plus
    the growth over the window. ``memory_bytes`` is the current host-side footprint (working
    set or QEMU RSS), ``guest_memory_bytes`` a VM's configured RAM, ``disk_bytes`` the current
    disk footprint (``demand.disk`` less the growth). A footprint left ``None`` explains none
    of the host's measured use: it stays in system usage, which only makes a plan stricter.
    """

    kind: WorkloadKind
    id: str
    name: str
    image: str = ""
    running: bool = True
    demand: Resources = field(default_factory=Resources)
    cpu_limit: float | None = None
    memory_limit: float | None = None
    disk_limit: float | None = None
    memory_bytes: float | None = None
    guest_memory_bytes: float | None = None
    vcpus: int | None = None
    disk_is_overlay: bool = False
    history_seconds: float = 0.0
    disk_bytes: float | None = None
    # A VM backed by huge pages: their size, and the bytes it holds in them (its guest RAM,
    # which is then neither its memory allocation nor in its QEMU resident set).
    hugepage_size: int | None = None
    hugepage_bytes: float | None = None


@dataclass(frozen=True, slots=True)
class HugepageSpace:
    """One huge page pool of the host: its page size, its bytes, and the bytes in use
    (``total - free + reserved``: pages faulted in or promised to a mapping)."""

    size: int
    total: float
    used: float
    default: bool = False


@dataclass(frozen=True, slots=True)
class WorkloadHistory:
    """What the history store knows about one workload over a window.

    ``cpu_rate_percentile`` is the asked-for percentile of its CPU rate (cores) between
    consecutive samples; ``memory_max`` the largest host-side footprint seen; ``disk_first``
    and ``disk_last`` its disk bytes at the start and end of the window, for the growth.
    """

    kind: WorkloadKind
    id: str
    name: str
    first_timestamp: float
    last_timestamp: float
    cpu_rate_percentile: float | None = None
    memory_max: float | None = None
    disk_first: float | None = None
    disk_last: float | None = None


@dataclass(frozen=True, slots=True)
class HostCapacity:
    """What the host (or the declared slice) holds, and what it measurably uses.

    ``total`` per resource is the declared capacity where ``declared`` names it, else the
    host's: cores, physical memory, and the size of the filesystem holding the workloads'
    data. ``used`` is the host's measured use (memory total minus available, disk total minus
    free; CPU is not measured and is 0). ``declared`` lists the resources given with
    ``--capacity``: against those only workloads and the reserve count, no system usage.
    ``unknown`` names, with the reason, each resource whose capacity could not be seen (no
    data filesystem visible, say): it never binds, and its numbers are not reported.
    ``hugepages`` holds the huge page pools by size; their memory is not in ``total.memory``
    (nor in ``used.memory``), since only users of huge pages can have it.
    None of them (no pools seen): huge pages are unknown, and never bind.
    """

    total: Resources
    used: Resources
    declared: frozenset[Resource] = frozenset()
    image_bytes_present: frozenset[str] = frozenset()
    unknown: tuple[tuple[Resource, str], ...] = ()
    hugepages: tuple[HugepageSpace, ...] = ()

    def hugepage_space(self, size: int | None) -> HugepageSpace | None:
        """The pool of one page size (None: the default size's), None when there is none."""
        for space in self.hugepages:
            if space.size == size or (size is None and space.default):
                return space
        return None

    @property
    def unknown_resources(self) -> frozenset[Resource]:
        """The resources whose capacity is not known."""
        return frozenset(resource for resource, _reason in self.unknown)


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """Total demand of the workloads in scope at one time, for the time-to-full trend."""

    timestamp: float
    demand: Resources


@dataclass(frozen=True, slots=True)
class GuestOS:
    """The RAM and disk a guest OS needs before the app starts."""

    name: str
    memory: float
    disk: float


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """Every assumption of a plan; each one is printed with the answer."""

    reserved: Resources = Resources(cpu=0.0, memory=512 * MIB, disk=0.0)
    # The resources whose reserve was given explicitly: only these are reserved within a
    # declared capacity (``slots.for_host``), the default reserve being for the host's own OS.
    reserved_given: frozenset[Resource] = frozenset()
    ratio: Resources = Resources(cpu=4.0, memory=1.0, disk=1.0)
    target_fill: float = 0.9
    percentile: float = 0.95
    memory_buffer: float = 0.15
    window_seconds: float = 14 * 86400.0
    container_shim_bytes: float = 13 * MIB
    shim_measured: bool = False
    qemu_base_bytes: float = 64 * MIB
    qemu_ram_divisor: float = 512.0
    qemu_per_vcpu_bytes: float = 8 * MIB
    guest_os: str = "debian"
    # The guest OS measured on this host (``cost.measured_guest_os``): the median memory the
    # running VMs' guests report using, and over how many VMs; None when none reports.
    measured_guest_os_memory: float | None = None
    measured_guest_os_vms: int = 0
    qemu_calibrated: bool = False
    min_trend_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """Everything one plan needs: the host, its workloads in scope, and the demand trend."""

    timestamp: float
    host: HostCapacity
    workloads: tuple[WorkloadDemand, ...] = ()
    trend: tuple[TrendPoint, ...] = ()
    history_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ResourceAnswer:
    """One resource's side of an answer.

    ``used`` is everything counted against ``usable``: the workloads (and, in the allocation
    view, their per-kind overhead) plus ``system``, the host use no workload explains (demand
    view only). ``free`` is ``max(0, usable - used)``; ``fits`` how many more fit on this
    resource alone (``None``: it does not bound).
    """

    resource: Resource
    total: float
    usable: float
    used: float
    system: float
    free: float
    cost: float
    fits: int | None
    time_to_full_seconds: float | None = None
    # False: the capacity is not known (HostCapacity.unknown); fits is None, the numbers mean
    # nothing and are reported as null.
    known: bool = True


@dataclass(frozen=True, slots=True)
class Answer:
    """How many more workloads of one shape, as one kind, fit in one view.

    ``remaining`` is ``None`` when the shape costs nothing of any resource (unbounded).
    ``bound`` is the resource that runs out first. ``overhead`` itemises the per-kind costs
    included in ``cost`` (``shim``, ``qemu``, ``guest_os_memory``, ``guest_os_disk``,
    ``image``).
    """

    kind: WorkloadKind
    profile: str
    view: View
    remaining: int | None
    bound: Resource | None
    cost: Resources
    resources: tuple[ResourceAnswer, ...]
    overhead: dict[str, float] = field(default_factory=dict)
    time_to_full_seconds: float | None = None
    notes: tuple[str, ...] = ()
