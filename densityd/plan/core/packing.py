"""Several shapes at once: vector bin packing by first-fit-decreasing with a dot-product host
score, and the lower bound it is measured against (DESIGN §6).

Every host has room per dimension (cpu, memory, disk; or one per view and resource), every
shape a cost per dimension and a count. The shapes are taken largest first, by the sum of
their costs normalised by the hosts' mean room (Panigrahy et al., "Heuristics for Vector Bin
Packing", 2011, call this size FFDSum). Each copy goes to the host, among those it fits on,
with the highest dot product of the copy's normalised cost and the host's normalised room
left: the host with the most room where the copy needs it. Ties go to the host given first.

That score prefers the host with the most room, so copies spread over the hosts: a host's
score falls by the same step with every copy it takes (its room shrinks by the copy's cost),
and the copies of a shape go to the highest of all the hosts' successive scores. That is
computed at once (water-filling: a bisection on the score level, then a heap for the last
few), so a shape costs a pass over the hosts, not one per copy.

New hosts are not opened one at a time, which fills each with the largest shape and strands
its other resources (20-65 % above the lower bound on mixes where one shape is heavy on CPU
and another on memory or disk). The copies that do not fit the existing hosts need at least
the lower bound of new hosts, so that many are opened at once and the copies spread over them
by the same rule; more are opened one at a time while a copy fits none. Those last hosts
hold only what was left of the last shapes, so then the fewest hosts between the bound and
that count over which every copy fits when spread is searched for by bisection.
``bench/fleet.py`` measures both ways against the bound.

The lower bound for identical new hosts is ``max_r ceil(sum of demand_r / capacity_r)``; for
the existing, unequal hosts it is the fewest hosts whose largest rooms could hold what was
placed, per dimension. Both leave out the one-time costs, so they stay lower bounds. On
complementary mixes no packing may reach the bound: a host cannot fill its disk with one
shape and its CPU with another when each also needs some of the other's resource.

Capacity is checked exactly: every float is scaled to an integer of its dimension's common
denominator (floats are binary fractions), so no host is over capacity by even a rounding
error, and an exact fit fits. The scores are floats: they only choose.

Pure functions, no I/O.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

from densityd.plan.core.model import RESOURCES, Resources

Vector = tuple[float, ...]
RESOURCE_DIMS: tuple[str, ...] = tuple(r.value for r in RESOURCES)


@dataclass(frozen=True, slots=True)
class Host:
    """Room on one host, per dimension, and the one-time costs it already holds (images)."""

    name: str
    free: Resources | Vector
    paid: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Demand:
    """``count`` more copies of one shape, each costing ``cost``.

    ``once`` is paid by the first copy on a host that does not hold ``once_key`` (an image;
    shapes sharing an image share the key); the key defaults to the shape's name.
    """

    name: str
    cost: Resources | Vector
    count: int
    once: Resources | Vector | None = None
    once_key: str = ""


@dataclass(frozen=True, slots=True)
class Placement:
    """What one host takes: copies per shape, and the room left after them.

    ``left`` is rounded to floats (the packing itself counts exactly).
    """

    host: str
    counts: dict[str, int]
    left: Vector
    new: bool = False


@dataclass(frozen=True, slots=True)
class Packing:
    """Where the copies go, what fits nowhere, and how far from the lower bound.

    Per shape: ``placed`` on the existing hosts, ``overflow`` the copies that did not fit on
    them, ``placed_new`` on new hosts, ``unplaced`` placed nowhere (without a new host: the
    overflow; with one: the copies larger than an empty new host). ``placed + placed_new +
    unplaced == requested``.

    ``placements`` lists the existing hosts that take something, in the order given;
    ``new_hosts`` the new ones (``new-1`` ...). ``hosts_lower_bound`` is the fewest existing
    hosts that could hold what was placed on them (``hosts_bound``: the dimension that says
    so); ``new_hosts_lower_bound`` the fewest new hosts that could hold the overflow that
    fits one, ``None`` without ``new_host``.
    """

    dims: tuple[str, ...]
    requested: dict[str, int]
    placed: dict[str, int]
    overflow: dict[str, int]
    placed_new: dict[str, int]
    unplaced: dict[str, int]
    placements: tuple[Placement, ...]
    hosts_lower_bound: int
    hosts_bound: str | None
    new_host: Vector | None = None
    new_hosts: tuple[Placement, ...] = ()
    new_hosts_lower_bound: int | None = None
    new_hosts_bound: str | None = None

    @property
    def hosts_used(self) -> int:
        """Existing hosts that take at least one copy."""
        return len(self.placements)

    @property
    def new_host_count(self) -> int | None:
        """New hosts needed for the overflow; ``None`` without ``new_host``."""
        return None if self.new_host is None else len(self.new_hosts)

    @property
    def new_hosts_gap(self) -> int | None:
        """New hosts used beyond the lower bound."""
        if self.new_hosts_lower_bound is None:
            return None
        return len(self.new_hosts) - self.new_hosts_lower_bound

    @property
    def new_hosts_ratio(self) -> float | None:
        """New hosts used over the lower bound; ``None`` when the bound is 0."""
        if not self.new_hosts_lower_bound:
            return None
        return len(self.new_hosts) / self.new_hosts_lower_bound


def pack(
    hosts: Sequence[Host | tuple[str, Resources | Vector]],
    demands: Sequence[Demand | tuple[str, Resources | Vector, int]],
    new_host: Resources | Vector | None = None,
    *,
    dims: Sequence[str] = RESOURCE_DIMS,
    open_lower_bound: bool = True,
) -> Packing:
    """Place every demand's copies on ``hosts``; the overflow on new hosts of ``new_host``.

    Hosts are ``Host`` or ``(name, free)``, demands ``Demand`` or ``(name, cost, count)``,
    where ``free``, ``cost`` and ``new_host`` are ``Resources`` (cpu, memory, disk) or
    vectors with one value per ``dims``. Values must be finite and not negative, names
    unique; ``ValueError`` otherwise. ``open_lower_bound=False`` opens new hosts one at a
    time instead of the lower bound's worth at once (for comparison).
    """
    labels = tuple(dims)
    rooms = [h if isinstance(h, Host) else Host(name=h[0], free=h[1]) for h in hosts]
    shapes = [
        d if isinstance(d, Demand) else Demand(name=d[0], cost=d[1], count=d[2]) for d in demands
    ]
    packer = _Packer.build(rooms, shapes, new_host, labels)
    return packer.run(open_lower_bound)


# -- the packer ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Shape:
    """One demand in exact integers, with its one-time cost."""

    name: str
    cost: tuple[int, ...]
    once: tuple[int, ...]
    key: str
    count: int
    needs: tuple[int, ...]  # the dimensions it costs something in


@dataclass(slots=True)
class _Bin:
    """One host while packing: exact room left, and its normalised float copy for scoring."""

    name: str
    free: tuple[int, ...]
    rem: list[int]
    norm: list[float]
    scale: Vector
    paid: set[str]
    counts: dict[int, int]
    new: bool


class _Packer:
    """The state of one packing: exact integer rooms and costs, hosts old and new."""

    def __init__(self, dims: tuple[str, ...], den: tuple[int, ...], shapes: list[_Shape]):
        self.dims = dims
        self.den = den
        self.shapes = shapes
        self.bins: list[_Bin] = []
        self.fresh: tuple[int, ...] | None = None
        self.fresh_scale: Vector = ()
        self.first_new = 0

    @classmethod
    def build(
        cls,
        hosts: Sequence[Host],
        demands: Sequence[Demand],
        new_host: Resources | Vector | None,
        dims: tuple[str, ...],
    ) -> _Packer:
        """Check the input and scale every value to integers of a common denominator."""
        if not dims:
            raise ValueError("packing needs at least one dimension")
        width = len(dims)
        frees = [_vector(h.free, width, f"host {h.name!r}") for h in hosts]
        costs = [_vector(d.cost, width, f"shape {d.name!r}") for d in demands]
        onces = [
            (0.0,) * width if d.once is None else _vector(d.once, width, f"shape {d.name!r}")
            for d in demands
        ]
        room = None if new_host is None else _vector(new_host, width, "the new host")
        _unique_names([h.name for h in hosts], "host")
        _unique_names([d.name for d in demands], "shape")
        keys: dict[str, Vector] = {}
        for demand, once in zip(demands, onces, strict=True):
            if not isinstance(demand.count, int) or demand.count < 0:
                raise ValueError(f"shape {demand.name!r}: count must be a whole number >= 0")
            key = demand.once_key or demand.name
            if keys.setdefault(key, once) != once:
                raise ValueError(f"one-time cost {key!r} given with different values")
        values = [*frees, *costs, *onces, *([room] if room is not None else [])]
        den = tuple(
            max((v[i].as_integer_ratio()[1] for v in values), default=1) for i in range(width)
        )
        shapes = [
            _Shape(
                name=d.name,
                cost=_ints(cost, den),
                once=_ints(once, den),
                key=d.once_key or d.name,
                count=d.count,
                needs=tuple(i for i in range(width) if cost[i] > 0),
            )
            for d, cost, once in zip(demands, costs, onces, strict=True)
        ]
        packer = cls(dims, den, shapes)
        scale = _scale(frees, costs)
        for host, free in zip(hosts, frees, strict=True):
            packer.add(host.name, _ints(free, den), set(host.paid), scale, new=False)
        if room is not None:
            packer.fresh = _ints(room, den)
            packer.fresh_scale = _scale([room], costs)
        return packer

    def add(
        self, name: str, free: tuple[int, ...], paid: set[str], scale: Vector, *, new: bool
    ) -> int:
        """A host with ``free`` room; its index."""
        rem = list(free)
        self.bins.append(
            _Bin(
                name=name,
                free=free,
                rem=rem,
                norm=[rem[i] / self.den[i] / scale[i] for i in range(len(rem))],
                scale=scale,
                paid=paid,
                counts={},
                new=new,
            )
        )
        return len(self.bins) - 1

    def open_new(self) -> int:
        """A fresh new host; its index."""
        assert self.fresh is not None
        name = f"new-{len(self.bins) - self.first_new + 1}"
        return self.add(name, self.fresh, set(), self.fresh_scale, new=True)

    def fit(self, index: int, shape: _Shape, limit: int) -> int:
        """How many more copies of ``shape`` fit on host ``index``, at most ``limit``; exact."""
        host = self.bins[index]
        rem = host.rem
        if shape.key not in host.paid:
            rem = [r - o for r, o in zip(rem, shape.once, strict=True)]
            if min(rem) < 0:
                return 0
        count = limit
        for i in shape.needs:
            count = min(count, rem[i] // shape.cost[i])
        return max(0, count)

    def place(self, index: int, number: int, count: int) -> None:
        """Put ``count`` copies of shape ``number`` on host ``index`` (they fit)."""
        host, shape = self.bins[index], self.shapes[number]
        rem, den = host.rem, self.den
        if shape.key not in host.paid:
            host.paid.add(shape.key)
            for i, once in enumerate(shape.once):
                rem[i] -= once
        for i, cost in enumerate(shape.cost):
            rem[i] -= count * cost
        host.norm = [rem[i] / den[i] / host.scale[i] for i in range(len(rem))]
        host.counts[number] = host.counts.get(number, 0) + count

    def spread(
        self, number: int, candidates: Sequence[int], left: int, scale: Vector, *, grow: bool
    ) -> int:
        """Place up to ``left`` copies of one shape on the best-scoring hosts; copies left.

        One by one, each copy would go to the host with the highest score, and a host's score
        falls by ``step`` with each copy it takes (its room shrinks by the copy's cost): the
        copies go to the ``left`` highest of all the hosts' successive scores, ties to the
        host given first. With ``grow``, the copies no candidate has room for go to new hosts
        opened one at a time (the caller checked that one fits an empty new host).
        """
        shape = self.shapes[number]
        weights = [shape.cost[i] / self.den[i] / scale[i] for i in range(len(scale))]
        step = math.fsum(w * w for w in weights)
        hosts = []  # (score, index, how many fit)
        for index in candidates:
            room = self.fit(index, shape, left)
            if room:
                norm = self.bins[index].norm
                hosts.append((math.fsum(weights[i] * norm[i] for i in shape.needs), index, room))
        if sum(room for _score, _index, room in hosts) <= left:
            take = {index: room for _score, index, room in hosts}
        elif step > 0:
            take = _water_fill(hosts, step, left)
        else:  # every copy leaves the scores as they are: the best host first, as many as fit
            take, wanted = {}, left
            for _score, index, room in sorted(hosts, key=lambda h: (-h[0], h[1])):
                take[index] = min(room, wanted)
                wanted -= take[index]
                if not wanted:
                    break
        for index, count in take.items():
            if count:
                self.place(index, number, count)
                left -= count
        while grow and left > 0:
            index = self.open_new()
            count = self.fit(index, shape, left)
            self.place(index, number, count)
            left -= count
        return left

    def new_hosts(self, wanted: Sequence[int], opened: int, *, grow: bool) -> bool:
        """Pack ``wanted`` copies onto ``opened`` fresh new hosts (more with ``grow``).

        Drops the new hosts of an earlier try first. Tells whether every copy found room.
        """
        del self.bins[self.first_new :]
        for _ in range(opened):
            self.open_new()
        assert self.fresh_scale
        for number in _largest_first(self.shapes, self.fresh_scale, self.den):
            news = range(self.first_new, len(self.bins))
            if self.spread(number, news, wanted[number], self.fresh_scale, grow=grow):
                return False
        return True

    def used_new(self) -> int:
        """New hosts that took at least one copy."""
        return sum(1 for b in self.bins[self.first_new :] if b.counts)

    def run(self, open_lower_bound: bool) -> Packing:
        """Both phases: the existing hosts, then new ones for what is left."""
        shapes = self.shapes
        old = list(range(len(self.bins)))
        scale = self.bins[0].scale if self.bins else (1.0,) * len(self.dims)
        overflow = [s.count for s in shapes]
        for number in _largest_first(shapes, scale, self.den):
            overflow[number] = self.spread(number, old, overflow[number], scale, grow=False)
        placed = [s.count - o for s, o in zip(shapes, overflow, strict=True)]
        hosts_bound, hosts_dim = self.hosts_lower_bound(placed)
        unplaced = list(overflow)
        new_bound: int | None = None
        new_dim: str | None = None
        self.first_new = len(self.bins)
        if self.fresh is not None:
            probe = self.add("probe", self.fresh, set(), self.fresh_scale, new=False)
            fits = [self.fit(probe, s, 1) == 1 for s in shapes]
            self.bins.pop()
            wanted = [o if ok else 0 for o, ok in zip(overflow, fits, strict=True)]
            unplaced = [o - w for o, w in zip(overflow, wanted, strict=True)]
            new_bound, new_dim = self.new_lower_bound(wanted)
            if open_lower_bound:
                self.least_new_hosts(wanted, new_bound)
            else:
                self.new_hosts(wanted, 0, grow=True)
        names = [s.name for s in shapes]
        used = [b for b in self.bins if b.counts]
        return Packing(
            dims=self.dims,
            requested={s.name: s.count for s in shapes},
            placed=dict(zip(names, placed, strict=True)),
            overflow=dict(zip(names, overflow, strict=True)),
            placed_new={
                s.name: sum(b.counts.get(n, 0) for b in used if b.new) for n, s in enumerate(shapes)
            },
            unplaced=dict(zip(names, unplaced, strict=True)),
            placements=tuple(self.placement(b) for b in used if not b.new),
            hosts_lower_bound=hosts_bound,
            hosts_bound=hosts_dim,
            new_host=None if self.fresh is None else self.floats(self.fresh),
            new_hosts=tuple(self.placement(b) for b in used if b.new),
            new_hosts_lower_bound=new_bound,
            new_hosts_bound=new_dim,
        )

    def least_new_hosts(self, wanted: Sequence[int], bound: int) -> None:
        """Pack ``wanted`` onto as few new hosts as the search finds; leaves that packing.

        First the lower bound's worth, opening more one at a time while a copy fits none:
        ``upper`` hosts. The last ones opened hold only what was left of the last shapes,
        so then, between the bound and ``upper``, the fewest hosts over which every copy
        fits when spread is searched by bisection (a packing per step; more hosts do not
        always pack better, so this finds few, not always the fewest).
        """
        self.new_hosts(wanted, bound, grow=True)
        upper = self.used_new()
        best, low, high = upper, bound + 1, upper - 1
        while low <= high:
            middle = (low + high) // 2
            if self.new_hosts(wanted, middle, grow=False) and self.used_new() < best:
                best, high = self.used_new(), middle - 1
            else:
                low = middle + 1
        if best < upper:
            self.new_hosts(wanted, best, grow=False)
        else:
            self.new_hosts(wanted, bound, grow=True)

    def hosts_lower_bound(self, placed: Sequence[int]) -> tuple[int, str | None]:
        """The fewest existing hosts whose largest rooms could hold ``placed``, per dimension."""
        best, dim = 0, None
        for i, label in enumerate(self.dims):
            need = sum(n * s.cost[i] for n, s in zip(placed, self.shapes, strict=True))
            if need <= 0:
                continue
            count = total = 0
            for room in sorted((b.free[i] for b in self.bins if not b.new), reverse=True):
                count, total = count + 1, total + room
                if total >= need:
                    break
            if count > best:
                best, dim = count, label
        return best, dim

    def new_lower_bound(self, wanted: Sequence[int]) -> tuple[int, str | None]:
        """``max_r ceil(sum of demand_r / capacity_r)`` over new hosts, and its dimension."""
        assert self.fresh is not None
        best, dim = 0, None
        for i, label in enumerate(self.dims):
            need = sum(n * s.cost[i] for n, s in zip(wanted, self.shapes, strict=True))
            if need <= 0:
                continue
            hosts = -(-need // self.fresh[i])  # callers left out what fits no new host
            if hosts > best:
                best, dim = hosts, label
        return best, dim

    def placement(self, host: _Bin) -> Placement:
        """A host's copies by shape name, and its room left."""
        return Placement(
            host=host.name,
            counts={self.shapes[n].name: c for n, c in sorted(host.counts.items())},
            left=self.floats(host.rem),
            new=host.new,
        )

    def floats(self, values: Sequence[int]) -> Vector:
        """Scaled integers back to floats (int / int rounds the exact quotient once)."""
        return tuple(v / d for v, d in zip(values, self.den, strict=True))


def _water_fill(
    hosts: Sequence[tuple[float, int, int]], step: float, copies: int
) -> dict[int, int]:
    """How many copies each host takes when ``copies`` go to the highest successive scores.

    ``hosts`` are ``(score, index, room)``: a host's ``j``-th copy scores ``score - j *
    step``, and it has room for ``room`` copies. There are more places than copies. A
    bisection finds a level above which at most ``copies`` scores lie, and at least
    ``copies`` less one per host; a heap hands out the rest, highest score first, ties to
    the lower index.
    """

    def above(level: float) -> int:
        return sum(min(room, _steps_above(score, level, step)) for score, _i, room in hosts)

    high = max(score for score, _i, _room in hosts)  # nothing lies above the best score
    low = min(score - room * step for score, _i, room in hosts)  # everything does
    while True:
        middle = (low + high) / 2
        if middle in (low, high):
            break
        count = above(middle)
        if count > copies:
            low = middle
        elif copies - count > len(hosts):
            high = middle
        else:
            high = middle
            break
    take = {index: min(room, _steps_above(score, high, step)) for score, index, room in hosts}
    left = copies - sum(take.values())
    ready = [
        (-(score - take[index] * step), index, score, room)
        for score, index, room in hosts
        if take[index] < room
    ]
    heapq.heapify(ready)
    while left > 0:
        _negative, index, score, room = heapq.heappop(ready)
        take[index] += 1
        left -= 1
        if take[index] < room:
            heapq.heappush(ready, (-(score - take[index] * step), index, score, room))
    return take


def _steps_above(score: float, level: float, step: float) -> int:
    """How many of ``score``, ``score - step``, ... lie strictly above ``level``."""
    if score <= level:
        return 0
    return max(1, math.ceil((score - level) / step))


def _largest_first(shapes: Sequence[_Shape], scale: Vector, den: Sequence[int]) -> list[int]:
    """Shape numbers by decreasing size: the sum of their normalised costs; ties in order."""

    def size(number: int) -> float:
        cost = shapes[number].cost
        return sum(cost[i] / den[i] / scale[i] for i in range(len(scale)))

    return sorted(range(len(shapes)), key=lambda n: -size(n))


def _scale(rooms: Sequence[Vector], costs: Sequence[Vector]) -> Vector:
    """What normalises each dimension: the mean room, at least the largest cost, else 1.

    Normalised, a room is at most the number of hosts and a cost at most 1, so scores stay
    finite whatever the units.
    """
    width = len(rooms[0]) if rooms else len(costs[0]) if costs else 0
    scale = []
    for i in range(width):
        mean = math.fsum(r[i] for r in rooms) / len(rooms) if rooms else 0.0
        largest = max((c[i] for c in costs), default=0.0)
        scale.append(max(mean, largest) or 1.0)
    return tuple(scale)


def _vector(value: Resources | Vector, width: int, what: str) -> Vector:
    """A ``Resources`` or a vector as a checked vector of ``width`` floats."""
    if isinstance(value, Resources):
        if width != len(RESOURCES):
            raise ValueError(f"{what}: Resources has 3 values, the packing {width} dimensions")
        vector = tuple(value.get(r) for r in RESOURCES)
    else:
        vector = tuple(float(v) for v in value)
    if len(vector) != width:
        raise ValueError(f"{what}: {len(vector)} values for {width} dimensions")
    if not all(math.isfinite(v) and v >= 0 for v in vector):
        raise ValueError(f"{what}: values must be finite and not negative, got {vector}")
    return vector


def _ints(vector: Vector, den: Sequence[int]) -> tuple[int, ...]:
    """Each float times its dimension's denominator: an exact integer."""
    scaled = []
    for value, common in zip(vector, den, strict=True):
        numerator, denominator = value.as_integer_ratio()
        scaled.append(numerator * (common // denominator))
    return tuple(scaled)


def _unique_names(names: Sequence[str], what: str) -> None:
    """``ValueError`` naming the first name given twice."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} given twice")
        seen.add(name)
