"""Plans over synthetic histories whose right answer is known by construction (DESIGN §8).

Each scenario writes 14 days of passes through the real history store (the real schema, a
pass every 5 minutes), then plans from it the way ``densityd plan`` does (``read_history``,
``plan_context``, ``plan_answers``), and checks the answer against what is true by
construction. Every row of docs/planner-truth.md names its test here or in the reality tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from densityd.config import load_settings
from densityd.history.store import HistoryStore
from densityd.model import (
    DiskUsage,
    HostSample,
    Snapshot,
    SourceStatus,
    WorkloadKind,
    WorkloadSample,
)
from densityd.plan.answer import plan_answers, plan_document
from densityd.plan.command_answer import rightsizing
from densityd.plan.core.model import (
    GIB,
    MIB,
    Answer,
    Profile,
    Resource,
    ResourceAnswer,
    View,
)
from densityd.plan.core.quantity import parse_profile
from densityd.plan.inputs.local import plan_context, read_history
from densityd.plan.live import LivePlan
from densityd.plan.output.local import plan_table
from densityd.plan.request import PlanRequest
from tests.unit.plan.test_live import samples

DAY = 86400.0
HOUR = 3600.0
STEP = 300.0  # a pass every 5 minutes: 4,032 passes over 14 days
# A Monday 00:00 UTC: the history's days are whole days.
START = 1_767_571_200.0
DOCKER_ROOT = "/var/lib/docker"
IMAGES = "/var/lib/libvirt/images"
DIRS = {WorkloadKind.CONTAINER: (DOCKER_ROOT,), WorkloadKind.VM: (IMAGES,)}
PROFILE = "cpu=0.5,memory=256Mi,disk=1Gi"

# What a workload is at one time: CPU seconds so far, memory bytes, disk bytes.
Shape = Callable[[float], tuple[float, int, int]]


def host(*, docker_free: int = 400 * GIB, images_free: int = 400 * GIB) -> HostSample:
    """A 32-core, 256 GiB host; Docker and libvirt keep their data on two filesystems."""
    return HostSample(
        cpu_cores=32,
        memory_bytes=256 * GIB,
        memory_available_bytes=200 * GIB,
        disks=(
            DiskUsage(DOCKER_ROOT, 500 * GIB, docker_free, device=1),
            DiskUsage(IMAGES, 500 * GIB, images_free, device=2),
        ),
    )


def sample(kind: WorkloadKind, name: str, shape: Shape, at: float) -> WorkloadSample:
    cpu, memory, disk = shape(at)
    return WorkloadSample(
        kind=kind,
        id=f"{name}-id",
        name=name,
        cpu_seconds=cpu,
        memory_bytes=memory,
        disk_bytes=disk,
        state="running",
    )


def passes(
    workloads: dict[tuple[WorkloadKind, str], Shape], until: float, **host_args: int
) -> Iterator[Snapshot]:
    """Every pass from ``START`` to ``until``."""
    for index in range(int((until - START) // STEP) + 1):
        at = START + index * STEP
        yield Snapshot(
            timestamp=at,
            workloads=tuple(
                sample(kind, name, shape, at) for (kind, name), shape in workloads.items()
            ),
            host=host(**host_args),
            sources=(SourceStatus("docker", True, 0.01, 0, at),),
        )


def plan(
    tmp_path: Path,
    workloads: dict[tuple[WorkloadKind, str], Shape],
    until: float,
    *,
    kind: WorkloadKind = WorkloadKind.CONTAINER,
    flags: dict[str, object] | None = None,
    **host_args: int,
) -> Answer:
    """Record the history up to ``until``, then plan ``PROFILE`` as ``kind`` at ``until``."""
    settings = load_settings({"window": "14d", **(flags or {})})
    snapshots = list(passes(workloads, until, **host_args))
    with HistoryStore.open(tmp_path, retention_seconds=15 * DAY) as store:
        for first in range(0, len(snapshots), 500):
            store.record_many(snapshots[first : first + 500])
        store.maintain(until)  # as the daemon does every few minutes: hourly rows past 48 h go
        history = read_history(store, snapshots[-1], settings)
    context = plan_context(snapshots[-1], history, settings, data_dirs=DIRS)
    request = PlanRequest(profile=_profile(), kind=kind, views=(View.DEMAND,))
    [answer] = plan_answers(context, request)
    return answer


def _profile() -> Profile:
    """The shape every scenario plans for."""
    return parse_profile(PROFILE)


def resource(answer: Answer, which: Resource) -> ResourceAnswer:
    """One resource's side of an answer."""
    return next(r for r in answer.resources if r.resource is which)


def daily_cycle(base: int, growth_per_day: float = 0.0) -> Shape:
    """Memory ±30 % around ``base`` over each UTC day (peak at 14:00), growing as asked."""

    def shape(at: float) -> tuple[float, int, int]:
        days = (at - START) / DAY
        cycle = 1 + 0.3 * math.sin(2 * math.pi * ((at % DAY) / DAY - 14 / 24 + 0.25))
        return (0.2 * (at - START), int(base * (1 + growth_per_day) ** days * cycle), 1 * GIB)

    return shape


def flat(memory: int = 2 * GIB, disk: int = 10 * GIB) -> Shape:
    return lambda at: (0.5 * (at - START), memory, disk)


def growing_disk(start: int, per_day: int) -> Shape:
    return lambda at: (0.1 * (at - START), 512 * MIB, int(start + per_day * (at - START) / DAY))


@pytest.mark.parametrize("hour", range(24))
def test_a_daily_cycle_without_growth_never_fills_at_any_hour(tmp_path: Path, hour: int) -> None:
    """±30 % every day and no growth: no time to full, at every hour of the day."""
    until = START + 13 * DAY + hour * HOUR
    answer = plan(tmp_path, {(WorkloadKind.CONTAINER, "web"): daily_cycle(8 * GIB)}, until)
    assert resource(answer, Resource.MEMORY).time_to_full_seconds is None, answer.notes


@pytest.mark.parametrize("hour", range(24))
def test_steady_growth_under_a_daily_cycle_gives_the_same_time_to_full_at_any_hour(
    tmp_path: Path, hour: int
) -> None:
    """1 %/day under ±30 %: the time to full is the true one within 10 %, at any hour."""
    base = 20 * GIB
    until = START + 13 * DAY + hour * HOUR
    answer = plan(tmp_path, {(WorkloadKind.CONTAINER, "db"): daily_cycle(base, 0.01)}, until)
    memory = resource(answer, Resource.MEMORY)
    # The daily maximum is what grows: 1.3 x base x 1.01**day, about 1.3 x base x 1 % a day.
    true_seconds = memory.free / (1.3 * base * 0.01 * 1.0065) * DAY
    assert memory.time_to_full_seconds is not None, answer.notes
    assert memory.time_to_full_seconds == pytest.approx(true_seconds, rel=0.10)


def test_flat_use_never_fills(tmp_path: Path) -> None:
    answer = plan(tmp_path, {(WorkloadKind.CONTAINER, "web"): flat()}, START + 14 * DAY - STEP)
    assert answer.time_to_full_seconds is None, answer.notes


def test_a_vm_image_growing_elsewhere_gives_containers_no_disk_trend(tmp_path: Path) -> None:
    """20 GiB/day on the libvirt filesystem; Docker's is idle: containers do not fill."""
    workloads = {
        (WorkloadKind.CONTAINER, "web"): flat(disk=5 * GIB),
        (WorkloadKind.VM, "build"): growing_disk(10 * GIB, 20 * GIB),
    }
    until = START + 10 * DAY
    container = plan(tmp_path / "c", workloads, until)
    assert resource(container, Resource.DISK).time_to_full_seconds is None, container.notes
    vm = plan(tmp_path / "v", workloads, until, kind=WorkloadKind.VM)
    disk = resource(vm, Resource.DISK)
    assert disk.time_to_full_seconds is not None, vm.notes
    assert disk.time_to_full_seconds == pytest.approx(disk.free / (20 * GIB) * DAY, rel=0.05)


def test_a_declared_slice_gets_neither_the_reserve_nor_the_shims(tmp_path: Path) -> None:
    """600 MiB declared, three 50 MiB containers, default settings: 540 MiB usable at 0.9."""
    workloads = {
        (WorkloadKind.CONTAINER, f"app-{i}"): flat(memory=50 * MIB, disk=MIB) for i in range(3)
    }
    answer = plan(
        tmp_path,
        workloads,
        START + 2 * DAY,
        flags={"capacity": "memory=600Mi", "scopes": ["app-*"]},
    )
    memory = resource(answer, Resource.MEMORY)
    assert memory.usable == pytest.approx(600 * MIB * 0.9)
    assert memory.used == pytest.approx(3 * 50 * MIB * 1.15)
    assert memory.cost == pytest.approx(256 * MIB)  # the profile, no shim
    assert answer.overhead["shim"] == 0.0
    given = plan(
        tmp_path / "given",
        workloads,
        START + 2 * DAY,
        flags={"capacity": "memory=600Mi", "scopes": ["app-*"], "reserved": "memory=100Mi"},
    )
    assert resource(given, Resource.MEMORY).usable == pytest.approx(500 * MIB * 0.9)


def test_a_disk_densityd_cannot_see_is_unknown_never_zero(tmp_path: Path) -> None:
    """The README's container without the data root mounted: 32 cores, 256 GiB, no disks."""
    at = START + DAY
    blind = HostSample(cpu_cores=32, memory_bytes=256 * GIB, memory_available_bytes=250 * GIB)
    snapshot = Snapshot(
        timestamp=at,
        workloads=(sample(WorkloadKind.CONTAINER, "web", flat(memory=GIB), at),),
        host=blind,
        sources=(SourceStatus("docker", True, 0.01, 0, at),),
    )
    settings = load_settings({})
    context = plan_context(
        snapshot, read_history(None, snapshot, settings), settings, data_dirs=DIRS
    )
    document = plan_document(context, PlanRequest(profile=_profile()))
    table = plan_table(document)
    for kind in (WorkloadKind.CONTAINER, WorkloadKind.VM):
        found = plan_answers(context, PlanRequest(profile=_profile(), kind=kind))
        for answer in found:
            disk = resource(answer, Resource.DISK)
            assert not disk.known and disk.fits is None, answer
            assert answer.bound is not Resource.DISK and answer.remaining, answer
            assert any(note.startswith("disk capacity unknown (") for note in answer.notes)
    for entry in document["answers"]:
        assert entry["remaining"] and entry["bound"] != "disk", entry
        for column in ("total", "usable", "used", "system", "free", "fits"):
            assert entry[column]["disk_bytes"] is None, (column, entry[column])
        assert entry["total"]["memory_bytes"] == 256 * GIB
    assert "unknown" in table and "disk capacity unknown (no filesystem is visible" in table


def test_a_service_redeployed_every_4_hours_is_one_service_in_the_trend(tmp_path: Path) -> None:
    """One 2 GiB, half-core service, a new container ID every 4 h: flat, so never full."""
    until = START + 14 * DAY - STEP
    snapshots = []
    for index in range(int((until - START) // STEP) + 1):
        at = START + index * STEP
        deploy = int((at - START) // (4 * HOUR))
        web = WorkloadSample(
            kind=WorkloadKind.CONTAINER,
            id=f"web-{deploy}",
            name="web",
            cpu_seconds=0.5 * (at - START - deploy * 4 * HOUR),
            memory_bytes=2 * GIB,
            disk_bytes=GIB,
        )
        snapshots.append(Snapshot(timestamp=at, workloads=(web,), host=host(), sources=()))
    settings = load_settings({"window": "14d"})
    with HistoryStore.open(tmp_path, retention_seconds=15 * DAY) as store:
        for first in range(0, len(snapshots), 500):
            store.record_many(snapshots[first : first + 500])
        store.maintain(until)
        trend = store.trend(until - 14 * DAY)
        history = read_history(store, snapshots[-1], settings)
    # Each day held six container IDs one after another: one service's worth, not six.
    assert len(trend) == 13
    for point in trend:
        assert point.demand.memory == pytest.approx(2 * GIB, rel=0.01)
        assert point.demand.cpu == pytest.approx(0.5, rel=0.01)
        assert point.demand.disk == pytest.approx(GIB, rel=0.01)
    context = plan_context(snapshots[-1], history, settings, data_dirs=DIRS)
    [answer] = plan_answers(
        context, PlanRequest(profile=_profile(), kind=WorkloadKind.CONTAINER, views=(View.DEMAND,))
    )
    assert answer.time_to_full_seconds is None, answer.notes


def test_one_source_missing_3_passes_changes_no_published_plan(tmp_path: Path) -> None:
    """14 days of two limited containers; Docker misses the last 3 passes: the same answers."""
    workloads = {(WorkloadKind.CONTAINER, f"app-{i}"): flat(memory=GIB) for i in range(2)}
    until = START + 14 * DAY - STEP
    snapshots = list(passes(workloads, until))
    missed = [
        dataclasses.replace(
            s, workloads=(), sources=(SourceStatus("docker", False, 0.01, 1, None, "deadline"),)
        )
        for s in snapshots[-3:]
    ]
    settings = load_settings({"window": "14d", "plan_profiles": [PROFILE], "interval": STEP})
    with HistoryStore.open(tmp_path, retention_seconds=15 * DAY) as store:
        for first in range(0, len(snapshots) - 3, 500):
            store.record_many(snapshots[first : min(first + 500, len(snapshots) - 3)])
        store.record_many(missed)
        store.maintain(until)
        plan = LivePlan(settings, data_dirs=lambda: DIRS, store=lambda: store)
        plan.update(snapshots[-4])
        expected = _published(plan)
        for snapshot in missed:
            plan.update(snapshot)
            assert _published(plan) == expected
    assert expected  # a plan was published at all


def _published(plan: LivePlan) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The plan's slot, binding-resource and time-to-full series, as scraped."""
    return {
        key: value
        for key, value in samples(plan).items()
        if key[0].endswith(("_remaining", "_bound", "time_to_full_seconds"))
    }


def test_over_provisioned_containers_resized_to_their_use_fit_what_the_demand_view_allows(
    tmp_path: Path,
) -> None:
    """Four containers limited to 1 core and 2 GiB, each using 0.05 cores and 256 MiB for two
    days, in a declared 4-core, 10 GiB capacity; one more is 0.5 cores and 256 MiB.

    Today the allocation view binds: 4 x 2 GiB of 9 GiB usable leaves 1 GiB, 4 more. Resized
    to 0.05 cores and 256 MiB + 15 % each, the allocation view has room for 28 (CPU: 14.4
    usable at ratio 4, 0.2 used), so the demand view binds: 3.6 usable cores, 0.2 used, 6 more.
    The history reads a CPU percentile back within 2.5 %, which moves neither count.
    """
    workloads = {
        (WorkloadKind.CONTAINER, f"app-{i}"): (lambda at: (0.05 * (at - START), 256 * MIB, GIB))
        for i in range(4)
    }
    until = START + 2 * DAY
    snapshots = [
        dataclasses.replace(
            s,
            workloads=tuple(
                dataclasses.replace(w, cpu_limit_cores=1.0, memory_limit_bytes=2 * GIB)
                for w in s.workloads
            ),
        )
        for s in passes(workloads, until)
    ]
    flags = {"window": "14d", "capacity": "cpu=4,memory=10Gi", "plan_profiles": ["one=" + PROFILE]}
    settings = load_settings(flags)
    with HistoryStore.open(tmp_path, retention_seconds=15 * DAY) as store:
        store.record_many(snapshots)
        history = read_history(store, snapshots[-1], settings)
        context = plan_context(snapshots[-1], history, settings, data_dirs=DIRS)
        request = PlanRequest(profile=parse_profile("one=" + PROFILE), kind=WorkloadKind.CONTAINER)
        part = rightsizing(context, [request], top=3)
        live = LivePlan(settings, data_dirs=lambda: DIRS, store=lambda: store)
        live.update(snapshots[-1])
        scraped = samples(live)
    [answer] = part["answers"]
    assert (answer["remaining"], answer["bound"]) == (4, "memory")
    assert answer["by_view"]["allocation"]["remaining"] == 4
    assert answer["by_view"]["allocation"]["rightsized_remaining"] == 28
    assert answer["by_view"]["demand"]["remaining"] == 6
    assert answer["by_view"]["demand"]["rightsized_remaining"] == 6
    assert (answer["rightsized_remaining"], answer["rightsized_bound"], answer["more"]) == (
        6,
        "cpu",
        2,
    )
    recommended = 256 * MIB * 1.15
    assert len(part["workloads"]) == 4 and part["freeing"] == 4
    for item in part["workloads"]:
        assert item["recommended_cpu"] == pytest.approx(0.05, rel=0.025)
        assert item["overprovisioned_cpu"] == pytest.approx(1 - item["recommended_cpu"])
        assert item["recommended_memory_bytes"] == pytest.approx(recommended, abs=1)
        assert item["overprovisioned_memory_bytes"] == pytest.approx(2 * GIB - recommended, abs=1)
    assert part["frees"]["memory_bytes"] == pytest.approx(4 * (2 * GIB - recommended), abs=4)
    # The daemon exports the same.
    container = frozenset({("kind", "container"), ("profile", "one")})
    assert scraped[("densityd_plan_rightsized_remaining", container)] == 6
    assert scraped[("densityd_plan_remaining", container)] == 4
    over = {
        dict(labels)["name"]: value
        for (name, labels), value in scraped.items()
        if name == "densityd_workload_overprovisioned_memory_bytes"
    }
    assert over == {f"app-{i}": pytest.approx(2 * GIB - recommended, abs=1) for i in range(4)}
