"""The cost of watching (issue 16): densityd side by side with netdata and collectd, where a
pass goes, and how the cost grows with containers and VMs.

In one run, on the machine's Docker engine and libvirtd:

1. **side by side**: with ``--containers`` (50) idle containers and ``--vms`` (4) idle TCG
   VMs of its own, an idle baseline window with no collector, then densityd (every source,
   history on), netdata 1.37 with only its cgroups.plugin, and collectd 5.12 with cgroups +
   virt (+ write_prometheus, to be scraped), one after another, each collecting every
   ``--interval`` (15) s and measured over the same ``--window`` (300 s) once it lists the
   workloads: its own CPU (the whole process tree, from ``/proc/PID/stat``, reaped children
   included), the CPU dockerd, containerd and libvirtd spent meanwhile minus the idle
   baseline (a second baseline window ends the comparison; their mean is used), RSS and PSS
   (``smaps_rollup`` over the tree), then ``--scrapes`` scrapes of its HTTP endpoint
   (densityd ``/metrics``, netdata ``/api/v1/allmetrics?format=prometheus``, collectd's
   write_prometheus) and, for densityd, ``densityd plan`` timed while it runs;
2. **where a pass goes**: the daemon run in this process (``run_daemon`` itself) for
   ``--phase-passes`` steady passes at ``--phase-interval`` s, timed by phase from outside
   (``_watch_pass``), the engines' CPU per pass, and the steady Docker pass against reading
   the same cgroup files alone;
3. **scale**: a fresh in-process Docker pass at each of ``--counts`` containers and a libvirt
   pass at each of ``--vm-counts`` VMs, fitted as ``a + b·n``; the daemon's scrape p99 and
   memory at the largest count.

Needs root, ``apt-get install netdata collectd libmicrohttpd12`` (the services disabled: the
benchmark starts its own, in the foreground, configured in a temporary directory, and stops
them by PID), and ``tiny:latest`` (built from busybox-static when missing). Containers are
``watch-<n>`` labelled ``densityd.watch=1``; VMs are transient ``densityd-watch-<n>``; only
those are ever removed, at the start (leftovers), at the end, on Ctrl-C, SIGTERM or exit.
Other tests may use the same engines meanwhile: their work lands in the engines' CPU (hence
two baseline windows) and their containers in every collector's view.

    .venv/bin/python bench/watch_cost.py --json /tmp/watch_cost.json
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from _common import (
    BenchError,
    clean_env,
    loadavg,
    machine_basics,
    parse_counts,
    percentile,
    progress,
    run_benchmark,
)
from _docker_cli import DockerCli
from _docker_measure import time_densityd_pass
from _libvirt_pass import time_libvirt_pass
from _watch_daemons import Collector, Window, Workloads, collectd, densityd, measure, netdata
from _watch_pass import (
    HotSpot,
    PhaseSplit,
    pass_against_files,
    profile_docker_pass,
    run_phase_split,
)
from _watch_procs import EngineRestarted, delta, engine_pids, engines_cpu_s, tree_memory
from _watch_report import (
    print_hotspots,
    print_phases,
    print_scale,
    print_side_by_side,
    print_targets_section,
    targets,
)
from _watch_scale import ScalePoint, fits
from _watch_workloads import Containers, Vms

from densityd import __version__

T = TypeVar("T")
ATTEMPTS = 3  # per measurement, when another test restarts an engine meanwhile


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--containers", type=int, default=50, help="containers side by side (50)")
    add("--vms", type=int, default=4, help="VMs side by side and in the phase split (4)")
    add("--interval", type=float, default=15.0, help="every collector's cadence, s (15)")
    add("--window", type=float, default=300.0, help="measured window per collector, s (300)")
    add("--settle", type=float, default=None, help="after ready, before the window (interval)")
    add("--scrapes", type=int, default=200, help="scrapes per collector after its window")
    add("--daemons", default="densityd,netdata,collectd", help="which, in this order")
    add("--plan-runs", type=int, default=3, help="`densityd plan` runs with the daemon up")
    add("--phase-interval", type=float, default=2.0, help="in-process daemon's interval (2)")
    add("--phase-passes", type=int, default=20, help="steady passes split by phase (20)")
    add("--profile-top", type=int, default=15, help="cProfile rows of a Docker pass (15)")
    add("--counts", type=parse_counts, default=[10, 50, 100, 250, 500], help="containers")
    add("--vm-counts", type=parse_counts, default=[1, 2, 4, 8, 12, 20], help="VMs")
    add("--repeat", type=int, default=5, help="steady in-process passes per scale point (5)")
    add("--skip-compare", action="store_true", help="no side-by-side windows")
    add("--skip-phases", action="store_true", help="no phase split")
    add("--skip-scale", action="store_true", help="no scale sweep")
    add("--uri", default="qemu:///system")
    add("--docker", default="/usr/bin/docker", help="the docker client")
    add("--image", default="tiny:latest")
    add("--json", type=Path, default=None, metavar="FILE")
    return parser


class Bench:
    """One run: its workloads, its collectors, its results; cleans up whatever it made."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.containers = Containers(DockerCli(args.docker), args.image)
        self.vms = Vms(args.uri)
        self.running: list[Collector] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="densityd-watch-"))
        self.engines: dict[str, int] = {}
        self.restarts: list[str] = []  # measurements made again after an engine restart
        self.vm_target = args.vms
        self.attempt = 0  # numbers each collector's directory
        self.cleaned = False

    # -- clean-up ----------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop our collectors, remove our containers and VMs (only ours); idempotent."""
        if self.cleaned:
            return
        self.cleaned = True
        for collector in self.running:
            collector.stop()
        removed = self.containers.remove_all()
        vms = self.vms.remove_all()
        shutil.rmtree(self.tmp, ignore_errors=True)
        progress(f"cleanup: removed {removed} containers, {vms} VMs")

    # -- pieces ------------------------------------------------------------------------

    def retried(self, what: str, measurement: Callable[[], T]) -> T:
        """Run ``measurement``; if an engine restarts meanwhile (other tests share them),
        wait for it, bring our VMs back, and make the measurement again."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return measurement()
            except (EngineRestarted, BenchError) as exc:
                if attempt == ATTEMPTS or not self.engines_changed():
                    raise
                progress(f"  {what}: {exc}; an engine restarted, measuring again")
                self.restarts.append(f"{what}: {exc}")
                self.wait_for_engines()
                self.vms.grow_to(self.vm_target)
        raise AssertionError("unreachable")

    def engines_changed(self) -> bool:
        try:
            return engine_pids() != self.engines
        except BenchError:
            return True  # down right now

    def wait_for_engines(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.engines = engine_pids()
                time.sleep(5)  # let it finish starting (libvirtd reconnects its domains)
                return
            except BenchError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def workloads(self) -> Workloads:
        ours = self.containers.ours()
        return Workloads(
            containers={n: cid for n, (cid, state) in ours.items() if state == "running"},
            vms=self.vms.running_names(),
        )

    def baseline(self, window: float) -> dict[str, float]:
        """The engines' CPU over ``window`` s with no collector of ours running."""
        progress(f"  idle baseline: {window:g} s")
        before = engines_cpu_s(self.engines)
        time.sleep(window)
        return delta(engines_cpu_s(self.engines), before)

    def time_plan(self, collector: Collector) -> tuple[list[float], str]:
        """``densityd plan`` against the running daemon, ``--plan-runs`` times."""
        command = [
            sys.executable, "-m", "densityd", "plan",
            "--listen-address", f"127.0.0.1:{collector.port}",
            "--state-dir", str(Path(collector.log_path).parent / "state"),
            "-o", "json",
        ]  # fmt: skip
        timings: list[float] = []
        note = ""
        for _ in range(self.args.plan_runs):
            start = time.perf_counter()
            done = subprocess.run(
                command, capture_output=True, text=True, env=clean_env(), check=False
            )
            timings.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise BenchError(f"densityd plan: status {done.returncode}: {done.stderr[-500:]}")
            note = (done.stderr.strip().splitlines() or ["no message"])[-1][:160]
        return timings, note

    def compare(self) -> tuple[list[Window], dict[str, Any]]:
        """Item 1: the idle baseline, each collector's window, the baseline again."""
        args = self.args
        workloads = self.workloads()
        settle = args.interval if args.settle is None else args.settle
        baselines = [self.retried("baseline", lambda: self.baseline(args.window))]
        windows: list[Window] = []
        makers: dict[str, Callable[[Path], Collector]] = {
            "densityd": lambda d: densityd(d, args.interval, workloads),
            "netdata": lambda d: netdata(d, args.interval, workloads),
            "collectd": lambda d: collectd(d, args.interval, workloads, args.uri),
        }

        def one(name: str) -> Window:
            self.attempt += 1
            directory = self.tmp / f"{name}-{self.attempt}"
            directory.mkdir()
            collector = makers[name](directory)
            self.running.append(collector)
            try:
                return measure(
                    collector,
                    window=args.window,
                    settle=settle,
                    engines=self.engines,
                    scrapes=args.scrapes,
                    ready_timeout=max(300.0, 12 * args.interval),
                    during=self.time_plan if name == "densityd" else None,
                )
            finally:
                self.running.remove(collector)

        for name in args.daemons.split(","):
            windows.append(self.retried(name, partial(one, name)))
        baselines.append(self.retried("baseline", lambda: self.baseline(args.window)))
        rate = {k: statistics.fmean(b[k] for b in baselines) / args.window for k in baselines[0]}
        for w in windows:
            w.engine_excess_s = {k: v - rate[k] * w.window_s for k, v in w.engine_cpu_s.items()}
        return windows, {"windows": baselines, "rate_per_s": rate}

    def phases(self, idle_rate: dict[str, float]) -> PhaseSplit:
        """Item 2: the in-process daemon split by phase."""
        progress(f"phase split: {self.args.phase_passes} passes at {self.args.phase_interval:g} s")
        state = self.tmp / "phase-state"
        state.mkdir(exist_ok=True)
        return self.retried("phase split", lambda: self._phases(state, idle_rate))

    def _phases(self, state: Path, idle_rate: dict[str, float]) -> PhaseSplit:
        return run_phase_split(
            state_dir=state,
            interval=self.args.phase_interval,
            passes=self.args.phase_passes,
            warmup=3,
            engines=self.engines,
            idle_rate=idle_rate,
            file_repeat=20,
            scrapes=50,
        )

    def docker_point(self, n: int, setup_s: float) -> ScalePoint:
        names = set(self.containers.running_names())
        timing = time_densityd_pass(names, self.args.repeat)
        interleaved, alone, files = pass_against_files(4 * self.args.repeat)
        return ScalePoint(
            n=n,
            seen=timing.seen,
            wall_s=statistics.median(timing.steady_s),
            cpu_s=statistics.median(timing.steady_cpu_s),
            setup_s=setup_s,
            interleaved_pass_s=interleaved,
            files_alone_s=alone,
            files=files,
        )

    def vm_point(self, n: int, setup_s: float) -> ScalePoint:
        names = set(self.vms.running_names())
        timing = time_libvirt_pass(self.args.uri, names, self.args.repeat)
        return ScalePoint(
            n=n,
            seen=timing.seen,
            wall_s=timing.steady_median_s,
            cpu_s=statistics.median(timing.steady_cpu_s),
            setup_s=setup_s,
            engine_cpu_per_pass_s=timing.libvirtd_cpu_per_call_s,
        )

    def scrape_at_largest(self) -> dict[str, Any]:
        """The daemon at the largest count: ready time, scrape latency, memory."""
        workloads = self.workloads()
        directory = self.tmp / "densityd-largest"
        directory.mkdir()
        collector = densityd(directory, self.args.interval, workloads)
        self.running.append(collector)
        collector.start()
        try:
            ready = collector.wait_ready(max(300.0, 12 * self.args.interval))
            scrape_ms = collector.scrapes(self.args.scrapes)
            memory = tree_memory(collector.pid)
        finally:
            collector.stop()
            self.running.remove(collector)
        return {
            "workloads": len(workloads.containers) + len(workloads.vms),
            "ready_s": ready,
            "scrape_ms": scrape_ms,
            "p50_ms": percentile(scrape_ms, 50),
            "p99_ms": percentile(scrape_ms, 99),
            "rss_bytes": memory.rss,
            "pss_bytes": memory.pss,
        }

    # -- the run -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        started = datetime.now(UTC)
        load_start = loadavg()
        self.engines = engine_pids()
        progress(f"engines: {self.engines}; leftovers: removing")
        self.containers.remove_all()
        self.vms.remove_all()
        self.containers.ensure_image()
        counts = sorted({*args.counts, args.containers}) if not args.skip_scale else []
        if not counts:
            counts = [args.containers]
        setup_vms = self.vms.grow_to(args.vms)
        progress(f"{args.vms} VMs started in {setup_vms:.1f} s")
        windows: list[Window] = []
        baseline: dict[str, Any] = {"windows": [], "rate_per_s": {}}
        split: PhaseSplit | None = None
        hotspots: list[HotSpot] = []
        docker_points: list[ScalePoint] = []
        for n in counts:
            setup = self.containers.grow_to(n)
            progress(f"{n} containers ({setup:.1f} s to start the new ones)")
            time.sleep(5)  # let the engine settle after the starts
            if not args.skip_scale:
                docker_points.append(
                    self.retried(f"{n} containers", partial(self.docker_point, n, setup))
                )
            if n == args.containers:
                if not args.skip_compare:
                    windows, baseline = self.compare()
                if not args.skip_phases:
                    split = self.phases(baseline["rate_per_s"])
                    hotspots = profile_docker_pass(args.phase_passes, args.profile_top)
        scrape_largest = None
        vm_points: list[ScalePoint] = []
        if not args.skip_scale:
            scrape_largest = self.scrape_at_largest()
            for n in args.vm_counts:
                setup = self.vms.grow_to(n) if n > len(self.vms.running_names()) else 0.0
                self.vms.shrink_to(n)
                time.sleep(3)
                progress(f"{n} VMs")
                self.vm_target = n
                vm_points.append(self.retried(f"{n} VMs", partial(self.vm_point, n, setup)))
        document = {
            "machine": {**machine_basics(), "load_start": load_start, "load_end": loadavg()},
            "densityd_version": __version__,
            "started": started.isoformat(),
            "args": {k: str(v) for k, v in vars(args).items()},
            "engines": self.engines,
            "measured_again_after_an_engine_restart": self.restarts,
            "baseline": baseline,
            "windows": [w.summary() for w in windows],
            "phases": split.summary() if split else None,
            "docker_pass_profile": [h.__dict__ for h in hotspots],
            "docker_scale": [{**p.__dict__, "files_ratio": p.files_ratio} for p in docker_points],
            "docker_fit": {k: v.summary() if v else None for k, v in fits(docker_points).items()},
            "vm_scale": [p.__dict__ for p in vm_points],
            "vm_fit": {k: v.summary() if v else None for k, v in fits(vm_points).items()},
            "scrape_at_largest": scrape_largest,
        }
        self.report(windows, baseline, split, docker_points, vm_points, scrape_largest)
        if hotspots:
            print_hotspots(hotspots, args.containers)
        found = targets(
            windows, split, scrape_largest, vm_points, docker_points, baseline, args.interval
        )
        document["targets"] = found
        print_targets_section(found)
        return document

    def report(
        self,
        windows: list[Window],
        baseline: dict[str, Any],
        split: PhaseSplit | None,
        docker_points: list[ScalePoint],
        vm_points: list[ScalePoint],
        scrape_largest: dict[str, Any] | None,
    ) -> None:
        basics = machine_basics()
        print(
            f"# watch_cost: densityd {__version__}, {basics['cpus']} CPUs "
            f"({basics['cpu_model']}), kernel {basics['kernel']}, load {' '.join(loadavg())}"
        )
        if windows:
            print_side_by_side(windows, baseline)
            for w in windows:
                if w.plan_s:
                    print(
                        "`densityd plan` with the daemon running: "
                        + ", ".join(f"{s:.2f} s" for s in w.plan_s)
                        + f" ({w.plan_note})"
                    )
        if split:
            print_phases(split)
        if docker_points:
            print_scale("containers", docker_points, fits(docker_points))
        if scrape_largest:
            print(
                f"\ndaemon at {scrape_largest['workloads']} workloads: scrape p50 "
                f"{scrape_largest['p50_ms']:.1f} ms, p99 {scrape_largest['p99_ms']:.1f} ms; "
                f"RSS {scrape_largest['rss_bytes'] / 1e6:.1f} MB, PSS "
                f"{scrape_largest['pss_bytes'] / 1e6:.1f} MB; ready after "
                f"{scrape_largest['ready_s']:.0f} s"
            )
        if vm_points:
            print_scale("VMs", vm_points, fits(vm_points))
            print(
                "libvirtd CPU per stats call: "
                + ", ".join(
                    f"{p.n} VMs {p.engine_cpu_per_pass_s * 1e3:.1f} ms"
                    for p in vm_points
                    if p.engine_cpu_per_pass_s is not None
                )
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bench = Bench(args)
    atexit.register(bench.cleanup)  # also on an exit run_benchmark does not see
    return run_benchmark(bench.run, args.json, bench.cleanup)


if __name__ == "__main__":
    sys.exit(main())
