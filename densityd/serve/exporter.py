"""The Prometheus collector: turns the latest snapshot into metric families.

``collect()`` only reads the snapshot the sampler last published; it does no I/O, so a scrape
costs the same whether the backends are quick, slow or down. Names, types and labels follow
DESIGN §5. Sample output::

    # HELP densityd_workload_memory_bytes Host-side memory footprint: working set ...
    # TYPE densityd_workload_memory_bytes gauge
    densityd_workload_memory_bytes{id="7e649af947a6...",kind="container",name="web"} 6.3e+07
    densityd_source_up{source="docker"} 1.0
"""

from __future__ import annotations

import gzip
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from densityd import __version__
from densityd.collect.sampler import SnapshotHolder
from densityd.model import (
    HostSample,
    NetworkInterface,
    Pressure,
    Snapshot,
    SourceStatus,
    WorkloadSample,
)
from densityd.serve.text_format import text_exposition

IDENTITY_LABELS = ("kind", "id", "name")
INFO_LABELS = (*IDENTITY_LABELS, "image", "os", "state")
_NOT_IN_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


def workload_label_names(keys: Iterable[str]) -> dict[str, str]:
    """Map workload label keys to ``densityd_workload_info`` label names: ``label_<key>``.

    Characters a Prometheus label name cannot hold become ``_``. Keys that collide after that
    (``team.name`` and ``team_name``) are told apart deterministically: in sorted key order the
    first keeps the name, the next get ``_2``, ``_3``, ...
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for key in sorted(set(keys)):
        base = "label_" + _NOT_IN_LABEL_NAME.sub("_", key)
        name, suffix = base, 1
        while name in taken:
            suffix += 1
            name = f"{base}_{suffix}"
        names[key] = name
        taken.add(name)
    return names


@dataclass(frozen=True)
class WorkloadMetric:
    """One per-workload family: its name, type, help and where its value comes from."""

    name: str
    counter: bool
    help: str
    value: Callable[[WorkloadSample], float | None]


WORKLOAD_METRICS: tuple[WorkloadMetric, ...] = (
    WorkloadMetric(
        "densityd_workload_cpu_seconds", True, "CPU time used, in seconds.", lambda w: w.cpu_seconds
    ),
    WorkloadMetric(
        "densityd_workload_cpu_limit_cores",
        False,
        "CPU limit in cores (quota/period or cpuset size; vCPUs for a VM); absent when unlimited.",
        lambda w: w.cpu_limit_cores,
    ),
    WorkloadMetric(
        "densityd_workload_memory_bytes",
        False,
        "Host-side memory footprint: working set (usage minus inactive file cache) "
        "for a container, QEMU resident set for a VM.",
        lambda w: w.memory_bytes,
    ),
    WorkloadMetric(
        "densityd_workload_memory_limit_bytes",
        False,
        "Memory limit (container) or configured guest memory (VM); absent when unlimited.",
        lambda w: w.memory_limit_bytes,
    ),
    WorkloadMetric(
        "densityd_workload_disk_bytes",
        False,
        "Disk used: writable layer (container), allocated image bytes (VM).",
        lambda w: w.disk_bytes,
    ),
    WorkloadMetric(
        "densityd_workload_disk_limit_bytes",
        False,
        "Disk quota (container --storage-opt size) or virtual disk capacity (VM); "
        "absent when unlimited.",
        lambda w: w.disk_limit_bytes,
    ),
    WorkloadMetric(
        "densityd_container_memory_usage_bytes",
        False,
        "Container memory usage including page cache, as the cgroup counts it.",
        lambda w: w.memory_usage_bytes,
    ),
    WorkloadMetric(
        "densityd_container_memory_rss_bytes",
        False,
        "Container anonymous memory (rss).",
        lambda w: w.memory_rss_bytes,
    ),
    WorkloadMetric(
        "densityd_container_memory_cache_bytes",
        False,
        "Container page cache.",
        lambda w: w.memory_cache_bytes,
    ),
    WorkloadMetric(
        "densityd_container_memory_min_bytes",
        False,
        "Container memory protected from reclaim (cgroup v2 memory.min); absent when not set.",
        lambda w: w.memory_min_bytes,
    ),
    WorkloadMetric(
        "densityd_container_memory_low_bytes",
        False,
        "Container memory reclaimed only under global pressure (cgroup v2 memory.low, "
        "--memory-reservation); absent when not set.",
        lambda w: w.memory_low_bytes,
    ),
    WorkloadMetric(
        "densityd_container_memory_high_bytes",
        False,
        "Container memory throttle point (cgroup v2 memory.high); absent when not set.",
        lambda w: w.memory_high_bytes,
    ),
    WorkloadMetric(
        "densityd_container_memory_soft_limit_bytes",
        False,
        "Container memory soft limit (cgroup v1 memory.soft_limit_in_bytes, "
        "--memory-reservation); absent when not set.",
        lambda w: w.memory_soft_limit_bytes,
    ),
    WorkloadMetric(
        "densityd_workload_cpu_periods",
        True,
        "CFS bandwidth enforcement periods that had runnable tasks (cpu.stat nr_periods).",
        lambda w: w.cpu_periods,
    ),
    WorkloadMetric(
        "densityd_workload_cpu_throttled_periods",
        True,
        "CFS periods in which the workload was throttled (cpu.stat nr_throttled).",
        lambda w: w.cpu_throttled_periods,
    ),
    WorkloadMetric(
        "densityd_workload_cpu_throttled_seconds",
        True,
        "Time the workload was throttled by its CPU quota, in seconds "
        "(cpu.stat throttled_time on v1, throttled_usec on v2).",
        lambda w: w.cpu_throttled_seconds,
    ),
    WorkloadMetric(
        "densityd_vm_guest_memory_used_bytes",
        False,
        "Memory the guest itself uses (available minus usable), where its balloon driver "
        "reports it and the report is current (densityd_vm_guest_memory_status says why not).",
        lambda w: w.guest_memory_used_bytes,
    ),
    WorkloadMetric(
        "densityd_vm_vcpu_delay_seconds",
        True,
        "Time the VM's vCPUs were runnable but waiting for a host CPU (steal time as the guest "
        "would see it), summed over vCPUs: libvirt's vcpu.N.delay; absent where libvirt gives "
        "none.",
        lambda w: w.vcpu_delay_seconds,
    ),
    WorkloadMetric(
        "densityd_vm_guest_stats_age_seconds",
        False,
        "Seconds (host clock) since the guest's balloon.last-update last advanced, as seen by "
        "densityd; absent when the guest reports nothing.",
        lambda w: w.guest_stats_age_seconds,
    ),
)

HOST_GAUGES = (
    ("densityd_host_cpu_cores", "CPU cores on the host."),
    ("densityd_host_memory_bytes", "Total host memory in bytes."),
    ("densityd_host_memory_available_bytes", "Host memory available for new work (MemAvailable)."),
    (
        "densityd_host_cgroup_namespace_private",
        "1 when densityd runs in a cgroup namespace of its own (its container lacks "
        "--cgroupns=host): /proc/PID/cgroup paths are relative to it.",
    ),
)
KSM_GAUGES = (
    ("densityd_host_ksm_shared_bytes", "Memory in pages merged by KSM (pages_shared)."),
    ("densityd_host_ksm_sharing_bytes", "Memory saved by KSM page sharing (pages_sharing)."),
)
HUGEPAGE_GAUGES = (
    ("densityd_host_hugepages_bytes", "Memory in the host's huge page pool of one page size."),
    (
        "densityd_host_hugepages_free_bytes",
        "Memory in free huge pages of one size (reserved pages included).",
    ),
    (
        "densityd_host_hugepages_reserved_bytes",
        "Memory in huge pages of one size promised to a mapping but not yet faulted in.",
    ),
    (
        "densityd_host_hugepages_surplus_bytes",
        "Memory in surplus huge pages of one size (above nr_hugepages, overcommitted).",
    ),
)
DEVICE_LABELS = [*IDENTITY_LABELS, "device"]
INTERFACE_LABELS = [*IDENTITY_LABELS, "interface"]
# (direction, quantity, help noun, the interface's field)
NETWORK_COUNTERS: tuple[tuple[str, str, str, Callable[[NetworkInterface], int | None]], ...] = (
    ("receive", "bytes", "Bytes", lambda i: i.receive_bytes),
    ("receive", "packets", "Packets", lambda i: i.receive_packets),
    ("receive", "drops", "Packets dropped", lambda i: i.receive_drops),
    ("receive", "errors", "Errors", lambda i: i.receive_errors),
    ("transmit", "bytes", "Bytes", lambda i: i.transmit_bytes),
    ("transmit", "packets", "Packets", lambda i: i.transmit_packets),
    ("transmit", "drops", "Packets dropped", lambda i: i.transmit_drops),
    ("transmit", "errors", "Errors", lambda i: i.transmit_errors),
)
PRESSURE_RESOURCES = ("cpu", "memory", "io")


def pressure_levels(
    pressures: Iterable[Pressure | None],
) -> Iterator[tuple[str, str, float]]:
    """``(resource, level, seconds)`` for each level a cpu, memory, io pressure reading has."""
    for resource, pressure in zip(PRESSURE_RESOURCES, pressures, strict=True):
        if pressure is None:
            continue
        for level, seconds in (("some", pressure.some_seconds), ("full", pressure.full_seconds)):
            if seconds is not None:
                yield resource, level, seconds


class SnapshotCollector:
    """A client_python custom collector over the latest published snapshot."""

    def __init__(self, holder: SnapshotHolder, clock: Callable[[], float] = time.time) -> None:
        self._holder = holder
        self._clock = clock

    def describe(self) -> Iterator[Metric]:
        """Every family this collector can yield, without samples."""
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        """Every family, filled from the latest snapshot."""
        return self._families(self._holder.latest)

    def _families(self, snapshot: Snapshot | None) -> Iterator[Metric]:
        yield from self._workload_families(snapshot)
        yield from self._host_families(snapshot)
        yield from self._source_families(snapshot)
        build = GaugeMetricFamily(
            "densityd_build_info", "densityd build; value is always 1.", labels=["version"]
        )
        if snapshot is not None:
            build.add_metric([__version__], 1)
        yield build
        last_pass = GaugeMetricFamily(
            "densityd_last_pass_timestamp_seconds",
            "When the latest sampling pass started (Unix time).",
        )
        pass_duration = GaugeMetricFamily(
            "densityd_last_pass_duration_seconds", "How long the latest sampling pass took."
        )
        disk_age = GaugeMetricFamily(
            "densityd_docker_disk_usage_age_seconds",
            "Age of the containers' writable-layer sizes (read on the slow --disk-interval).",
        )
        if snapshot is not None:
            last_pass.add_metric([], snapshot.timestamp)
            pass_duration.add_metric([], snapshot.pass_duration_seconds)
            if snapshot.disk_usage_timestamp is not None:
                disk_age.add_metric([], max(0.0, self._clock() - snapshot.disk_usage_timestamp))
        yield last_pass
        yield pass_duration
        yield disk_age

    @staticmethod
    def _workload_families(snapshot: Snapshot | None) -> Iterator[Metric]:
        workloads = snapshot.workloads if snapshot is not None else ()
        # The allowlisted container labels; a workload without one of them gets "".
        label_names = workload_label_names(key for w in workloads for key, _ in w.labels)
        info = GaugeMetricFamily(
            "densityd_workload_info",
            "Workload metadata, with the allowlisted container labels as label_<key>; "
            "value is always 1.",
            labels=[*INFO_LABELS, *label_names.values()],
        )
        families = [
            (
                spec,
                (CounterMetricFamily if spec.counter else GaugeMetricFamily)(
                    spec.name, spec.help, labels=list(IDENTITY_LABELS)
                ),
            )
            for spec in WORKLOAD_METRICS
        ]
        device_bytes = GaugeMetricFamily(
            "densityd_vm_block_bytes",
            "Host-side bytes one virtual disk occupies.",
            labels=DEVICE_LABELS,
        )
        device_capacity = GaugeMetricFamily(
            "densityd_vm_block_capacity_bytes",
            "Virtual size of one virtual disk.",
            labels=DEVICE_LABELS,
        )
        # Per device, never summed: a sum drops when a disk is unplugged or leaves io.stat,
        # and Prometheus would read the whole new value as an increase after a reset.
        device_read = CounterMetricFamily(
            "densityd_workload_disk_read_bytes",
            "Bytes read from one block device (a VM's disk target, or the host device "
            "a container read from).",
            labels=DEVICE_LABELS,
        )
        device_written = CounterMetricFamily(
            "densityd_workload_disk_written_bytes",
            "Bytes written to one block device (a VM's disk target, or the host device "
            "a container wrote to).",
            labels=DEVICE_LABELS,
        )
        network = [
            (
                field,
                CounterMetricFamily(
                    f"densityd_workload_network_{direction}_{quantity}",
                    f"{noun} {'received' if direction == 'receive' else 'transmitted'} on one "
                    "network interface, as the workload counts (a VM's host-side device from the "
                    "guest's side, an interface in a container's network namespace; lo and the "
                    "host's own network are left out).",
                    labels=INTERFACE_LABELS,
                ),
            )
            for direction, quantity, noun, field in NETWORK_COUNTERS
        ]
        vm_hugepages = GaugeMetricFamily(
            "densityd_vm_hugepages_bytes",
            "Guest memory a running VM holds in huge pages of one size (its memoryBacking), "
            "not in ordinary memory.",
            labels=[*IDENTITY_LABELS, "size"],
        )
        pressure = CounterMetricFamily(
            "densityd_workload_pressure_seconds",
            "Time some (level=some) or all (level=full) of the workload's tasks were stalled on "
            "a resource (cpu, memory, io), from its cgroup v2 PSI files; absent on cgroup v1.",
            labels=[*IDENTITY_LABELS, "resource", "level"],
        )
        oom_kills = CounterMetricFamily(
            "densityd_container_oom_kills",
            "Processes killed by the OOM killer in the container (its cgroup's oom_kill, and "
            "Docker's oom events for kills its cgroup was gone before showing); kept a while "
            "for a removed container.",
            labels=list(IDENTITY_LABELS),
        )
        guest_status = GaugeMetricFamily(
            "densityd_vm_guest_memory_status",
            "Whether a running VM's guest memory figures are known; value is always 1. status: "
            "current, stale, not_reported (no balloon driver, or no report yet), "
            "no_stats_period, no_balloon.",
            labels=[*IDENTITY_LABELS, "status"],
        )
        for workload in workloads:
            identity = [str(workload.kind), workload.id, workload.name]
            values = dict(workload.labels)
            if workload.guest_stats_status:
                guest_status.add_metric([*identity, workload.guest_stats_status], 1)
            info.add_metric(
                [
                    *identity,
                    workload.image,
                    workload.os,
                    workload.state,
                    *(values.get(key, "") for key in label_names),
                ],
                1,
            )
            for device in workload.block_devices:
                if device.bytes is not None:
                    device_bytes.add_metric([*identity, device.name], device.bytes)
                if device.capacity_bytes is not None:
                    device_capacity.add_metric([*identity, device.name], device.capacity_bytes)
                if workload.running and device.read_bytes is not None:
                    device_read.add_metric([*identity, device.name], device.read_bytes)
                if workload.running and device.written_bytes is not None:
                    device_written.add_metric([*identity, device.name], device.written_bytes)
            if workload.running:
                for interface in workload.interfaces:
                    for field, counter in network:
                        count = field(interface)
                        if count is not None:
                            counter.add_metric([*identity, interface.name], count)
                if workload.hugepage_bytes is not None and workload.hugepage_size_bytes:
                    vm_hugepages.add_metric(
                        [*identity, str(workload.hugepage_size_bytes)], workload.hugepage_bytes
                    )
            for spec, family in families:
                value = spec.value(workload)
                if value is not None:
                    family.add_metric(identity, value)
            for resource, level, seconds in pressure_levels(
                (workload.cpu_pressure, workload.memory_pressure, workload.io_pressure)
            ):
                pressure.add_metric([*identity, resource, level], seconds)
            if workload.oom_kills is not None:
                oom_kills.add_metric(identity, workload.oom_kills)
        listed = {w.id for w in workloads}
        for removed in snapshot.removed_oom_kills if snapshot is not None else ():
            if removed.id not in listed:
                oom_kills.add_metric(["container", removed.id, removed.name], removed.kills)
        yield info
        for _spec, family in families:
            yield family
        yield device_read
        yield device_written
        yield device_bytes
        yield device_capacity
        for _field, counter in network:
            yield counter
        yield vm_hugepages
        yield pressure
        yield oom_kills
        yield guest_status

    @staticmethod
    def _host_families(snapshot: Snapshot | None) -> Iterator[Metric]:
        gauges = [GaugeMetricFamily(name, doc) for name, doc in HOST_GAUGES]
        ksm_gauges = [GaugeMetricFamily(name, doc) for name, doc in KSM_GAUGES]
        hugepage_gauges = [
            GaugeMetricFamily(name, doc, labels=["size"]) for name, doc in HUGEPAGE_GAUGES
        ]
        disk_total = GaugeMetricFamily(
            "densityd_host_disk_bytes",
            "Size of the filesystem holding workload data.",
            labels=["path"],
        )
        disk_free = GaugeMetricFamily(
            "densityd_host_disk_free_bytes",
            "Free space on the filesystem holding workload data.",
            labels=["path"],
        )
        host_pressure = CounterMetricFamily(
            "densityd_host_pressure_seconds",
            "Time some (level=some) or all (level=full) non-idle tasks on the host were stalled "
            "on a resource (cpu, memory, io), from /proc/pressure; absent without PSI.",
            labels=["resource", "level"],
        )
        host = snapshot.host if snapshot is not None else None
        if host is not None:
            for resource, level, seconds in pressure_levels(_host_pressures(host)):
                host_pressure.add_metric([resource, level], seconds)
            values = (
                host.cpu_cores,
                host.memory_bytes,
                host.memory_available_bytes,
                int(host.cgroup_namespace_private),
            )
            for gauge, value in zip(gauges, values, strict=True):
                gauge.add_metric([], value)
            for gauge, ksm in zip(
                ksm_gauges, (host.ksm_shared_bytes, host.ksm_sharing_bytes), strict=True
            ):
                if ksm is not None:
                    gauge.add_metric([], ksm)
            for pool in host.hugepages:
                pages = (pool.total, pool.free, pool.reserved, pool.surplus)
                for gauge, count in zip(hugepage_gauges, pages, strict=True):
                    if count is not None:
                        gauge.add_metric([str(pool.size_bytes)], count * pool.size_bytes)
            for disk in host.disks:
                disk_total.add_metric([disk.path], disk.total_bytes)
                disk_free.add_metric([disk.path], disk.free_bytes)
        cpu_info = GaugeMetricFamily(
            "densityd_host_cpu_info",
            "The host's CPU model and topology as libvirt reports it; value is always 1.",
            labels=[
                "model",
                "mhz",
                "numa_nodes",
                "sockets_per_node",
                "cores_per_socket",
                "threads_per_core",
            ],
        )
        node = snapshot.node if snapshot is not None else None
        if node is not None:
            cpu_info.add_metric(
                [
                    node.cpu_model,
                    str(node.mhz),
                    str(node.numa_nodes),
                    str(node.sockets_per_node),
                    str(node.cores_per_socket),
                    str(node.threads_per_core),
                ],
                1,
            )
        engine_info = GaugeMetricFamily(
            "densityd_docker_engine_info",
            "The engine behind the Docker API source (docker or podman); value is always 1.",
            labels=["engine", "version", "api_version"],
        )
        engine = snapshot.engine if snapshot is not None else None
        if engine is not None:
            engine_info.add_metric([engine.name, engine.version, engine.api_version], 1)
        yield from gauges
        yield host_pressure
        yield cpu_info
        yield engine_info
        yield from ksm_gauges
        yield from hugepage_gauges
        yield disk_total
        yield disk_free
        yield from status_families(
            "densityd_host_disk",
            "path",
            ("filesystem", "statvfs", "statvfs calls"),
            host.disk_checks if host is not None else (),
        )

    @staticmethod
    def _source_families(snapshot: Snapshot | None) -> Iterator[Metric]:
        statuses = snapshot.sources if snapshot is not None else ()
        yield from status_families(
            "densityd_source", "source", ("source", "pass", "passes"), statuses
        )


def _host_pressures(host: HostSample) -> tuple[Pressure | None, ...]:
    return (host.cpu_pressure, host.memory_pressure, host.io_pressure)


def status_families(
    prefix: str, label: str, names: tuple[str, str, str], statuses: Iterable[SourceStatus]
) -> Iterator[Metric]:
    """The self-monitoring families of guarded calls: ``{prefix}_up``, ``_duration_seconds``,
    ``_errors_total`` and ``_last_success_timestamp_seconds``, one series per ``label``.

    ``names``: what is called, one call, many calls (``("source", "pass", "passes")``).
    """
    thing, call, calls = names
    up = GaugeMetricFamily(
        f"{prefix}_up", f"1 when the {thing}'s latest {call} succeeded.", labels=[label]
    )
    duration = GaugeMetricFamily(
        f"{prefix}_duration_seconds", f"How long the {thing}'s latest {call} took.", labels=[label]
    )
    errors = CounterMetricFamily(
        f"{prefix}_errors", f"Failed or timed-out {calls} of the {thing}.", labels=[label]
    )
    last_success = GaugeMetricFamily(
        f"{prefix}_last_success_timestamp_seconds",
        f"When the {thing} last succeeded (Unix time).",
        labels=[label],
    )
    for status in statuses:
        up.add_metric([status.name], 1 if status.up else 0)
        duration.add_metric([status.name], status.duration_seconds)
        errors.add_metric([status.name], status.errors_total)
        if status.last_success_timestamp is not None:
            last_success.add_metric([status.name], status.last_success_timestamp)
    yield from (up, duration, errors, last_success)


def render(
    snapshot: Snapshot | None,
    clock: Callable[[], float] = time.time,
    extra: Sequence[Collector] = (),
) -> bytes:
    """The text exposition of one snapshot (densityd's families only; empty ones for None).

    ``extra`` collectors (the history's health, the live plan) are rendered with it.
    """
    holder = SnapshotHolder()
    if snapshot is not None:
        holder.publish(snapshot)
    collectors = (SnapshotCollector(holder, clock), *extra)
    return text_exposition(itertools.chain.from_iterable(c.collect() for c in collectors))


class Exposition:
    """The ``/metrics`` body, rendered once per snapshot rather than once per scrape.

    Rendering 200 workloads' ~2,000 samples takes tens of milliseconds in client_python; the
    snapshot only changes once per pass, so the sampler's thread renders (and gzips) it right
    after publishing, and a scrape costs a memory copy plus the small ``process_*`` families.
    Gzip members concatenate into one valid gzip stream, so the two parts are compressed apart.
    """

    def __init__(
        self,
        holder: SnapshotHolder,
        clock: Callable[[], float] = time.time,
        extra: Sequence[Collector] = (),
    ) -> None:
        self._holder = holder
        self._clock = clock
        self._extra = tuple(extra)
        self._process = CollectorRegistry()
        ProcessCollector(registry=self._process)
        self._lock = threading.Lock()
        self._rendered_for: Snapshot | None = None
        self._plain = render(None, clock, self._extra)
        self._gzipped = gzip.compress(self._plain, compresslevel=5)
        holder.subscribe(self.refresh)

    def refresh(self, snapshot: Snapshot | None = None) -> None:
        """Render the latest snapshot unless it is already rendered."""
        with self._lock:
            latest = self._holder.latest
            if latest is None or latest is self._rendered_for:
                return
            plain = render(latest, self._clock, self._extra)
            self._plain, self._gzipped = plain, gzip.compress(plain, compresslevel=5)
            self._rendered_for = latest

    def body(self, gzipped: bool = False) -> bytes:
        """The current exposition text, gzip-compressed if asked."""
        self.refresh()
        process = generate_latest(self._process)
        if gzipped:
            return self._gzipped + gzip.compress(process, compresslevel=5)
        return self._plain + process
