"""Benchmark densityd's Docker sampling against ``docker stats --no-stream``.

For N idle containers (``--counts``, default 10, 50 and 200; the set grows in place) it
measures, in the same run and over the same containers:

- one densityd Docker pass: ``DockerSource.sample()`` timed in-process, both the first (cold)
  pass of a fresh source, which inspects every container, and the median of ``--repeat``
  steady passes (cgroup file reads, no inspects), and the cost per container;
- ``docker stats --no-stream`` over exactly the benchmark containers (their names passed on
  the command line), timed as a subprocess, median of ``--stats-repeat`` runs;
- at the largest N only: the daemon itself (``python -m densityd run``), whose ``/metrics`` is
  scraped ``--scrapes`` times with a fresh connection each (p50/p99/max latency, response
  size), and whose resident set (``VmRSS``) is read after the scrapes; it is then stopped with
  SIGTERM and must exit.

Run it as a user that can reach the Docker socket and read the cgroup tree (root here)::

    /opt/densityd-venv/bin/python bench/docker_sampling.py --counts 10,50,200 --json out.json

Containers are named ``bench-<n>``, run ``sleep 3600`` from ``--image`` (built from
busybox-static when missing, as DESIGN §4 describes), carry the label ``densityd.bench=1``,
and are removed at the end, also on Ctrl-C or SIGTERM, unless ``--keep``. Only containers
carrying that label are ever removed; other containers on the engine are left alone
(densityd still sees them, so they are counted in its per-container cost). Leftover labelled
containers from an earlier ``--keep`` run are removed at the start, so every run starts at 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    BenchError,
    LatencySummary,
    clean_env,
    free_port,
    loadavg,
    machine_basics,
    print_targets,
    proc_status_bytes,
    run_benchmark,
    scrape,
    stop_child,
)

from densityd import __version__ as densityd_version
from densityd.collect.sources.docker import DockerSource

LABEL = "densityd.bench=1"
NAME_PREFIX = "bench-"
BUSYBOX_APPLETS = ("sh", "sleep", "dd", "yes", "cat")
RUN_OPTIONS = ("--network", "none")  # idle containers need no network (the engine has no bridge)
IDLE = ("sleep", "3600")
# Targets from the issue; measured and reported, never asserted.
TARGET_RATIO_AT_50 = 20.0
TARGET_FLAT_GROWTH = 1.25  # per-container cost at the largest N vs the smallest, at most
TARGET_SCRAPE_P99_MS = 20.0
TARGET_RSS_BYTES = 60 * 10**6  # "60 MB", read strictly as 10^6 bytes


# -- Docker through its command-line client --------------------------------------------------


class DockerCli:
    """The ``docker`` command-line client, used for everything except densityd's own pass."""

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS``; raise ``BenchError`` with its stderr when it fails."""
        try:
            done = subprocess.run(
                [self.executable, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"docker {' '.join(args[:2])}: {exc}") from exc
        if done.returncode != 0:
            raise BenchError(f"docker {' '.join(args[:2])}: {done.stderr.strip()}")
        return done

    def info(self) -> dict[str, Any]:
        """The engine's ``docker info`` document."""
        return dict(json.loads(self.run("info", "--format", "{{json .}}").stdout))

    def has_image(self, image: str) -> bool:
        """Tell whether the engine holds ``image``."""
        done = subprocess.run(
            [self.executable, "image", "inspect", image], capture_output=True, check=False
        )
        return done.returncode == 0

    def bench_containers(self) -> dict[str, tuple[str, str]]:
        """Every container carrying the bench label: name -> (ID, state)."""
        listing = ("ps", "-a", "--no-trunc", "--filter", f"label={LABEL}")
        out = self.run(*listing, "--format", "{{.ID}}\t{{.Names}}\t{{.State}}").stdout
        found: dict[str, tuple[str, str]] = {}
        for line in out.splitlines():
            container_id, name, state = line.split("\t")
            found[name] = (container_id, state)
        return found

    def running_bench_names(self) -> set[str]:
        """Names of the running containers carrying the bench label."""
        return {
            name for name, (_id, state) in self.bench_containers().items() if state == "running"
        }

    def remove_bench_containers(self) -> int:
        """Remove every container carrying the bench label (and no other); return how many."""
        ids = [cid for cid, _state in self.bench_containers().values()]
        for start in range(0, len(ids), 50):
            self.run("rm", "-f", *ids[start : start + 50], timeout=300)
        return len(ids)


def build_image(docker: DockerCli, image: str) -> None:
    """Make ``image`` from busybox-static without a registry (DESIGN §4)."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        found = shutil.which("busybox")
        if found is None:
            raise BenchError("no busybox binary; apt-get install busybox-static")
        busybox = Path(found)
    with tempfile.TemporaryDirectory(prefix="densityd-bench-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        tar = subprocess.run(
            ["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True
        ).stdout
    done = subprocess.run(
        [docker.executable, "import", "-", image], input=tar, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"docker import: {done.stderr.decode(errors='replace').strip()}")


def bench_name(index: int) -> str:
    """The name of the index-th benchmark container (1-based)."""
    return f"{NAME_PREFIX}{index}"


def grow_to(docker: DockerCli, image: str, count: int) -> float:
    """Start the missing ``bench-1`` .. ``bench-<count>`` containers; return the seconds taken."""
    present = docker.running_bench_names()
    missing = [bench_name(i) for i in range(1, count + 1) if bench_name(i) not in present]
    start = time.perf_counter()

    def start_one(name: str) -> None:
        docker.run("run", "-d", "--name", name, "--label", LABEL, *RUN_OPTIONS, image, *IDLE)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(start_one, missing))  # re-raises the first failure
    running = docker.running_bench_names()
    wanted = {bench_name(i) for i in range(1, count + 1)}
    if not wanted <= running:
        raise BenchError(f"containers not running: {sorted(wanted - running)[:5]}...")
    return time.perf_counter() - start


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
    finally:
        source.close()
    return DensitydTiming(
        len(names) + len(others), others, usage_from, connect, cold, steady, steady_cpu
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


# -- report ------------------------------------------------------------------------------------


def machine(docker: DockerCli) -> dict[str, Any]:
    """What the numbers were measured on."""
    info = docker.info()
    return {
        **machine_basics(),
        "docker": info.get("ServerVersion"),
        "storage_driver": info.get("Driver"),
        "cgroup_version": info.get("CgroupVersion"),
        "cgroup_driver": info.get("CgroupDriver"),
        "python": platform.python_version(),
        "densityd": densityd_version,
        "loadavg_at_start": loadavg(),
    }


def pass_table(results: Sequence[PassResult]) -> str:
    """The per-N table the benchmark prints."""
    header = (
        f"{'N':>5} {'seen':>5} {'cold ms':>9} {'steady ms':>10} {'µs/ctr':>8} {'Δµs/ctr':>8} "
        f"{'cold µs/ctr':>12} {'docker stats s':>15} {'ratio':>8} {'cold ratio':>11}"
    )
    lines = [header, "-" * len(header)]
    previous: PassResult | None = None
    for r in results:
        step = f"{incremental_us(previous, r):.1f}" if previous else "-"
        lines.append(
            f"{r.n:>5} {r.seen:>5} {r.cold_s * 1e3:>9.1f} {r.steady_median_s * 1e3:>10.2f} "
            f"{r.per_container_us:>8.1f} {step:>8} {r.cold_per_container_us:>12.0f} "
            f"{r.docker_stats_median_s:>15.2f} {r.ratio:>7.0f}x {r.cold_ratio:>10.1f}x"
        )
        previous = r
    return "\n".join(lines)


def incremental_us(before: PassResult, after: PassResult) -> float:
    """What each added container cost between two counts (steady medians), in µs."""
    return (after.steady_median_s - before.steady_median_s) / (after.seen - before.seen) * 1e6


def linear_fit(results: Sequence[PassResult]) -> tuple[float, float] | None:
    """Least-squares steady pass time = fixed + marginal x seen; (fixed ms, marginal µs)."""
    if len(results) < 2:
        return None
    xs = [float(r.seen) for r in results]
    ys = [r.steady_median_s for r in results]
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept * 1e3, slope * 1e6


def targets(results: Sequence[PassResult], daemon: DaemonResult | None) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and met / not met (None: not measured)."""
    found: list[dict[str, Any]] = []
    at_50 = next((r for r in results if r.n == 50), None)
    found.append(
        {
            "target": f"docker pass over 50 containers >= {TARGET_RATIO_AT_50:g}x faster "
            "than docker stats --no-stream",
            "measured": f"{at_50.ratio:.0f}x (steady), {at_50.cold_ratio:.1f}x (cold)"
            if at_50
            else "not run (50 not in --counts)",
            "met": at_50.ratio >= TARGET_RATIO_AT_50 if at_50 else None,
        }
    )
    if len(results) >= 2:
        first, last = results[0], results[-1]
        growth = last.per_container_us / first.per_container_us
        found.append(
            {
                "target": f"cost per container flat from {first.n} to {last.n} "
                f"(at most {TARGET_FLAT_GROWTH:g}x)",
                "measured": f"{first.per_container_us:.1f} -> {last.per_container_us:.1f} "
                f"µs/container ({growth:.2f}x)",
                "met": growth <= TARGET_FLAT_GROWTH,
            }
        )
    if daemon is not None:
        found.append(
            {
                "target": f"/metrics with {daemon.n} workloads under "
                f"{TARGET_SCRAPE_P99_MS:g} ms p99",
                "measured": f"p99 {daemon.p99_ms:.1f} ms",
                "met": daemon.p99_ms < TARGET_SCRAPE_P99_MS,
            }
        )
        found.append(
            {
                "target": f"daemon RSS under 60 MB with {daemon.n} containers",
                "measured": f"{daemon.rss_bytes / 1e6:.1f} MB ({daemon.rss_bytes / 2**20:.1f} MiB)",
                "met": daemon.rss_bytes < TARGET_RSS_BYTES,
            }
        )
    return found


def print_report(results: Sequence[PassResult], daemon: DaemonResult | None) -> None:
    """Print the table, the fit, the daemon numbers and the targets."""
    print()
    print("densityd docker pass vs docker stats --no-stream (medians; ratio = stats / pass;")
    print("µs/ctr = steady pass / containers seen; Δµs/ctr = added cost per added container)")
    print(pass_table(results))
    fit = linear_fit(results)
    if fit is not None:
        print(f"steady pass ~ {fit[0]:.2f} ms + {fit[1]:.1f} µs x containers (least squares)")
    if daemon is not None:
        print()
        print(f"daemon with {daemon.n} bench containers ({' '.join(daemon.command)}):")
        print(
            f"  /metrics over {daemon.scrapes} scrapes: p50 {daemon.p50_ms:.1f} ms, "
            f"p99 {daemon.p99_ms:.1f} ms, max {daemon.max_ms:.1f} ms; "
            f"{daemon.response_bytes} bytes, {daemon.metric_lines} samples"
        )
        print(
            f"  RSS {daemon.rss_bytes / 2**20:.1f} MiB (peak {daemon.hwm_bytes / 2**20:.1f} MiB); "
            f"docker source pass in the daemon: "
            + (f"{daemon.source_duration_s * 1e3:.1f} ms" if daemon.source_duration_s else "?")
        )
        stopped = (
            f"exited {daemon.exit_code} after SIGTERM in {daemon.stop_s:.2f} s"
            if daemon.exit_code is not None
            else "did NOT exit within 15 s of SIGTERM (killed)"
        )
        print(f"  {stopped}")
    print()
    print_targets(targets(results, daemon))


# -- main --------------------------------------------------------------------------------------


def parse_counts(text: str) -> list[int]:
    """``10,50,200`` -> ``[10, 50, 200]`` (sorted, each at least 1)."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("must be comma-separated integers") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("must list at least one count, each at least 1")
    return counts


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(
        description="Time densityd's Docker pass against docker stats --no-stream, "
        "and the daemon's /metrics latency and RSS."
    )
    parser.add_argument(
        "--counts", type=parse_counts, default=[10, 50, 200], help="container counts (10,50,200)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="steady densityd passes per N (5)")
    parser.add_argument(
        "--stats-repeat",
        type=int,
        default=None,
        help="docker stats runs per N (default: --repeat, at most 3: each takes seconds)",
    )
    parser.add_argument("--scrapes", type=int, default=200, help="/metrics scrapes (200)")
    parser.add_argument(
        "--interval", type=float, default=5.0, help="the daemon's --interval in seconds (5)"
    )
    parser.add_argument("--docker", default="/usr/bin/docker", help="docker client to use")
    parser.add_argument("--image", default="tiny:latest", help="image to run (tiny:latest)")
    parser.add_argument("--keep", action="store_true", help="leave the bench containers running")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon measurements")
    parser.add_argument(
        "--daemon-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for the daemon, repeatable (e.g. --daemon-arg=--no-libvirt)",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    return parser


def run(args: argparse.Namespace, docker: DockerCli) -> dict[str, Any]:
    """Grow the container set through every count, measuring at each; the JSON document."""
    started = datetime.now(UTC)
    host = machine(docker)
    print(
        f"machine: {host['cpus']} cores ({host['cpu_model']}), kernel {host['kernel']}, "
        f"Docker {host['docker']} ({host['storage_driver']}, cgroup v{host['cgroup_version']} "
        f"{host['cgroup_driver']}), densityd {host['densityd']}; "
        f"load average {' '.join(host['loadavg_at_start'])}"
    )
    if not docker.has_image(args.image):
        print(f"building {args.image} from busybox-static")
        build_image(docker, args.image)
    stale = docker.remove_bench_containers()
    if stale:
        print(f"removed {stale} leftover bench containers")

    stats_repeat = args.stats_repeat or min(args.repeat, 3)
    results: list[PassResult] = []
    for count in args.counts:
        took = grow_to(docker, args.image, count)
        names = [bench_name(i) for i in range(1, count + 1)]
        print(f"N={count}: {count} bench containers running (started the new ones in {took:.1f} s)")
        time.sleep(2)  # let the engine settle after the burst of starts
        timing = time_densityd_pass(set(names), args.repeat)
        print(
            f"  densityd: cold {timing.cold_s * 1e3:.1f} ms, steady median "
            f"{statistics.median(timing.steady_s) * 1e3:.2f} ms over {timing.seen} containers "
            f"(usage from {timing.usage_from}; not ours: {', '.join(timing.others) or 'none'})"
        )
        stats = time_docker_stats(docker, names, stats_repeat)
        print(f"  docker stats --no-stream: median {statistics.median(stats):.2f} s")
        results.append(
            PassResult(n=count, densityd=timing, docker_stats_s=stats, start_containers_s=took)
        )

    daemon: DaemonResult | None = None
    if not args.no_daemon:
        largest = {bench_name(i) for i in range(1, args.counts[-1] + 1)}
        with tempfile.NamedTemporaryFile(prefix="densityd-bench-", suffix=".log") as log:
            log_path = Path(log.name)
            time.sleep(2)  # let the engine settle after docker stats
            print(f"starting the daemon with {len(largest)} bench containers")
            try:
                daemon = bench_daemon(
                    largest, args.scrapes, args.interval, log_path, args.daemon_arg
                )
            except BenchError:
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                print("daemon log (last lines):\n  " + "\n  ".join(tail), file=sys.stderr)
                raise

    print_report(results, daemon)
    fit = linear_fit(results)
    return {
        "schema": "densityd.bench.docker_sampling/v1",
        "date": started.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "machine": host,
        "image": args.image,
        "repeat": args.repeat,
        "stats_repeat": stats_repeat,
        "passes": [r.summary() for r in results],
        "fit": {"fixed_ms": fit[0], "marginal_us": fit[1]} if fit else None,
        "daemon": daemon.summary() if daemon else None,
        "targets": targets(results, daemon),
        "loadavg_at_end": loadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 when it could not measure what it meant to."""
    args = build_parser().parse_args(argv)
    if min(args.repeat, args.scrapes, args.stats_repeat or 1) < 1 or args.interval <= 0:
        print(
            "--repeat, --stats-repeat, --scrapes: at least 1; --interval: above 0", file=sys.stderr
        )
        return 2
    docker = DockerCli(args.docker)

    def cleanup() -> None:
        if args.keep:
            print("keeping the bench containers (--keep)")
        else:
            print(f"removed {docker.remove_bench_containers()} bench containers")

    return run_benchmark(lambda: run(args, docker), args.json, cleanup)


if __name__ == "__main__":
    raise SystemExit(main())
