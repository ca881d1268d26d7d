"""The Docker source: every container's CPU, memory, block I/O and writable-layer size.

The only module that imports ``docker``. It uses the Engine API read-only (GET requests only:
list, inspect, events, info, stats) and reads usage from the cgroup files on the hot path.
Of a container's configuration it keeps only limits, name, image and the labels named in the
allowlist; environment variables and other labels are never copied out of the inspect data.

- discovery follows the engine's event stream (``docker_events.ContainerEvents``: one
  long-lived ``GET /events``, on its own thread) into a table of containers: a pass inspects
  only the containers whose events say they changed, and a steady pass makes no Engine call
  at all. Every (re)connect of the stream is followed by a full list (``GET
  /containers/json?all=1``) and inspects of what changed, and so is every
  ``resync_interval`` (the safety net); while the stream is down, every pass lists, so a
  pass that cannot reach the engine fails and the source is down, never silently current.
  A frozen engine (one that accepts connections but answers nothing) is found at the next
  resync;
- usage comes from the cgroup files (``cgroups.CgroupReader``), or, where they cannot be
  reached (a remote ``DOCKER_HOST``, a container without the host's cgroup tree), from the
  Engine's one-shot stats on a bounded thread pool;
- Podman's Docker-compatible API (``podman system service``) is the same source: the engine
  is told apart by ``/version`` (a "Podman Engine" component), its cgroups are looked for in
  Podman's layouts (``cgroups.container_cgroup_path``), and its changes are followed through
  its compatible ``/events`` stream (``podman update`` changes neither inspect nor the
  events: Podman's limits are read from the cgroup at every pass);
- the writable-layer size (``SizeRw``) needs ``containers(size=True)``, which can take minutes
  on a big host, so ``refresh_disk_usage`` runs on its own slow schedule;
- OOM kills are counted from the cgroup's counter (``memory.events`` / ``memory.oom_control``)
  and from Docker's ``oom`` events, counted as the stream brings them: a container killed
  and removed between two passes has no cgroup left to read, but its event still counts.
  Docker 20.10 on cgroup v2 does not always send that event, and Podman 4.3 logs none, so the
  counter is also read when the kernel announces a change to ``memory.events`` (v2,
  ``cgroup_notify``: at the kill, while the cgroup is still there) and at the container's
  ``die`` event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors
import requests.exceptions

from densityd.collect.sources.base import SourceUnavailable
from densityd.collect.sources.block_names import BlockDeviceNames
from densityd.collect.sources.cgroup_notify import CgroupFileNotifier
from densityd.collect.sources.cgroups import (
    CgroupDriver,
    CgroupReader,
    CgroupStats,
    Engine,
    in_private_namespace,
    read_oom_kill_counter,
)
from densityd.collect.sources.docker_events import Changes, ContainerEvents, event_container
from densityd.collect.sources.docker_stats import (
    count_cpuset,
    cpu_limit_cores,
    parse_stats,
    storage_limit_bytes,
    unswap_device_numbers,
)
from densityd.collect.sources.netdev import host_net_namespace, net_namespace, read_interfaces
from densityd.model import (
    BlockDevice,
    ContainerEngine,
    NetworkInterface,
    OomKills,
    SourceReading,
    WorkloadKind,
    WorkloadSample,
)

log = logging.getLogger("densityd.sources.docker")

StatsMode = Literal["auto", "cgroup", "api"]

# How long a pass that finds the event stream down waits for it to open (or fail to).
CONNECT_WAIT_SECONDS = 2.0
# How long a removed container's OOM kill count stays exported: long enough for any
# reasonable scrape interval to see the kill that ended it.
REMOVED_OOM_RETENTION_SECONDS = 600.0


@dataclass
class _OomCount:
    """The OOM kills counted for one container: its cgroup's counter and the Engine's events.

    The total is the larger of the two, each of which only grows: the cgroup's counts every
    kill while the cgroup can be read (and starts at 0 with a new cgroup each time the
    container starts, so earlier cgroups' counts are kept), the events count kills whose
    cgroup was gone before it could be read again.

    Readings come from more than one thread (the pass, the kernel's notices, the ``die``
    event), so one taken before a kill can be observed after one taken after it: a lower
    reading means a new cgroup only when it was taken after the highest one.
    """

    name: str
    earlier_cgroups: int = 0
    cgroup: int | None = None
    cgroup_read_at: float = 0.0  # Unix seconds, when the reading in ``cgroup`` was taken
    events: int = 0
    gone_since: float | None = None
    event_keys: set[tuple[str, int]] = field(default_factory=set)

    def observe(self, kills: int, read_at: float) -> None:
        """The current cgroup's ``oom_kill`` as read at ``read_at`` (at or before the read)."""
        if self.cgroup is not None and kills < self.cgroup:
            if read_at <= self.cgroup_read_at:
                return  # taken before the higher reading, observed after it: stale
            self.earlier_cgroups += self.cgroup  # a new cgroup: the container was restarted
        self.cgroup = kills
        self.cgroup_read_at = max(self.cgroup_read_at, read_at)

    def total(self) -> int | None:
        """Kills counted, or ``None`` when neither the cgroup nor an event has told."""
        if self.cgroup is None and not self.events and not self.earlier_cgroups:
            return None
        return max(self.earlier_cgroups + (self.cgroup or 0), self.events)


@dataclass(frozen=True, slots=True)
class _ContainerMeta:
    """What inspect told us about one container, kept until the container changes."""

    fingerprint: tuple[str, ...]
    name: str
    image: str
    state: str
    cpu_limit_cores: float | None
    memory_limit_bytes: int | None
    disk_limit_bytes: int | None
    cgroup_path: str | None
    labels: tuple[tuple[str, str], ...] = ()
    cpuset_cores: float | None = None
    # The init process whose /proc/PID/net/dev holds the container's interfaces; None when
    # they are not to be read: host network, not running, or a remote engine's PID.
    net_pid: int | None = None


@dataclass(frozen=True, slots=True)
class _EngineInfo:
    """Facts about the engine read once per connection."""

    version: str
    cgroup_driver: CgroupDriver
    cgroup_version: int
    root_dir: str
    api_version: str
    engine: Engine = "docker"


def _root_cause(exc: BaseException) -> str:
    """The innermost OS error's text ("No such file or directory"), else the exception's."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        pending.extend([*current.args, current.__cause__, current.__context__])
    return str(exc)


def allowlisted_labels(
    labels: Mapping[str, Any] | None, allowlist: Iterable[str]
) -> tuple[tuple[str, str], ...]:
    """The allowlisted keys' values in allowlist order, ``""`` for a key the container lacks.

    Every container gets every allowlisted key, so ``densityd_workload_info`` has one label set.
    """
    found = labels if isinstance(labels, Mapping) else {}
    return tuple((key, str(found.get(key) or "")) for key in allowlist)


def engine_of(version: Mapping[str, Any]) -> tuple[Engine, str]:
    """Which engine answered ``GET /version``, and its version: ("podman", "4.3.1").

    Podman's compatible API says so in its components (``{"Name": "Podman Engine", ...}``);
    its ``Version`` is Podman's own, not a Docker version.
    """
    for component in version.get("Components") or ():
        if isinstance(component, Mapping) and component.get("Name") == "Podman Engine":
            return "podman", str(component.get("Version") or version.get("Version") or "unknown")
    platform = version.get("Platform")
    if isinstance(platform, Mapping) and "podman" in str(platform.get("Name", "")).lower():
        return "podman", str(version.get("Version") or "unknown")
    return "docker", str(version.get("Version") or "unknown")


_ENGINE_TITLES: dict[Engine, str] = {"docker": "Docker", "podman": "Podman"}


def _is_local(base_url: str) -> bool:
    return base_url.startswith(("unix://", "http+unix://", "npipe://"))


PRIVATE_NAMESPACE_NOTE = (
    " (from a private cgroup namespace: containers' cgroups are found by their layout, or by"
    " searching the tree for their ID)"
)


class DockerSource:
    """Samples every container of one Docker engine."""

    name = "docker"

    def __init__(
        self,
        docker_host: str | None = None,
        cgroup_root: Path | str = "/sys/fs/cgroup",
        stats_mode: StatsMode = "auto",
        api_workers: int = 16,
        timeout: float = 10.0,
        proc_root: Path | str = "/proc",
        label_allowlist: Iterable[str] = (),
        disk_timeout: float = 600.0,
        sys_root: Path | str = "/sys",
        resync_interval: float = 300.0,
    ) -> None:
        """``timeout`` bounds each API call of a pass; ``disk_timeout`` the writable-layer
        scan, whose one answer only comes once the engine has walked every layer;
        ``resync_interval`` is how often every container is listed although the event
        stream said nothing (and how long a quiet stream stays open before it is reopened)."""
        self._cgroups = CgroupReader(cgroup_root)
        # Only these label keys are ever read, so the label cardinality stays what was asked.
        self._label_allowlist = tuple(dict.fromkeys(label_allowlist))
        self._stats_mode = stats_mode
        self._timeout = timeout
        self._disk_timeout = disk_timeout
        self._disk_client: Any = None
        self._proc_root = Path(proc_root)
        self._pool_size = api_workers
        self._pool = ThreadPoolExecutor(max_workers=api_workers, thread_name_prefix="docker-stats")
        self._lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._client: Any = None
        self._engine: _EngineInfo | None = None
        self._meta: dict[str, _ContainerMeta] = {}
        self._resync_interval = resync_interval
        self._last_resync: float | None = None
        self._oom_lock = threading.Lock()  # the stream thread counts, the pass reads
        self._oom: dict[str, _OomCount] = {}
        self._sizes: dict[str, int] = {}
        self._sizes_timestamp: float | None = None
        self.base_url: str = docker_host or str(
            docker.utils.kwargs_from_env().get("base_url") or "unix:///var/run/docker.sock"
        )
        """Where the engine is reached, as configured or from ``DOCKER_HOST``."""
        # A remote engine's device numbers are its host's: this host's sysfs cannot name them.
        self._device_names = BlockDeviceNames(sys_root if _is_local(self.base_url) else None)
        self._sys_root = Path(sys_root)
        # Fixed for the process; a container in it shares the host's interfaces.
        self._host_netns = host_net_namespace(self._proc_root) if _is_local(self.base_url) else None
        self._use_cgroups = stats_mode == "cgroup" or (
            stats_mode == "auto" and _is_local(self.base_url) and self._cgroups.available()
        )
        self._events = ContainerEvents(
            new_client=lambda: self._api_client(self._timeout, 1),
            idle_timeout=resync_interval,
            on_oom=self._count_oom_event,
            where=self.base_url,
            on_exit=self._read_oom_kills_at_exit,
        )
        self._oom_notifier = CgroupFileNotifier(self._read_oom_kills, name="docker-oom-notices")

    # -- connection ---------------------------------------------------------------------

    def _connect(self) -> Any:
        """Return a live API client, creating it (and reading engine facts) if needed."""
        with self._connect_lock:  # the sampling pass and the disk scan run on two threads
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _api_client(self, timeout: float, pool_size: int) -> Any:
        """A Docker API client whose every call is bounded by ``timeout``."""
        kwargs: dict[str, Any] = docker.utils.kwargs_from_env()
        kwargs["base_url"] = self.base_url
        return docker.APIClient(version="auto", timeout=timeout, max_pool_size=pool_size, **kwargs)

    def _new_client(self) -> Any:
        try:
            # One connection per stats worker thread.
            client = self._api_client(self._timeout, self._pool_size)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._unreachable(exc) from exc
        self._read_engine_facts(client)
        return client

    def _unreachable(self, exc: BaseException) -> SourceUnavailable:
        hint = " (is dockerd running?)" if _is_local(self.base_url) else ""
        return SourceUnavailable(
            f"cannot reach Docker at {self.base_url}: {_root_cause(exc)}{hint}"
        )

    def _read_engine_facts(self, client: Any) -> None:
        """Read what the engine is (version, cgroup driver, data root) and forget the table."""
        try:
            info = client.info()
            engine, version = engine_of(client.version())
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._unreachable(exc) from exc
        self._engine = _EngineInfo(
            engine=engine,
            version=version if engine == "podman" else str(info.get("ServerVersion") or version),
            cgroup_driver="systemd" if info.get("CgroupDriver") == "systemd" else "cgroupfs",
            cgroup_version=int(info.get("CgroupVersion") or 1),
            root_dir=str(info.get("DockerRootDir") or "/var/lib/docker"),
            api_version=str(client.api_version),
        )
        self._meta.clear()  # a (re)connected engine may hold other containers under the same IDs

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def root_dir(self) -> str | None:
        """Docker's data root (``DockerRootDir``) when the engine is local, once connected."""
        if self._engine is None or not _is_local(self.base_url):
            return None
        return self._engine.root_dir

    def uses_cgroup_files(self) -> bool:
        """Tell whether usage comes from cgroup files (else from the Engine stats API)."""
        return self._use_cgroups

    def probe(self) -> str:
        """Connect and describe the engine and how usage will be read."""
        self._connect()
        engine = self._engine
        assert engine is not None
        if self.uses_cgroup_files():
            how = f"reading cgroup v{self._cgroups.version} files under {self._cgroups.root}"
            if in_private_namespace(self._proc_root):
                how += PRIVATE_NAMESPACE_NOTE
                log.warning(
                    "densityd runs in a private cgroup namespace: the cgroup paths in %s/PID/"
                    "cgroup are relative to it; run its container with --cgroupns=host",
                    self._proc_root,
                )
        else:
            reason = (
                "forced by configuration"
                if self._stats_mode == "api"
                else (
                    "the engine is remote"
                    if not _is_local(self.base_url)
                    else f"no cgroup tree at {self._cgroups.root}"
                )
            )
            how = f"reading the Engine stats API ({reason})"
        return (
            f"{_ENGINE_TITLES[engine.engine]} {engine.version} at {self.base_url} "
            f"(API {engine.api_version}, "
            f"cgroup v{engine.cgroup_version}, {engine.cgroup_driver} driver); {how}"
        )

    def close(self) -> None:
        """Close the event stream, the OOM notices, the API clients and the stats pool."""
        self._events.close()
        self._oom_notifier.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._disconnect()
        disk_client, self._disk_client = self._disk_client, None
        if disk_client is not None:
            disk_client.close()

    # -- one pass -------------------------------------------------------------------------

    def sample(self) -> SourceReading:
        """Bring the container table up to date with what the events said, read usage; one
        reading per pass. A steady pass (no events) makes no Engine call."""
        client = self._connect()
        if not self._events.connected:
            # The list must come after the stream opened, or a change in between is lost; an
            # engine back from a restart is followed again at once.
            self._events.connect_now(min(self._timeout, CONNECT_WAIT_SECONDS))
        changes = self._events.take()
        try:
            return self._sample(client, changes)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            self._events.give_back(changes)
            # Drop the client so that the next attempt re-reads engine facts (a restarted
            # dockerd may come back with another driver or data root).
            self._disconnect()
            raise SourceUnavailable(f"Docker at {self.base_url}: {_root_cause(exc)}") from exc
        except BaseException:
            self._events.give_back(changes)
            raise

    def _sample(self, client: Any, changes: Changes) -> SourceReading:
        now = time.monotonic()
        resync = (
            changes.resync
            or changes.full
            or not changes.connected  # nobody else tells what changed: list at every pass
            or self._last_resync is None
            or now - self._last_resync >= self._resync_interval
        )
        if changes.full:
            self._read_engine_facts(client)  # the engine may have restarted: re-read it all
        if resync:
            listed: list[dict[str, Any]] = client.containers(all=True)
            present = {str(c["Id"]) for c in listed}
            for gone in set(self._meta) - present:
                del self._meta[gone]
            stale: list[tuple[str, tuple[str, ...] | None]] = []
            for summary in listed:
                container_id = str(summary["Id"])
                fingerprint = self._fingerprint(summary)
                cached = self._meta.get(container_id)
                if (
                    cached is None
                    or cached.fingerprint != fingerprint
                    or container_id in changes.dirty
                    # No stream: nothing tells of an update, which a list does not show.
                    or not changes.connected
                ):
                    stale.append((container_id, fingerprint))
        else:
            stale = [(cid, None) for cid in changes.dirty - changes.removed]
        for removed in changes.removed:
            self._meta.pop(removed, None)
        self._inspect_changed(client, stale)
        if resync or stale or changes.removed:  # the table changed: so do the watched files
            self._follow_oom_counters()
        if resync:
            self._last_resync = now

        running: list[tuple[str, _ContainerMeta]] = []
        stopped: list[WorkloadSample] = []
        for container_id, meta in list(self._meta.items()):
            if meta.state == "running":
                running.append((container_id, meta))
            else:
                stopped.append(self._workload(container_id, meta, None))

        samples = self._read_usage(client, running)
        engine = self._engine
        return SourceReading(
            workloads=tuple(samples + stopped),
            engine=(
                None
                if engine is None
                else ContainerEngine(engine.engine, engine.version, engine.api_version)
            ),
            removed_oom_kills=self._removed_oom_kills(set(self._meta), time.monotonic()),
        )

    def _removed_oom_kills(self, present: set[str], now: float) -> tuple[OomKills, ...]:
        """Kill counts of containers no longer listed, while they are kept (and forget the
        others): a container removed right after its kill is still counted."""
        removed: list[OomKills] = []
        with self._oom_lock:
            return self._removed_oom_kills_locked(present, now, removed)

    def _removed_oom_kills_locked(
        self, present: set[str], now: float, removed: list[OomKills]
    ) -> tuple[OomKills, ...]:
        for container_id, count in list(self._oom.items()):
            if container_id in present:
                count.gone_since = None
                continue
            if count.gone_since is None:
                count.gone_since = now
            total = count.total()
            if total and now - count.gone_since <= REMOVED_OOM_RETENTION_SECONDS:
                removed.append(OomKills(container_id, count.name, total))
            else:
                del self._oom[container_id]
        return tuple(removed)

    def _count_oom_event(self, event: Mapping[str, Any]) -> None:
        """Count one ``oom`` event, once however often it is seen (a reconnected stream
        replays the events ``since`` the last one, that one included)."""
        container_id = event_container(event)
        if not container_id:
            return
        attributes: Mapping[str, Any] = (event.get("Actor") or {}).get("Attributes") or {}
        meta = self._meta.get(container_id)
        name = meta.name if meta else str(attributes.get("name") or container_id[:12])
        key = (
            str(event.get("Action") or event.get("status") or ""),
            int(event.get("timeNano") or int(event.get("time") or 0) * 10**9),
        )
        with self._oom_lock:
            count = self._oom.setdefault(container_id, _OomCount(name))
            if key in count.event_keys:
                return
            # Only a replay repeats an event, and it starts at the last one seen: older keys
            # need not be kept.
            count.event_keys = {k for k in count.event_keys if k[1] >= key[1] - 60 * 10**9}
            count.event_keys.add(key)
            count.events += 1

    @staticmethod
    def _fingerprint(summary: Mapping[str, Any]) -> tuple[str, ...]:
        """What in a list entry tells that a container changed: names, image, state."""
        return (
            ",".join(summary.get("Names") or ()),
            str(summary.get("Image", "")),
            str(summary.get("State", "")),
        )

    def _inspect_changed(
        self, client: Any, stale: list[tuple[str, tuple[str, ...] | None]]
    ) -> None:
        """Inspect the containers that are new or changed, in parallel on the worker pool
        (``None`` fingerprint: none listed, take it from the inspect)."""
        inspections = [
            (cid, fingerprint, self._pool.submit(self._inspect, client, cid))
            for cid, fingerprint in stale
        ]
        for container_id, fingerprint, future in inspections:
            inspect = future.result()
            if inspect is None:
                self._meta.pop(container_id, None)  # removed before the inspect
            else:
                self._meta[container_id] = self._meta_from_inspect(
                    container_id, fingerprint or self._inspect_fingerprint(inspect), inspect
                )

    @staticmethod
    def _inspect_fingerprint(inspect: Mapping[str, Any]) -> tuple[str, ...]:
        """The list entry's fingerprint as the inspect data gives it: name, image, state."""
        return (
            str(inspect.get("Name", "")),
            str((inspect.get("Config") or {}).get("Image") or inspect.get("Image", "")),
            str((inspect.get("State") or {}).get("Status", "")),
        )

    @staticmethod
    def _inspect(client: Any, container_id: str) -> dict[str, Any] | None:
        try:
            return client.inspect_container(container_id)  # type: ignore[no-any-return]
        except docker.errors.NotFound:
            return None

    def _meta_from_inspect(
        self, container_id: str, fingerprint: tuple[str, ...], inspect: Mapping[str, Any]
    ) -> _ContainerMeta:
        host_config: Mapping[str, Any] = inspect.get("HostConfig") or {}
        state: Mapping[str, Any] = inspect.get("State") or {}
        status = str(state.get("Status", "unknown"))
        cgroup_path = None
        if status == "running" and self.uses_cgroup_files():
            cgroup_path = self._cgroups.resolve(
                container_id,
                str(host_config.get("CgroupParent") or ""),
                self._engine.cgroup_driver if self._engine else "cgroupfs",
                self._proc_cgroup(state.get("Pid")),
                self._engine.engine if self._engine else "docker",
            )
            if cgroup_path is None:
                log.debug("no cgroup found for container %s; using the stats API", container_id)
        memory = int(host_config.get("Memory") or 0)
        try:
            disk_limit = storage_limit_bytes(host_config)
        except ValueError:
            disk_limit = None
        return _ContainerMeta(
            fingerprint=fingerprint,
            name=str(inspect.get("Name", "")).lstrip("/") or container_id[:12],
            image=str((inspect.get("Config") or {}).get("Image") or inspect.get("Image", "")),
            state=status,
            cpu_limit_cores=cpu_limit_cores(host_config),
            cpuset_cores=self._cpuset_cores(host_config),
            memory_limit_bytes=memory if memory > 0 else None,
            disk_limit_bytes=disk_limit,
            cgroup_path=cgroup_path,
            labels=allowlisted_labels(
                (inspect.get("Config") or {}).get("Labels"), self._label_allowlist
            ),
            net_pid=self._net_pid(status, state.get("Pid"), host_config.get("NetworkMode")),
        )

    def _net_pid(self, status: str, pid: Any, network_mode: Any) -> int | None:
        """The PID whose net/dev to read, unless the container shares the host's network.

        ``NetworkMode`` ``host``, or a namespace that is the host's (``container:`` of a
        host-network container): its figures would only repeat the host's.
        """
        if status != "running" or not _is_local(self.base_url) or network_mode == "host":
            return None
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None
        namespace = net_namespace(self._proc_root, pid)
        if namespace is None or namespace == self._host_netns:
            return None
        return pid

    @staticmethod
    def _cpuset_cores(host_config: Mapping[str, Any]) -> float | None:
        try:
            count = count_cpuset(str(host_config.get("CpusetCpus") or ""))
        except ValueError:
            return None
        return None if count is None else float(count)

    def _with_cgroup_limits(self, meta: _ContainerMeta) -> _ContainerMeta:
        """Podman's limits as its cgroup enforces them (its inspect misses ``podman update``)."""
        if meta.cgroup_path is None:
            return meta
        limits = self._cgroups.read_limits(meta.cgroup_path)
        cpu = [c for c in (limits.cpu_cores, meta.cpuset_cores) if c is not None]
        return replace(
            meta,
            memory_limit_bytes=limits.memory_bytes,
            cpu_limit_cores=min(cpu) if cpu else None,
        )

    def _proc_cgroup(self, pid: Any) -> str | None:
        if not isinstance(pid, int) or pid <= 0:
            return None
        try:
            return (self._proc_root / str(pid) / "cgroup").read_text()
        except OSError:
            return None  # another PID namespace, or the process is gone

    def _read_usage(
        self, client: Any, running: list[tuple[str, _ContainerMeta]]
    ) -> list[WorkloadSample]:
        samples: list[WorkloadSample] = []
        via_api: list[tuple[str, _ContainerMeta]] = []
        for container_id, meta in running:
            if meta.cgroup_path is None or not self.uses_cgroup_files():
                if self._stats_mode == "cgroup":
                    samples.append(self._workload(container_id, meta, None))  # no usage known
                else:
                    via_api.append((container_id, meta))
                continue
            try:
                stats = self._cgroups.read(meta.cgroup_path)
                if self._engine is not None and self._engine.engine == "podman":
                    meta = self._with_cgroup_limits(meta)
            except OSError:
                continue  # the container stopped after the list: it is simply not running now
            samples.append(self._workload(container_id, meta, stats))
        if via_api:
            futures = [
                (cid, meta, self._pool.submit(self._api_stats, client, cid))
                for cid, meta in via_api
            ]
            for container_id, meta, future in futures:
                api_stats = future.result()
                if api_stats is not None:
                    samples.append(self._workload(container_id, meta, api_stats))
        self._device_names.forget_unasked()
        return samples

    def _api_stats(self, client: Any, container_id: str) -> CgroupStats | None:
        try:
            document = client.stats(container_id, stream=False, one_shot=True)
        except docker.errors.NotFound:
            return None
        except docker.errors.InvalidVersion:
            document = client.stats(container_id, stream=False)  # engines before API 1.41
        stats = parse_stats(document)
        podman = self._engine is not None and self._engine.engine == "podman"
        # Only this host's sysfs can tell which order is right: a remote engine's stays.
        if stats is not None and podman and _is_local(self.base_url):
            devices = unswap_device_numbers(stats.devices, self._is_block_device)
            stats = replace(stats, devices=devices)
        # The one-shot answer is read when the call returns, not when the pass began.
        return None if stats is None else replace(stats, cpu_read_at=time.time())

    def _is_block_device(self, device: str) -> bool:
        return (self._sys_root / "dev" / "block" / device).exists()

    def _follow_oom_counters(self) -> None:
        """Have the kernel's notices of a kill come for every running container's counter
        (where it sends them: cgroup v2)."""
        if not self.uses_cgroup_files() or not self._cgroups.announces_oom_kills():
            return
        self._oom_notifier.follow(
            {
                container_id: self._cgroups.oom_kills_file(meta.cgroup_path)
                for container_id, meta in self._meta.items()
                if meta.cgroup_path is not None
            }
        )

    def _read_oom_kills_at_exit(self, container_id: str) -> None:
        """Read an exited container's OOM kill counter at its ``die`` event, in case its cgroup
        is still there (the engine removes it after): on cgroup v1, where the kernel sends no
        notice of a kill, this is what counts a ``--rm`` container killed between two passes
        when the engine sends no ``oom`` event. Runs on the events thread: one file read."""
        meta = self._meta.get(container_id)
        if meta is None or meta.cgroup_path is None or not self.uses_cgroup_files():
            return
        self._read_oom_kills(container_id, self._cgroups.oom_kills_file(meta.cgroup_path))

    def _read_oom_kills(self, container_id: str, file: str) -> None:
        """Take the container's OOM kill counter from ``file`` now, if its cgroup is still
        there; runs on the events or the notices thread."""
        read_at = time.time()
        kills = read_oom_kill_counter(file)
        if kills is None:
            return  # the cgroup was already gone
        meta = self._meta.get(container_id)
        with self._oom_lock:
            count = self._oom.get(container_id)
            if count is None:
                name = meta.name if meta is not None else container_id[:12]
                count = self._oom[container_id] = _OomCount(name)
            count.observe(kills, read_at)

    def _oom_kills(
        self, container_id: str, meta: _ContainerMeta, stats: CgroupStats | None
    ) -> int | None:
        """The container's OOM kills: its cgroup's counter as read now, and its events."""
        kills = stats.signals.oom_kills if stats is not None else None
        # Read after the CPU counter was: that time is a bound from below.
        read_at = stats.cpu_read_at if stats is not None and stats.cpu_read_at else time.time()
        with self._oom_lock:
            count = self._oom.get(container_id)
            if count is None and kills is not None:
                count = self._oom[container_id] = _OomCount(meta.name)
            if count is None:
                return None
            count.name = meta.name
            if kills is not None:
                count.observe(kills, read_at)
            return count.total()

    def _workload(
        self, container_id: str, meta: _ContainerMeta, stats: CgroupStats | None
    ) -> WorkloadSample:
        sizes = self._sizes
        signals = stats.signals if stats is not None else None
        return WorkloadSample(
            kind=WorkloadKind.CONTAINER,
            id=container_id,
            name=meta.name,
            image=meta.image,
            state=meta.state,
            running=meta.state == "running",
            cpu_seconds=stats.cpu_seconds if stats else None,
            cpu_read_at=stats.cpu_read_at if stats else None,
            cpu_limit_cores=meta.cpu_limit_cores,
            memory_bytes=stats.working_set_bytes if stats else None,
            memory_limit_bytes=meta.memory_limit_bytes,
            memory_usage_bytes=stats.memory_usage_bytes if stats else None,
            memory_rss_bytes=stats.rss_bytes if stats else None,
            memory_cache_bytes=stats.cache_bytes if stats else None,
            disk_bytes=sizes.get(container_id),
            disk_limit_bytes=meta.disk_limit_bytes,
            disk_read_bytes=stats.read_bytes if stats else None,
            disk_written_bytes=stats.written_bytes if stats else None,
            block_devices=self._block_devices(stats),
            labels=meta.labels,
            interfaces=self._interfaces(meta) if stats else (),
            oom_kills=self._oom_kills(container_id, meta, stats),
            cpu_pressure=signals.cpu_pressure if signals else None,
            memory_pressure=signals.memory_pressure if signals else None,
            io_pressure=signals.io_pressure if signals else None,
            cpu_periods=signals.cpu_periods if signals else None,
            cpu_throttled_periods=signals.cpu_throttled_periods if signals else None,
            cpu_throttled_seconds=signals.cpu_throttled_seconds if signals else None,
            memory_min_bytes=signals.memory_min_bytes if signals else None,
            memory_low_bytes=signals.memory_low_bytes if signals else None,
            memory_high_bytes=signals.memory_high_bytes if signals else None,
            memory_soft_limit_bytes=signals.memory_soft_limit_bytes if signals else None,
        )

    def _interfaces(self, meta: _ContainerMeta) -> tuple[NetworkInterface, ...]:
        """The container's interfaces but lo (none with ``--network none``)."""
        if meta.net_pid is None:
            return ()
        return read_interfaces(self._proc_root, meta.net_pid) or ()

    def _block_devices(self, stats: CgroupStats | None) -> tuple[BlockDevice, ...]:
        """The container's I/O per host device, named (``sda``) where this host can tell."""
        if stats is None:
            return ()
        return tuple(
            BlockDevice(
                name=self._device_names.name(device.device),
                path="",
                read_bytes=device.read_bytes,
                written_bytes=device.written_bytes,
            )
            for device in stats.devices
        )

    # -- the slow schedule --------------------------------------------------------------

    def refresh_disk_usage(self) -> None:
        """Read every container's writable-layer size with one ``containers(size=True)``."""
        with self._lock:  # never two of these scans at once, however slow one is
            try:
                # A client of its own: docker-py bounds each call by its client's timeout,
                # and the pass's would cut the scan off on a big host.
                if self._disk_client is None:
                    self._disk_client = self._api_client(self._disk_timeout, 1)
                listed = self._disk_client.containers(all=True, size=True)
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                client, self._disk_client = self._disk_client, None
                if client is not None:
                    client.close()
                raise SourceUnavailable(f"Docker at {self.base_url}: {_root_cause(exc)}") from exc
            # The engine omits SizeRw when it is 0.
            self._sizes = {c["Id"]: int(c.get("SizeRw") or 0) for c in listed}
            self._sizes_timestamp = time.time()

    @property
    def disk_usage_timestamp(self) -> float | None:
        """When the writable-layer sizes were last read (Unix time), or ``None``."""
        return self._sizes_timestamp
