"""Parse what the Docker Engine returns, without talking to it.

Pure functions over the Engine API's JSON, kept apart from ``docker.py`` so that they can be
tested against recorded responses from Docker versions and cgroup versions this machine cannot
run. Example of the stats document (``GET /containers/ID/stats?stream=0&one-shot=1``, cgroup
v1, trimmed)::

    {"cpu_stats": {"cpu_usage": {"total_usage": 2490017596}},
     "memory_stats": {"usage": 614400, "limit": 134217728,
                      "stats": {"total_inactive_file": 0, "total_rss": 61440, ...}},
     "blkio_stats": {"io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "Read",
                                                     "value": 4096}, ...]}}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from densityd.collect.sources.cgroups import (
    CgroupStats,
    DeviceIO,
    io_totals,
    per_device,
    working_set,
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_UNIT_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_docker_size(text: str) -> int:
    """Parse a size as Docker's ``--storage-opt size=`` takes it (binary units: ``20G``)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    number, unit, _suffix = match.groups()
    return int(float(number) * 1024 ** _UNIT_POWER[unit.lower()])


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def parse_stats(stats: Mapping[str, Any]) -> CgroupStats | None:
    """Turn one Engine stats document into ``CgroupStats``; ``None`` for a stopped container.

    Raises ``ValueError`` for a document that is not shaped like the Engine's.
    """
    try:
        return _parse_stats(stats)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed Engine stats document: {exc}") from exc


def _parse_stats(stats: Mapping[str, Any]) -> CgroupStats | None:
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    cpu_usage = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
    cpu_ns = cpu_usage.get("total_usage")
    if not isinstance(usage, int) or not isinstance(cpu_ns, int):
        return None
    detail: Mapping[str, Any] = memory.get("stats") or {}
    # cgroup v1 reports hierarchical "total_*" keys; v2 plain ones ("anon"/"file": rss/cache).
    if "total_inactive_file" in detail:
        inactive_file = int(detail["total_inactive_file"])
        rss = _int_or_none(detail.get("total_rss"))
        cache = _int_or_none(detail.get("total_cache"))
    else:
        inactive_file = int(detail.get("inactive_file", 0))
        rss = _int_or_none(detail.get("anon", detail.get("rss")))
        cache = _int_or_none(detail.get("file", detail.get("cache")))
    devices = blkio_devices((stats.get("blkio_stats") or {}).get("io_service_bytes_recursive"))
    read_bytes, written_bytes = io_totals(devices)
    return CgroupStats(
        cpu_seconds=cpu_ns / 1e9,
        memory_usage_bytes=usage,
        working_set_bytes=working_set(usage, inactive_file),
        rss_bytes=rss,
        cache_bytes=cache,
        read_bytes=read_bytes,
        written_bytes=written_bytes,
        devices=devices,
    )


def blkio_devices(entries: Any) -> tuple[DeviceIO, ...]:
    """Bytes read and written per device from ``blkio_stats.io_service_bytes_recursive``.

    Entries are ``{"major": 8, "minor": 0, "op": "Read", "value": 4096}``; the op is
    capitalised on cgroup v1 and lowercase on v2. Other ops (Sync, Total, ...) are skipped.
    """
    ops = {"read": "read", "write": "written"}
    triples = []
    for entry in entries or ():
        what = ops.get(str(entry.get("op", "")).lower())
        if what is not None:
            device = f"{entry.get('major')}:{entry.get('minor')}"
            triples.append((device, what, str(entry.get("value", 0))))
    return per_device(triples)


def unswap_device_numbers(
    devices: tuple[DeviceIO, ...], is_device: Callable[[str], bool]
) -> tuple[DeviceIO, ...]:
    """Devices whose ``MAJ:MIN`` names no device but whose ``MIN:MAJ`` does, turned around.

    Podman 4.3's compatible stats swap ``major`` and ``minor`` (``/dev/vda``, 254:0, comes as
    ``{"major": 0, "minor": 254}``); its cgroup files say 254:0. Only a number that does not
    exist while its reverse does is turned, so an engine that reports them right is unharmed.
    """
    fixed = []
    for device in devices:
        major, _, minor = device.device.partition(":")
        reverse = f"{minor}:{major}"
        if not is_device(device.device) and is_device(reverse):
            device = DeviceIO(reverse, device.read_bytes, device.written_bytes)
        fixed.append(device)
    return tuple(fixed)


def count_cpuset(cpuset: str) -> int | None:
    """Count the CPUs in a cpuset list such as ``0-3,8``; ``None`` when empty.

    Raises ``ValueError`` for text that is not a cpuset list.
    """
    if not cpuset.strip():
        return None
    count = 0
    for part in cpuset.split(","):
        low, _, high = part.strip().partition("-")
        size = (int(high) - int(low) + 1) if high else 1
        if size < 1 or int(low) < 0:
            raise ValueError(f"not a cpuset: {cpuset!r}")  # "3-1": the kernel refuses it too
        count += size
    return count


def cpu_limit_cores(host_config: Mapping[str, Any]) -> float | None:
    """The container's CPU limit in cores: NanoCpus, CpuQuota/CpuPeriod, or its cpuset size."""
    limits: list[float] = []
    nano = host_config.get("NanoCpus") or 0
    quota = host_config.get("CpuQuota") or 0
    if nano > 0:
        limits.append(nano / 1e9)
    elif quota > 0:
        limits.append(quota / (host_config.get("CpuPeriod") or 100_000))
    cpus = count_cpuset(host_config.get("CpusetCpus") or "")
    if cpus is not None:
        limits.append(float(cpus))
    return min(limits) if limits else None


def storage_limit_bytes(host_config: Mapping[str, Any]) -> int | None:
    """The writable layer's size quota from ``--storage-opt size=``, if any."""
    size = (host_config.get("StorageOpt") or {}).get("size")
    return parse_docker_size(size) if size else None
