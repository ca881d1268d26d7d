"""Soak densityd under container churn: stale series, source health, pass times, RSS growth.

One daemon (``python -m densityd run --interval 1 --no-libvirt``, history on, in a temporary
state directory) is left to warm up, then ``--containers`` tiny containers are created and
removed around it, ``--alive`` at a time, by ``--workers`` threads, while ``/metrics`` is
scraped every ``--scrape-every`` seconds. What is checked, and reported against the issue's
targets (measured and reported, never asserted):

- **no series older than one pass**: a scrape whose pass started (its
  ``densityd_last_pass_timestamp_seconds``) after ``docker rm -f`` of a container had
  returned must not list that container (strict count); and no scrape may list it once two
  whole intervals have passed since its removal (lenient count);
- ``densityd_source_up{source="docker"}`` stays 1 (scrapes and passes with it at 0 counted),
  and ``densityd_history_up`` stays 1;
- the daemon logs no ``Traceback`` and no ``ERROR`` line;
- **RSS**: ``VmRSS`` of the daemon after the warm-up and again after the churn and a settle
  period (with no bench containers left either time): the growth against the 10 % target;
  the peak during the churn as well;
- ``densityd_last_pass_duration_seconds`` of every pass seen during the churn: p50/p99/max.

Run it as root from the repository root (Docker socket, cgroup tree)::

    /opt/densityd-venv/bin/python bench/soak.py --containers 500 --json /tmp/soak.json

Containers are named ``soak-<n>``, run ``sh -c 'exec sleep 600'`` from ``--image`` (it must
exist: ``bench/docker_sampling.py`` builds ``tiny:latest`` when missing), carry the label
``densityd.soak=1``, and only containers with that label are ever removed: leftovers at the
start, and all of them at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from _common import (
    BenchError,
    clean_env,
    free_port,
    loadavg,
    machine_basics,
    percentile,
    print_targets,
    proc_status_bytes,
    run_benchmark,
    scrape,
    stop_child,
)
from prometheus_client.parser import text_string_to_metric_families

from densityd import __version__ as densityd_version

LABEL = "densityd.soak=1"
NAME_PREFIX = "soak-"
RUN_OPTIONS = ("--network", "none")  # the engine here has no bridge
IDLE = ("sh", "-c", "exec sleep 600")
# Targets from the issue; measured and reported, never asserted.
TARGET_RSS_GROWTH = 0.10


# -- Docker through its command-line client --------------------------------------------------


def docker(executable: str, *args: str, timeout: float = 120.0) -> str:
    """Run ``docker ARGS`` and return its stdout; raise ``BenchError`` when it fails."""
    try:
        done = subprocess.run(
            [executable, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"docker {' '.join(args[:2])}: {exc}") from exc
    if done.returncode != 0:
        raise BenchError(f"docker {' '.join(args[:2])}: {done.stderr.strip()}")
    return done.stdout.strip()


def remove_soak_containers(executable: str) -> int:
    """Remove every container carrying the soak label (and no other); return how many."""
    ids = docker(executable, "ps", "-aq", "--no-trunc", "--filter", f"label={LABEL}").split()
    for start in range(0, len(ids), 50):
        docker(executable, "rm", "-f", *ids[start : start + 50], timeout=300)
    return len(ids)


# -- the churn -------------------------------------------------------------------------------


@dataclass
class Churn:
    """Creates ``total`` containers, keeps at most ``alive`` of them, removes the oldest."""

    executable: str
    image: str
    total: int
    alive: int
    created: dict[str, float] = field(default_factory=dict)  # name -> `docker run` returned
    removed: dict[str, float] = field(default_factory=dict)  # name -> `docker rm -f` returned
    run_s: list[float] = field(default_factory=list)
    rm_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _next: int = 0
    _living: deque[str] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.total:
                return None
            self._next += 1
            return self._next

    def _oldest_beyond(self, limit: int) -> str | None:
        with self._lock:
            return self._living.popleft() if len(self._living) > limit else None

    def _remove(self, name: str) -> None:
        started = time.perf_counter()
        try:
            docker(self.executable, "rm", "-f", name)
        except BenchError as exc:
            self.errors.append(str(exc))
            return
        self.rm_s.append(time.perf_counter() - started)
        self.removed[name] = time.time()

    def worker(self, stop: threading.Event) -> None:
        """Create containers until the total is reached, removing the oldest beyond ``alive``."""
        while not stop.is_set():
            index = self._take()
            if index is None:
                break
            name = f"{NAME_PREFIX}{index}"
            started = time.perf_counter()
            try:
                docker(
                    self.executable,
                    *("run", "-d", "--name", name, "--label", LABEL, *RUN_OPTIONS),
                    *(self.image, *IDLE),
                )
            except BenchError as exc:
                self.errors.append(str(exc))
                continue
            self.run_s.append(time.perf_counter() - started)
            self.created[name] = time.time()
            with self._lock:
                self._living.append(name)
            oldest = self._oldest_beyond(self.alive)
            if oldest is not None:
                self._remove(oldest)

    def drain(self) -> None:
        """Remove the containers still alive, oldest first."""
        while (oldest := self._oldest_beyond(0)) is not None:
            self._remove(oldest)


# -- scraping --------------------------------------------------------------------------------


@dataclass
class Scrape:
    """What one ``/metrics`` scrape said."""

    at: float  # Unix time the response arrived
    latency_s: float
    pass_ts: float | None
    pass_duration_s: float | None
    docker_up: float | None
    history_up: float | None
    history_errors: float | None
    soak_names: set[str]


def read_scrape(port: int) -> Scrape:
    """Scrape once and keep what the soak checks."""
    latency, body = scrape(port)
    values: dict[str, float] = {}
    names: set[str] = set()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "densityd_workload_info":
                name = sample.labels.get("name", "")
                if sample.labels.get("kind") == "container" and name.startswith(NAME_PREFIX):
                    names.add(name)
            elif sample.name == "densityd_source_up":
                if sample.labels.get("source") == "docker":
                    values["docker_up"] = sample.value
            elif not sample.labels:
                values[sample.name] = sample.value
    return Scrape(
        at=time.time(),
        latency_s=latency,
        pass_ts=values.get("densityd_last_pass_timestamp_seconds"),
        pass_duration_s=values.get("densityd_last_pass_duration_seconds"),
        docker_up=values.get("docker_up"),
        history_up=values.get("densityd_history_up"),
        history_errors=values.get("densityd_history_errors_total"),
        soak_names=names,
    )


@dataclass
class Watch:
    """Scrapes taken while the churn ran, and the daemon's RSS beside each."""

    scrapes: list[Scrape] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def take(self, port: int, pid: int) -> None:
        """One scrape and one RSS reading; a failed scrape is counted, not raised."""
        try:
            self.scrapes.append(read_scrape(port))
        except (OSError, BenchError) as exc:
            self.failures.append(f"{time.time():.1f}: {exc}")
        self.rss.append(proc_status_bytes(pid, "VmRSS"))


def stale_series(scrapes: Sequence[Scrape], removed: dict[str, float], grace: float) -> int:
    """Containers listed by a pass that started more than ``grace`` s after their removal."""
    count = 0
    for s in scrapes:
        if s.pass_ts is None:
            continue
        count += sum(1 for n in s.soak_names if n in removed and s.pass_ts > removed[n] + grace)
    return count


def passes(scrapes: Sequence[Scrape]) -> list[Scrape]:
    """One scrape per distinct pass (the first that showed it)."""
    seen: dict[float, Scrape] = {}
    for s in scrapes:
        if s.pass_ts is not None and s.pass_ts not in seen:
            seen[s.pass_ts] = s
    return list(seen.values())


# -- the run ---------------------------------------------------------------------------------


def wait_healthy(child: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    """Wait until the daemon has published a pass with Docker up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchError(f"the daemon exited with status {child.returncode}")
        try:
            s = read_scrape(port)
        except (OSError, BenchError):
            s = None
        if s is not None and s.docker_up == 1 and s.history_up == 1:
            return
        time.sleep(0.2)
    raise BenchError(f"the daemon did not report Docker and history up within {timeout:g}s")


def idle(port: int, pid: int, seconds: float, every: float, watch: Watch) -> None:
    """Scrape every ``every`` seconds for ``seconds`` (warm-up and settle)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        watch.take(port, pid)
        time.sleep(every)


def machine(executable: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    info = json.loads(docker(executable, "info", "--format", "{{json .}}"))
    return {
        **machine_basics(),
        "docker": info.get("ServerVersion"),
        "storage_driver": info.get("Driver"),
        "cgroup_version": info.get("CgroupVersion"),
        "python": platform.python_version(),
        "densityd": densityd_version,
        "containers_on_engine": info.get("Containers"),
        "loadavg_at_start": loadavg(),
    }


def log_problems(text: str) -> dict[str, Any]:
    """Tracebacks and ERROR lines in the daemon's log."""
    errors = [line for line in text.splitlines() if " ERROR " in line]
    return {"tracebacks": text.count("Traceback"), "error_lines": errors[:20]}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Warm up, churn, settle; the JSON document."""
    started = datetime.now(UTC)
    host = machine(args.docker)
    print(
        f"machine: {host['cpus']} cores ({host['cpu_model']}), kernel {host['kernel']}, "
        f"Docker {host['docker']} ({host['storage_driver']}, cgroup v{host['cgroup_version']}), "
        f"densityd {host['densityd']}, {host['containers_on_engine']} containers on the engine; "
        f"load average {' '.join(host['loadavg_at_start'])}"
    )
    docker(args.docker, "image", "inspect", args.image)  # fails clearly when it is missing
    stale = remove_soak_containers(args.docker)
    if stale:
        print(f"removed {stale} leftover soak containers")
    port = free_port()
    command = [
        sys.executable,
        *("-m", "densityd", "run", "--interval", f"{args.interval:g}", "--no-libvirt"),
        *("--state-dir", str(workdir / "state")),
        *("--listen-address", f"127.0.0.1:{port}"),
    ]
    log_path = workdir / "densityd.log"
    with log_path.open("wb") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=clean_env())
    try:
        wait_healthy(child, port)
        warm = Watch()
        print(f"daemon pid {child.pid} up; warming up for {args.warmup:g} s")
        idle(port, child.pid, args.warmup, args.scrape_every, warm)
        rss_before = proc_status_bytes(child.pid, "VmRSS")

        churn = Churn(args.docker, args.image, args.containers, args.alive)
        watch = Watch()
        stop = threading.Event()
        print(
            f"RSS after warm-up {rss_before / 2**20:.1f} MiB; churning {args.containers} "
            f"containers ({args.alive} alive, {args.workers} workers)"
        )
        churn_start = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            jobs = [pool.submit(churn.worker, stop) for _ in range(args.workers)]
            try:
                while not all(j.done() for j in jobs):
                    watch.take(port, child.pid)
                    time.sleep(args.scrape_every)
                    if child.poll() is not None:
                        raise BenchError(f"the daemon exited with status {child.returncode}")
            finally:
                stop.set()
            for job in jobs:
                job.result()
        churn.drain()
        churn_s = time.monotonic() - churn_start
        print(
            f"churn done in {churn_s:.0f} s: {len(churn.created)} created, "
            f"{len(churn.removed)} removed, {len(churn.errors)} docker errors; "
            f"settling for {args.settle:g} s"
        )
        settle = Watch()
        idle(port, child.pid, args.settle, args.scrape_every, settle)
        rss_after = proc_status_bytes(child.pid, "VmRSS")
        hwm = proc_status_bytes(child.pid, "VmHWM")
        history_bytes = sum(
            p.stat().st_size for p in (workdir / "state").glob("history.sqlite3*") if p.is_file()
        )
    finally:
        stop_child(child)
    problems = log_problems(log_path.read_text(errors="replace"))

    everything = [*watch.scrapes, *settle.scrapes]
    churn_passes = passes(watch.scrapes)
    durations = [s.pass_duration_s for s in churn_passes if s.pass_duration_s is not None]
    all_scrapes = [*warm.scrapes, *everything]
    growth = rss_after / rss_before - 1
    seen_soak = set().union(*(s.soak_names for s in everything))
    pass_times = sorted(s.pass_ts for s in churn_passes if s.pass_ts is not None)
    pass_gaps = [b - a for a, b in pairwise(pass_times)]
    result = {
        "churn_seconds": churn_s,
        "created": len(churn.created),
        "removed": len(churn.removed),
        "docker_errors": churn.errors[:20],
        "docker_run_s": {
            "p50": statistics.median(churn.run_s),
            "p99": percentile(churn.run_s, 99),
        },
        "docker_rm_s": {"p50": statistics.median(churn.rm_s), "p99": percentile(churn.rm_s, 99)},
        "containers_per_second": len(churn.created) / churn_s,
        "scrapes": len(all_scrapes),
        "scrape_failures": warm.failures + watch.failures + settle.failures,
        "scrape_p99_ms": percentile([s.latency_s for s in all_scrapes], 99) * 1e3,
        "passes_seen_during_churn": len(churn_passes),
        "longest_gap_between_passes_s": max(pass_gaps) if pass_gaps else None,
        "soak_containers_seen": len(seen_soak),
        "stale_strict": stale_series(everything, churn.removed, 0.0),
        "stale_two_intervals": stale_series(everything, churn.removed, 2 * args.interval),
        "listed_after_settle": sorted(settle.scrapes[-1].soak_names) if settle.scrapes else None,
        "docker_down_scrapes": sum(1 for s in all_scrapes if s.docker_up != 1),
        "history_down_scrapes": sum(1 for s in all_scrapes if s.history_up != 1),
        "history_errors": all_scrapes[-1].history_errors if all_scrapes else None,
        "history_bytes": history_bytes,
        "pass_duration_s": {
            "p50": percentile(durations, 50),
            "p99": percentile(durations, 99),
            "max": max(durations),
        },
        "rss_after_warmup": rss_before,
        "rss_peak_during_churn": max(watch.rss),
        "rss_after_settle": rss_after,
        "rss_hwm": hwm,
        "rss_growth": growth,
        **problems,
    }
    found = targets(result)
    print_report(result, found)
    return {
        "schema": "densityd.bench.soak/v1",
        "date": started.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "daemon": command,
        "machine": host,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "result": result,
        "targets": found,
        "loadavg_at_end": loadavg(),
    }


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and met / not met."""
    unhandled = r["tracebacks"] + len(r["error_lines"]) + len(r["scrape_failures"])
    return [
        {
            "target": "no unhandled exception (no Traceback or ERROR in the log, every scrape "
            "answered)",
            "measured": f"{r['tracebacks']} tracebacks, {len(r['error_lines'])} ERROR lines, "
            f"{len(r['scrape_failures'])} failed scrapes of {r['scrapes']}",
            "met": unhandled == 0,
        },
        {
            "target": "no series older than one pass (none listed by a pass that started "
            "after the container was removed)",
            "measured": f"{r['stale_strict']} stale listings ({r['stale_two_intervals']} "
            f"after two intervals) over {r['removed']} removals",
            "met": r["stale_strict"] == 0,
        },
        {
            "target": "docker source stays up during the churn",
            "measured": f"{r['docker_down_scrapes']} of {r['scrapes']} scrapes with "
            'densityd_source_up{source="docker"} != 1',
            "met": r["docker_down_scrapes"] == 0,
        },
        {
            "target": f"RSS growth under {TARGET_RSS_GROWTH:.0%} across the run",
            "measured": f"{r['rss_after_warmup'] / 2**20:.1f} -> "
            f"{r['rss_after_settle'] / 2**20:.1f} MiB ({r['rss_growth']:+.1%}); peak during "
            f"the churn {r['rss_peak_during_churn'] / 2**20:.1f} MiB",
            "met": r["rss_growth"] < TARGET_RSS_GROWTH,
        },
    ]


def print_report(r: dict[str, Any], found: Sequence[dict[str, Any]]) -> None:
    """Print the churn, the passes, the history and the targets."""
    print()
    print(
        f"churn: {r['created']} created and {r['removed']} removed in {r['churn_seconds']:.0f} s "
        f"({r['containers_per_second']:.1f}/s); docker run p50 {r['docker_run_s']['p50']:.2f} s "
        f"p99 {r['docker_run_s']['p99']:.2f} s, docker rm -f p50 {r['docker_rm_s']['p50']:.2f} s "
        f"p99 {r['docker_rm_s']['p99']:.2f} s"
    )
    d = r["pass_duration_s"]
    print(
        f"passes during the churn: {r['passes_seen_during_churn']} seen, duration p50 "
        f"{d['p50'] * 1e3:.0f} ms, p99 {d['p99'] * 1e3:.0f} ms, max {d['max'] * 1e3:.0f} ms; "
        f"longest gap between passes {r['longest_gap_between_passes_s'] or 0:.2f} s"
    )
    print(
        f"scrapes: {r['scrapes']}, p99 {r['scrape_p99_ms']:.1f} ms; soak containers ever "
        f"listed: {r['soak_containers_seen']} of {r['created']}; listed after settling: "
        f"{len(r['listed_after_settle'] or [])}"
    )
    print(
        f"history: {r['history_down_scrapes']} scrapes with densityd_history_up != 1, "
        f"{r['history_errors']:.0f} errors, {r['history_bytes'] / 2**20:.1f} MiB on disk"
    )
    print(f"RSS: peak (VmHWM) {r['rss_hwm'] / 2**20:.1f} MiB")
    print()
    print_targets(found)


# -- main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The soak's command line."""
    parser = argparse.ArgumentParser(
        description="Churn containers around a densityd daemon sampling every second; "
        "check for stale series, source downs, log errors and RSS growth."
    )
    parser.add_argument("--containers", type=int, default=500, help="containers to churn (500)")
    parser.add_argument("--alive", type=int, default=20, help="kept alive at a time (20)")
    parser.add_argument("--workers", type=int, default=4, help="docker run/rm threads (4)")
    parser.add_argument("--interval", type=float, default=1.0, help="the daemon's --interval (1)")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds (1)")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the churn (30)")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after it (30)")
    parser.add_argument("--docker", default="/usr/bin/docker", help="docker client to use")
    parser.add_argument("--image", default="tiny:latest", help="image to run (tiny:latest)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; exit 1 when it could not measure what it meant to."""
    args = build_parser().parse_args(argv)
    if min(args.containers, args.alive, args.workers) < 1 or args.interval <= 0:
        print("--containers, --alive, --workers: at least 1; --interval: above 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="densityd-soak-") as tmp:

        def soak() -> dict[str, Any]:
            try:
                return run(args, Path(tmp))
            except BenchError:
                log = Path(tmp) / "densityd.log"
                if log.is_file():
                    tail = log.read_text(errors="replace").splitlines()[-20:]
                    print("daemon log (last lines):\n  " + "\n  ".join(tail), file=sys.stderr)
                raise

        def cleanup() -> None:
            print(f"removed {remove_soak_containers(args.docker)} leftover soak containers")

        return run_benchmark(soak, args.json, cleanup)


if __name__ == "__main__":
    raise SystemExit(main())
