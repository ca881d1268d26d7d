"""Wire sources, sampler, scheduler and web server into the running daemon.

``densityd run`` and ``densityd sample`` both build their sources here, so that what the daemon
exports and what ``sample`` prints come from the same code.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client.registry import Collector

from densityd import __version__
from densityd.collect.sampler import Sampler, SnapshotHolder
from densityd.collect.sources.base import Source, SourceUnavailable
from densityd.collect.sources.docker import DockerSource
from densityd.collect.sources.host import HostSource
from densityd.config import ConfigError, Settings
from densityd.history.recorder import HistoryRecorder
from densityd.history.store import HISTORY_FILE, HistoryStore
from densityd.model import WorkloadKind
from densityd.plan.live import LivePlan
from densityd.serve.exporter import Exposition
from densityd.serve.web import WebServer, make_app
from densityd.serve.web_config import (
    PasswordChecker,
    WebConfigCollector,
    WebConfigWatcher,
    exposure_warning,
    require_basic_auth,
)

log = logging.getLogger("densityd")

DOCKER_DISK_JOB = "docker_disk"


@dataclass
class SourceSet:
    """The sources one configuration enables, with the Docker one at hand for its slow job."""

    sources: list[Source]
    docker: DockerSource | None
    unavailable: dict[str, str]
    vm_dirs: Callable[[], tuple[str, ...]] = tuple

    def data_dirs(self) -> dict[WorkloadKind, tuple[str, ...]]:
        """Where each kind keeps its disks: the Docker data root, libvirt's pool directories."""
        containers = (self.docker.root_dir,) if self.docker and self.docker.root_dir else ()
        return {WorkloadKind.CONTAINER: containers, WorkloadKind.VM: self.vm_dirs()}

    def close(self) -> None:
        """Close every source."""
        for source in self.sources:
            source.close()


def build_sources(settings: Settings) -> SourceSet:
    """Create the sources the settings enable."""
    docker_source = None
    sources: list[Source] = []
    if settings.docker:
        docker_source = DockerSource(
            docker_host=settings.docker_host,
            cgroup_root=settings.cgroup_root,
            stats_mode=settings.docker_stats_mode,
            api_workers=settings.docker_api_workers,
            timeout=settings.docker_timeout,
            proc_root=settings.proc_root,
            label_allowlist=settings.docker_label_allowlist,
        )
        sources.append(docker_source)

    unavailable: dict[str, str] = {}
    pool_paths: Callable[[], tuple[str, ...]] = tuple
    if settings.libvirt:
        try:
            from densityd.collect.sources.libvirt import LibvirtSource
        except ImportError as exc:  # libvirt-python missing or built against another libvirt
            unavailable["libvirt"] = f"libvirt-python cannot be imported ({exc})"
        else:
            libvirt_source = LibvirtSource(settings.libvirt_uri)
            sources.append(libvirt_source)
            pool_paths = lambda: libvirt_source.pool_paths  # noqa: E731 - read at each pass

    def disk_paths() -> list[str | None]:
        docker_root = docker_source.root_dir if docker_source else None
        return [docker_root, *pool_paths(), *settings.host_disk_paths]

    sources.append(HostSource(proc_root=settings.proc_root, disk_paths=disk_paths))
    return SourceSet(
        sources=sources, docker=docker_source, unavailable=unavailable, vm_dirs=pool_paths
    )


def probe(source: Source, timeout: float) -> tuple[bool, str]:
    """Ask a source what it found, within a deadline; (found, description or reason)."""
    result: list[tuple[bool, str]] = []

    def attempt() -> None:
        try:
            result.append((True, source.probe()))
        except SourceUnavailable as exc:
            result.append((False, str(exc)))
        except Exception as exc:  # report any failure to find a source, never crash on it
            result.append((False, f"{type(exc).__name__}: {exc}"))

    thread = threading.Thread(target=attempt, name=f"probe-{source.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else (False, f"no answer within {timeout:g}s")


def log_found_sources(source_set: SourceSet, settings: Settings) -> dict[str, str]:
    """Log, once at start, which sources were found and why the others were not.

    Returns the sources not found, with the reason, so that the sampler starts them as down
    without logging the same outage a second time.
    """
    for name, enabled in (("docker", settings.docker), ("libvirt", settings.libvirt)):
        if not enabled:
            log.info("source %s: disabled by configuration (--no-%s)", name, name)
    for name, reason in source_set.unavailable.items():
        log.warning("source %s: not available: %s", name, reason)
    missing: dict[str, str] = {}
    for source in source_set.sources:
        found, text = probe(source, settings.source_timeout)
        if found:
            log.info("source %s: found %s", source.name, text)
        else:
            log.warning("source %s: not available: %s; retrying with backoff", source.name, text)
            missing[source.name] = text
    return missing


def build_sampler(settings: Settings, source_set: SourceSet, holder: SnapshotHolder) -> Sampler:
    """A sampler over the sources, with the Docker disk scan registered as a job."""
    docker_source = source_set.docker
    sampler = Sampler(
        source_set.sources,
        holder,
        timeout=settings.source_timeout,
        disk_usage_timestamp=(lambda: docker_source.disk_usage_timestamp)
        if docker_source
        else (lambda: None),
    )
    if docker_source is not None:
        sampler.add_job(
            DOCKER_DISK_JOB,
            docker_source.refresh_disk_usage,
            settings.disk_timeout,
            depends_on=docker_source.name,
        )
    return sampler


def run_daemon(settings: Settings) -> int:
    """Serve metrics until SIGTERM or SIGINT; return the exit status."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    host, port = settings.listen
    try:
        web_config = (
            WebConfigWatcher(settings.web_config_file) if settings.web_config_file else None
        )
    except ConfigError as exc:
        print(f"densityd: {exc}", file=sys.stderr)
        return 2
    holder = SnapshotHolder()
    recorder = (
        HistoryRecorder(
            lambda: HistoryStore.open(
                settings.state_dir, retention_seconds=settings.retention_seconds
            ),
            settings.state_dir / HISTORY_FILE,
        )
        if settings.history
        else None
    )
    found: list[SourceSet] = []  # filled once the sources are built, after the port is bound
    live_plan = LivePlan(
        settings,
        data_dirs=lambda: found[0].data_dirs() if found else {},
        store=lambda: recorder.store if recorder else None,
    )
    # Listeners run in order: record the pass, plan on it, then render /metrics with both.
    if recorder is not None:
        holder.subscribe(recorder.record)
    holder.subscribe(live_plan.update)
    extra: list[Collector] = [live_plan] if recorder is None else [recorder, live_plan]
    if web_config is not None:
        extra.append(WebConfigCollector(web_config))
    app = make_app(
        Exposition(holder, extra=extra),
        holder,
        max_age=3 * settings.interval + settings.source_timeout,
        plan=live_plan,
    )
    if web_config is not None:
        checker = PasswordChecker()
        app = require_basic_auth(app, lambda: web_config.current().users, checker)
    tls = web_config is not None and web_config.current().tls is not None
    # Bind first: a port in use should fail at once, before any backend is touched.
    server = WebServer(
        app, host, port, tls_context=web_config.ssl_context if web_config and tls else None
    )
    scheme = "https" if tls else "http"
    log.info("densityd %s listening on %s://%s:%d/metrics", __version__, scheme, host, server.port)
    warning = exposure_warning(host, web_config.current() if web_config else None)
    if warning:
        log.warning("%s", warning)
    source_set = build_sources(settings)
    found.append(source_set)
    missing = log_found_sources(source_set, settings)
    if recorder is None:
        log.info("history: off (--no-history); plans use the latest passes only")
    sampler = build_sampler(settings, source_set, holder)
    for name, reason in missing.items():
        sampler.mark_down(name, reason)

    scheduler = BackgroundScheduler(timezone=UTC)
    now = datetime.now(UTC)
    scheduler.add_job(
        sampler.run_pass,
        "interval",
        seconds=settings.interval,
        id="sample",
        max_instances=1,
        coalesce=True,
        next_run_time=now,
        misfire_grace_time=max(1, int(settings.interval)),
    )
    if source_set.docker is not None:
        scheduler.add_job(
            sampler.run_job,
            "interval",
            args=[DOCKER_DISK_JOB],
            seconds=settings.disk_interval,
            id=DOCKER_DISK_JOB,
            max_instances=1,
            coalesce=True,
            next_run_time=now,
            misfire_grace_time=max(1, int(settings.disk_interval)),
        )
    scheduler.start()
    server.start()
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        server.stop()
        source_set.close()
        if recorder is not None:
            recorder.close()
    log.info("stopped")
    return 0
