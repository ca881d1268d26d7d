"""The host source: CPU cores, memory, and the disks that hold workloads' data.

Reads ``/proc/meminfo`` under a configurable proc root (so that densityd in a container can
read the host's with ``-v /proc:/host/proc:ro``) and ``statvfs`` of each data directory: the
Docker data root as the Docker source discovers it, libvirt's pool directories, plus any
configured paths. Paths that do not exist here (densityd in a container without that mount)
are skipped.

Each filesystem is measured on its own thread under its own deadline: ``statvfs`` of a pool
on a dead NFS server blocks for good, and that must cost that one path (reported down, with
its last success), never the host's CPU and memory figures or the other paths.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from densityd.collect.guarded import GuardedCall, gather
from densityd.collect.sources.cgroups import (
    in_private_namespace,
    parse_pressure,
    read_kernel_file,
)
from densityd.model import (
    DiskUsage,
    HostSample,
    HugepagePool,
    Pressure,
    SourceReading,
    SourceStatus,
)

log = logging.getLogger("densityd.sources.host")

# How long one host reading waits for the filesystems' answers; a path slower than this is
# given until its own deadline, and its answer is the next reading's.
DISK_WAIT_SECONDS = 0.5


def parse_meminfo(text: str) -> dict[str, int]:
    """Parse ``/proc/meminfo`` into bytes per key (``MemTotal: 16 kB`` -> 16384)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        multiplier = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
        values[key.strip()] = int(parts[0]) * multiplier
    return values


def disk_usage(path: str) -> DiskUsage | None:
    """Size and free space (for unprivileged users, as ``df`` shows) of the filesystem at path,
    or ``None`` when there is no directory at path here."""
    # The check is part of the guarded call: on a hung filesystem it blocks as statvfs does.
    if not os.path.isdir(path):
        return None
    stat = os.statvfs(path)
    return DiskUsage(
        path=path,
        total_bytes=stat.f_blocks * stat.f_frsize,
        free_bytes=stat.f_bavail * stat.f_frsize,
        device=os.stat(path).st_dev,
    )


SHIM_COMMAND_PREFIX = "containerd-shim"
SHIM_STATUS_PREFIX = f"Name:\t{SHIM_COMMAND_PREFIX}"


class ShimRssReader:
    """Resident set in bytes of each containerd shim process under ``proc_root``.

    One shim runs per container (``containerd-shim-runc-v2``, or ``containerd-shim`` for the
    v1 runtime); its RSS is a container's fixed cost beyond its own processes. Every pass
    lists ``proc_root``, but a process found to be something else at two passes in a row is
    not read again while its PID stays: containerd forks a shim and execs it at once, so a
    process caught between the two is a shim by the next pass, and a PID is given again only
    after the kernel has gone round all of ``pid_max``, not between two passes. Processes
    that exit while being read are skipped.
    """

    def __init__(self, proc_root: Path) -> None:
        self._proc_root = str(proc_root)
        self._others_once: set[str] = set()  # something else at the last pass
        self._others: set[str] = set()  # something else at two passes: not read again

    def read(self) -> tuple[int, ...]:
        """Each shim's RSS, in bytes (a zombie shim has none and is left out)."""
        try:
            present = {name for name in os.listdir(self._proc_root) if name.isdigit()}
        except OSError:
            return ()
        self._others &= present
        self._others_once &= present
        sizes: list[int] = []
        for pid in present - self._others:
            try:
                status = read_kernel_file(f"{self._proc_root}/{pid}/status")
            except OSError:
                continue  # exited since the listing
            # The first line is "Name:\t" and the comm, truncated to 15 characters:
            # "containerd-shim" exactly fits.
            if not status.startswith(SHIM_STATUS_PREFIX):
                if pid in self._others_once:
                    self._others_once.discard(pid)
                    self._others.add(pid)
                else:
                    self._others_once.add(pid)
                continue
            self._others_once.discard(pid)
            start = status.find("\nVmRSS:") + 1
            if start:
                end = status.find("\n", start)
                sizes.extend(parse_meminfo(status[start : end if end >= 0 else None]).values())
        return tuple(sizes)


def read_shim_rss(proc_root: Path) -> tuple[int, ...]:
    """Each containerd shim's RSS under ``proc_root``, read once (``ShimRssReader``)."""
    return ShimRssReader(proc_root).read()


def read_host_pressure(
    pressure_dir: Path,
) -> tuple[tuple[Pressure | None, Pressure | None, Pressure | None], str | None]:
    """The host's cpu, memory and io pressure from ``/proc/pressure``, and why not (``None``
    when read).

    A kernel built without PSI has no ``/proc/pressure``; one booted with ``psi=0`` has the
    files, but reading them gives ``EOPNOTSUPP``.
    """
    found: list[Pressure | None] = []
    for resource in ("cpu", "memory", "io"):
        file = pressure_dir / resource
        try:
            found.append(parse_pressure(file.read_text()))
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:
                reason = f"reading {file} gives EOPNOTSUPP: the kernel was booted with psi=0"
            elif exc.errno == errno.ENOENT:
                reason = f"{file} does not exist: the kernel has no PSI (CONFIG_PSI)"
            else:
                reason = f"cannot read {file}: {exc.strerror}"
            return (None, None, None), reason
    return (found[0], found[1], found[2]), None


def read_ksm(ksm_dir: Path) -> tuple[int | None, int | None]:
    """Kernel same-page merging: bytes of shared pages, and bytes saved by sharing them.

    ``pages_shared`` counts the merged pages kept; ``pages_sharing`` how many more mappings
    point at them, i.e. how much memory KSM saves. Both ``None`` without KSM.
    """
    try:
        shared = int((ksm_dir / "pages_shared").read_text())
        sharing = int((ksm_dir / "pages_sharing").read_text())
    except (OSError, ValueError):
        return None, None
    page = os.sysconf("SC_PAGE_SIZE")
    return shared * page, sharing * page


_HUGEPAGES_DIR = re.compile(r"hugepages-([0-9]+)kB")


def read_hugepages(hugepages_dir: Path, default_size: int | None) -> tuple[HugepagePool, ...]:
    """The huge page pools of each size, from ``/sys/kernel/mm/hugepages``, smallest first.

    One directory per size the kernel supports (``hugepages-2048kB``) holding page counts::

        nr_hugepages 40   free_hugepages 8   resv_hugepages 2   surplus_hugepages 0

    ``default_size`` is ``Hugepagesize`` from /proc/meminfo (the size of a mapping that names
    none). A size whose counts cannot be read is left out; no directory: no pools.
    """
    try:
        entries = sorted(os.scandir(hugepages_dir), key=lambda e: e.name)
    except OSError:
        return ()
    pools = []
    for entry in entries:
        match = _HUGEPAGES_DIR.fullmatch(entry.name)
        if match is None:
            continue
        size = int(match.group(1)) * 1024
        directory = Path(entry.path)
        try:
            total, free, reserved = (
                int((directory / name).read_text())
                for name in ("nr_hugepages", "free_hugepages", "resv_hugepages")
            )
        except (OSError, ValueError):
            continue
        try:
            surplus: int | None = int((directory / "surplus_hugepages").read_text())
        except (OSError, ValueError):
            surplus = None
        pools.append(
            HugepagePool(
                size_bytes=size,
                total=total,
                free=free,
                reserved=reserved,
                surplus=surplus,
                default=size == default_size,
            )
        )
    return tuple(sorted(pools, key=lambda pool: pool.size_bytes))


def _disk_check(
    call: GuardedCall[DiskUsage | None], answer: DiskUsage | None
) -> SourceStatus | None:
    """How one path's statvfs fared: answered, down, or not answered yet (its first call is
    still running: not known, rather than left out); ``None`` for a path that is not here."""
    status = call.status()
    if answer is not None or call.down:
        return status
    if call.running:
        return replace(status, up=False, last_error="no answer yet")
    return None


class HostSource:
    """Samples the host's capacity."""

    name = "host"

    def __init__(
        self,
        proc_root: Path | str = "/proc",
        disk_paths: Callable[[], Iterable[str | None]] = tuple,
        ksm_dir: Path | str = "/sys/kernel/mm/ksm",
        disk_timeout: float = 10.0,
        hugepages_dir: Path | str = "/sys/kernel/mm/hugepages",
    ) -> None:
        """``disk_timeout``: the deadline of one filesystem's ``statvfs``."""
        self._proc_root = Path(proc_root)
        self._disk_paths = disk_paths
        self._ksm_dir = Path(ksm_dir)
        self._hugepages_dir = Path(hugepages_dir)
        self._disk_timeout = disk_timeout
        self._disk_calls: dict[str, GuardedCall[DiskUsage | None]] = {}
        self._private_namespace = in_private_namespace(self._proc_root)  # fixed for a process
        self._pressure_reason: str | None = None
        self._shim_rss = ShimRssReader(self._proc_root)

    def probe(self) -> str:
        """Describe the host."""
        host = self._host()
        return f"{host.cpu_cores} CPU cores, {host.memory_bytes / 2**30:.1f} GiB memory"

    def sample(self) -> SourceReading:
        """Read cores, memory and disks."""
        return SourceReading(host=self._host())

    def _host(self) -> HostSample:
        meminfo = parse_meminfo((self._proc_root / "meminfo").read_text())
        calls = [self._disk_call(path) for path in dict.fromkeys(self._disk_paths()) if path]
        answers = gather(calls, time.monotonic() + DISK_WAIT_SECONDS)
        disks = tuple(disk for disk in answers if disk is not None)
        checks = tuple(
            check
            for call, answer in zip(calls, answers, strict=True)
            if (check := _disk_check(call, answer)) is not None
        )
        ksm_shared, ksm_sharing = read_ksm(self._ksm_dir)
        pools = read_hugepages(self._hugepages_dir, meminfo.get("Hugepagesize"))
        # Hugetlb (Linux 4.16+) counts every size's pool; older kernels: the pools summed.
        hugetlb = meminfo.get("Hugetlb", sum(p.total * p.size_bytes for p in pools))
        (cpu_pressure, memory_pressure, io_pressure), reason = read_host_pressure(
            self._proc_root / "pressure"
        )
        if reason is not None and reason != self._pressure_reason:
            log.info("host pressure (PSI) is not exported: %s", reason)
        self._pressure_reason = reason
        return HostSample(
            cpu_cores=os.cpu_count() or 1,
            memory_bytes=meminfo["MemTotal"],
            memory_available_bytes=meminfo.get("MemAvailable", meminfo.get("MemFree", 0)),
            disks=disks,
            disk_checks=checks,
            cgroup_namespace_private=self._private_namespace,
            ksm_shared_bytes=ksm_shared,
            ksm_sharing_bytes=ksm_sharing,
            container_shim_rss_bytes=self._shim_rss.read(),
            hugepages=pools,
            hugepages_bytes=hugetlb,
            cpu_pressure=cpu_pressure,
            memory_pressure=memory_pressure,
            io_pressure=io_pressure,
        )

    def _disk_call(self, path: str) -> GuardedCall[DiskUsage | None]:
        """The guarded ``statvfs`` of one path, made once and kept: a stuck one stays stuck
        rather than being started again."""
        call = self._disk_calls.get(path)
        if call is None:
            call = GuardedCall(
                path, lambda: disk_usage(path), self._disk_timeout, what="filesystem"
            )
            self._disk_calls[path] = call
        return call

    def close(self) -> None:
        """Nothing to release (a statvfs stuck in a hung filesystem keeps its daemon thread)."""
