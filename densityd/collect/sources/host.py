"""The host source: CPU cores, memory, and the disks that hold workloads' data.

Reads ``/proc/meminfo`` under a configurable proc root (so that densityd in a container can
read the host's with ``-v /proc:/host/proc:ro``) and ``statvfs`` of each data directory: the
Docker data root as the Docker source discovers it, plus any configured paths. Paths that do
not exist here (densityd in a container without that mount) are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from densityd.model import DiskUsage, HostSample, SourceReading


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


def disk_usage(path: str) -> DiskUsage:
    """Size and free space (for unprivileged users, as ``df`` shows) of the filesystem at path."""
    stat = os.statvfs(path)
    return DiskUsage(
        path=path,
        total_bytes=stat.f_blocks * stat.f_frsize,
        free_bytes=stat.f_bavail * stat.f_frsize,
        device=os.stat(path).st_dev,
    )


SHIM_COMMAND_PREFIX = "containerd-shim"


def read_shim_rss(proc_root: Path) -> tuple[int, ...]:
    """Resident set in bytes of each containerd shim process under ``proc_root``.

    One shim runs per container (``containerd-shim-runc-v2``, or ``containerd-shim`` for the
    v1 runtime); its RSS is a container's fixed cost beyond its own processes. Processes that
    exit while being read are skipped.
    """
    sizes: list[int] = []
    try:
        entries = list(os.scandir(proc_root))
    except OSError:
        return ()
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            # comm is truncated to 15 characters: "containerd-shim" exactly fits.
            if not (proc_root / entry.name / "comm").read_text().startswith(SHIM_COMMAND_PREFIX):
                continue
            status = (proc_root / entry.name / "status").read_text()
        except OSError:
            continue
        rss = [line for line in status.splitlines() if line.startswith("VmRSS:")]
        if rss:
            sizes.extend(parse_meminfo(rss[0]).values())
    return tuple(sizes)


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


class HostSource:
    """Samples the host's capacity."""

    name = "host"

    def __init__(
        self,
        proc_root: Path | str = "/proc",
        disk_paths: Callable[[], Iterable[str | None]] = tuple,
        ksm_dir: Path | str = "/sys/kernel/mm/ksm",
    ) -> None:
        self._proc_root = Path(proc_root)
        self._disk_paths = disk_paths
        self._ksm_dir = Path(ksm_dir)

    def probe(self) -> str:
        """Describe the host."""
        host = self._host()
        return f"{host.cpu_cores} CPU cores, {host.memory_bytes / 2**30:.1f} GiB memory"

    def sample(self) -> SourceReading:
        """Read cores, memory and disks."""
        return SourceReading(host=self._host())

    def _host(self) -> HostSample:
        meminfo = parse_meminfo((self._proc_root / "meminfo").read_text())
        disks: dict[str, DiskUsage] = {}
        for path in self._disk_paths():
            if path and path not in disks and os.path.isdir(path):
                disks[path] = disk_usage(path)
        ksm_shared, ksm_sharing = read_ksm(self._ksm_dir)
        return HostSample(
            cpu_cores=os.cpu_count() or 1,
            memory_bytes=meminfo["MemTotal"],
            memory_available_bytes=meminfo.get("MemAvailable", meminfo.get("MemFree", 0)),
            disks=tuple(disks.values()),
            ksm_shared_bytes=ksm_shared,
            ksm_sharing_bytes=ksm_sharing,
            container_shim_rss_bytes=read_shim_rss(self._proc_root),
        )

    def close(self) -> None:
        """Nothing to release."""
