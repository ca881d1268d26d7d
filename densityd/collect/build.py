"""Build the sources and the sampler a configuration asks for, and say which sources were found.

``densityd run``, ``densityd sample`` and ``densityd plan`` start their sources here, so all
three find (and log) the same ones the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from densityd.collect.sampler import Sampler, SnapshotHolder
from densityd.collect.sources.base import Source, SourceUnavailable
from densityd.collect.sources.docker import DockerSource
from densityd.collect.sources.host import HostSource
from densityd.config import Settings
from densityd.model import WorkloadKind

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
            disk_timeout=settings.disk_timeout,
            proc_root=settings.proc_root,
            label_allowlist=settings.docker_label_allowlist,
            sys_root=settings.sys_root,
            resync_interval=settings.docker_resync_interval,
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
            libvirt_source = LibvirtSource(settings.libvirt_uri, cgroup_root=settings.cgroup_root)
            sources.append(libvirt_source)
            pool_paths = lambda: libvirt_source.pool_paths  # noqa: E731 - read at each pass

    def disk_paths() -> list[str | None]:
        docker_root = docker_source.root_dir if docker_source else None
        return [docker_root, *pool_paths(), *settings.host_disk_paths]

    sources.append(
        HostSource(
            proc_root=settings.proc_root,
            disk_paths=disk_paths,
            disk_timeout=settings.source_timeout,
            hugepages_dir=Path(settings.sys_root) / "kernel" / "mm" / "hugepages",
        )
    )
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


def log_found_sources(
    source_set: SourceSet, settings: Settings, *, retries: bool = True
) -> dict[str, str]:
    """Log, once at start, which sources were found and why the others were not.

    Returns the sources not found, with the reason, so that the sampler starts them as down
    without logging the same outage a second time. ``retries`` is False for a one-shot
    command, which does not try again.
    """
    retrying = "; retrying with backoff" if retries else ""
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
            log.warning("source %s: not available: %s%s", source.name, text, retrying)
            missing[source.name] = text
    return missing


def build_sampler(
    settings: Settings, source_set: SourceSet, holder: SnapshotHolder, *, retries: bool = True
) -> Sampler:
    """A sampler over the sources, with the Docker disk scan registered as a job.

    ``retries`` False: a one-shot command's, whose logs do not promise to try again, and
    whose single pass waits for every source until its deadline. The daemon's passes wait
    half an interval at most, so that a slow source never holds up the next pass; what it
    answers later is the next pass's.
    """
    docker_source = source_set.docker
    sampler = Sampler(
        source_set.sources,
        holder,
        timeout=settings.source_timeout,
        disk_usage_timestamp=(lambda: docker_source.disk_usage_timestamp)
        if docker_source
        else (lambda: None),
        pass_wait=settings.interval / 2 if retries else None,
        retries=retries,
    )
    if docker_source is not None:
        sampler.add_job(
            DOCKER_DISK_JOB,
            docker_source.refresh_disk_usage,
            settings.disk_timeout,
            depends_on=docker_source.name,
            every=settings.disk_interval,
        )
    return sampler
