"""The libvirt benchmark's exporters as processes, and what their ``/metrics`` lists.

Helpers of ``libvirt_scrape.py``, not a benchmark: reading samples out of a text exposition
(which VMs densityd and ``prometheus-libvirt-exporter`` list, densityd's per-source gauges), an
exporter process on a loopback port (start, wait until it lists the bench VMs, memory, stop),
scraping both alternately, polling until a check holds, and densityd's memory without libvirt:
a daemon with ``--no-libvirt --no-docker``, and a fresh interpreter's RSS step by step.
"""

from __future__ import annotations

import ast
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    BenchError,
    LatencySummary,
    clean_env,
    free_port,
    proc_status_bytes,
    scrape,
    stop_child,
)

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


def densityd_source(name: str, metric: str, text: str) -> float | None:
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


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    """Call ``check`` every 0.1 s (failures count as no) until it says yes or time is up."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        with suppress(OSError, BenchError):
            if check():
                return True
        time.sleep(0.1)
    return False


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
        if not wait_for(lambda: bool(_DENSITYD_PASSED.search(scrape(daemon.port)[1].decode())), 60):
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
