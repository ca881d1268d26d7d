"""The libvirt benchmark's in-process timing of densityd's libvirt pass.

Helpers of ``libvirt_scrape.py``, not a benchmark: a fresh ``LibvirtSource`` timed through its
connection, cold pass and steady passes, checked to see every bench VM with usage, and the bare
``getAllDomainStats`` call the pass is built on (all groups, then each group alone), with
libvirtd's own CPU time per call when libvirtd runs on this host.
"""

from __future__ import annotations

import operator
import statistics
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from functools import partial, reduce
from typing import Any

import libvirt
from _common import BenchError
from _libvirt_freeze import is_local, libvirtd_pid, process_cpu_s

from densityd.collect.sources.libvirt import LibvirtSource

# The same stats groups and flag as densityd's pass, for timing the bare libvirt call.
STATS_GROUPS = {
    "state": libvirt.VIR_DOMAIN_STATS_STATE,
    "cpu-total": libvirt.VIR_DOMAIN_STATS_CPU_TOTAL,
    "balloon": libvirt.VIR_DOMAIN_STATS_BALLOON,
    "vcpu": libvirt.VIR_DOMAIN_STATS_VCPU,
    "block": libvirt.VIR_DOMAIN_STATS_BLOCK,
}
STATS = reduce(operator.or_, STATS_GROUPS.values())
NOWAIT = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)


# -- densityd's libvirt pass, in-process -------------------------------------------------------


@dataclass
class PassTiming:
    """A fresh ``LibvirtSource``: connect, the cold pass, steady passes; the bare stats call."""

    n: int
    seen: int  # domains densityd sampled: the N bench VMs plus any others on the host
    others: list[str]
    connect_s: float
    cold_s: float
    steady_s: list[float]
    steady_cpu_s: list[float]  # this process's CPU time during each steady pass
    stats_call_s: list[float]  # getAllDomainStats alone, same flags, own connection
    group_call_s: dict[str, float]  # median of the same call asking for one group only
    libvirtd_cpu_per_call_s: float | None  # libvirtd's own CPU time per bare call (local only)

    @property
    def steady_median_s(self) -> float:
        return statistics.median(self.steady_s)

    @property
    def stats_call_median_s(self) -> float:
        return statistics.median(self.stats_call_s)

    def summary(self) -> dict[str, Any]:
        """The raw timings plus the medians, for ``--json``."""
        return {
            **asdict(self),
            "steady_median_s": self.steady_median_s,
            "steady_cpu_median_s": statistics.median(self.steady_cpu_s),
            "stats_call_median_s": self.stats_call_median_s,
        }


def check_pass(source: LibvirtSource, names: set[str]) -> list[str]:
    """Fail unless one pass saw every bench VM running with usage; return the other domains."""
    by_name = {w.name: w for w in source.sample().workloads}
    missing = sorted(names - set(by_name))
    if missing:
        raise BenchError(f"densityd's libvirt pass did not see {missing}")
    no_usage = sorted(
        name
        for name in names
        if not by_name[name].running
        or by_name[name].memory_bytes is None
        or by_name[name].cpu_seconds is None
    )
    if no_usage:
        raise BenchError(f"densityd saw these bench VMs without CPU/memory usage: {no_usage}")
    return sorted(set(by_name) - names)


def time_call(call: Callable[[], object], repeat: int) -> list[float]:
    """Seconds each of ``repeat`` calls took."""
    timings: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return timings


def time_libvirt_pass(uri: str, names: set[str], repeat: int) -> PassTiming:
    """Time a fresh ``LibvirtSource``: connect, the cold pass, ``repeat`` steady passes.

    Each steady pass is followed by one bare ``getAllDomainStats`` call on another connection,
    so that both see the same conditions; libvirtd's CPU time over that loop, divided by the
    2 x ``repeat`` stats calls in it, is its own cost per call. Then each group alone.
    """
    daemon_pid: int | None = None
    if is_local(uri):
        with suppress(BenchError):
            daemon_pid = libvirtd_pid()
    source = LibvirtSource(uri)
    conn = libvirt.openReadOnly(uri)
    try:
        start = time.perf_counter()
        source.probe()  # opens the connection: once per daemon lifetime, timed apart
        connect = time.perf_counter() - start
        start = time.perf_counter()
        source.sample()
        cold = time.perf_counter() - start
        others = check_pass(source, names)
        steady: list[float] = []
        steady_cpu: list[float] = []
        stats_call: list[float] = []
        libvirtd_before = process_cpu_s(daemon_pid) if daemon_pid else 0.0
        for _ in range(repeat):
            cpu_start = time.process_time()
            start = time.perf_counter()
            source.sample()
            steady.append(time.perf_counter() - start)
            steady_cpu.append(time.process_time() - cpu_start)
            stats_call += time_call(lambda: conn.getAllDomainStats(STATS, NOWAIT), 1)
        libvirtd_cpu = (
            (process_cpu_s(daemon_pid) - libvirtd_before) / (2 * repeat) if daemon_pid else None
        )
        group_call = {
            name: statistics.median(
                time_call(partial(conn.getAllDomainStats, flag, NOWAIT), repeat)
            )
            for name, flag in STATS_GROUPS.items()
        }
    finally:
        source.close()
        with suppress(libvirt.libvirtError):
            conn.close()
    return PassTiming(
        n=len(names),
        seen=len(names) + len(others),
        others=others,
        connect_s=connect,
        cold_s=cold,
        steady_s=steady,
        steady_cpu_s=steady_cpu,
        stats_call_s=stats_call,
        group_call_s=group_call,
        libvirtd_cpu_per_call_s=libvirtd_cpu,
    )
