"""Benchmark densityd's libvirt side against Debian's ``prometheus-libvirt-exporter``.

With N running VMs (``--vms``, default 8) it measures, in one run and over the same VMs:

- densityd's libvirt pass: ``LibvirtSource(uri).sample()`` timed in-process. Connecting is
  timed apart (once per daemon lifetime); the first (cold) pass reads every domain's XML; the
  steady pass is the median of ``--repeat`` passes after it. For scale, the bare
  ``getAllDomainStats`` call that the pass is built on is timed too, on a connection of its own
  right after each steady pass, with libvirtd's own CPU time; then each stats group alone
  (where libvirtd's time goes).
  The script fails unless a pass saw every bench VM running with CPU and memory.
- ``/metrics`` of the running daemon (``python -m densityd run --interval 5 --no-docker``),
  which serves its latest snapshot, against ``prometheus-libvirt-exporter``, which asks
  libvirtd at every scrape: both run side by side on loopback ports against the same URI;
  once both list every bench VM, each is scraped ``--scrapes`` times, alternately, with a
  fresh connection each and no gzip (p50/p99/max latency, response size), and then the
  resident set (``VmRSS``) of both processes is read.
- a frozen libvirtd: libvirtd (PID from ``/run/libvirtd.pid``) is stopped with SIGSTOP for
  ``--freeze`` seconds (10) while both are scraped concurrently with a 5 s client timeout
  (densityd every 20 ms at most, the exporter back to back); densityd should keep answering
  from its snapshot, the exporter should hang. A control window of the same length and the
  same scraping, with libvirtd running, comes just before it. libvirtd is always resumed: in a
  ``finally`` block, and by a watchdog process that sends SIGCONT on its own should this script
  die meanwhile. Then how long each takes to answer in full again is measured.
- densityd's memory with ``--no-libvirt --no-docker``, against its memory with libvirt on (RSS,
  split into anonymous and file-backed, and PSS): what loading libvirt costs the daemon; and a
  fresh interpreter's RSS step by step (densityd's imports, ``import libvirt``, a connection).

The targets (densityd's scrape latency at or below the exporter's, and unaffected by a frozen
libvirtd; the libvirt pass over 8 VMs under 50 ms) are measured and reported, never asserted.

Run it as root on a host with a local libvirtd and QEMU (DESIGN §4)::

    /opt/densityd-venv/bin/python bench/libvirt_scrape.py --vms 8 --json /tmp/libvirt.json

The VMs are named ``densityd-bench-<i>``: TCG (``<domain type='qemu'>``), 128 MiB, 1 vCPU, a
virtio balloon, no graphics, and a 64 MiB raw disk made with ``truncate`` in a fresh 0755
directory under /tmp (QEMU runs as libvirt-qemu and must traverse it). With no OS they idle in
the BIOS as real running domains with real stats. Only domains named
``densityd-bench-<digits>`` are ever destroyed or undefined (other domains on the host are left
alone, though densityd and the exporter see them too): at the end, also on Ctrl-C or SIGTERM,
unless ``--keep``. Bench VMs still running from an earlier ``--keep`` run are reused (defining a
domain took about 40 s here, libvirtd re-probing QEMU each time); any other bench domain is
removed first; ``--remove`` removes them all and exits. Other options: ``--repeat`` (steady
passes, 20), ``--freeze`` (0 skips it), ``--exporter`` (the peer's executable). Check with
``ruff check bench`` and ``mypy --strict bench/libvirt_scrape.py``.
"""

from __future__ import annotations

import argparse
import ast
import operator
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial, reduce
from pathlib import Path
from typing import Any

import libvirt
from _common import (
    BenchError,
    LatencySummary,
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

from densityd import __version__ as densityd_version
from densityd.collect.sources.libvirt import LibvirtSource

NAME_PREFIX = "densityd-bench-"
BENCH_NAME = re.compile(r"^densityd-bench-\d+$")  # the only domains this script ever removes
DISK_DIR_PREFIX = "densityd-bench-vms-"
VM_MEMORY_MIB = 128
VM_DISK_BYTES = 64 * 2**20
LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")
EXPORTER = "/usr/bin/prometheus-libvirt-exporter"
FREEZE_CLIENT_TIMEOUT_S = 5.0
FREEZE_MAX_S = 20.0  # other people's tests use this libvirtd too: keep the freeze short
FREEZE_SCRAPE_PERIOD_S = 0.02  # densityd is scraped at most 50 times a second while frozen
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
# Targets from the issue; measured and reported, never asserted.
TARGET_PASS_S = 0.050
TARGET_PASS_VMS = 8
FROZEN_SLOWDOWN_ALLOWED = 2.0  # "unaffected": frozen p99 at most 2x the control's (or +1 ms)
RSS_TARGET_BYTES = 60 * 10**6  # the separate "< 60 MB with 200 containers" target, for context

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$", re.MULTILINE)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_DENSITYD_PASSED = re.compile(r"^densityd_last_pass_timestamp_seconds ", re.MULTILINE)


def samples(text: str, metric: str) -> Iterator[tuple[dict[str, str], str]]:
    """(labels, value) of every sample of ``metric`` in a text exposition.

    Whatever the label order: prometheus_client sorts labels by name, other exporters need not.
    """
    for name, labels, value in _SAMPLE.findall(text):
        if name == metric:
            yield dict(_LABEL.findall(labels)), value


def _densityd_source(name: str, metric: str, text: str) -> float | None:
    for labels, value in samples(text, metric):
        if labels.get("source") == name:
            return float(value)
    return None


def densityd_vms(text: str) -> set[str]:
    """Names of the VMs whose memory densityd's ``/metrics`` lists (running ones)."""
    return {
        labels["name"]
        for labels, _value in samples(text, "densityd_workload_memory_bytes")
        if labels.get("kind") == "vm" and "name" in labels
    }


def exporter_vms(text: str) -> set[str]:
    """Names of the domains the exporter's ``/metrics`` lists as running (state code 1)."""
    return {
        labels["domain"]
        for labels, value in samples(text, "libvirt_domain_state_code")
        if float(value) == 1 and "domain" in labels
    }


def sample_count(text: str) -> int:
    """Samples in a text exposition (lines that are neither blank nor comments)."""
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


# -- the bench VMs -----------------------------------------------------------------------------


def domain_xml(name: str, disk: Path) -> str:
    """A TCG domain with no OS: it idles in the BIOS as a real running domain."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{VM_MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


def bench_name(index: int) -> str:
    """The name of the index-th benchmark VM (1-based)."""
    return f"{NAME_PREFIX}{index}"


@contextmanager
def read_write(uri: str) -> Iterator[Any]:
    """A read-write libvirt connection for defining and removing the bench VMs."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise BenchError(f"cannot connect to {uri}: {exc.get_error_message()}") from exc
    try:
        yield conn
    finally:
        with suppress(libvirt.libvirtError):
            conn.close()


def _disk_files(domain: Any) -> list[Path]:
    root = ET.fromstring(domain.XMLDesc(0))
    return [
        Path(source.attrib["file"])
        for source in root.iterfind("./devices/disk/source")
        if "file" in source.attrib
    ]


def _is_our_disk_dir(directory: Path) -> bool:
    return directory.parent == Path(tempfile.gettempdir()) and directory.name.startswith(
        DISK_DIR_PREFIX
    )


def _remove(domain: Any) -> None:
    """Destroy and undefine one bench domain; delete its disks if they live in our directory."""
    disks = _disk_files(domain)
    try:
        persistent = domain.isPersistent()  # a transient domain is gone once destroyed
        if domain.isActive():
            domain.destroy()
        if persistent:
            domain.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise BenchError(f"removing {domain.name()}: {exc.get_error_message()}") from exc
    for disk in disks:
        if _is_our_disk_dir(disk.parent):
            disk.unlink(missing_ok=True)
            with suppress(OSError):  # not empty: someone else's file there; leave it
                disk.parent.rmdir()


def remove_bench_vms(uri: str) -> int:
    """Destroy and undefine every ``densityd-bench-<i>`` domain (and no other); how many."""
    with read_write(uri) as conn:
        ours = [d for d in conn.listAllDomains() if BENCH_NAME.match(d.name())]
        for domain in ours:
            _remove(domain)
    return len(ours)


@dataclass
class VmSetup:
    """How the bench VMs came to run."""

    names: list[str]
    reused: list[str]  # already running (left by an earlier --keep run)
    removed: list[str]  # bench VMs beyond --vms, or not running, removed first
    define_s: list[float]  # per VM defined by this run
    start_s: list[float]


def start_bench_vms(uri: str, count: int, disk_dir: Path) -> VmSetup:
    """Make ``densityd-bench-1`` .. ``-<count>`` run, and no other bench VM.

    Running ones left by an earlier ``--keep`` run are reused (defining a domain can take
    half a minute on a host where libvirtd re-probes QEMU at every definition); the others
    are defined with a disk in ``disk_dir`` and started.
    """
    names = [bench_name(i) for i in range(1, count + 1)]
    setup = VmSetup(names, [], [], [], [])
    with read_write(uri) as conn:
        for domain in conn.listAllDomains():
            name = domain.name()
            if not BENCH_NAME.match(name):
                continue
            if name in names and domain.isActive():
                setup.reused.append(name)
            else:
                _remove(domain)
                setup.removed.append(name)
        for name in names:
            if name in setup.reused:
                continue
            disk = disk_dir / f"{name}.raw"
            with disk.open("wb") as image:
                image.truncate(VM_DISK_BYTES)
            try:
                start = time.perf_counter()
                domain = conn.defineXML(domain_xml(name, disk))
                setup.define_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                domain.create()
                setup.start_s.append(time.perf_counter() - start)
            except libvirt.libvirtError as exc:
                raise BenchError(f"starting {name}: {exc.get_error_message()}") from exc
            print(
                f"  {name}: defined in {setup.define_s[-1]:.1f} s, "
                f"started in {setup.start_s[-1]:.1f} s"
            )
        running = {
            d.name()
            for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            if BENCH_NAME.match(d.name())
        }
    if running != set(names):
        raise BenchError(f"bench VMs running: {sorted(running)}, wanted {names}")
    return setup


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
    if _is_local(uri):
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


# -- the two exporters as processes ------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """A process's memory from ``/proc/PID/status``, in bytes."""

    rss: int  # VmRSS
    peak: int  # VmHWM
    anon: int  # RssAnon: its own heap and stacks
    file: int  # RssFile: mapped files (interpreter, shared libraries), shareable
    pss: int  # Pss from smaps_rollup: shared pages divided among the processes mapping them

    @classmethod
    def of(cls, pid: int) -> Memory:
        """Read it now."""
        keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
        pss = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
        rss, peak, anon, file = (proc_status_bytes(pid, key) for key in keys)
        return cls(rss=rss, peak=peak, anon=anon, file=file, pss=pss)


@dataclass
class Exporter:
    """One exporter process on a loopback port, and how to tell which VMs it lists."""

    name: str
    command: list[str]
    port: int
    log_path: Path
    listed: Callable[[str], set[str]] = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start it, logging to its log file; only the command line configures densityd."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=clean_env()
            )

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"{self.name} is not running")
        return self.process.pid

    def alive(self) -> None:
        """Fail if the process has exited."""
        if self.process is None or self.process.poll() is not None:
            code = self.process.returncode if self.process else None
            raise BenchError(f"{self.name} exited with status {code}")

    def wait_until_listed(self, names: set[str], timeout: float) -> float:
        """Poll /metrics until it lists every name; the seconds waited."""
        start = time.perf_counter()
        listed: set[str] = set()
        while time.perf_counter() - start < timeout:
            self.alive()
            try:
                _elapsed, body = scrape(self.port)
            except (OSError, BenchError):
                time.sleep(0.2)
                continue
            listed = self.listed(body.decode())
            if names <= listed:
                return time.perf_counter() - start
            time.sleep(0.2)
        raise BenchError(
            f"after {timeout:g}s {self.name} listed {len(names & listed)} of {len(names)} bench VMs"
        )

    def memory(self) -> Memory:
        """Its memory now."""
        return Memory.of(self.pid)

    def stop(self) -> tuple[int | None, float]:
        """SIGTERM and wait (at most 15 s); (exit status or None if it had to be killed, s)."""
        if self.process is None:
            return None, 0.0
        start = time.perf_counter()
        code: int | None = self.process.poll()
        if code is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                code = None
        took = time.perf_counter() - start
        stop_child(self.process)
        return code, took

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log."""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n  ".join(tail)


def densityd_exporter(log_dir: Path, name: str, *flags: str) -> Exporter:
    """``python -m densityd run`` on a free loopback port with ``--interval 5`` and ``flags``."""
    port = free_port()
    command = [sys.executable, "-m", "densityd", "run", "--listen-address", f"127.0.0.1:{port}"]
    command += ["--interval", "5", *flags]
    return Exporter(name, command, port, log_dir / f"{name}.log", densityd_vms)


def libvirt_exporter(log_dir: Path, executable: str, uri: str) -> Exporter:
    """Debian's ``prometheus-libvirt-exporter`` on a free loopback port against ``uri``."""
    port = free_port()
    command = [executable, f"--web.listen-address=127.0.0.1:{port}", f"--libvirt.uri={uri}"]
    return Exporter(
        "prometheus-libvirt-exporter", command, port, log_dir / "exporter.log", exporter_vms
    )


@dataclass
class ScrapeSeries(LatencySummary):
    """``--scrapes`` scrapes of one exporter: latencies, last response, RSS afterwards."""

    name: str
    command: list[str]
    ready_s: float
    latencies_ms: list[float] = field(repr=False)
    response_bytes: int
    samples: int
    memory: Memory


def scrape_alternately(
    exporters: Sequence[Exporter], ready: Sequence[float], names: set[str], scrapes: int
) -> tuple[list[ScrapeSeries], list[str]]:
    """Scrape each exporter ``scrapes`` times, one after the other; series and last bodies."""
    latencies: list[list[float]] = [[] for _ in exporters]
    bodies = [b""] * len(exporters)
    for _ in range(scrapes):
        for index, exporter in enumerate(exporters):
            try:
                elapsed, bodies[index] = scrape(exporter.port)
            except OSError as exc:
                raise BenchError(f"scraping {exporter.name}: {exc}") from exc
            latencies[index].append(elapsed * 1000)
    series: list[ScrapeSeries] = []
    texts: list[str] = []
    for exporter, waited, times, body in zip(exporters, ready, latencies, bodies, strict=True):
        text = body.decode()
        if not names <= exporter.listed(text):
            raise BenchError(f"{exporter.name}'s last scrape lost bench VMs")
        series.append(
            ScrapeSeries(
                name=exporter.name,
                command=[Path(exporter.command[0]).name, *exporter.command[1:]],
                ready_s=waited,
                latencies_ms=times,
                response_bytes=len(body),
                samples=sample_count(text),
                memory=exporter.memory(),
            )
        )
        texts.append(text)
    return series, texts


# -- a frozen libvirtd -------------------------------------------------------------------------


@dataclass
class Attempt:
    """One scrape during a window."""

    started_s: float  # since the window began (the SIGSTOP, when freezing)
    elapsed_ms: float
    outcome: str  # "ok", "timeout" or "error: ..."
    listed_all: bool | None  # whether it listed every bench VM (None: no answer)
    ended_after_window: bool  # answered only after the window closed (libvirtd resumed)


@dataclass
class WindowSide:
    """One exporter's scrapes during a window."""

    name: str
    attempts: list[Attempt] = field(default_factory=list)

    def _ok(self) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome == "ok"]

    @property
    def answered(self) -> int:
        return len(self._ok())

    @property
    def answered_in_window(self) -> int:
        return sum(1 for a in self._ok() if not a.ended_after_window)

    @property
    def timeouts(self) -> int:
        return sum(1 for a in self.attempts if a.outcome == "timeout")

    @property
    def errors(self) -> int:
        return sum(1 for a in self.attempts if a.outcome.startswith("error"))

    @property
    def lost_vms(self) -> int:
        return sum(1 for a in self.attempts if a.listed_all is False)

    def latency_ms(self, pct: float) -> float | None:
        """Percentile over every attempt (a timed-out one counts as its time to time out)."""
        values = [a.elapsed_ms for a in self.attempts]
        return percentile(values, pct) if values else None

    def summary(self) -> dict[str, Any]:
        """The attempts plus the counts and percentiles, for ``--json``."""
        return {
            **asdict(self),
            "answered": self.answered,
            "answered_in_window": self.answered_in_window,
            "timeouts": self.timeouts,
            "errors": self.errors,
            "lost_vms": self.lost_vms,
            "p50_ms": self.latency_ms(50),
            "p99_ms": self.latency_ms(99),
            "max_ms": self.latency_ms(100),
        }


@dataclass
class Window:
    """Both exporters scraped concurrently, the same way, for a few seconds."""

    seconds: float
    densityd: WindowSide
    exporter: WindowSide
    densityd_libvirt_up: list[float]  # densityd_source_up{source="libvirt"} values seen, in order

    def summary(self) -> dict[str, Any]:
        """Everything, for ``--json``."""
        return {
            **asdict(self),
            "densityd": self.densityd.summary(),
            "exporter": self.exporter.summary(),
        }


@dataclass
class FreezeResult:
    """libvirtd stopped for a while, against a control window just before it."""

    libvirtd_pid: int
    client_timeout_s: float
    control: Window  # the same scraping with libvirtd running
    frozen: Window
    densityd_libvirt_errors_before: float | None
    densityd_libvirt_errors_after: float | None
    exporter_recovered_s: float | None  # from SIGCONT to a full answer
    densityd_recovered_s: float | None  # from SIGCONT to a libvirt pass succeeding again
    memory_after: dict[str, Memory]

    def summary(self) -> dict[str, Any]:
        """Everything, for ``--json``."""
        return {**asdict(self), "control": self.control.summary(), "frozen": self.frozen.summary()}


def libvirtd_pid() -> int:
    """libvirtd's PID from its pidfile, checked to be a live, running libvirtd."""
    try:
        pid = int(LIBVIRTD_PIDFILE.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError) as exc:
        raise BenchError(f"no live libvirtd behind {LIBVIRTD_PIDFILE}: {exc}") from exc
    if comm != "libvirtd":
        raise BenchError(f"PID {pid} from {LIBVIRTD_PIDFILE} is {comm!r}, not libvirtd")
    if process_state(pid) == "T":
        raise BenchError(f"libvirtd (PID {pid}) is already stopped; not touching it")
    return pid


def _stat_fields(pid: int) -> list[str]:
    """``/proc/PID/stat`` from the state on (field 3), split."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def process_state(pid: int) -> str:
    """The one-letter state of a process (R, S, D, T, ...)."""
    return _stat_fields(pid)[0]


def process_cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far, in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def stopped(pid: int, seconds: float) -> Iterator[None]:
    """Keep ``pid`` stopped (SIGSTOP) inside the block; ALWAYS SIGCONT it on the way out.

    Should this script die inside the block, a watchdog process of its own session sends the
    SIGCONT anyway a few seconds after ``seconds``.
    """
    watchdog: subprocess.Popen[bytes] | None = None
    try:
        watchdog = subprocess.Popen(
            ["sh", "-c", f"sleep {seconds + 5:g}; kill -CONT {pid}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives a Ctrl-C sent to this script's process group
        )
        os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)  # first thing, whatever happened
        if watchdog is not None:
            with suppress(ProcessLookupError):  # our own child's group: the sh and its sleep
                os.killpg(watchdog.pid, signal.SIGKILL)
            watchdog.wait()


def _scrape_loop(
    exporter: Exporter,
    names: set[str],
    side: WindowSide,
    began: float,
    stop: threading.Event,
    closed: threading.Event,
    period: float,
    on_body: Callable[[str], None] = lambda _text: None,
) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        listed_all: bool | None = None
        try:
            _elapsed, body = scrape(exporter.port, timeout=FREEZE_CLIENT_TIMEOUT_S)
        except TimeoutError:
            outcome = "timeout"
        except (OSError, BenchError) as exc:
            outcome = f"error: {exc}"
        else:
            outcome = "ok"
            text = body.decode()
            listed_all = names <= exporter.listed(text)
            on_body(text)
        ended = time.perf_counter()
        side.attempts.append(
            Attempt(
                started_s=started - began,
                elapsed_ms=(ended - started) * 1000,
                outcome=outcome,
                listed_all=listed_all,
                ended_after_window=closed.is_set(),
            )
        )
        stop.wait(max(0.0, period - (ended - started)))


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    """Call ``check`` every 0.1 s (failures count as no) until it says yes or time is up."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        with suppress(OSError, BenchError):
            if check():
                return True
        time.sleep(0.1)
    return False


def scrape_window(
    densityd: Exporter,
    exporter: Exporter,
    names: set[str],
    seconds: float,
    hold: AbstractContextManager[None],
    after: Callable[[], None] = lambda: None,
) -> Window:
    """Scrape both concurrently for ``seconds`` inside ``hold``; call ``after`` once it is left.

    densityd is scraped every 20 ms at most, the exporter back to back, each with a 5 s client
    timeout; scrapes still in flight when the window closes are waited for after ``after``.
    """
    result = Window(seconds, WindowSide(densityd.name), WindowSide(exporter.name), [])

    def note_up(text: str) -> None:
        value = _densityd_source("libvirt", "densityd_source_up", text)
        ups = result.densityd_libvirt_up
        if value is not None and (not ups or ups[-1] != value):
            ups.append(value)

    stop, closed = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    try:
        with hold:
            began = time.perf_counter()
            threads = [
                threading.Thread(
                    target=_scrape_loop,
                    args=(densityd, names, result.densityd, began, stop, closed),
                    kwargs={"period": FREEZE_SCRAPE_PERIOD_S, "on_body": note_up},
                    daemon=True,
                ),
                threading.Thread(
                    target=_scrape_loop,
                    args=(exporter, names, result.exporter, began, stop, closed, 0.0),
                    daemon=True,
                ),
            ]
            for thread in threads:
                thread.start()
            stop.wait(seconds)
            result.seconds = time.perf_counter() - began
    finally:
        closed.set()
        stop.set()
    after()
    for thread in threads:
        thread.join(FREEZE_CLIENT_TIMEOUT_S + 5)
    return result


def freeze_libvirtd(
    seconds: float, densityd: Exporter, exporter: Exporter, names: set[str]
) -> FreezeResult:
    """A control window, then libvirtd stopped for ``seconds`` while scraping both the same way.

    Afterwards, how long each exporter took to answer in full again.
    """
    errors_before = _densityd_source(
        "libvirt", "densityd_source_errors_total", scrape(densityd.port)[1].decode()
    )
    print(f"  control: scraping both for {seconds:g} s with libvirtd running")
    control = scrape_window(densityd, exporter, names, seconds, nullcontext())
    pid = libvirtd_pid()
    recovered: dict[str, float | None] = {"exporter": None, "densityd": None}

    def recovery() -> None:
        resumed_at = time.perf_counter()
        resume_wall = time.time()
        print(f"  libvirtd (PID {pid}) resumed; state now {process_state(pid)}")

        def exporter_full() -> bool:
            return names <= exporter.listed(scrape(exporter.port, 10)[1].decode())

        def densityd_fresh() -> bool:
            text = scrape(densityd.port)[1].decode()
            when = _densityd_source(
                "libvirt", "densityd_source_last_success_timestamp_seconds", text
            )
            up = _densityd_source("libvirt", "densityd_source_up", text)
            return up == 1 and when is not None and when > resume_wall

        # Timed from the SIGCONT; the scrape loops' last attempts may still be in flight.
        if _wait_for(exporter_full, 60):
            recovered["exporter"] = time.perf_counter() - resumed_at
        if _wait_for(densityd_fresh, 60):
            recovered["densityd"] = time.perf_counter() - resumed_at

    print(f"  stopping libvirtd (PID {pid}) for {seconds:g} s (SIGSTOP), scraping both")
    frozen = scrape_window(
        densityd, exporter, names, seconds, stopped(pid, seconds), after=recovery
    )
    return FreezeResult(
        libvirtd_pid=pid,
        client_timeout_s=FREEZE_CLIENT_TIMEOUT_S,
        control=control,
        frozen=frozen,
        densityd_libvirt_errors_before=errors_before,
        densityd_libvirt_errors_after=_densityd_source(
            "libvirt", "densityd_source_errors_total", scrape(densityd.port)[1].decode()
        ),
        exporter_recovered_s=recovered["exporter"],
        densityd_recovered_s=recovered["densityd"],
        memory_after={densityd.name: densityd.memory(), exporter.name: exporter.memory()},
    )


# -- densityd without libvirt, for its RSS -----------------------------------------------------


@dataclass
class BaselineRss:
    """densityd with ``--no-libvirt --no-docker``, scraped the same number of times."""

    command: list[str]
    memory: Memory


def baseline_rss(log_dir: Path, scrapes: int) -> BaselineRss:
    """Start densityd without libvirt and Docker, wait for a pass, scrape, read its RSS."""
    daemon = densityd_exporter(log_dir, "densityd-no-libvirt", "--no-libvirt", "--no-docker")
    daemon.start()
    try:
        if not _wait_for(
            lambda: bool(_DENSITYD_PASSED.search(scrape(daemon.port)[1].decode())), 60
        ):
            daemon.alive()
            raise BenchError("densityd --no-libvirt --no-docker never finished a pass")
        for _ in range(scrapes):
            scrape(daemon.port)
        memory = daemon.memory()
    except BenchError:
        print(f"{daemon.name} log (last lines):\n  {daemon.log_tail()}", file=sys.stderr)
        raise
    finally:
        daemon.stop()
    return BaselineRss([Path(daemon.command[0]).name, *daemon.command[1:]], memory)


_IMPORT_COST = """
import re, sys
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
steps = [("python", rss())]
import densityd.daemon, densityd.serve.exporter
steps.append(("import densityd (daemon, exporter, docker source)", rss()))
import libvirt
steps.append(("import libvirt", rss()))
from densityd.collect.sources.libvirt import LibvirtSource
source = LibvirtSource(sys.argv[1])
source.probe()
steps.append(("event loop + read-only connection", rss()))
for _ in range(5):
    source.sample()
steps.append(("5 libvirt passes", rss()))
print(steps)
"""


def import_cost(uri: str) -> list[tuple[str, int]]:
    """VmRSS of a fresh interpreter after each step towards a libvirt pass (cumulative)."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_COST, uri],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(),
        timeout=60,
    )
    if done.returncode != 0:
        raise BenchError(f"measuring import costs: {done.stderr.strip()[-500:]}")
    steps: list[tuple[str, int]] = ast.literal_eval(done.stdout.strip())
    return steps


# -- report ------------------------------------------------------------------------------------


def machine(uri: str, exporter: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    with read_write(uri) as conn:
        lib, hyper = conn.getLibVersion(), conn.getVersion()
        driver = conn.getType()
    package = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "prometheus-libvirt-exporter"],
        capture_output=True,
        text=True,
        check=False,
    )

    def dotted(version: int) -> str:
        return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"

    return {
        **machine_basics(),
        "python": platform.python_version(),
        "densityd": densityd_version,
        "libvirt": dotted(lib),
        "hypervisor": f"{driver} {dotted(hyper)}",
        "uri": uri,
        "exporter": exporter,
        "exporter_package": package.stdout.strip() or None,
        "loadavg_at_start": loadavg(),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f}"


def targets(
    timing: PassTiming | None,
    series: Sequence[ScrapeSeries],
    freeze: FreezeResult | None,
) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and met / not met (None: not measured)."""
    found: list[dict[str, Any]] = []
    if len(series) == 2:
        ours, theirs = series
        found.append(
            {
                "target": "densityd's /metrics latency at or below prometheus-libvirt-exporter's "
                "over the same VMs (p50 and p99)",
                "measured": f"p50 {ours.p50_ms:.2f} vs {theirs.p50_ms:.2f} ms, "
                f"p99 {ours.p99_ms:.2f} vs {theirs.p99_ms:.2f} ms",
                "met": ours.p50_ms <= theirs.p50_ms and ours.p99_ms <= theirs.p99_ms,
            }
        )
    if freeze is not None:
        control, side = freeze.control.densityd, freeze.frozen.densityd
        p99, control_p99 = side.latency_ms(99), control.latency_ms(99)
        bound = (
            max(FROZEN_SLOWDOWN_ALLOWED * control_p99, control_p99 + 1.0)
            if control_p99 is not None
            else 0.0
        )
        # A scrape in flight at the SIGCONT may end just after it: answered is what counts.
        unaffected = (
            bool(side.attempts)
            and side.answered == len(side.attempts)
            and side.lost_vms == 0
            and p99 is not None
            and p99 <= bound
        )
        theirs_frozen = freeze.frozen.exporter
        found.append(
            {
                "target": "densityd's /metrics unaffected by a frozen libvirtd (every scrape "
                f"answered with every VM; p99 at most {FROZEN_SLOWDOWN_ALLOWED:g}x, or 1 ms "
                "above, the same scraping with libvirtd running)",
                "measured": f"{side.answered}/{len(side.attempts)} answered, "
                f"{side.lost_vms} without every VM, p50 {_ms(side.latency_ms(50))} ms, "
                f"p99 {_ms(p99)} ms (running: p50 {_ms(control.latency_ms(50))}, "
                f"p99 {_ms(control_p99)} ms); the exporter answered "
                f"{theirs_frozen.answered_in_window}/{len(theirs_frozen.attempts)} while "
                f"frozen, {theirs_frozen.timeouts} timed out",
                "met": unaffected,
            }
        )
    if timing is not None:
        found.append(
            {
                "target": f"libvirt pass over {TARGET_PASS_VMS} VMs under "
                f"{TARGET_PASS_S * 1e3:g} ms"
                + ("" if timing.n == TARGET_PASS_VMS else f" (measured over {timing.n})"),
                "measured": f"steady median {timing.steady_median_s * 1e3:.2f} ms over "
                f"{timing.seen} domains; cold {timing.cold_s * 1e3:.1f} ms",
                "met": timing.steady_median_s < TARGET_PASS_S
                if timing.n == TARGET_PASS_VMS
                else None,
            }
        )
    return found


def print_report(
    timing: PassTiming | None,
    series: Sequence[ScrapeSeries],
    freeze: FreezeResult | None,
    baseline: BaselineRss | None,
    pass_in_daemon_s: float | None,
    imports: Sequence[tuple[str, int]] = (),
) -> None:
    """Print the pass, the comparison table, the freeze, RSS and the targets."""
    print()
    if timing is not None:
        print(f"densityd libvirt pass, in-process, {timing.n} bench VMs ({timing.seen} domains):")
        print(
            f"  connect {timing.connect_s * 1e3:.1f} ms (once), cold pass "
            f"{timing.cold_s * 1e3:.1f} ms (reads every XML), steady pass median "
            f"{timing.steady_median_s * 1e3:.2f} ms over {len(timing.steady_s)} "
            f"(min {min(timing.steady_s) * 1e3:.2f}, max {max(timing.steady_s) * 1e3:.2f}; "
            f"CPU {statistics.median(timing.steady_cpu_s) * 1e3:.2f} ms)"
        )
        groups = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in timing.group_call_s.items())
        cpu = timing.libvirtd_cpu_per_call_s
        print(
            f"  bare getAllDomainStats (same flags, own connection, after each pass): median "
            f"{timing.stats_call_median_s * 1e3:.2f} ms"
            + (f", of which libvirtd's own CPU {cpu * 1e3:.1f} ms" if cpu is not None else "")
            + f"; one group at a time (ms): {groups}"
        )
        if pass_in_daemon_s is not None:
            print(
                "  libvirt pass inside the daemon, during the scrapes: "
                f"{pass_in_daemon_s * 1e3:.1f} ms"
            )
    if len(series) == 2:
        ours, theirs = series
        print()
        print(
            f"/metrics over the same VMs: {len(ours.latencies_ms)} scrapes each, alternately, "
            "fresh connection, no gzip"
        )
        header = (
            f"{'':28} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'bytes':>7} {'samples':>7} "
            f"{'RSS MiB':>7} {'peak':>6} {'anon':>6} {'file':>6} {'PSS':>6}"
        )
        print(header)
        print("-" * len(header))
        for s in series:
            m = s.memory
            print(
                f"{s.name:28} {s.p50_ms:>7.2f} {s.p99_ms:>7.2f} {s.max_ms:>7.2f} "
                f"{s.response_bytes:>7} {s.samples:>7} {_mib(m.rss):>7} {_mib(m.peak):>6} "
                f"{_mib(m.anon):>6} {_mib(m.file):>6} {_mib(m.pss):>6}"
            )
        print(
            f"{'ratio exporter / densityd':28} {theirs.p50_ms / ours.p50_ms:>6.1f}x "
            f"{theirs.p99_ms / ours.p99_ms:>6.1f}x {theirs.max_ms / ours.max_ms:>6.1f}x "
            f"{'':>7} {'':>7} {theirs.memory.rss / ours.memory.rss:>6.2f}x"
        )
        print(
            "  (MiB after the scrapes: RSS VmRSS, peak VmHWM, anon RssAnon, file RssFile, "
            "PSS shared pages split among their users)"
        )
    if freeze is not None:
        print()
        print(
            f"libvirtd (PID {freeze.libvirtd_pid}) stopped with SIGSTOP for "
            f"{freeze.frozen.seconds:.1f} s, against a control window of "
            f"{freeze.control.seconds:.1f} s just before it with libvirtd running; both scraped "
            f"concurrently (densityd every 20 ms at most, the exporter back to back), client "
            f"timeout {freeze.client_timeout_s:g} s"
        )
        header = (
            f"{'':38} {'scrapes':>7} {'answered':>8} {'timeout':>7} {'errors':>6} "
            f"{'no VMs':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        )
        print(header)
        print("-" * len(header))
        for label, window in (("running", freeze.control), ("frozen", freeze.frozen)):
            for side in (window.densityd, window.exporter):
                answered = f"{side.answered_in_window}"
                if side.answered != side.answered_in_window:
                    answered += f"+{side.answered - side.answered_in_window}"
                print(
                    f"{side.name + ', ' + label:38} {len(side.attempts):>7} {answered:>8} "
                    f"{side.timeouts:>7} {side.errors:>6} {side.lost_vms:>6} "
                    f"{_ms(side.latency_ms(50)):>8} {_ms(side.latency_ms(99)):>8} "
                    f"{_ms(side.latency_ms(100)):>8}"
                )
        print(
            "  (answered: within the window, +answered only after it, once libvirtd was "
            "resumed; a timed-out scrape counts as its time to time out)"
        )
        ups = ", ".join(f"{v:g}" for v in freeze.frozen.densityd_libvirt_up) or "?"
        print(
            f'  densityd_source_up{{source="libvirt"}} seen while frozen: {ups}; libvirt '
            f"errors {_ms(freeze.densityd_libvirt_errors_before)} -> "
            f"{_ms(freeze.densityd_libvirt_errors_after)}"
        )
        print(
            "  after SIGCONT: the exporter answered in full after "
            + (f"{freeze.exporter_recovered_s:.2f} s" if freeze.exporter_recovered_s else "-")
            + "; densityd's next libvirt pass succeeded after "
            + (f"{freeze.densityd_recovered_s:.2f} s" if freeze.densityd_recovered_s else "-")
            + " (it samples every 5 s)"
        )
        print(
            "  RSS after the freeze: "
            + ", ".join(f"{name} {_mib(m.rss)} MiB" for name, m in freeze.memory_after.items())
        )
    if baseline is not None and series:
        without, with_libvirt = baseline.memory, series[0].memory
        print()
        print("densityd's memory, with and without libvirt (MiB):")
        print(f"  {'':36} {'RSS':>6} {'anon':>6} {'file':>6} {'PSS':>6}")
        for label, m in (
            ("--no-libvirt --no-docker", without),
            ("--no-docker (libvirt on)", with_libvirt),
        ):
            print(
                f"  {label:36} {_mib(m.rss):>6} {_mib(m.anon):>6} {_mib(m.file):>6} "
                f"{_mib(m.pss):>6}"
            )
        deltas = (
            with_libvirt.rss - without.rss,
            with_libvirt.anon - without.anon,
            with_libvirt.file - without.file,
            with_libvirt.pss - without.pss,
        )
        print(f"  {'libvirt costs':36} " + " ".join(f"{d / 2**20:>+6.1f}" for d in deltas))
        print(
            f"  (context: the separate target is daemon RSS < {RSS_TARGET_BYTES / 1e6:g} MB "
            f"with 200 containers; with libvirt on: {with_libvirt.rss / 1e6:.1f} MB here)"
        )
    if imports:
        print(
            "  a fresh interpreter, step by step (VmRSS MiB, cumulative): "
            + ", ".join(
                f"{label} {_mib(rss)}"
                + (f" ({(rss - imports[i - 1][1]) / 2**20:+.1f})" if i else "")
                for i, (label, rss) in enumerate(imports)
            )
        )
    print()
    print_targets(targets(timing, series, freeze))


# -- main --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(
        description="densityd's libvirt pass, and its /metrics against "
        "prometheus-libvirt-exporter over the same VMs (latency, RSS, a frozen libvirtd)."
    )
    parser.add_argument("--vms", type=int, default=8, help="running bench VMs (8)")
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes of each exporter (200)")
    parser.add_argument("--repeat", type=int, default=20, help="steady densityd passes (20)")
    parser.add_argument("--uri", default="qemu:///system", help="libvirt URI (qemu:///system)")
    parser.add_argument(
        "--freeze",
        type=float,
        default=10.0,
        help=f"seconds to keep libvirtd stopped (10, at most {FREEZE_MAX_S:g}; 0 skips it)",
    )
    parser.add_argument("--exporter", default=EXPORTER, help=f"the peer exporter ({EXPORTER})")
    parser.add_argument("--keep", action="store_true", help="leave the bench VMs running")
    parser.add_argument(
        "--remove", action="store_true", help="only remove the bench VMs (after --keep), and exit"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    return parser


def _is_local(uri: str) -> bool:
    scheme, _, rest = uri.partition("://")
    return "+" not in scheme and not rest.split("/", 1)[0].strip("@")


def run(args: argparse.Namespace, disk_dir: Path) -> dict[str, Any]:
    """Start the VMs, measure everything; the JSON document."""
    started = datetime.now(UTC)
    if not os.access(args.exporter, os.X_OK):
        raise BenchError(f"no {args.exporter}; apt-get install prometheus-libvirt-exporter")
    host = machine(args.uri, args.exporter)
    print(
        f"machine: {host['cpus']} cores ({host['cpu_model']}), kernel {host['kernel']}, "
        f"libvirt {host['libvirt']} ({host['hypervisor']}, {args.uri}), densityd "
        f"{host['densityd']}, prometheus-libvirt-exporter {host['exporter_package']}; "
        f"load average {' '.join(host['loadavg_at_start'])}"
    )
    setup = start_bench_vms(args.uri, args.vms, disk_dir)
    names = set(setup.names)
    print(
        f"{args.vms} bench VMs running: {len(setup.reused)} reused from an earlier --keep run, "
        f"{len(setup.define_s)} defined and started (disks in {disk_dir})"
        + (f"; removed first: {', '.join(setup.removed)}" if setup.removed else "")
    )
    time.sleep(5 if setup.define_s else 1)  # let new QEMU processes get past their start

    timing = time_libvirt_pass(args.uri, names, args.repeat)
    print(
        f"densityd libvirt pass: cold {timing.cold_s * 1e3:.1f} ms, steady median "
        f"{timing.steady_median_s * 1e3:.2f} ms over {timing.seen} domains "
        f"(not ours: {', '.join(timing.others) or 'none'})"
    )

    series: list[ScrapeSeries] = []
    stopped: dict[str, tuple[int | None, float]] = {}
    freeze: FreezeResult | None = None
    baseline: BaselineRss | None = None
    pass_in_daemon: float | None = None
    with tempfile.TemporaryDirectory(prefix="densityd-bench-logs-") as logs:
        log_dir = Path(logs)
        baseline = baseline_rss(log_dir, args.scrapes)
        print(f"densityd --no-libvirt --no-docker: RSS {_mib(baseline.memory.rss)} MiB")

        ours = densityd_exporter(log_dir, "densityd", "--no-docker", "--libvirt-uri", args.uri)
        theirs = libvirt_exporter(log_dir, args.exporter, args.uri)
        try:
            ours.start()
            theirs.start()
            ready = [e.wait_until_listed(names, timeout=60) for e in (ours, theirs)]
            print(f"both list all {args.vms} bench VMs; scraping each {args.scrapes} times")
            series, texts = scrape_alternately([ours, theirs], ready, names, args.scrapes)
            pass_in_daemon = _densityd_source(
                "libvirt", "densityd_source_duration_seconds", texts[0]
            )
            if args.freeze <= 0:
                print("not freezing libvirtd (--freeze 0)")
            elif not _is_local(args.uri):
                print(f"not freezing libvirtd: {args.uri} is not this host's")
            else:
                freeze = freeze_libvirtd(args.freeze, ours, theirs, names)
        except BenchError:
            for exporter in (ours, theirs):
                print(
                    f"{exporter.name} log (last lines):\n  {exporter.log_tail()}", file=sys.stderr
                )
            raise
        finally:
            for exporter in (ours, theirs):
                stopped[exporter.name] = exporter.stop()
                if stopped[exporter.name][0] is None and exporter.process is not None:
                    print(f"{exporter.name} did not exit within 15 s of SIGTERM (killed)")

    imports = import_cost(args.uri)
    print_report(timing, series, freeze, baseline, pass_in_daemon, imports)
    return {
        "schema": "densityd.bench.libvirt_scrape/v1",
        "date": started.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "machine": host,
        "vms": args.vms,
        "vm_setup": asdict(setup),
        "vm": {
            "memory_mib": VM_MEMORY_MIB,
            "vcpus": 1,
            "disk_bytes": VM_DISK_BYTES,
            "type": "qemu",
        },
        "scrapes": args.scrapes,
        "repeat": args.repeat,
        "pass": timing.summary(),
        "pass_in_daemon_s": pass_in_daemon,
        "scrape": [s.summary() for s in series],
        "freeze": freeze.summary() if freeze else None,
        "stopped": {name: {"exit_code": c, "seconds": t} for name, (c, t) in stopped.items()},
        "rss_without_libvirt": asdict(baseline) if baseline else None,
        "rss_steps_fresh_interpreter": imports,
        "targets": targets(timing, series, freeze),
        "loadavg_at_end": loadavg(),
    }


def _quiet(_context: object, _error: object) -> None:
    """An error handler that prints nothing."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 when it could not measure what it meant to."""
    args = build_parser().parse_args(argv)
    if min(args.vms, args.scrapes, args.repeat) < 1 or not 0 <= args.freeze <= FREEZE_MAX_S:
        print(
            f"--vms, --scrapes, --repeat: at least 1; --freeze: 0 to {FREEZE_MAX_S:g}",
            file=sys.stderr,
        )
        return 2
    # libvirt prints every error to stderr by default; they reach us as exceptions anyway.
    libvirt.registerErrorHandler(_quiet, None)
    if args.remove:
        try:
            print(f"removed {remove_bench_vms(args.uri)} bench VMs")
        except BenchError as exc:
            print(f"cleanup failed: {exc}", file=sys.stderr)
            return 1
        return 0
    disk_dir = Path(tempfile.mkdtemp(prefix=DISK_DIR_PREFIX))
    disk_dir.chmod(0o755)  # QEMU runs as libvirt-qemu and must traverse it

    def cleanup() -> None:
        if args.keep:
            print("keeping the bench VMs (--keep)")
            with suppress(OSError):  # only if every VM was reused: nothing in it
                disk_dir.rmdir()
            return
        try:
            print(f"removed {remove_bench_vms(args.uri)} bench VMs")
        finally:
            for image in disk_dir.glob("*.raw"):
                image.unlink()
            with suppress(OSError):
                disk_dir.rmdir()

    return run_benchmark(lambda: run(args, disk_dir), args.json, cleanup)


if __name__ == "__main__":
    raise SystemExit(main())
