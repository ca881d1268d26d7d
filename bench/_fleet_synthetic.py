"""The fleet benchmark's synthetic fleet: hosts of mixed sizes, their workloads and trends.

Helpers of ``fleet.py``, not a benchmark: one container or VM with plausible demand, limits and
footprints, and a fleet of hosts (16/32/64 cores, 64/128/256 GiB, 1-4 TB) each with its
workloads and a 15-day daily demand trend, built as ``PlanInputs`` from a seed, at a fixed
simulated "now" so that runs compare.
"""

from __future__ import annotations

import math
import random

from densityd.model import WorkloadKind
from densityd.plan.core.model import (
    GIB,
    MIB,
    HostCapacity,
    PlanInputs,
    Resources,
    TrendPoint,
    WorkloadDemand,
)

DAY = 86400.0
TB = 10**12
# 2026-01-01 13:07 UTC: a fixed "now", so that runs compare.
NOW = 1_767_272_820.0
CONTAINER, VM = WorkloadKind.CONTAINER, WorkloadKind.VM


# -- the synthetic fleet -----------------------------------------------------------------------


def workload(rng: random.Random, host: str, index: int) -> WorkloadDemand:
    """One container or VM with plausible demand, limits and footprints."""
    if rng.random() < 0.3:
        vcpus = rng.choice((1, 2, 2, 4, 4, 8))
        ram = float(rng.choice((1, 2, 4, 4, 8, 16)) * GIB)
        rss = ram * rng.uniform(0.4, 1.0) + 100 * MIB
        disk = float(rng.choice((20, 40, 80, 200)) * GIB) * rng.uniform(0.3, 1.0)
        return WorkloadDemand(
            kind=VM,
            id=f"{host}-vm-{index}",
            name=f"vm-{index}",
            running=rng.random() > 0.05,
            demand=Resources(
                cpu=vcpus * rng.uniform(0.05, 0.6), memory=rss * 1.15, disk=disk * 1.02
            ),
            cpu_limit=float(vcpus),
            memory_limit=ram,
            memory_bytes=rss,
            guest_memory_bytes=ram,
            vcpus=vcpus,
            disk_is_overlay=rng.random() < 0.5,
            history_seconds=14 * DAY,
            disk_bytes=disk,
        )
    memory = rng.lognormvariate(math.log(300 * MIB), 0.8)
    disk = rng.lognormvariate(math.log(200 * MIB), 1.0)
    return WorkloadDemand(
        kind=CONTAINER,
        id=f"{host}-ctr-{index}",
        name=f"app-{index}",
        running=rng.random() > 0.05,
        image=f"registry.local/app{index % 7}:1",
        demand=Resources(
            cpu=min(4.0, rng.lognormvariate(math.log(0.1), 1.2)),
            memory=memory * 1.15,
            disk=disk * 1.01,
        ),
        cpu_limit=rng.choice((None, 0.5, 1.0, 2.0)),
        memory_limit=rng.choice((None, float(2 ** rng.randint(28, 32)))),
        memory_bytes=memory,
        history_seconds=14 * DAY,
        disk_bytes=disk,
    )


def fleet(count: int, workloads: int, seed: int) -> list[tuple[str, PlanInputs]]:
    """``count`` hosts of mixed sizes, each with ``workloads`` workloads and a 15-day trend."""
    rng = random.Random(seed)
    hosts = []
    for number in range(1, count + 1):
        name = f"host-{number:05d}"
        total = Resources(
            cpu=float(rng.choice((16, 32, 64))),
            memory=float(rng.choice((64, 128, 256)) * GIB),
            disk=float(rng.choice((1, 2, 4)) * TB),
        )
        ws = tuple(workload(rng, name, i) for i in range(workloads))
        running = [w for w in ws if w.running]
        memory = sum(w.memory_bytes or 0.0 for w in running) + rng.uniform(2, 6) * GIB
        disk = sum(w.disk_bytes or 0.0 for w in ws) + rng.uniform(20, 60) * GIB
        now = Resources(
            cpu=sum(w.demand.cpu for w in running),
            memory=sum(w.demand.memory for w in running),
            disk=sum(w.demand.disk for w in ws),
        )
        growth = rng.uniform(-0.002, 0.01)  # per day, relative; some hosts shrink
        trend = tuple(
            TrendPoint(
                timestamp=NOW - (14 - day) * DAY,
                demand=Resources(
                    cpu=now.cpu * (1 - growth * (14 - day)) * rng.uniform(0.9, 1.1),
                    memory=now.memory * (1 - growth * (14 - day)) * rng.uniform(0.98, 1.02),
                    disk=now.disk * (1 - growth * (14 - day)),
                ),
            )
            for day in range(15)
        )
        host = HostCapacity(
            total=total,
            used=Resources(cpu=0.0, memory=min(memory, total.memory), disk=min(disk, total.disk)),
            image_bytes_present=frozenset(w.image for w in ws if w.image),
        )
        hosts.append(
            (
                name,
                PlanInputs(
                    timestamp=NOW, host=host, workloads=ws, trend=trend, history_seconds=14 * DAY
                ),
            )
        )
    return hosts
