"""What one more workload costs, per kind: the profile plus the kind's overhead (DESIGN §6).

A container pays its profile and a containerd shim. A VM pays its guest RAM, QEMU's own
overhead around it, its own disk image and, when an app's shape is asked about as a VM, the
guest OS it now needs. An image (or a shared backing file) is paid once per host, not per
workload: ``plan`` charges it, not the per-slot cost.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

from densityd.model import WorkloadKind
from densityd.plan.core.demand import whole_vcpus
from densityd.plan.core.model import (
    GIB,
    MIB,
    GuestOS,
    PlanSettings,
    Profile,
    Resources,
    View,
    WorkloadDemand,
)
from densityd.units import human_bytes

# RAM and disk a guest OS takes before the app starts: the published minimums for a server
# install without a desktop. Alpine's wiki asks for 128 MB RAM (about 1 GiB of disk for a
# "sys" install with room for packages); Debian 12's installation guide (§3.4) recommends
# 512 MB RAM and 2 GB of disk without a desktop; Ubuntu Server asks for 1 GB RAM and a few GB
# of disk; RHEL 9 documents 1.5 GiB RAM and 10 GiB of disk; Windows Server 2022 needs 2 GB RAM
# with the Desktop Experience and 32 GB of disk. "none" is for a guest that is the app itself
# (a unikernel) or a profile whose numbers already hold the OS.
GUEST_OS_BASELINES: dict[str, GuestOS] = {
    guest.name: guest
    for guest in (
        GuestOS("alpine", memory=128 * MIB, disk=1 * GIB),
        GuestOS("debian", memory=512 * MIB, disk=2 * GIB),
        GuestOS("ubuntu", memory=1 * GIB, disk=4 * GIB),
        GuestOS("rhel", memory=1536 * MIB, disk=10 * GIB),
        GuestOS("windows", memory=2 * GIB, disk=32 * GIB),
        GuestOS("none", memory=0.0, disk=0.0),
    )
}


# ``--guest-os measured``: the guest OS as the running VMs' guests report it (its disk, not
# measurable from the host, is the default table entry's).
MEASURED = "measured"
MEASURED_DISK_FROM = "debian"


def guest_os_baseline(name: str, settings: PlanSettings | None = None) -> GuestOS:
    """The baseline of one guest OS by name; ``ValueError`` naming the known ones otherwise.

    ``measured`` needs ``settings`` holding a measurement (``measured_guest_os``).
    """
    if name == MEASURED:
        if settings is None or settings.measured_guest_os_memory is None:
            raise ValueError(
                "--guest-os measured: no running VM reports current guest memory (a virtio "
                "balloon with <stats period='N'/> and the guest's balloon driver); pick a "
                f"table entry: {', '.join(sorted(GUEST_OS_BASELINES))}"
            )
        disk = GUEST_OS_BASELINES[MEASURED_DISK_FROM].disk
        return GuestOS(MEASURED, memory=settings.measured_guest_os_memory, disk=disk)
    try:
        return GUEST_OS_BASELINES[name]
    except KeyError:
        known = ", ".join(sorted([*GUEST_OS_BASELINES, MEASURED]))
        raise ValueError(f"unknown guest OS {name!r}: known are {known}") from None


def measured_guest_os(guest_used: Sequence[float]) -> tuple[float, int] | None:
    """The guest OS's memory measured on this host: the median of the guests' used memory.

    ``guest_used`` is each running VM's own used memory (balloon available - usable, only
    when current). From outside a guest its workload's share cannot be told apart, so this is
    the memory a guest uses beyond the host's view of nothing: for idle or small-app guests it
    is the OS baseline, and the median keeps a minority of busy guests from moving it. It is an
    upper bound of the OS alone on a host whose VMs all run big apps (docs/planner-truth.md).
    Returns (median bytes, VM count), or None when no VM reports.
    """
    known = [float(v) for v in guest_used if v is not None and v >= 0]
    if not known:
        return None
    return float(statistics.median(known)), len(known)


def qemu_overhead(guest_ram: float, vcpus: int, settings: PlanSettings) -> float:
    """QEMU's own memory around a guest: base + RAM / divisor + per-vCPU bytes * vCPUs.

    oVirt's published model (64 MiB + RAM/512 + 8 MiB per vCPU) by default; ``calibrate_qemu``
    replaces the base term with what running VMs measure.
    """
    return (
        settings.qemu_base_bytes
        + guest_ram / settings.qemu_ram_divisor
        + settings.qemu_per_vcpu_bytes * vcpus
    )


def profile_vcpus(profile: Profile) -> int:
    """A profile's vCPUs as a VM: the given count, else its allocation cores rounded up; ≥ 1."""
    if profile.vcpus is not None:
        return max(1, profile.vcpus)
    return whole_vcpus(profile.allocation.cpu) or 1


def existing_overhead(workload: WorkloadDemand, settings: PlanSettings) -> float:
    """The memory an existing workload costs beyond its allocation, in the allocation view.

    A container's shim; a VM's QEMU overhead on top of its configured guest RAM. A VM whose
    guest RAM is unknown is counted at its measured QEMU resident set, which already holds
    the overhead, so nothing is added.
    """
    if workload.kind is WorkloadKind.CONTAINER:
        return settings.container_shim_bytes
    guest_ram = workload.guest_memory_bytes
    if guest_ram is None:
        guest_ram = workload.memory_limit
    if guest_ram is None:
        return 0.0
    return qemu_overhead(guest_ram, _workload_vcpus(workload), settings)


def calibrate_qemu(
    workloads: Sequence[WorkloadDemand], settings: PlanSettings
) -> tuple[PlanSettings, str]:
    """Fit QEMU's base overhead to the running VMs, and say what was done.

    Only a VM whose QEMU resident set is at least its guest RAM has touched all its RAM; for
    those, overhead = RSS - guest RAM. The fixed base term is replaced by the median of what
    each such VM implies for it (its overhead less the RAM and vCPU terms), so the model
    matches their median; a negative fit is floored at 0. Without such a VM the settings come
    back unchanged: a guest that never touched its RAM says nothing about QEMU's overhead.
    """
    measured = [
        w
        for w in workloads
        if w.kind is WorkloadKind.VM
        and w.running
        and w.memory_bytes is not None
        and w.guest_memory_bytes is not None
        and w.guest_memory_bytes > 0
    ]
    if not measured:
        return settings, "QEMU overhead not calibrated: no running VM to measure"
    faulted = [w for w in measured if _rss(w) >= _guest_ram(w)]
    if not faulted:
        return settings, "QEMU overhead not calibrated: no VM has touched all its RAM"
    overheads = [_rss(w) - _guest_ram(w) for w in faulted]
    bases = [
        overhead
        - _guest_ram(w) / settings.qemu_ram_divisor
        - settings.qemu_per_vcpu_bytes * _workload_vcpus(w)
        for w, overhead in zip(faulted, overheads, strict=True)
    ]
    base = max(0.0, statistics.median(bases))
    calibrated = dataclasses.replace(settings, qemu_base_bytes=base, qemu_calibrated=True)
    count = len(faulted)
    message = (
        f"QEMU overhead calibrated from {count} VM{'s' if count != 1 else ''} that touched all "
        f"their RAM: median measured {human_bytes(statistics.median(overheads))}, base term "
        f"{human_bytes(settings.qemu_base_bytes)} -> {human_bytes(base)}"
    )
    return calibrated, message


def whole_pages(size: float, page: int | None) -> float:
    """``size`` bytes rounded up to whole pages of ``page`` bytes (as QEMU sizes its backing);
    unchanged when the page size is not known."""
    if page is None or page <= 0:
        return size
    return float(math.ceil(size / page - 1e-9) * page)


def workload_cost(
    profile: Profile,
    kind: WorkloadKind,
    view: View,
    settings: PlanSettings,
    hugepage_size: int | None = None,
) -> tuple[Resources, dict[str, float], tuple[str, ...]]:
    """The cost of one more workload of ``profile`` as ``kind`` in ``view``.

    Returns the per-slot cost, the overhead it includes by item (a container: ``shim``; a VM:
    ``qemu``, ``guest_os_memory``, ``guest_os_disk``), and notes explaining them. The image is
    a one-time cost per host and is left to ``plan``.

    A VM profile with ``hugepages`` pays its guest RAM (and the guest OS's) in huge pages of
    ``hugepage_size`` bytes (the profile's size, else the host's default, resolved by the
    caller), rounded up to whole pages, in both views (the pages are all taken when it
    starts); its memory cost is then QEMU's own overhead only.
    """
    base = profile.demand if view is View.DEMAND else profile.allocation
    if kind is WorkloadKind.CONTAINER:
        shim = settings.container_shim_bytes
        how = "measured" if settings.shim_measured else "assumed"
        cost = Resources(cpu=base.cpu, memory=base.memory + shim, disk=base.disk)
        # 0 only within a declared memory capacity (slots.for_host): the host pays the shim.
        note = (
            f"container shim: {human_bytes(shim)} each ({how})"
            if shim
            else "container shim: not counted, the host holds it outside the declared memory"
        )
        notes: tuple[str, ...] = (note,)
        if profile.hugepages:
            notes += ("hugepages: a VM's memory backing; as a container, ordinary memory",)
        return cost, {"shim": float(shim)}, notes
    return _vm_cost(profile, view, settings, hugepage_size)


def _vm_cost(
    profile: Profile, view: View, settings: PlanSettings, hugepage_size: int | None = None
) -> tuple[Resources, dict[str, float], tuple[str, ...]]:
    """``workload_cost`` for a VM."""
    notes: list[str] = []
    guest = GuestOS("none", memory=0.0, disk=0.0)
    if not profile.includes_guest_os:
        guest = guest_os_baseline(settings.guest_os, settings)
        how = (
            f" (median guest used of {settings.measured_guest_os_vms} VM(s); disk from the "
            f"{MEASURED_DISK_FROM} table)"
            if guest.name == MEASURED
            else ""
        )
        notes.append(
            f"guest OS {guest.name} added (the profile has none): {human_bytes(guest.memory)} "
            f"RAM, {human_bytes(guest.disk)} disk{how}"
        )
    vcpus = profile_vcpus(profile)
    # The RAM/512 term is about the configured guest RAM (page tables, dirty bitmaps), so
    # both views size it from the allocation.
    guest_ram = profile.allocation.memory + guest.memory
    qemu = qemu_overhead(guest_ram, vcpus, settings)
    model = "calibrated" if settings.qemu_calibrated else "oVirt's model"
    if view is View.DEMAND and profile.memory_includes_overhead:
        qemu = 0.0
        notes.append("QEMU overhead: already in the profile's measured resident set")
    else:
        notes.append(
            f"QEMU overhead: {human_bytes(qemu)} = {human_bytes(settings.qemu_base_bytes)} + "
            f"RAM/{settings.qemu_ram_divisor:g} + {human_bytes(settings.qemu_per_vcpu_bytes)}"
            f" x {vcpus} vCPU ({model})"
        )
    if view is View.DEMAND:
        cpu, memory, disk = profile.demand.cpu, profile.demand.memory, profile.demand.disk
    else:
        cpu, memory = float(vcpus), profile.allocation.memory
        # A copy-on-write overlay holds only what the guest wrote; the shared backing file is
        # the profile's image, paid once per host.
        disk = profile.demand.disk if profile.disk_is_overlay else profile.allocation.disk
    if profile.disk_is_overlay:
        notes.append("disk: copy-on-write overlay, counted at what it holds")
    if profile.hugepages:
        # The guest's RAM is the pool's; ordinary memory pays QEMU around it (in the demand
        # view of a measured VM, its resident set, which hugetlb pages are not part of).
        pages = whole_pages(profile.allocation.memory + guest.memory, hugepage_size)
        size = f"{human_bytes(hugepage_size)} pages" if hugepage_size else "pages (size unknown)"
        notes.append(f"hugepages: guest RAM {human_bytes(pages)} in {size}, not ordinary memory")
        in_memory = memory if view is View.DEMAND and profile.memory_includes_overhead else 0.0
        cost = Resources(cpu=cpu, memory=in_memory + qemu, disk=disk + guest.disk, hugepages=pages)
    else:
        cost = Resources(cpu=cpu, memory=memory + guest.memory + qemu, disk=disk + guest.disk)
    overhead = {
        "qemu": float(qemu),
        "guest_os_memory": float(guest.memory),
        "guest_os_disk": float(guest.disk),
    }
    return cost, overhead, tuple(notes)


def _workload_vcpus(workload: WorkloadDemand) -> int:
    """An existing VM's vCPUs: as reported, else its CPU limit rounded up; at least 1."""
    if workload.vcpus is not None:
        return max(1, workload.vcpus)
    return whole_vcpus(workload.cpu_limit) or 1


def _rss(workload: WorkloadDemand) -> float:
    """A measured VM's QEMU resident set (callers checked it is known)."""
    assert workload.memory_bytes is not None
    return workload.memory_bytes


def _guest_ram(workload: WorkloadDemand) -> float:
    """A measured VM's configured RAM (callers checked it is known)."""
    assert workload.guest_memory_bytes is not None
    return workload.guest_memory_bytes
