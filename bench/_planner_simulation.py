"""The planner benchmark's simulated fleet: workloads whose usage moves from pass to pass.

Helpers of ``planner.py``, not a benchmark: from a fixed seed, 80 % containers and 20 % VMs,
each with a CPU rate that has a daily swing, noise, bursts and the odd restart, memory on a
mean-reverting random walk and disk growing slowly, sampled as densityd ``Snapshot`` objects
with the host's memory and two data disks.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from densityd.model import DiskUsage, HostSample, Snapshot, WorkloadKind, WorkloadSample

DAY = 86400.0
GIB = 1024**3
MIB = 1024**2


# -- the simulated fleet -----------------------------------------------------------------------


@dataclass
class SimWorkload:
    """One simulated container or VM and where its counters stand."""

    kind: WorkloadKind
    id: str
    name: str
    image: str
    cpu_base: float  # cores, the daily mean
    swing: float  # relative amplitude of the daily cycle
    phase: float
    memory_base: float
    memory: float
    memory_limit: int | None
    disk: float
    disk_growth: float  # bytes per second
    cpu_limit: float | None
    cpu_seconds: float = 0.0


class Fleet:
    """Workloads whose usage moves realistically from pass to pass, from a fixed seed."""

    def __init__(self, count: int, seed: int, prefix: str = "") -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.workloads: list[SimWorkload] = []
        for index in range(count):
            vm = rng.random() < 0.2
            memory_base = rng.lognormvariate(math.log(600 * MIB if vm else 150 * MIB), 0.8)
            self.workloads.append(
                SimWorkload(
                    kind=WorkloadKind.VM if vm else WorkloadKind.CONTAINER,
                    id=f"{prefix}{rng.getrandbits(128):032x}",
                    name=f"{prefix}{'vm' if vm else 'app'}-{index}",
                    image="" if vm else f"registry.local/app{index % 17}:1.{index % 5}",
                    cpu_base=min(4.0, rng.lognormvariate(math.log(0.05), 1.3)),
                    swing=rng.uniform(0.1, 0.7),
                    phase=rng.uniform(0, 2 * math.pi),
                    memory_base=memory_base,
                    memory=memory_base,
                    memory_limit=int(memory_base * 2) if vm or rng.random() < 0.6 else None,
                    disk=rng.lognormvariate(math.log(4 * GIB if vm else 60 * MIB), 1.0),
                    disk_growth=rng.uniform(0, 40 * MIB) / DAY,
                    cpu_limit=float(rng.choice((1, 2, 4))) if vm or rng.random() < 0.5 else None,
                )
            )

    def snapshot(self, timestamp: float, step: float) -> Snapshot:
        """Advance every workload by ``step`` seconds and sample it at ``timestamp``."""
        rng = self.rng
        day_angle = 2 * math.pi * (timestamp % DAY) / DAY
        samples = []
        used = 0.0
        for w in self.workloads:
            rate = w.cpu_base * (1 + w.swing * math.sin(day_angle + w.phase))
            rate *= rng.lognormvariate(0.0, 0.35)
            if rng.random() < 0.01:
                rate *= 5  # a burst
            if rng.random() < step / (5 * DAY):  # restarted: the CPU counter starts again
                w.cpu_seconds = 0.0
                w.memory = w.memory_base * 0.6
            w.cpu_seconds += rate * step
            w.memory += 0.05 * (w.memory_base - w.memory) + w.memory_base * rng.gauss(0, 0.02)
            w.memory = max(w.memory_base * 0.3, w.memory)
            w.disk += w.disk_growth * step
            used += w.memory
            samples.append(
                WorkloadSample(
                    kind=w.kind,
                    id=w.id,
                    name=w.name,
                    image=w.image,
                    cpu_seconds=w.cpu_seconds,
                    cpu_limit_cores=w.cpu_limit,
                    memory_bytes=int(w.memory),
                    memory_limit_bytes=w.memory_limit,
                    disk_bytes=int(w.disk),
                )
            )
        total = 512 * GIB
        host = HostSample(
            cpu_cores=64,
            memory_bytes=total,
            memory_available_bytes=max(0, int(total - used - 6 * GIB)),
            disks=(
                DiskUsage("/var/lib/docker", 2 * 10**12, 10**12 + int(timestamp % 10**9)),
                DiskUsage("/var/lib/libvirt/images", 4 * 10**12, 3 * 10**12),
            ),
        )
        return Snapshot(timestamp=timestamp, workloads=tuple(samples), host=host)
