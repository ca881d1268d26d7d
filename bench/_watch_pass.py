"""The watch-cost benchmark's split of a densityd pass by phase, in-process.

Helpers of ``watch_cost.py``, not a benchmark. ``densityd.daemon.run_daemon`` itself runs in
this process (on the main thread, as ``densityd run`` does; a helper thread stops it with
SIGTERM), so the pass measured is whatever the daemon of this checkout does, wired as it
wires it. Timers are put around the phases from outside, by wrapping methods at class level
before the daemon builds anything:

- ``Sampler.run_pass``: the whole pass (wall), and the engines' CPU read at each pass start;
- each source's ``sample`` (``DockerSource``, ``LibvirtSource``, ``HostSource``): wall and
  the CPU of the thread running it;
- inside a source's sample, on its thread: ``requests.Session.send`` (the Engine's HTTP
  calls: "discovery"), ``CgroupReader.read``/``read_signals``/``read_limits`` (cgroup reads),
  ``virConnect.getAllDomainStats``/``domainListGetStats`` (libvirt's bulk stats call);
- every listener of ``SnapshotHolder.subscribe`` (the history write, the live plan, the
  ``/metrics`` render), named from its qualified name.

What an Engine event thread or a libvirt event loop does off the pass is not in any phase;
it is in the process's CPU, reported beside the phases' sum. The cgroup files a steady Docker
pass opens are recorded with an audit hook (the ``open`` event, on the Docker sample's
thread), and then read alone in a plain loop, for the pass-against-files ratio.
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import requests
from _common import BenchError, free_port, scrape
from _watch_procs import EngineRestarted, engines_cpu_s, on_cpu_ns

from densityd.collect.sampler import Sampler, SnapshotHolder
from densityd.collect.sources.cgroups import CgroupReader
from densityd.collect.sources.docker import DockerSource
from densityd.collect.sources.host import HostSource
from densityd.collect.sources.libvirt import LibvirtSource
from densityd.config import load_settings

# Listener qualified names -> the phase they are (anything else keeps its own name).
LISTENER_PHASES = {
    "HistoryRecorder.record": "history write",
    "LivePlan.update": "live plan",
    "Exposition.refresh": "render",  # the /metrics exposition, once per pass
}


class PhaseClock:
    """Wall and thread-CPU time per phase per pass, with a per-thread stack of open phases."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.passes: list[dict[str, tuple[float, float]]] = []  # phase -> (wall s, cpu s)
        self._current: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def stack(self) -> list[str]:
        """The phases open on this thread, outermost first."""
        found: list[str] | None = getattr(self._local, "stack", None)
        if found is None:
            found = self._local.stack = []
        return found

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as ``name`` (nested under the phases open on this thread)."""
        stack = self.stack()
        full = "/".join([*stack, name]) if stack else name
        stack.append(name)
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            stack.pop()
            with self._lock:
                self._current[full][0] += wall
                self._current[full][1] += cpu

    def end_pass(self) -> None:
        """Close the current pass's totals."""
        with self._lock:
            self.passes.append({k: (v[0], v[1]) for k, v in self._current.items()})
            self._current.clear()

    def wrap(
        self, name: str, function: Callable[..., Any], *, only_in: tuple[str, ...] = ()
    ) -> Any:
        """``function`` timed as ``name``; with ``only_in``, only when called inside one of
        those phases on the same thread (else untimed: an event thread's, a job's)."""
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = clock.stack()
            if (only_in and not set(only_in) & set(stack)) or (stack and stack[-1] == name):
                return function(*args, **kwargs)  # not on a pass, or nested in itself
            with clock.phase(name):
                return function(*args, **kwargs)

        timed.__qualname__ = getattr(function, "__qualname__", name)
        return timed


@contextmanager
def patched(owner: Any, attribute: str, replacement: Any) -> Iterator[None]:
    """Replace ``owner.attribute`` inside the block."""
    original = getattr(owner, attribute)
    setattr(owner, attribute, replacement)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


class FileRecorder:
    """Paths under the cgroup root opened by the Docker sample's thread while recording."""

    def __init__(self, clock: PhaseClock, root: str) -> None:
        self._clock = clock
        self._root = root
        self.recording = False
        self.paths: list[str] = []
        sys.addaudithook(self._hook)  # cannot be removed: it returns at once when not recording

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.recording or event != "open" or "docker" not in self._clock.stack():
            return
        path = args[0]
        if isinstance(path, str) and path.startswith(self._root):
            self.paths.append(path)


def read_files_alone(paths: list[str], repeat: int) -> list[float]:
    """Seconds to open and read each of ``paths`` once (unbuffered, bytes), per round."""
    rounds: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        for path in paths:
            try:
                with open(path, "rb", buffering=0) as handle:
                    handle.read()
            except OSError:
                continue
        rounds.append(time.perf_counter() - start)
    return rounds


@dataclass
class PhaseSplit:
    """Steady passes of the in-process daemon, split by phase."""

    interval: float
    passes: int  # steady passes measured (after the warm-up ones)
    warmup_passes: int
    phases_wall_ms: dict[str, float]  # median per steady pass
    phases_cpu_ms: dict[str, float]
    pass_wall_ms: float  # median of Sampler.run_pass
    process_cpu_per_pass_ms: float  # whole process (every thread), steady passes
    engine_cpu_per_pass_ms: dict[str, float]  # minus the idle baseline's rate
    engine_window_s: float
    cgroup_files: int
    cgroup_files_alone_ms: float  # median of a plain loop over the same files
    docker_pass_ms: float
    scrape_ms: list[float] = field(default_factory=list)
    # Median per pass of the engines' on-CPU time while each source sampled (schedstat):
    # docker -> dockerd + containerd, libvirt -> libvirtd. An upper bound of what densityd's
    # calls cost them, unlike a window's delta hardly disturbed by other work on the engine.
    engine_during_sample_ms: dict[str, float] = field(default_factory=dict)

    @property
    def files_ratio(self) -> float:
        return self.docker_pass_ms / self.cgroup_files_alone_ms

    def summary(self) -> dict[str, Any]:
        """For ``--json``."""
        return {**self.__dict__, "files_ratio": self.files_ratio}


def _median_phases(passes: list[dict[str, tuple[float, float]]]) -> tuple[dict[str, float], ...]:
    names = sorted({name for one in passes for name in one})
    wall = {n: statistics.median(p.get(n, (0.0, 0.0))[0] for p in passes) * 1e3 for n in names}
    cpu = {n: statistics.median(p.get(n, (0.0, 0.0))[1] for p in passes) * 1e3 for n in names}
    return wall, cpu


def run_phase_split(
    *,
    state_dir: Path,
    interval: float,
    passes: int,
    warmup: int,
    engines: dict[str, int],
    idle_rate: dict[str, float],
    file_repeat: int,
    scrapes: int,
) -> PhaseSplit:
    """Run the daemon in this process for ``warmup + passes`` passes at ``interval``; split."""
    for name in [k for k in os.environ if k.startswith("DENSITYD_")]:
        del os.environ[name]  # only the flags below configure it
    from densityd.daemon import run_daemon

    port = free_port()
    settings = load_settings(
        {
            "listen_address": f"127.0.0.1:{port}",
            "interval": interval,
            "state_dir": str(state_dir),
            "log_level": "WARNING",
        }
    )
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    clock = PhaseClock()
    files = FileRecorder(clock, str(settings.cgroup_root))
    pass_starts: list[tuple[float, float, dict[str, float]]] = []  # (mono, process cpu, engines)
    done = threading.Event()
    original_run_pass = Sampler.run_pass
    original_subscribe = SnapshotHolder.subscribe

    restarted: list[str] = []
    # The engines' CPU while a source's sample ran: its own calls, plus whatever else the
    # engine did in those milliseconds (other tests' calls), per pass.
    during: dict[str, list[int]] = {"docker": [], "libvirt": []}
    behind = {
        "docker": {k: v for k, v in engines.items() if k in ("dockerd", "containerd")},
        "libvirt": {k: v for k, v in engines.items() if k == "libvirtd"},
    }

    def engine_watched(source: str, sample: Callable[..., Any]) -> Callable[..., Any]:
        def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                before = on_cpu_ns(behind[source])
            except EngineRestarted as exc:
                restarted.append(str(exc))
                return sample(*args, **kwargs)
            try:
                return sample(*args, **kwargs)
            finally:
                try:
                    during[source].append(on_cpu_ns(behind[source]) - before)
                except EngineRestarted as exc:
                    restarted.append(str(exc))

        return watched

    def run_pass(self: Sampler) -> Any:
        try:
            engine_cpu = engines_cpu_s(engines)
        except EngineRestarted as exc:
            restarted.append(str(exc))
            engine_cpu = {}
        pass_starts.append((time.monotonic(), time.process_time(), engine_cpu))
        # Record the files of one steady pass: the one after the warm-up.
        files.recording = len(pass_starts) == warmup + 1
        try:
            with clock.phase("pass"):
                return original_run_pass(self)
        finally:
            files.recording = False
            clock.end_pass()
            if len(pass_starts) > warmup + passes:
                done.set()

    def subscribe(self: SnapshotHolder, listener: Callable[[Any], None]) -> None:
        qualname = getattr(listener, "__qualname__", repr(listener))
        original_subscribe(self, clock.wrap(LISTENER_PHASES.get(qualname, qualname), listener))

    scrape_ms: list[float] = []

    def stopper() -> None:
        done.wait(timeout=(warmup + passes + 2) * interval + 120)
        try:
            for _ in range(scrapes):
                elapsed, _body = scrape(port)
                scrape_ms.append(elapsed * 1e3)
        except (OSError, BenchError):
            pass
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    sources = ("docker", "libvirt")
    patches: list[tuple[Any, str, Any]] = [
        (Sampler, "run_pass", run_pass),
        (SnapshotHolder, "subscribe", subscribe),
        (
            DockerSource,
            "sample",
            engine_watched("docker", clock.wrap("docker", DockerSource.sample)),
        ),
        (
            LibvirtSource,
            "sample",
            engine_watched("libvirt", clock.wrap("libvirt", LibvirtSource.sample)),
        ),
        (HostSource, "sample", clock.wrap("host", HostSource.sample)),
        (
            requests.Session,
            "send",
            clock.wrap("engine calls", requests.Session.send, only_in=("docker",)),
        ),
    ]
    for method in ("read", "read_signals", "read_limits"):
        original = getattr(CgroupReader, method)
        patches.append(
            (CgroupReader, method, clock.wrap("cgroup reads", original, only_in=sources))
        )
    for method in ("getAllDomainStats", "domainListGetStats"):
        if hasattr(libvirt.virConnect, method):
            original = getattr(libvirt.virConnect, method)
            timed = clock.wrap("stats call", original, only_in=("libvirt",))
            patches.append((libvirt.virConnect, method, timed))
    thread = threading.Thread(target=stopper, name="bench-stopper", daemon=True)
    try:
        with _all_patched(patches):
            thread.start()
            status = run_daemon(settings)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    thread.join(timeout=5)
    if status != 0 or not done.is_set():
        raise BenchError(f"in-process daemon: status {status}, {len(pass_starts)} passes")
    if restarted:
        raise EngineRestarted(restarted[0])
    steady = clock.passes[warmup : warmup + passes]
    wall, cpu = _median_phases(steady)
    first, last = pass_starts[warmup], pass_starts[warmup + passes]
    window = last[0] - first[0]
    engine_cpu = {
        name: ((last[2][name] - first[2][name]) - idle_rate.get(name, 0.0) * window) / passes * 1e3
        for name in last[2]
    }
    alone = read_files_alone(files.paths, file_repeat)
    during_ms = {
        source: statistics.median(values[warmup : warmup + passes]) / 1e6
        for source, values in during.items()
        if len(values) >= warmup + passes
    }
    return PhaseSplit(
        interval=interval,
        passes=passes,
        warmup_passes=warmup,
        phases_wall_ms=wall,
        phases_cpu_ms=cpu,
        pass_wall_ms=wall.get("pass", 0.0),
        process_cpu_per_pass_ms=(last[1] - first[1]) / passes * 1e3,
        engine_cpu_per_pass_ms=engine_cpu,
        engine_window_s=window,
        cgroup_files=len(files.paths),
        cgroup_files_alone_ms=statistics.median(alone) * 1e3 if alone else float("nan"),
        docker_pass_ms=wall.get("docker", float("nan")),
        scrape_ms=scrape_ms,
        engine_during_sample_ms=during_ms,
    )


@contextmanager
def _all_patched(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    if not patches:
        yield
        return
    owner, attribute, replacement = patches[0]
    with patched(owner, attribute, replacement), _all_patched(patches[1:]):
        yield


@dataclass(frozen=True)
class HotSpot:
    """One function of a profiled steady Docker pass, per pass."""

    function: str
    calls: float
    own_ms: float  # tottime: in the function itself
    cumulative_ms: float  # cumtime: with what it calls


def profile_docker_pass(repeat: int, top: int) -> list[HotSpot]:
    """cProfile over ``repeat`` steady passes of a fresh ``DockerSource`` (after its cold
    pass), on this thread: the ``top`` functions by own time, per pass.

    The profiler's overhead inflates Python-heavy code against system calls; read it for
    what dominates, and the phase split for the times.
    """
    import cProfile
    import pstats

    source = DockerSource()
    try:
        source.probe()
        source.sample()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(repeat):
            source.sample()
        profiler.disable()
    finally:
        source.close()
    stats = pstats.Stats(profiler)
    rows: list[HotSpot] = []
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, name), (_prim, calls, own, cumulative, _callers) in table.items():
        short = "/".join(Path(filename).parts[-2:]) if filename != "~" else ""
        label = f"{short}:{line}({name})" if short else name
        rows.append(HotSpot(label, calls / repeat, own / repeat * 1e3, cumulative / repeat * 1e3))
    rows.sort(key=lambda r: r.own_ms, reverse=True)
    return rows[:top]


def pass_against_files(repeat: int, root: str = "/sys/fs/cgroup") -> tuple[float, float, int]:
    """A fresh ``DockerSource``'s steady pass against reading the cgroup files it opens alone,
    interleaved (pass, files, pass, files ...) so that both see the same load; the medians
    (seconds) and how many files."""
    source = DockerSource()
    paths: list[str] = []
    ident = threading.get_ident()
    recording = [False]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not recording[0] or event != "open" or threading.get_ident() != ident:
            return
        if isinstance(args[0], str) and args[0].startswith(root):
            paths.append(args[0])

    sys.addaudithook(hook)  # returns at once when not recording
    passes: list[float] = []
    alone: list[float] = []
    try:
        source.probe()
        source.sample()  # the cold one
        recording[0] = True
        source.sample()
        recording[0] = False
        for _ in range(repeat):
            start = time.perf_counter()
            source.sample()
            passes.append(time.perf_counter() - start)
            alone += read_files_alone(paths, 1)
    finally:
        recording[0] = False
        source.close()
    return statistics.median(passes), statistics.median(alone), len(paths)
