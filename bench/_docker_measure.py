"""The Docker benchmark's measurements: densityd's pass, ``docker stats``, and the daemon.

Helpers of ``docker_sampling.py``, not a benchmark: a fresh ``DockerSource`` timed in-process
(connect, the cold pass, steady passes; checked to see every bench container with usage),
``docker stats --no-stream`` over the same containers, and at the largest N the running daemon:
``/metrics`` latency and size, RSS, and how it stops on SIGTERM.
"""

from __future__ import annotations

import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    BenchError,
    LatencySummary,
    clean_env,
    free_port,
    proc_status_bytes,
    scrape,
    stop_child,
)
from _docker_cli import DockerCli

from densityd.collect.sources.docker import DockerSource
from densityd.collect.sources.netdev import read_interfaces

# -- measurements ------------------------------------------------------------------------------


@dataclass
class DensitydTiming:
    """One fresh ``DockerSource``: its connection, cold pass and steady passes."""

    seen: int  # containers densityd listed: the N bench ones plus any others on the engine
    others: list[str]  # names of those others (not ours; densityd samples them too)
    usage_from: str
    connect_s: float
    cold_s: float
    steady_s: list[float]
    steady_cpu_s: list[float]  # this process's CPU time during each steady pass
    # The files issue 15 added, alone (pressure, cpu.stat throttling, OOM kills, memory
    # protection: ``CgroupReader.read_signals``) over every container the pass reads, per
    # round; they are part of each steady pass above.
    signal_reads_s: list[float] = field(default_factory=list)
    signal_containers: int = 0

    @property
    def signals_share(self) -> float:
        """The signal files' share of a steady pass (median over median)."""
        if not self.signal_reads_s or not self.steady_s:
            return 0.0
        return statistics.median(self.signal_reads_s) / statistics.median(self.steady_s)


@dataclass
class PassResult:
    """densityd's Docker pass and ``docker stats --no-stream`` over the same N containers."""

    n: int
    densityd: DensitydTiming
    docker_stats_s: list[float]
    start_containers_s: float

    @property
    def seen(self) -> int:
        return self.densityd.seen

    @property
    def cold_s(self) -> float:
        return self.densityd.cold_s

    @property
    def steady_median_s(self) -> float:
        return statistics.median(self.densityd.steady_s)

    @property
    def per_container_us(self) -> float:
        return self.steady_median_s / self.seen * 1e6

    @property
    def cold_per_container_us(self) -> float:
        return self.cold_s / self.seen * 1e6

    @property
    def docker_stats_median_s(self) -> float:
        return statistics.median(self.docker_stats_s)

    @property
    def ratio(self) -> float:
        return self.docker_stats_median_s / self.steady_median_s

    @property
    def cold_ratio(self) -> float:
        return self.docker_stats_median_s / self.cold_s

    def summary(self) -> dict[str, Any]:
        """The raw timings plus the derived numbers, for ``--json``."""
        return {
            **asdict(self),
            "steady_median_s": self.steady_median_s,
            "per_container_us": self.per_container_us,
            "cold_per_container_us": self.cold_per_container_us,
            "docker_stats_median_s": self.docker_stats_median_s,
            "ratio": self.ratio,
            "cold_ratio": self.cold_ratio,
            "signals_share": self.densityd.signals_share,
        }


def check_reading(source: DockerSource, names: set[str]) -> list[str]:
    """Fail unless one pass saw every bench container running with usage; return the others."""
    reading = source.sample()
    by_name = {w.name: w for w in reading.workloads}
    missing = sorted(names - set(by_name))
    if missing:
        raise BenchError(
            f"densityd did not see {len(missing)} of {len(names)} bench containers, "
            f"e.g. {missing[:5]}"
        )
    no_usage = sorted(
        name
        for name in names
        if not by_name[name].running
        or by_name[name].memory_bytes is None
        or by_name[name].cpu_seconds is None
    )
    if no_usage:
        raise BenchError(
            f"densityd saw {len(no_usage)} bench containers without CPU/memory usage, "
            f"e.g. {no_usage[:5]}"
        )
    return sorted(set(by_name) - names)


def time_densityd_pass(names: set[str], repeat: int) -> DensitydTiming:
    """Time a fresh ``DockerSource``: connect, the cold pass, then ``repeat`` steady passes."""
    source = DockerSource()
    try:
        start = time.perf_counter()
        source.probe()  # connect and read engine facts: once per daemon lifetime, timed apart
        connect = time.perf_counter() - start
        start = time.perf_counter()
        source.sample()
        cold = time.perf_counter() - start
        others = check_reading(source, names)
        steady: list[float] = []
        steady_cpu: list[float] = []
        for _ in range(repeat):
            cpu_start = time.process_time()
            start = time.perf_counter()
            source.sample()
            steady.append(time.perf_counter() - start)
            steady_cpu.append(time.process_time() - cpu_start)
        usage_from = "cgroup files" if source.uses_cgroup_files() else "Engine stats API"
        paths = [m.cgroup_path for m in source._meta.values() if m.cgroup_path is not None]
        # A container's network namespace is read only where it has one of its own.
        pids = [m.net_pid for m in source._meta.values() if m.net_pid is not None]
        signal_reads: list[float] = []
        for _ in range(repeat):
            start = time.perf_counter()
            for path in paths:
                source._cgroups.read_signals(path)
            for pid in pids:
                read_interfaces(source._proc_root, pid)
            signal_reads.append(time.perf_counter() - start)
    finally:
        source.close()
    return DensitydTiming(
        len(names) + len(others),
        others,
        usage_from,
        connect,
        cold,
        steady,
        steady_cpu,
        signal_reads,
        len(paths),
    )


def time_docker_stats(docker: DockerCli, names: Sequence[str], repeat: int) -> list[float]:
    """Time ``docker stats --no-stream NAMES``; fail unless it reported every one of them."""
    timings: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = docker.run(
            "stats", "--no-stream", "--format", "{{.Name}}", *names, timeout=600
        ).stdout
        timings.append(time.perf_counter() - start)
        reported = set(out.split())
        if not set(names) <= reported:
            raise BenchError(f"docker stats left out {sorted(set(names) - reported)[:5]}")
    return timings


# -- the daemon at the largest N ----------------------------------------------------------------


@dataclass
class DaemonResult(LatencySummary):
    """The running daemon: /metrics latency, response size, RSS, and how it stopped."""

    n: int
    command: list[str]
    ready_s: float
    scrapes: int
    latencies_ms: list[float] = field(repr=False)
    response_bytes: int
    metric_lines: int
    source_duration_s: float | None
    rss_bytes: int
    hwm_bytes: int
    exit_code: int | None
    stop_s: float


_MEMORY_LINE = re.compile(r'^densityd_workload_memory_bytes\{[^}]*\bname="([^"]*)"', re.MULTILINE)
_DISK_SCAN_DONE = re.compile(r"^densityd_docker_disk_usage_age_seconds ", re.MULTILINE)
_DOCKER_DURATION = re.compile(
    r'^densityd_source_duration_seconds\{source="docker"\} (\S+)$', re.MULTILINE
)


def bench_daemon(
    names: set[str], scrapes: int, interval: float, log_path: Path, extra: Sequence[str] = ()
) -> DaemonResult:
    """Start the daemon, wait until /metrics lists every bench container, scrape, measure, stop."""
    port = free_port()
    flags = ["--listen-address", f"127.0.0.1:{port}", "--interval", f"{interval:g}", *extra]
    command = [sys.executable, "-m", "densityd", "run", *flags]
    # Only the flags above configure it: no DENSITYD_* variable leaks in from this shell.
    env = clean_env()
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        ready_s = wait_until_listed(daemon, port, names, timeout=60.0)
        latencies: list[float] = []
        body = b""
        for _ in range(scrapes):
            elapsed, body = scrape(port)
            latencies.append(elapsed * 1000)
        rss = proc_status_bytes(daemon.pid, "VmRSS")
        hwm = proc_status_bytes(daemon.pid, "VmHWM")
        text = body.decode()
        duration = _DOCKER_DURATION.search(text)
        start = time.perf_counter()
        daemon.send_signal(signal.SIGTERM)
        try:
            exit_code: int | None = daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            exit_code = None
        stop_s = time.perf_counter() - start
    finally:
        stop_child(daemon)
    return DaemonResult(
        n=len(names),
        command=[Path(command[0]).name, *command[1:]],
        ready_s=ready_s,
        scrapes=scrapes,
        latencies_ms=latencies,
        response_bytes=len(body),
        metric_lines=sum(1 for line in text.splitlines() if line and not line.startswith("#")),
        source_duration_s=float(duration.group(1)) if duration else None,
        rss_bytes=rss,
        hwm_bytes=hwm,
        exit_code=exit_code,
        stop_s=stop_s,
    )


def wait_until_listed(
    daemon: subprocess.Popen[bytes], port: int, names: set[str], timeout: float
) -> float:
    """Poll /metrics until it lists every bench container and the first disk scan is done.

    Waiting for the disk scan means the scrapes see the daemon in its steady state, not its
    start. Returns the seconds waited.
    """
    start = time.perf_counter()
    listed: set[str] = set()
    disk_scanned = False
    while time.perf_counter() - start < timeout:
        if daemon.poll() is not None:
            raise BenchError(f"the daemon exited with status {daemon.returncode}")
        try:
            _elapsed, body = scrape(port)
        except (OSError, BenchError):
            time.sleep(0.2)
            continue
        text = body.decode()
        listed = set(_MEMORY_LINE.findall(text))
        disk_scanned = _DISK_SCAN_DONE.search(text) is not None
        if names <= listed and disk_scanned:
            return time.perf_counter() - start
        time.sleep(0.2)
    raise BenchError(
        f"after {timeout:g}s /metrics listed {len(names & listed)} of {len(names)} bench "
        f"containers; disk scan done: {disk_scanned}"
    )
