"""One shape over many hosts: per-host answers, the fleet's total, and the packing inputs.

``fleet_answers`` gives, for every host, exactly the numbers ``plan.answer`` gives for that
host's ``PlanInputs`` (remaining, bound, and per resource total, usable, used, system, free,
cost, fits and time to full), without the per-host notes, and sums the slots left (DESIGN §6:
"for a fleet and one shape this is exact summed per host"). A fleet answer for 10,000 hosts
must take well under 2 s, and ``plan.answer`` takes about 250 µs per host and view, most of
it in per-workload helpers and notes; so the host side of a plan that does not depend on the
shape (``HostUse``) is computed here once per host with the same arithmetic in the same order,
and only the fits are per shape. ``tests/unit/planner/test_fleet.py`` checks against
``plan.answer`` over generated inputs that the two agree exactly. The per-host ``Answer``
objects themselves are built only when asked for (``HostAnswer.answers``): building ten
frozen objects per host was a third of the time, and a fleet report prints a few hosts.

``pack_fleet`` turns the same host uses and several shapes into a ``packing.pack`` problem.
Pure functions, no I/O: where the ``PlanInputs`` come from (Prometheus, the local history) is
the caller's business.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from densityd.model import WorkloadKind
from densityd.plan.core import packing
from densityd.plan.core.cost import existing_overhead, workload_cost
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
from densityd.plan.core.slots import fit_count, for_host, usable

# trend's threshold for a flat series: the fast path must call a series flat exactly when
# time_to_full does.
from densityd.plan.core.trend import times_to_full

_NO_TREND: tuple[float | None, ...] = (None, None, None)  # no time to full per resource


@dataclass(frozen=True, slots=True)
class ViewUse:
    """One host in one view, before any shape is asked about.

    The fields of ``ResourceAnswer`` that do not depend on the shape, per resource in
    ``RESOURCES`` order: ``free = max(0, usable - used)``, ``used`` includes ``system``.
    ``time_to_full`` is from the host's trend against ``free``; all ``None`` in the
    allocation view, as in ``plan.answer``.
    """

    view: View
    total: Resources
    usable: Resources
    used: Resources
    system: Resources
    free: Resources
    time_to_full: tuple[float | None, ...] = _NO_TREND


@dataclass(frozen=True, slots=True)
class HostUse:
    """One host's use in each view asked about, and the images it already holds.

    ``memory_declared``: its memory is a declared capacity, where a container's shim costs
    nothing (``slots.for_host``).
    """

    name: str
    views: tuple[ViewUse, ...]
    images: frozenset[str] = frozenset()
    memory_declared: bool = False
    unknown: frozenset[Resource] = frozenset()

    def view(self, view: View) -> ViewUse:
        """The use in one view; ``KeyError`` when it was not computed."""
        for use in self.views:
            if use.view is view:
                return use
        raise KeyError(view)


@dataclass(frozen=True, slots=True)
class ShapeCost:
    """What one more of a shape costs as one kind, per view: on every host but a slice.

    ``costs`` and ``overheads`` as ``workload_cost`` gives them, one per view in ``views``;
    ``notes`` their explanations, once each. ``slice_costs`` and ``slice_overheads`` are the
    same on a host whose memory is declared, where a container's shim costs nothing.
    """

    profile: Profile
    kind: WorkloadKind
    views: tuple[View, ...]
    costs: tuple[Resources, ...]
    overheads: tuple[dict[str, float], ...]
    notes: tuple[str, ...] = ()
    slice_costs: tuple[Resources, ...] = ()
    slice_overheads: tuple[dict[str, float], ...] = ()

    def cost_on(self, use: HostUse, index: int) -> tuple[Resources, dict[str, float]]:
        """The cost and overhead in view ``index`` on one host."""
        if use.memory_declared and self.slice_costs:
            return self.slice_costs[index], self.slice_overheads[index]
        return self.costs[index], self.overheads[index]


@dataclass(frozen=True, slots=True)
class HostAnswer:
    """One host's answer for one shape: the slots left per view, and the stricter view.

    ``remaining``, ``bound`` and ``view`` are the headline's (``plan.headline`` of the
    views' answers); ``time_to_full_seconds`` is the demand view's (the only one with a
    trend), ``None`` without it. ``answers`` and ``headline`` build the full ``Answer``s
    from ``use`` and ``shape`` on each access: the same as ``plan.answer`` gives, without
    its notes. A fleet answer does not build them, as that would be most of its time.
    """

    name: str
    remaining: int | None
    bound: Resource | None
    view: View
    time_to_full_seconds: float | None
    remaining_by_view: tuple[int | None, ...]
    bound_by_view: tuple[Resource | None, ...]
    use: HostUse = field(repr=False, compare=False)
    shape: ShapeCost = field(repr=False, compare=False)

    @property
    def answers(self) -> tuple[Answer, ...]:
        """The full answer in each view of the shape, in its order."""
        image = _image_once(self.shape.profile, self.use.images)
        return tuple(
            _answer(
                self.use.view(view),
                self.shape,
                *self.shape.cost_on(self.use, i),
                image,
                self.use.unknown,
            )
            for i, view in enumerate(self.shape.views)
        )

    @property
    def headline(self) -> Answer:
        """The full answer in the stricter view."""
        return self.answers[self.shape.views.index(self.view)]


@dataclass(frozen=True, slots=True)
class FleetAnswer:
    """How many more of one shape fit, as one kind, on every host and in total.

    ``hosts`` run closest to full first: fewest slots left, then the soonest time to full,
    then by name; unbounded hosts last. ``total_remaining`` sums the hosts' headline slots,
    ``total_by_view`` each view's; a total is ``None`` (unbounded) when any host is, and 0
    for no hosts. ``notes`` explain the cost, which is the same on every host; the per-host
    notes of ``plan.answer`` (stopped workloads, missing limits) are left out.
    """

    profile: str
    kind: WorkloadKind
    views: tuple[View, ...]
    hosts: tuple[HostAnswer, ...]
    total_remaining: int | None
    total_by_view: dict[View, int | None]
    notes: tuple[str, ...] = ()

    @property
    def by_name(self) -> dict[str, HostAnswer]:
        """Host name -> its answer (built on each call)."""
        return {host.name: host for host in self.hosts}

    @property
    def headlines(self) -> dict[str, Answer]:
        """Host name -> its full headline ``Answer`` (all built on each call: slow)."""
        return {host.name: host.headline for host in self.hosts}

    @property
    def unbounded(self) -> tuple[str, ...]:
        """The hosts where the shape costs nothing that bounds it."""
        return tuple(host.name for host in self.hosts if host.remaining is None)

    @property
    def full(self) -> tuple[str, ...]:
        """The hosts with no slot left."""
        return tuple(host.name for host in self.hosts if host.remaining == 0)


def host_use(
    name: str,
    inputs: PlanInputs,
    views: Sequence[View],
    settings: PlanSettings,
    rooms: dict[tuple[Resources, Resources, View], Resources] | None = None,
) -> HostUse:
    """What ``plan.answer`` computes for ``inputs`` before it looks at the shape, per view.

    ``rooms`` caches ``plan.usable`` by host size, reserve and view across the hosts of a
    fleet (it depends on nothing else); pass the same dict for every host, with the same
    settings.
    """
    rooms = {} if rooms is None else rooms
    settings = for_host(settings, inputs.host)
    return HostUse(
        name=name,
        views=tuple(_view_use(inputs, view, settings, rooms) for view in views),
        images=inputs.host.image_bytes_present,
        memory_declared=Resource.MEMORY in inputs.host.declared,
        unknown=inputs.host.unknown_resources,
    )


def shape_cost(
    profile: Profile, kind: WorkloadKind, views: Sequence[View], settings: PlanSettings
) -> ShapeCost:
    """``workload_cost`` of ``profile`` as ``kind`` in each view."""
    if not views:
        raise ValueError("a fleet answer needs at least one view")
    costs: list[Resources] = []
    overheads: list[dict[str, float]] = []
    slice_costs: list[Resources] = []
    slice_overheads: list[dict[str, float]] = []
    notes: list[str] = []
    in_slice = replace(settings, container_shim_bytes=0.0)
    for view in views:
        cost, overhead, cost_notes = workload_cost(profile, kind, view, settings)
        costs.append(cost)
        overheads.append(overhead)
        notes.extend(note for note in cost_notes if note not in notes)
        if kind is WorkloadKind.CONTAINER:
            cost, overhead, _ = workload_cost(profile, kind, view, in_slice)
            slice_costs.append(cost)
            slice_overheads.append(overhead)
    return ShapeCost(
        profile=profile,
        kind=kind,
        views=tuple(views),
        costs=tuple(costs),
        overheads=tuple(overheads),
        notes=tuple(notes),
        slice_costs=tuple(slice_costs),
        slice_overheads=tuple(slice_overheads),
    )


def host_answer(use: HostUse, shape: ShapeCost) -> HostAnswer:
    """One host's slots for one shape: ``plan.answer``'s counts, without building it."""
    image = _image_once(shape.profile, use.images)
    once = (0.0, 0.0, image)
    counts: list[int | None] = []
    bounds: list[Resource | None] = []
    for index, view in enumerate(shape.views):
        free, costs = _floats(use.view(view).free), _floats(shape.cost_on(use, index)[0])
        least: int | None = None
        bound: Resource | None = None
        for i, resource in enumerate(RESOURCES):
            if resource in use.unknown:
                continue  # its capacity is not known: it never binds
            fits = fit_count(free[i], costs[i], once[i])
            # Strictly fewer: ties go to the earlier resource, as min() does in plan.answer.
            if fits is not None and (least is None or fits < least):
                least, bound = fits, resource
        counts.append(least)
        bounds.append(bound)
    # plan.headline: the fewest slots, unbounded counting as the most; first on ties.
    best = min(range(len(counts)), key=lambda i: (counts[i] is None, counts[i] or 0))
    full: float | None = None
    for view_use in use.views:
        if view_use.view is View.DEMAND:
            full = min(
                (
                    s
                    for s, r in zip(view_use.time_to_full, RESOURCES, strict=True)
                    if s is not None and r not in use.unknown
                ),
                default=None,
            )
    return HostAnswer(
        name=use.name,
        remaining=counts[best],
        bound=bounds[best],
        view=shape.views[best],
        time_to_full_seconds=full if View.DEMAND in shape.views else None,
        remaining_by_view=tuple(counts),
        bound_by_view=tuple(bounds),
        use=use,
        shape=shape,
    )


def fleet_answers(
    hosts: Sequence[tuple[str, PlanInputs]],
    profile: Profile,
    kind: WorkloadKind,
    views: Sequence[View],
    settings: PlanSettings,
) -> FleetAnswer:
    """How many more of ``profile`` fit as ``kind`` on each host, and on the fleet.

    Each host's answers equal ``plan.answer(inputs, profile, kind, view, settings)`` but for
    the notes. Host names must be unique (``ValueError`` otherwise).
    """
    with _no_cycle_collection():
        rooms: dict[tuple[Resources, Resources, View], Resources] = {}
        uses = [host_use(name, inputs, views, settings, rooms) for name, inputs in _unique(hosts)]
        return answers_for_uses(uses, profile, kind, views, settings)


def answers_for_uses(
    uses: Sequence[HostUse],
    profile: Profile,
    kind: WorkloadKind,
    views: Sequence[View],
    settings: PlanSettings,
) -> FleetAnswer:
    """``fleet_answers`` from host uses already computed (several shapes, one pass each).

    Every use must hold every view in ``views`` (``KeyError`` otherwise).
    """
    shape = shape_cost(profile, kind, views, settings)
    with _no_cycle_collection():
        hosts = sorted((host_answer(use, shape) for use in uses), key=_closest_to_full)
    return FleetAnswer(
        profile=profile.name,
        kind=kind,
        views=shape.views,
        hosts=tuple(hosts),
        total_remaining=_total(host.remaining for host in hosts),
        total_by_view={
            view: _total(host.remaining_by_view[i] for host in hosts)
            for i, view in enumerate(shape.views)
        },
        notes=shape.notes,
    )


def pack_fleet(
    uses: Sequence[HostUse],
    shapes: Sequence[tuple[Profile, WorkloadKind, int]],
    views: Sequence[View],
    settings: PlanSettings,
    new_host: Resources | None = None,
    *,
    open_lower_bound: bool = True,
) -> packing.Packing:
    """Place ``count`` more of each ``(profile, kind, count)`` over the hosts at once.

    A copy must fit in every view, as a single shape's headline is the stricter view: the
    packing has one dimension per view and resource (``allocation cpu`` ... ``demand
    disk``), each host's ``free`` against each shape's ``workload_cost``. A shape's image is
    paid once on a host that does not hold it, on the disk of every view, as ``plan.answer``
    charges it (shapes sharing an image must give it the same size). ``new_host`` is a whole
    machine (``--new-host``): its room is ``plan.usable`` per view, nothing used, no images.
    Profile names must be unique; every use must hold every view (``KeyError`` otherwise).
    """
    if not views:
        raise ValueError("a packing needs at least one view")
    dims = tuple(f"{view.value} {r.value}" for view in views for r in RESOURCES)
    hosts = [
        packing.Host(
            name=use.name,
            free=tuple(x for view in views for x in _floats(use.view(view).free)),
            paid=use.images,
        )
        for use in uses
    ]
    demands = []
    for profile, kind, count in shapes:
        shape = shape_cost(profile, kind, views, settings)
        image = 0.0 if profile.image_present else profile.image_bytes
        demands.append(
            packing.Demand(
                name=profile.name,
                # One size on every host: the shim is counted on declared-memory hosts too,
                # which errs on the safe side (the packer cannot size an item per host).
                cost=tuple(x for cost in shape.costs for x in _floats(cost)),
                count=count,
                once=(0.0, 0.0, image) * len(views),
                once_key=profile.image or profile.name,
            )
        )
    room = None
    if new_host is not None:
        empty = HostCapacity(total=new_host, used=Resources())
        room = tuple(x for view in views for x in _floats(usable(empty, view, settings)))
    return packing.pack(hosts, demands, new_host=room, dims=dims, open_lower_bound=open_lower_bound)


def _view_use(
    inputs: PlanInputs,
    view: View,
    settings: PlanSettings,
    rooms: dict[tuple[Resources, Resources, View], Resources],
) -> ViewUse:
    """``plan.answer``'s usable, used, system and free, in the same float operations."""
    host = inputs.host
    room = rooms.get((host.total, settings.reserved, view))
    if room is None:
        room = rooms[host.total, settings.reserved, view] = usable(host, view, settings)
    if view is View.ALLOCATION:
        taken, system = _allocation_taken(inputs, settings), Resources()
    else:
        taken, system = _demand_taken(inputs)
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
    full = _NO_TREND
    if view is View.DEMAND:
        full = times_to_full(inputs.trend, _floats(free), settings.min_trend_seconds)
    return ViewUse(
        view=view,
        total=host.total,
        usable=room,
        used=used,
        system=system,
        free=free,
        time_to_full=full,
    )


def _allocation_taken(inputs: PlanInputs, settings: PlanSettings) -> Resources:
    """What the workloads were promised, with their overhead (``plan._allocation_used``).

    ``demand.allocation_of`` inlined: a limit where there is one, else the demand; a VM's
    memory is its guest RAM, an overlay VM's disk its demand. Summed in the same order.
    """
    shim = settings.container_shim_bytes
    cpu = memory = disk = 0.0
    for w in inputs.workloads:
        is_vm = w.kind is WorkloadKind.VM
        cpu += w.demand.cpu if w.cpu_limit is None else w.cpu_limit
        limit = w.memory_limit
        if is_vm and w.guest_memory_bytes is not None:
            limit = w.guest_memory_bytes
        overhead = existing_overhead(w, settings) if is_vm else shim
        memory += (w.demand.memory if limit is None else limit) + overhead
        if (is_vm and w.disk_is_overlay) or w.disk_limit is None:
            disk += w.demand.disk
        else:
            disk += w.disk_limit
    return Resources(cpu=cpu, memory=memory, disk=disk)


def _demand_taken(inputs: PlanInputs) -> tuple[Resources, Resources]:
    """What the workloads measurably take, and the host use none of them explains.

    ``plan._demand_used`` with the same ``sum`` calls (whose float summation differs between
    Python versions, so a hand-written loop would not agree everywhere).
    """
    running = [w for w in inputs.workloads if w.running]
    taken = Resources(
        cpu=sum([w.demand.cpu for w in running]),
        memory=sum([w.demand.memory for w in running]),
        disk=sum([w.demand.disk for w in inputs.workloads]),
    )
    footprint = (
        float(taken.cpu),
        float(sum([w.memory_bytes or 0.0 for w in running])),
        float(sum([w.disk_bytes or 0.0 for w in inputs.workloads])),
    )
    host = inputs.host
    measured = _floats(host.used)
    system = [
        0.0 if r in host.declared else max(0.0, measured[i] - footprint[i])
        for i, r in enumerate(RESOURCES)
    ]
    return taken, Resources(cpu=system[0], memory=system[1], disk=system[2])


def _answer(
    use: ViewUse,
    shape: ShapeCost,
    cost: Resources,
    overhead: dict[str, float],
    image: float,
    unknown: frozenset[Resource],
) -> Answer:
    """The ``Answer`` ``plan.answer`` builds from the same numbers, without notes."""
    # Plain tuples: Resources.get goes through the enum's value.
    total, room, used, system, free = map(
        _floats, (use.total, use.usable, use.used, use.system, use.free)
    )
    costs = _floats(cost)
    once = (0.0, 0.0, image)
    resources = tuple(
        ResourceAnswer(
            resource=r,
            total=total[i],
            usable=room[i],
            used=used[i],
            system=system[i],
            free=free[i],
            cost=costs[i],
            fits=None if r in unknown else fit_count(free[i], costs[i], once[i]),
            time_to_full_seconds=None if r in unknown else use.time_to_full[i],
            known=r not in unknown,
        )
        for i, r in enumerate(RESOURCES)
    )
    bounded = [ra for ra in resources if ra.fits is not None]
    # As in plan.answer: min() keeps the first of equals, so ties go to the earlier resource.
    binding = min(bounded, key=lambda ra: ra.fits or 0, default=None)
    fulls = [ra.time_to_full_seconds for ra in resources if ra.time_to_full_seconds is not None]
    return Answer(
        kind=shape.kind,
        profile=shape.profile.name,
        view=use.view,
        remaining=None if binding is None else binding.fits,
        bound=None if binding is None else binding.resource,
        cost=cost,
        resources=resources,
        overhead={**overhead, "image": image},
        time_to_full_seconds=min(fulls, default=None),
    )


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Hold CPython's cycle collector off for a fleet-sized computation, then restore it.

    A fleet answer allocates a dozen objects per host and makes no reference cycles; with the
    collector on, those allocations trigger full collections that traverse every input
    object again (a million at 10,000 hosts x 20 workloads): about a third of the time.
    Reference counting still frees everything; nothing is left for the collector.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _floats(values: Resources) -> tuple[float, float, float]:
    """A ``Resources`` as floats in ``RESOURCES`` order (what ``Resources.get`` returns)."""
    return float(values.cpu), float(values.memory), float(values.disk)


def _image_once(profile: Profile, images: frozenset[str]) -> float:
    """The image bytes the first new workload pulls on a host (``plan._image_once``)."""
    if profile.image_present or (profile.image and profile.image in images):
        return 0.0
    return profile.image_bytes


def _closest_to_full(host: HostAnswer) -> tuple[bool, int, float, str]:
    """Sort key: fewest slots left, soonest full, name; unbounded hosts last."""
    full = host.time_to_full_seconds
    return (
        host.remaining is None,
        host.remaining or 0,
        math.inf if full is None else full,
        host.name,
    )


def _total(remaining: Iterable[int | None]) -> int | None:
    """The sum of slot counts; ``None`` when any is ``None`` (unbounded)."""
    total = 0
    for count in remaining:
        if count is None:
            return None
        total += count
    return total


def _unique(hosts: Sequence[tuple[str, PlanInputs]]) -> Sequence[tuple[str, PlanInputs]]:
    """``hosts`` unchanged; ``ValueError`` naming a host given twice."""
    seen: set[str] = set()
    for name, _inputs in hosts:
        if name in seen:
            raise ValueError(f"host {name!r} given twice")
        seen.add(name)
    return hosts
