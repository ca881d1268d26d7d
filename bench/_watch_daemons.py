"""The watch-cost benchmark's three collectors as processes: densityd, netdata, collectd.

Helpers of ``watch_cost.py``, not a benchmark. Each collector is configured minimally in a
temporary directory of its own, started in the foreground as a child of this process, and
stopped by its PID (SIGTERM, then SIGKILL), never through a service manager:

- densityd: ``python -m densityd run`` with every source on and history on, ``--interval``;
- netdata (Debian's 1.37): only the cgroups.plugin (every other plugin, health, ML, the
  registry and the cloud off), ``update every`` at the interval, its API on a loopback port;
- collectd (Debian's 5.12): ``cgroups`` and ``virt`` (``qemu:///system``) at ``Interval``,
  and ``write_prometheus`` on a loopback port, so that it can be scraped like the others.

``Collector.ready()`` tells when it lists the benchmark's workloads (densityd: every bench
container and VM in ``/metrics``; netdata: a chart per bench container; collectd: the bench
containers' cgroups and the VMs in its exposition).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import BenchError, clean_env, free_port, progress, scrape
from _watch_procs import delta, engines_cpu_s, tree_cpu_s, tree_memory

NETDATA = "/usr/sbin/netdata"
COLLECTD = "/usr/sbin/collectd"

# netdata's internal and external plugins, every one but cgroups switched off.
NETDATA_PLUGINS_OFF = (
    "proc", "diskspace", "timex", "tc", "idlejitter", "netdata monitoring", "checks",
    "statsd", "apps", "charts.d", "python.d", "go.d", "ebpf", "perf", "slabinfo", "ioping",
    "fping", "nfacct", "cups", "freeipmi", "debugfs", "node.d",
)  # fmt: skip


@dataclass
class Workloads:
    """What a collector must list to be ready: container names and IDs, VM names."""

    containers: dict[str, str]  # name -> full ID
    vms: list[str]


@dataclass
class Collector:
    """One collector process on a loopback port."""

    name: str
    command: list[str]
    port: int
    scrape_path: str
    log_path: Path
    ready_check: Callable[[str], bool] = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start it in the foreground, logging to its log file."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**clean_env(), "DO_NOT_TRACK": "1"},
                cwd=self.log_path.parent,
            )

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"{self.name} is not running")
        return self.process.pid

    def alive(self) -> None:
        """Fail if it has exited."""
        if self.process is None or self.process.poll() is not None:
            code = self.process.returncode if self.process else None
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited with status {code}; its log ends:\n{tail}")

    def wait_ready(self, timeout: float) -> float:
        """Poll its HTTP endpoint until it lists the workloads; the seconds waited."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            self.alive()
            try:
                _elapsed, body = scrape(self.port, path=self.scrape_path)
            except (OSError, BenchError):
                time.sleep(1)
                continue
            if self.ready_check(body.decode(errors="replace")):
                return time.perf_counter() - start
            time.sleep(1)
        raise BenchError(f"{self.name} did not list the bench workloads within {timeout:g} s")

    def scrapes(self, count: int) -> list[float]:
        """``count`` sequential scrapes, a fresh connection each; milliseconds."""
        found: list[float] = []
        for _ in range(count):
            elapsed, _body = scrape(self.port, path=self.scrape_path)
            found.append(elapsed * 1e3)
        return found

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after 20 s; its exit status (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


# -- densityd ------------------------------------------------------------------------------

_DENSITYD_NAME = re.compile(r'^densityd_workload_memory_bytes\{[^}]*\bname="([^"]*)"', re.M)
_DISK_SCANNED = re.compile(r"^densityd_docker_disk_usage_age_seconds ", re.M)


def densityd(directory: Path, interval: float, workloads: Workloads) -> Collector:
    """``python -m densityd run`` with all sources and history, state in ``directory``."""
    port = free_port()
    state = directory / "state"
    state.mkdir()
    command = [
        sys.executable, "-m", "densityd", "run",
        "--listen-address", f"127.0.0.1:{port}",
        "--interval", f"{interval:g}",
        "--state-dir", str(state),
    ]  # fmt: skip
    wanted = set(workloads.containers) | set(workloads.vms)

    def ready(text: str) -> bool:
        return wanted <= set(_DENSITYD_NAME.findall(text)) and bool(_DISK_SCANNED.search(text))

    return Collector("densityd", command, port, "/metrics", directory / "densityd.log", ready)


# -- netdata -------------------------------------------------------------------------------


def netdata_conf(directory: Path, port: int, interval: float) -> str:
    """A netdata.conf with only the cgroups.plugin, its state in ``directory``."""
    plugins = "\n".join(f"    {name} = no" for name in NETDATA_PLUGINS_OFF)
    every = f"{interval:g}"
    return f"""[global]
    run as user = root
    hostname = densityd-watch-bench
[db]
    update every = {every}
[directories]
    config = {directory}/etc
    stock config = /usr/lib/netdata/conf.d
    log = {directory}/log
    web = /usr/share/netdata/web
    cache = {directory}/cache
    lib = {directory}/lib
    home = {directory}
    plugins = /usr/lib/netdata/plugins.d
    registry = {directory}/lib/registry
    health config = {directory}/etc/health.d
    stock health config = /usr/lib/netdata/conf.d/health.d
[logs]
    debug log = none
    error log = {directory}/log/error.log
    access log = none
[web]
    bind to = 127.0.0.1:{port}
[health]
    enabled = no
[ml]
    enabled = no
[registry]
    enabled = no
[cloud]
    enabled = no
[statsd]
    enabled = no
[plugins]
    enable running new plugins = no
    cgroups = yes
{plugins}
[plugin:cgroups]
    update every = {every}
    use unified cgroups = {"yes" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "no"}
"""


def netdata(directory: Path, interval: float, workloads: Workloads) -> Collector:
    """netdata in the foreground with only its cgroups.plugin, on a loopback port."""
    port = free_port()
    for sub in ("etc", "log", "cache", "lib"):
        (directory / sub).mkdir()
    (directory / "etc" / ".opt-out-from-anonymous-statistics").touch()
    conf = directory / "netdata.conf"
    conf.write_text(netdata_conf(directory, port, interval))
    command = [NETDATA, "-D", "-c", str(conf), "-P", str(directory / "netdata.pid")]
    names = set(workloads.containers)

    def ready(text: str) -> bool:
        # cgroup-name.sh names a container's cgroup after the container: cgroup_<name>.
        charted = set(re.findall(r'chart="cgroup_([^".]+)\.', text))
        return names <= charted

    path = "/api/v1/allmetrics?format=prometheus"
    return Collector("netdata", command, port, path, directory / "netdata.log", ready)


# -- collectd ------------------------------------------------------------------------------


def collectd_conf(directory: Path, port: int, interval: float, uri: str) -> str:
    """A collectd.conf with cgroups, virt and write_prometheus, its state in ``directory``."""
    return f"""Hostname "densityd-watch-bench"
FQDNLookup false
BaseDir "{directory}"
PIDFile "{directory}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval {interval:g}
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File STDOUT
</Plugin>
LoadPlugin cgroups
LoadPlugin virt
<Plugin virt>
  Connection "{uri}"
  HostnameFormat name
</Plugin>
LoadPlugin write_prometheus
<Plugin write_prometheus>
  Host "127.0.0.1"
  Port "{port}"
</Plugin>
"""


def collectd(directory: Path, interval: float, workloads: Workloads, uri: str) -> Collector:
    """collectd in the foreground with cgroups + virt, scraped through write_prometheus."""
    port = free_port()
    conf = directory / "collectd.conf"
    conf.write_text(collectd_conf(directory, port, interval, uri))
    command = [COLLECTD, "-f", "-C", str(conf)]
    ids = set(workloads.containers.values())
    vms = set(workloads.vms)

    def ready(text: str) -> bool:
        groups = set(re.findall(r'^collectd_cgroups_cpu_total\{cgroups="([^"]+)"', text, re.M))
        hosts = set(re.findall(r'^collectd_virt_[a-z_]+\{[^}]*instance="([^"]+)"', text, re.M))
        return ids <= groups and vms <= hosts

    return Collector("collectd", command, port, "/metrics", directory / "collectd.log", ready)


# -- one collector's window ----------------------------------------------------------------


@dataclass
class Window:
    """What one collector cost over one window, and how it was scraped afterwards."""

    name: str
    window_s: float
    ready_s: float
    own_cpu_s: float  # the collector's whole process tree
    engine_cpu_s: dict[str, float]  # dockerd, containerd, libvirtd during the window (raw)
    rss_bytes: int
    pss_bytes: int
    processes: int
    scrape_ms: list[float]
    scrape_bytes: int
    exit_code: int | None
    engine_excess_s: dict[str, float] = field(default_factory=dict)  # minus the idle baseline
    plan_s: list[float] = field(default_factory=list)  # ``densityd plan`` with it running
    plan_note: str = ""

    @property
    def own_cpu_per_hour_s(self) -> float:
        return self.own_cpu_s / self.window_s * 3600

    @property
    def engine_cpu_per_hour_s(self) -> float:
        return sum(self.engine_excess_s.values()) / self.window_s * 3600

    @property
    def total_cpu_per_hour_s(self) -> float:
        return self.own_cpu_per_hour_s + self.engine_cpu_per_hour_s

    def summary(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            **{k: v for k, v in self.__dict__.items()},
            "own_cpu_per_hour_s": self.own_cpu_per_hour_s,
            "engine_cpu_per_hour_s": self.engine_cpu_per_hour_s,
            "total_cpu_per_hour_s": self.total_cpu_per_hour_s,
        }


def measure(
    collector: Collector,
    *,
    window: float,
    settle: float,
    engines: dict[str, int],
    scrapes: int,
    ready_timeout: float,
    during: Callable[[Collector], tuple[list[float], str]] | None = None,
) -> Window:
    """Start ``collector``, wait until it lists the workloads and ``settle`` s more, measure
    its tree's CPU and the engines' over ``window`` s, its memory at the end, then scrape it
    ``scrapes`` times (after the window: scrapes are not in its CPU), run ``during`` (timed
    commands against it), and stop it."""
    collector.start()
    try:
        ready = collector.wait_ready(ready_timeout)
        progress(f"  {collector.name}: ready after {ready:.0f} s; settling {settle:g} s")
        time.sleep(settle)
        collector.alive()
        own_before, engines_before = tree_cpu_s(collector.pid), engines_cpu_s(engines)
        start = time.monotonic()
        progress(f"  {collector.name}: measuring {window:g} s")
        time.sleep(window)
        own_after, engines_after = tree_cpu_s(collector.pid), engines_cpu_s(engines)
        elapsed = time.monotonic() - start
        collector.alive()
        memory = tree_memory(collector.pid)
        scrape_ms = collector.scrapes(scrapes)
        _elapsed, body = scrape(collector.port, path=collector.scrape_path)
        result = Window(
            name=collector.name,
            window_s=elapsed,
            ready_s=ready,
            own_cpu_s=own_after - own_before,
            engine_cpu_s=delta(engines_after, engines_before),
            rss_bytes=memory.rss,
            pss_bytes=memory.pss,
            processes=memory.processes,
            scrape_ms=scrape_ms,
            scrape_bytes=len(body),
            exit_code=None,
        )
        if during is not None:
            result.plan_s, result.plan_note = during(collector)
    finally:
        code = collector.stop()
    result.exit_code = code
    return result
