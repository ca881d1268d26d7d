"""How many more of one shape fit, per kind and view, and which resource binds (DESIGN §6).

Per resource: ``usable = (total - reserved) * ratio * target_fill``, ``used`` = the workloads
in the view plus (demand view) the host use no workload explains, ``free = usable - used``,
and ``fits = floor(free / cost)``. On a declared capacity (a slice, a quota) the host's
reserve and the containerd shim do not apply (``for_host``). Overcommit ratios apply to the
allocation view only: the demand view compares measured use with physical capacity, since 4
cores cannot deliver 16 cores of measured use.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from densityd.model import WorkloadKind
from densityd.plan.core.cost import existing_overhead, whole_pages, workload_cost
from densityd.plan.core.demand import allocation_of
from densityd.plan.core.model import (
    RESOURCES,
    Answer,
    HostCapacity,
    PlanInputs,
    PlanSettings,
    Profile,
    Resource,
    ResourceAnswer,
    Resources,
    View,
)
from densityd.plan.core.trend import time_to_full
from densityd.units import human_bytes, human_duration

# A quotient a hair below an integer (2.9999999999999996) is an exact fit lost to rounding;
# the check after it keeps the count honest.
_EPSILON = 1e-9
# Past 2**52 consecutive counts are no longer distinct floats: that many slots is unbounded.
_MAX_COUNT = float(2**52)

_KIND_WORDS = {WorkloadKind.CONTAINER: ("container", "containers"), WorkloadKind.VM: ("VM", "VMs")}


def for_host(settings: PlanSettings, host: HostCapacity) -> PlanSettings:
    """The settings as they apply to one host's capacity.

    A reserve is for the host's own OS and daemons: it applies to measured capacity, not to a
    capacity the user declared (a slice, a quota), unless that resource's reserve was given
    explicitly. A containerd shim runs outside a declared memory slice (the kernel charges it
    to the host), so within one it costs nothing.
    """
    if not host.declared:
        return settings
    reserved = Resources(
        *(
            0.0
            if r in host.declared and r not in settings.reserved_given
            else settings.reserved.get(r)
            for r in RESOURCES
        )
    )
    shim = 0.0 if Resource.MEMORY in host.declared else settings.container_shim_bytes
    return replace(settings, reserved=reserved, container_shim_bytes=shim)


def usable(host: HostCapacity, view: View, settings: PlanSettings) -> Resources:
    """``(total - reserved) * ratio * target_fill`` per resource; ratio 1 in the demand view."""
    ratio = settings.ratio if view is View.ALLOCATION else Resources(1.0, 1.0, 1.0)

    def one(resource: Resource) -> float:
        left = max(0.0, host.total.get(resource) - settings.reserved.get(resource))
        return left * ratio.get(resource) * settings.target_fill

    return Resources(cpu=one(Resource.CPU), memory=one(Resource.MEMORY), disk=one(Resource.DISK))


def fit_count(free: float, cost: float, once: float = 0.0) -> int | None:
    """The most ``n`` with ``once + n * cost <= free`` as computed in floats.

    ``once`` is paid before the first (an image). ``None`` when ``cost`` is 0 and ``once``
    fits: this resource does not bound. The result never overpromises, and ``n + 1`` does
    not fit.
    """
    if once > free:
        return 0
    if cost <= 0:
        return None
    quotient = (free - once) / cost
    if quotient >= _MAX_COUNT:
        return None
    count = max(0, math.floor(quotient + _EPSILON * max(1.0, quotient)))
    while count > 0 and once + count * cost > free:
        count -= 1
    while once + (count + 1) * cost <= free:
        count += 1
    return count


def answer(
    inputs: PlanInputs, profile: Profile, kind: WorkloadKind, view: View, settings: PlanSettings
) -> Answer:
    """How many more of ``profile`` fit as ``kind`` in ``view``, with every number behind it."""
    host = inputs.host
    settings = for_host(settings, host)
    room = usable(host, view, settings)
    if view is View.ALLOCATION:
        taken, system, notes = _allocation_used(inputs, settings)
    else:
        taken, system, notes = _demand_used(inputs, settings)
    page = hugepage_size(profile, kind, host)
    cost, overhead, cost_notes = workload_cost(profile, kind, view, settings, page)
    notes.extend(cost_notes)
    image = _image_once(profile, host)
    overhead["image"] = image
    if profile.image_bytes > 0:
        notes.append(
            f"image {profile.image or profile.name}: {human_bytes(profile.image_bytes)} counted "
            "once per host"
            if image > 0
            else f"image {profile.image or profile.name}: already on the host, not counted"
        )
    used = Resources(
        cpu=taken.cpu + system.cpu,
        memory=taken.memory + system.memory,
        disk=taken.disk + system.disk,
    )
    free = Resources(
        cpu=max(0.0, room.cpu - used.cpu),
        memory=max(0.0, room.memory - used.memory),
        disk=max(0.0, room.disk - used.disk),
    )
    full: dict[Resource, float | None] = dict.fromkeys(RESOURCES)
    unknown = host.unknown_resources
    if view is View.DEMAND:
        full = time_to_full(inputs.trend, free, settings.min_trend_seconds)
        full.update(dict.fromkeys(unknown))
        notes.extend(_trend_notes(inputs, full, settings))
    for resource, reason in host.unknown:
        notes.append(f"{resource.value} capacity unknown ({reason}): it does not bound this plan")
    resources = tuple(
        ResourceAnswer(
            resource=r,
            total=host.total.get(r),
            usable=room.get(r),
            used=used.get(r),
            system=system.get(r),
            free=free.get(r),
            cost=cost.get(r),
            fits=None
            if r in unknown
            else fit_count(free.get(r), cost.get(r), image if r is Resource.DISK else 0.0),
            time_to_full_seconds=full[r],
            known=r not in unknown,
        )
        for r in RESOURCES
    )
    if kind is WorkloadKind.VM and profile.hugepages:
        pages, pages_notes = _hugepage_answer(inputs, view, page, cost.hugepages)
        resources += (pages,)
        notes.extend(pages_notes)
    bounded = [ra for ra in resources if ra.fits is not None]
    # min() keeps the first of equals: ties go to the earlier resource in RESOURCES.
    binding = min(bounded, key=lambda ra: ra.fits or 0, default=None)
    fulls = [seconds for seconds in full.values() if seconds is not None]
    return Answer(
        kind=kind,
        profile=profile.name,
        view=view,
        remaining=None if binding is None else binding.fits,
        bound=None if binding is None else binding.resource,
        cost=cost,
        resources=resources,
        overhead=overhead,
        time_to_full_seconds=min(fulls, default=None),
        notes=tuple(notes),
    )


def hugepage_size(profile: Profile, kind: WorkloadKind, host: HostCapacity) -> int | None:
    """The page size a profile's huge pages are, as a VM on this host: its own, else the
    host's default; None for a profile without huge pages (or a host that has no default)."""
    if kind is not WorkloadKind.VM or not profile.hugepages:
        return None
    if profile.hugepage_size is not None:
        return profile.hugepage_size
    space = host.hugepage_space(None)
    return space.size if space is not None else None


def _hugepage_answer(
    inputs: PlanInputs, view: View, page: int | None, cost: float
) -> tuple[ResourceAnswer, list[str]]:
    """The hugepages side of a hugepage VM's answer: the host's pool of its page size.

    The pool is memory already set aside for huge pages, and a VM either gets all its pages
    at start or does not start: no reserve, overcommit ratio or fill target applies. Used:
    the hugepage VMs of that size (allocation view: stopped ones too, whose pages come back
    when they start; demand view: the running ones), plus the pages in use that no running
    VM explains (another user of the pool), in both views, since pages cannot be overcommitted.
    """
    host = inputs.host
    space = host.hugepage_space(page) if page is not None else None
    if not host.hugepages or page is None:
        # No pools at all: the kernel has no huge pages, or densityd cannot see its sysfs.
        why = "no huge page pools seen under /sys/kernel/mm/hugepages"
        return (
            ResourceAnswer(
                resource=Resource.HUGEPAGES,
                total=0.0,
                usable=0.0,
                used=0.0,
                system=0.0,
                free=0.0,
                cost=cost,
                fits=None,
                known=False,
            ),
            [f"hugepages capacity unknown ({why}): it does not bound this plan"],
        )
    of_size = [w for w in inputs.workloads if w.hugepage_size == page and w.hugepage_bytes]
    running = sum(whole_pages(w.hugepage_bytes or 0.0, page) for w in of_size if w.running)
    counted = running
    if view is View.ALLOCATION:
        counted = sum(whole_pages(w.hugepage_bytes or 0.0, page) for w in of_size)
    total = space.total if space is not None else 0.0
    system = max(0.0, (space.used if space is not None else 0.0) - running)
    used = counted + system
    free = max(0.0, total - used)
    note = (
        f"hugepages: pool of {human_bytes(page)} pages {human_bytes(total)}, "
        f"{human_bytes(used)} in use ({len(of_size)} hugepage VM(s): {human_bytes(counted)}); "
        "the pool is set aside already: no reserve, ratio or fill target"
    )
    return (
        ResourceAnswer(
            resource=Resource.HUGEPAGES,
            total=total,
            usable=total,
            used=used,
            system=system,
            free=free,
            cost=cost,
            fits=fit_count(free, cost),
        ),
        [note],
    )


def answers(
    inputs: PlanInputs,
    profile: Profile,
    kinds: Sequence[WorkloadKind],
    views: Sequence[View],
    settings: PlanSettings,
) -> list[Answer]:
    """``answer`` for every kind and view, kinds outermost."""
    return [answer(inputs, profile, kind, view, settings) for kind in kinds for view in views]


def headline(answers: Sequence[Answer]) -> Answer:
    """The stricter answer: the fewest slots left (unbounded counts as the most); first on ties."""
    if not answers:
        raise ValueError("headline of no answers")
    return min(answers, key=lambda a: (a.remaining is None, a.remaining or 0))


def compare_ratio(container: Answer, vm: Answer) -> float | None:
    """Container slots per VM slot; ``None`` when either is unbounded or no VM fits."""
    if container.remaining is None or vm.remaining is None or vm.remaining == 0:
        return None
    return container.remaining / vm.remaining


def _allocation_used(
    inputs: PlanInputs, settings: PlanSettings
) -> tuple[Resources, Resources, list[str]]:
    """What the workloads were promised, with their per-kind overhead; no system usage.

    Stopped workloads count: their resources are promised and come back when they start.
    """
    cpu = memory = disk = 0.0
    fallbacks: Counter[tuple[WorkloadKind, Resource]] = Counter()
    for workload in inputs.workloads:
        allocation, missing = allocation_of(workload)
        fallbacks.update((workload.kind, r) for r in missing)
        cpu += allocation.cpu
        # A hugepage VM's guest RAM is in the huge page pool, which is not host memory here.
        in_memory = 0.0 if workload.hugepage_bytes is not None else allocation.memory
        memory += in_memory + existing_overhead(workload, settings)
        disk += allocation.disk
    notes = [
        f"{count} {_kind_word(kind, count)} without a {resource.value} limit counted at "
        f"{_its(count)} demand"
        for (kind, resource), count in sorted(fallbacks.items(), key=_kind_resource_order)
    ]
    for kind, count in _stopped(inputs).items():
        notes.append(
            f"{count} stopped {_kind_word(kind, count)} counted: "
            f"{_its(count)} resources are promised"
        )
    return Resources(cpu=cpu, memory=memory, disk=disk), Resources(), notes


def _demand_used(
    inputs: PlanInputs, settings: PlanSettings
) -> tuple[Resources, Resources, list[str]]:
    """What the workloads measurably take, and the host use none of them explains.

    Stopped workloads take no CPU or memory but keep their disk. System usage is the host's
    measured use less the workloads' current footprints, except on a declared capacity (a
    slice, a quota), where only the workloads and the reserve count.
    """
    running = [w for w in inputs.workloads if w.running]
    taken = Resources(
        cpu=sum(w.demand.cpu for w in running),
        memory=sum(w.demand.memory for w in running),
        disk=sum(w.demand.disk for w in inputs.workloads),
    )
    footprint = Resources(
        cpu=taken.cpu,
        memory=sum(w.memory_bytes or 0.0 for w in running),
        disk=sum(w.disk_bytes or 0.0 for w in inputs.workloads),
    )
    host = inputs.host

    def system(resource: Resource) -> float:
        if resource in host.declared:
            return 0.0
        return max(0.0, host.used.get(resource) - footprint.get(resource))

    notes: list[str] = []
    if any(settings.ratio.get(r) != 1.0 for r in RESOURCES):
        notes.append(
            "overcommit ratios apply to the allocation view only: measured demand is compared "
            "with physical capacity"
        )
    for resource in sorted(host.declared, key=RESOURCES.index):
        reserve = settings.reserved.get(resource)
        amount = f"{reserve:g} cores" if resource is Resource.CPU else human_bytes(reserve)
        kept = f"and the reserve of {amount}" if reserve else "count"
        notes.append(
            f"{resource.value} capacity declared: no system usage, only workloads {kept}"
            + ("" if reserve else " (the host reserve does not apply: --reserved sets one)")
        )
    for kind, count in _stopped(inputs).items():
        notes.append(
            f"{count} stopped {_kind_word(kind, count)}: only {_its(count)} disk counts, "
            "not CPU or memory"
        )
    fresh = sum(1 for w in running if w.history_seconds <= 0)
    if fresh:
        notes.append(
            f"{fresh} running workload{'s' if fresh != 1 else ''} measured from the latest "
            "sample only (no history)"
        )
    if running and 0 < inputs.history_seconds < settings.window_seconds:
        notes.append(
            f"history covers {human_duration(inputs.history_seconds)} of the "
            f"{human_duration(settings.window_seconds)} window"
        )
    return (
        taken,
        Resources(
            cpu=system(Resource.CPU), memory=system(Resource.MEMORY), disk=system(Resource.DISK)
        ),
        notes,
    )


def _image_once(profile: Profile, host: HostCapacity) -> float:
    """The image bytes the first new workload pulls; 0 when the image is already there."""
    if profile.image_present or (profile.image and profile.image in host.image_bytes_present):
        return 0.0
    return profile.image_bytes


def _trend_notes(
    inputs: PlanInputs, full: dict[Resource, float | None], settings: PlanSettings
) -> list[str]:
    """Why there is no time to full, when there is none."""
    if any(seconds is not None for seconds in full.values()):
        return []
    times = [point.timestamp for point in inputs.trend]
    if len(times) < 2 or max(times) - min(times) < settings.min_trend_seconds:
        return [
            "no time to full: the trend needs 2 points over at least "
            f"{human_duration(settings.min_trend_seconds)}"
        ]
    return ["no time to full: demand is flat or falling"]


def _stopped(inputs: PlanInputs) -> dict[WorkloadKind, int]:
    """How many workloads of each kind are not running."""
    counts = Counter(w.kind for w in inputs.workloads if not w.running)
    return {kind: counts[kind] for kind in WorkloadKind if counts[kind]}


def _kind_resource_order(item: tuple[tuple[WorkloadKind, Resource], int]) -> tuple[int, int]:
    """Sort key: containers before VMs, resources in ``RESOURCES`` order."""
    (kind, resource), _ = item
    return list(WorkloadKind).index(kind), RESOURCES.index(resource)


def _kind_word(kind: WorkloadKind, count: int) -> str:
    """``container``/``containers``, ``VM``/``VMs``."""
    singular, plural = _KIND_WORDS[kind]
    return singular if count == 1 else plural


def _its(count: int) -> str:
    """``its`` for one, ``their`` for several."""
    return "its" if count == 1 else "their"
