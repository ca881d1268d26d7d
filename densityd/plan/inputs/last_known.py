"""A source's last-known workloads, carried into the daemon's plans over a few missed passes.

One Docker pass that misses its deadline (or a dockerd restart) leaves a snapshot without
containers: planned as it is, every container's limits vanish for that pass and the slots
jump, which crosses alert thresholds and resets their ``for:`` timers. So the live plan keeps
each source's workloads from its last good pass and plans with them, saying how old they are,
for ``GRACE_PASSES`` intervals; past that, a number would be a guess, and the plan series are
withheld until the source is back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from densityd.model import Snapshot, WorkloadKind, WorkloadSample
from densityd.units import human_duration

# The sources whose workloads plans count, by the kind each one samples.
SOURCE_KINDS: dict[str, WorkloadKind] = {
    "docker": WorkloadKind.CONTAINER,
    "libvirt": WorkloadKind.VM,
}
GRACE_PASSES = 3


@dataclass(frozen=True, slots=True)
class Carried:
    """A snapshot as plans see it: ``snapshot`` with the last-known workloads of sources that
    missed passes within the grace; ``ages`` the age of each source's workloads plans use;
    ``carried`` the sources planned from older workloads; ``withheld`` those down past the
    grace (plans should not be published); ``notes`` say so."""

    snapshot: Snapshot
    ages: dict[str, float]
    carried: tuple[str, ...]
    withheld: tuple[str, ...]
    notes: tuple[str, ...]


class LastKnown:
    """Each source's workloads from its last good pass; not thread-safe (one sampler thread)."""

    def __init__(self, interval_seconds: float, grace_passes: int = GRACE_PASSES) -> None:
        self._grace = grace_passes * interval_seconds
        self._last: dict[str, tuple[float, tuple[WorkloadSample, ...]]] = {}

    def carry(self, snapshot: Snapshot) -> Carried:
        """The snapshot plans should use, remembering the sources that are up in it."""
        extra: list[WorkloadSample] = []
        ages: dict[str, float] = {}
        carried: list[str] = []
        withheld: list[str] = []
        notes: list[str] = []
        present = {(w.kind, w.id) for w in snapshot.workloads}
        for status in snapshot.sources:
            kind = SOURCE_KINDS.get(status.name)
            if kind is None:
                continue
            if status.up:
                mine = tuple(w for w in snapshot.workloads if w.kind is kind)
                self._last[status.name] = (snapshot.timestamp, mine)
                ages[status.name] = 0.0
                continue
            last = self._last.get(status.name)
            if last is None:
                continue  # never seen up: there is nothing to carry (and nothing was planned)
            age = max(0.0, snapshot.timestamp - last[0])
            ages[status.name] = age
            if age > self._grace:
                withheld.append(status.name)
                notes.append(
                    f"source {status.name} has been down for {human_duration(age)}, past the "
                    f"grace of {human_duration(self._grace)}: plans are withheld until it is back"
                )
                continue
            carried.append(status.name)
            extra.extend(w for w in last[1] if (w.kind, w.id) not in present)
            notes.append(
                f"source {status.name} missed its latest pass(es): its workloads as of "
                f"{human_duration(age)} ago are planned"
            )
        if extra:
            snapshot = replace(snapshot, workloads=(*snapshot.workloads, *extra))
        return Carried(snapshot, ages, tuple(carried), tuple(withheld), tuple(notes))
