"""Read a container's CPU, memory and block I/O straight from its cgroup files.

This is the hot path of the Docker source (Docker or Podman behind it): a handful of small
file reads per container instead of one Engine API round trip (about 1 s each, DESIGN §3). It
knows both cgroup versions, both cgroup drivers and both engines' layouts, and it takes the
cgroup root as a parameter so that densityd can run in a container with the host's
``/sys/fs/cgroup`` mounted elsewhere, and so that the parsers can be tested against recorded trees.

Files read, per version::

    v1  cpuacct/<path>/cpuacct.usage            nanoseconds
        memory/<path>/memory.usage_in_bytes     bytes
        memory/<path>/memory.stat               total_inactive_file, total_rss, total_cache
        blkio/<path>/blkio.throttle.io_service_bytes_recursive   "8:0 Read 4096"
    v2  <path>/cpu.stat                         usage_usec
        <path>/memory.current                   bytes
        <path>/memory.stat                      inactive_file, anon, file
        <path>/io.stat                          "8:0 rbytes=4096 wbytes=0 ..."

Block I/O is kept per device (``MAJ:MIN``), as the files give it: a device leaves ``io.stat``
when it is removed, so a sum over devices would drop and read as a counter reset.

Starvation signals (``CgroupSignals``), read in the same pass::

    v1  cpu/<path>/cpu.stat                     nr_periods, nr_throttled, throttled_time (ns)
        memory/<path>/memory.oom_control        oom_kill
        memory/<path>/memory.soft_limit_in_bytes    bytes, or the "unlimited" huge value
    v2  <path>/cpu.stat                         nr_periods, nr_throttled, throttled_usec
        <path>/{cpu,memory,io}.pressure         "some avg10=0.00 avg60=0.00 avg300=0.00 total=N"
                                                and a "full" line; total in microseconds
        <path>/memory.events                    oom_kill
        <path>/memory.{min,low,high}            bytes, or "max"

Pressure needs cgroup v2 (v1 has no per-cgroup PSI files) and a kernel with PSI: booted with
``psi=0`` the files are there but reading them gives ``EOPNOTSUPP``; built without
``CONFIG_PSI`` they are not there. Either way the reason is logged once and the files are no
longer tried.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from densityd.model import Pressure

log = logging.getLogger("densityd.sources.cgroups")
# Reasons already logged, once a process whichever reader met them.
_LOGGED: set[str] = set()
_LOGGED_LOCK = threading.Lock()

CgroupDriver = Literal["cgroupfs", "systemd"]
Engine = Literal["docker", "podman"]

# A device number as the kernel prints it in blkio and io.stat files: "MAJ:MIN".
DEVICE_NUMBER = re.compile(r"[0-9]{1,10}:[0-9]{1,10}")
_COUNT = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class DeviceIO:
    """Bytes read and written on one block device, named by its number (``8:0``)."""

    device: str
    read_bytes: int
    written_bytes: int


def io_totals(devices: Iterable[DeviceIO]) -> tuple[int, int]:
    """Bytes read and written, summed over ``devices``."""
    read = written = 0
    for device in devices:
        read += device.read_bytes
        written += device.written_bytes
    return read, written


@dataclass(frozen=True, slots=True)
class CgroupSignals:
    """What tells that a cgroup's workload is starved; ``None`` where it is not known.

    ``memory_*`` only for containers (a VM's memory protection is not read).
    """

    cpu_pressure: Pressure | None = None
    memory_pressure: Pressure | None = None
    io_pressure: Pressure | None = None
    cpu_periods: int | None = None
    cpu_throttled_periods: int | None = None
    cpu_throttled_seconds: float | None = None
    oom_kills: int | None = None
    memory_min_bytes: int | None = None
    memory_low_bytes: int | None = None
    memory_high_bytes: int | None = None
    memory_soft_limit_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class CgroupStats:
    """One container's usage as its cgroup reports it."""

    cpu_seconds: float
    memory_usage_bytes: int
    working_set_bytes: int
    rss_bytes: int | None
    cache_bytes: int | None
    read_bytes: int | None
    written_bytes: int | None
    # Per device; read_bytes and written_bytes are their sums (None: no I/O accounting).
    devices: tuple[DeviceIO, ...] = ()
    # Unix seconds, when the CPU counter was read: when, not what, so not compared.
    cpu_read_at: float | None = dataclasses.field(default=None, compare=False)
    signals: CgroupSignals = CgroupSignals()


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    """The limits a cgroup enforces now; ``None`` where it sets none."""

    memory_bytes: int | None
    cpu_cores: float | None


# cgroup v1 prints "no memory limit" as the largest page-aligned long (9223372036854771712).
_V1_UNLIMITED = 1 << 62


def parse_cpu_max(text: str) -> float | None:
    """Cores from a v2 ``cpu.max`` (``"25000 100000"`` -> 0.25, ``"max 100000"`` -> None)."""
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not quota:
        return None
    return int(quota) / int(period or 100_000)


def read_kernel_file(path: str) -> str:
    """Read a small kernel file whole (unbuffered, no text layer: the hot path's unit cost)."""
    with open(path, "rb", buffering=0) as handle:
        return handle.read().decode()


def read_oom_kill_counter(file: str) -> int | None:
    """The ``oom_kill`` counter in ``memory.events`` (v2) or ``memory.oom_control`` (v1);
    ``None`` when the file cannot be read (its cgroup is gone)."""
    try:
        return parse_flat_keyed(read_kernel_file(file)).get("oom_kill")
    except OSError:
        return None


def working_set(usage_bytes: int, inactive_file_bytes: int) -> int:
    """Return usage minus inactive file cache, floored at 0, as ``docker stats`` computes it."""
    return max(0, usage_bytes - inactive_file_bytes)


def parse_pressure(text: str) -> Pressure:
    """The ``some`` and ``full`` totals of a PSI file, in seconds (the file gives microseconds).

    ``some avg10=0.00 avg60=0.00 avg300=0.00 total=1282194789`` -> ``some_seconds=1282.194789``.
    A level the file lacks (or prints malformed) is ``None``.
    """
    totals: dict[str, float] = {}
    for line in text.splitlines():
        level, *fields = line.split() or [""]
        if level not in ("some", "full"):
            continue
        for field in fields:
            key, _, value = field.partition("=")
            if key == "total" and _COUNT.fullmatch(value):
                totals[level] = int(value) / 1e6
    return Pressure(totals.get("some"), totals.get("full"))


def parse_throttling(
    cpu_stat: Mapping[str, int], version: int
) -> tuple[int | None, int | None, float | None]:
    """Periods, throttled periods and throttled seconds from a parsed ``cpu.stat``.

    v1 gives the throttled time in nanoseconds (``throttled_time``), v2 in microseconds
    (``throttled_usec``); v2 has no ``nr_periods`` where the cgroup never had a quota on
    kernels before 5.10 (only ``usage_usec`` and friends), which is then not known.
    """
    if version == 2:
        usec = cpu_stat.get("throttled_usec")
        throttled = None if usec is None else usec / 1e6
    else:
        nsec = cpu_stat.get("throttled_time")
        throttled = None if nsec is None else nsec / 1e9
    return cpu_stat.get("nr_periods"), cpu_stat.get("nr_throttled"), throttled


def parse_memory_protection(text: str, *, zero_is_unset: bool) -> int | None:
    """Bytes from a v2 ``memory.min``/``memory.low``/``memory.high``; ``None`` where not set.

    ``max`` is not set; for ``min`` and ``low`` (``zero_is_unset``) neither is ``0``, their
    default.
    """
    value = text.strip()
    if value == "max" or not _COUNT.fullmatch(value):
        return None
    number = int(value)
    return None if zero_is_unset and number == 0 else number


def parse_soft_limit_v1(text: str) -> int | None:
    """Bytes from a v1 ``memory.soft_limit_in_bytes``; ``None`` for its "unlimited" value."""
    value = text.strip()
    if not _COUNT.fullmatch(value):
        return None
    number = int(value)
    return number if number < _V1_UNLIMITED else None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse a ``key value`` per line file such as ``memory.stat`` or ``cpu.stat``."""
    words = text.split()
    if len(words) % 2 == 0:
        pairs = iter(words)
        try:
            return {key: int(value) for key, value in zip(pairs, pairs, strict=True)}
        except ValueError:
            pass  # an odd line somewhere: take the careful path below
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                values[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return values


def per_device(pairs: Iterable[tuple[str, str, str]]) -> tuple[DeviceIO, ...]:
    """Devices from ``(MAJ:MIN, read|written, value)`` triples, in first-seen order.

    Triples with a malformed device or value are skipped: a pass must not fail on one line.
    """
    totals: dict[str, list[int]] = {}
    for device, what, value in pairs:
        if not (DEVICE_NUMBER.fullmatch(device) and _COUNT.fullmatch(value)):
            continue
        entry = totals.setdefault(device, [0, 0])
        entry[0 if what == "read" else 1] += int(value)
    return tuple(DeviceIO(device, read, written) for device, (read, written) in totals.items())


def parse_blkio_v1(text: str) -> tuple[DeviceIO, ...]:
    """The Read and Write bytes per device of a v1 ``blkio.*io_service_bytes*`` file."""
    ops = {"Read": "read", "Write": "written"}
    triples = []
    for line in text.splitlines():
        parts = line.split()
        # Skips the closing "Total N" line, blanks, and the Sync/Async/Discard/Total rows.
        if len(parts) == 3 and parts[1] in ops:
            triples.append((parts[0], ops[parts[1]], parts[2]))
    return per_device(triples)


def parse_io_stat_v2(text: str) -> tuple[DeviceIO, ...]:
    """The ``rbytes`` and ``wbytes`` per device of a v2 ``io.stat`` file."""
    keys = {"rbytes": "read", "wbytes": "written"}
    triples = []
    for line in text.splitlines():
        device, *fields = line.split() or [""]
        for field in fields:
            key, _, value = field.partition("=")
            if key in keys:
                triples.append((device, keys[key], value))
    return per_device(triples)


def expand_systemd_slice(slice_name: str) -> str:
    """Turn a slice name into its cgroup path: ``a-b.slice`` -> ``a.slice/a-b.slice``."""
    if slice_name in ("", "-.slice"):
        return ""
    if not slice_name.endswith(".slice") or "/" in slice_name:
        raise ValueError(f"not a systemd slice: {slice_name!r}")
    stem = slice_name[: -len(".slice")]
    parts = stem.split("-")
    if "" in parts:  # ".slice", "-a.slice", "a--b.slice", "a-.slice": systemd and runc refuse
        raise ValueError(f"not a systemd slice: {slice_name!r}")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def container_cgroup_path(
    container_id: str, cgroup_parent: str, driver: CgroupDriver, engine: Engine = "docker"
) -> str:
    """Return where the engine puts a container's cgroup, relative to a hierarchy's root.

    Docker: ``docker/<id>`` (cgroupfs) or ``system.slice/docker-<id>.scope`` (systemd).
    Podman (rootful): ``libpod_parent/libpod-<id>`` (cgroupfs) or
    ``machine.slice/libpod-<id>.scope`` (systemd); the same paths on cgroup v1 and v2.
    """
    if engine == "podman":
        if driver == "systemd":
            parent = expand_systemd_slice(cgroup_parent or "machine.slice")
            return f"{parent}/libpod-{container_id}.scope".lstrip("/")
        parent = (cgroup_parent or "/libpod_parent").strip("/")
        return f"{parent}/libpod-{container_id}".lstrip("/")
    if driver == "systemd":
        parent = expand_systemd_slice(cgroup_parent or "system.slice")
        return f"{parent}/docker-{container_id}.scope".lstrip("/")
    parent = (cgroup_parent or "/docker").strip("/")
    return f"{parent}/{container_id}".lstrip("/")


_HOSTNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def libvirt_machine_name(domain_id: int, name: str, driver: str = "qemu") -> str:
    """The machine name libvirt gives a running domain: ``qemu-7-web``.

    As libvirt's ``virDomainDriverGenerateMachineName`` makes it: the name's letters and
    digits, runs of ``-`` and ``.`` kept as one (none leading or trailing), other characters
    dropped, cut at 64 characters.
    """
    machine = f"{driver}-{domain_id}-"
    skip = True
    for char in name:
        if len(machine) >= 64:
            break
        if char in ".-":
            if not skip:
                machine += char
            skip = True
            continue
        skip = False
        if char in _HOSTNAME_CHARS:
            machine += char
    return machine.rstrip("-.")


def machine_cgroup_paths(partition: str, domain_id: int, name: str) -> tuple[str, str]:
    """Where libvirt puts a running QEMU domain's cgroup: without systemd (cgroupfs), and
    as a systemd scope; relative to a hierarchy's root.

    ``/machine``, 7, ``web`` -> ``machine/qemu-7-web.libvirt-qemu`` and
    ``machine.slice/machine-qemu\x2d7\x2dweb.scope``. A partition other than the top
    ``machine``, ``system`` or ``user`` gets libvirt's ``.partition`` suffix per component
    without systemd, and is a nested slice with it.
    """
    machine = libvirt_machine_name(domain_id, name)
    components = [part for part in (partition or "/machine").split("/") if part]
    plain = [
        part
        if (index == 0 and part in ("machine", "system", "user")) or "." in part
        else f"{part}.partition"
        for index, part in enumerate(components)
    ]
    cgroupfs = "/".join([*plain, f"{machine}.libvirt-qemu"])
    slice_name = "-".join(part.removesuffix(".slice") for part in components) + ".slice"
    try:
        parent = expand_systemd_slice(slice_name)
    except ValueError:
        parent = "machine.slice"
    scope = "machine-" + machine.replace("-", "\\x2d") + ".scope"
    return cgroupfs, f"{parent}/{scope}"


def in_private_namespace(proc_root: Path | str) -> bool:
    """Whether densityd runs in a cgroup namespace of its own (a container without
    ``--cgroupns=host``), told from the host's init process as ``proc_root`` shows it.

    ``/proc/PID/cgroup`` paths are relative to the reader's cgroup namespace: the host's init
    sits at the root of the host's, so from a private one its path climbs out of it
    (``0::/../..``); from the host's it never does. Readable by any user, unlike the
    namespace links.
    """
    try:
        text = (Path(proc_root) / "1" / "cgroup").read_text()
    except OSError:
        return False
    return any(line.split(":", 2)[-1].startswith("/..") for line in text.splitlines())


def parse_proc_cgroup(text: str, version: int) -> str | None:
    """Return the cgroup path from a ``/proc/PID/cgroup`` file (the memory one on v1).

    Read from a private cgroup namespace the path is relative to it and starts with ``../``.
    """
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if version == 2 and hierarchy == "0" and controllers == "":
            return path.lstrip("/")
        if version == 1 and "memory" in controllers.split(","):
            return path.lstrip("/")
    return None


class CgroupReader:
    """Reads containers' cgroup files under one cgroup root (v1 or v2, detected)."""

    def __init__(self, root: Path | str = "/sys/fs/cgroup") -> None:
        self.root = Path(root)
        self.version = 2 if (self.root / "cgroup.controllers").exists() else 1
        self._cpu_dir = self._first_existing("cpuacct", "cpu,cpuacct", "cpuacct,cpu")
        self._memory_dir = self.root / "memory"
        self._blkio_dir = self._first_existing("blkio", "blkio,io")
        self._quota_dir = self._first_existing("cpu", "cpu,cpuacct", "cpuacct,cpu")
        # Why per-cgroup pressure cannot be read here, once known: logged once, then the
        # files are not tried again (a failed open per container per pass is a real cost).
        self.pressure_unavailable: str | None = (
            None if self.version == 2 else "the host is on cgroup v1, which has no per-cgroup PSI"
        )

    def _first_existing(self, *names: str) -> Path:
        for name in names:
            if (self.root / name).is_dir():
                return self.root / name
        return self.root / names[0]

    def available(self) -> bool:
        """Tell whether this root looks like a cgroup hierarchy we can read."""
        if self.version == 2:
            return True
        return self._memory_dir.is_dir() and self._cpu_dir.is_dir()

    def exists(self, path: str) -> bool:
        """Tell whether a container's cgroup exists (the memory one on v1)."""
        base = self.root if self.version == 2 else self._memory_dir
        return (
            base / path / ("memory.current" if self.version == 2 else "memory.usage_in_bytes")
        ).is_file()

    def resolve(
        self,
        container_id: str,
        cgroup_parent: str,
        driver: CgroupDriver,
        proc_cgroup_text: str | None = None,
        engine: Engine = "docker",
    ) -> str | None:
        """Find a container's cgroup path: the driver's layout first, then ``/proc/PID/cgroup``."""
        guesses = [container_cgroup_path(container_id, cgroup_parent, driver, engine)]
        other: CgroupDriver = "cgroupfs" if driver == "systemd" else "systemd"
        guesses.append(container_cgroup_path(container_id, "", other, engine))
        from_proc = parse_proc_cgroup(proc_cgroup_text, self.version) if proc_cgroup_text else None
        if from_proc is not None and not from_proc.startswith("../"):
            guesses.append(from_proc)
        for guess in guesses:
            if self.exists(guess):
                return guess
        if from_proc is not None and from_proc.startswith("../"):
            return self.from_other_namespace(from_proc)
        return None

    def from_other_namespace(self, relative: str) -> str | None:
        """Resolve a path that ``/proc/PID/cgroup`` gave relative to densityd's own cgroup
        namespace (``../../system.slice/docker-ID.scope``) to one from the root.

        Below the climb is the path from where the two namespaces meet: the root itself when
        densityd's namespace root is as deep as the climb (it is then resolved at once), else
        somewhere in the tree, which is searched for the one directory it names.
        """
        parts = relative.split("/")
        climb = 0
        while climb < len(parts) and parts[climb] == "..":
            climb += 1
        below = parts[climb:]
        if not below or any(part in ("", ".", "..") for part in below):
            return None
        path = "/".join(below)
        if self.exists(path):
            return path
        return self.search(path)

    def search(self, path: str, max_depth: int = 8) -> str | None:
        """The one cgroup in the tree whose path ends with ``path``, or ``None`` (none, or
        more than one)."""
        base = self.root if self.version == 2 else self._memory_dir
        depth_of_path = path.count("/") + 1
        found: list[str] = []
        level = [""]
        for _ in range(max_depth):
            deeper: list[str] = []
            for relative in level:
                try:
                    entries = list(os.scandir(base / relative if relative else base))
                except OSError:
                    continue
                for entry in entries:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    child = f"{relative}/{entry.name}" if relative else entry.name
                    if child.split("/")[-depth_of_path:] == path.split("/") and self.exists(child):
                        found.append(child)
                    deeper.append(child)
            level = deeper
        return found[0] if len(found) == 1 else None

    def find_machine(self, partition: str, domain_id: int, name: str) -> str | None:
        """The cgroup path of a running libvirt QEMU domain (its CPU one on v1), or ``None``.

        libvirt's layouts first (``machine_cgroup_paths``); else the one directory in the
        partition named for this domain ID, since a name libvirt cut or cleaned differently
        must not lose the VM. Directories left by earlier domains with the same ID (libvirtd
        restarted) make that ambiguous: then ``None``.
        """
        base = self.root if self.version == 2 else self._quota_dir
        cgroupfs, systemd = machine_cgroup_paths(partition, domain_id, name)
        for path in (cgroupfs, systemd):
            if (base / path / "cpu.stat").is_file():
                return path
        found: list[str] = []
        for path in (cgroupfs, systemd):
            parent, _, leaf = path.rpartition("/")
            prefix = leaf[: leaf.index(str(domain_id)) + len(str(domain_id)) + 1]
            suffix = ".libvirt-qemu" if path is cgroupfs else ".scope"
            try:
                entries = os.listdir(base / parent)
            except OSError:
                continue
            found.extend(
                f"{parent}/{entry}"
                for entry in entries
                if entry.startswith(prefix) and entry.endswith(suffix)
            )
        return found[0] if len(found) == 1 else None

    def read(self, path: str) -> CgroupStats:
        """Read one container's usage; raises ``OSError`` when the cgroup is gone."""
        if self.version == 2:
            return self._read_v2(f"{self.root}/{path}")
        return self._read_v1(path)

    def read_limits(self, path: str) -> CgroupLimits:
        """The memory limit and CPU quota the kernel enforces on a container's cgroup now.

        Podman 4.3's ``podman update`` changes these files but neither its inspect data nor
        its events, so for Podman they are the limits' only current source.
        """
        memory: int | None
        cpu: float | None
        if self.version == 2:
            directory = f"{self.root}/{path}"
            try:
                text = read_kernel_file(f"{directory}/memory.max").strip()
                memory = None if text == "max" else int(text)
            except (OSError, ValueError):
                memory = None
            try:
                cpu = parse_cpu_max(read_kernel_file(f"{directory}/cpu.max"))
            except (OSError, ValueError):
                cpu = None
            return CgroupLimits(memory, cpu)
        try:
            value = int(read_kernel_file(f"{self._memory_dir}/{path}/memory.limit_in_bytes"))
            memory = value if value < _V1_UNLIMITED else None
        except (OSError, ValueError):
            memory = None
        try:
            quota = int(read_kernel_file(f"{self._quota_dir}/{path}/cpu.cfs_quota_us"))
            period = int(read_kernel_file(f"{self._quota_dir}/{path}/cpu.cfs_period_us"))
            cpu = quota / period if quota > 0 and period > 0 else None
        except (OSError, ValueError):
            cpu = None
        return CgroupLimits(memory, cpu)

    def read_signals(self, path: str, *, memory: bool = True) -> CgroupSignals:
        """A cgroup's pressure, CPU throttling and (``memory``) OOM kills and memory
        protection; what cannot be read is ``None``. Never raises for a missing file."""
        if self.version == 2:
            directory = f"{self.root}/{path}"
            try:
                cpu_stat = parse_flat_keyed(read_kernel_file(f"{directory}/cpu.stat"))
            except OSError:
                cpu_stat = {}
            return self._signals_v2(directory, cpu_stat, memory=memory)
        return self._signals_v1(path, memory=memory)

    def oom_kills_file(self, path: str) -> str:
        """The file holding a cgroup's ``oom_kill`` counter: v2 ``memory.events``, v1
        ``memory.oom_control``."""
        if self.version == 2:
            return f"{self.root}/{path}/memory.events"
        return f"{self._memory_dir}/{path}/memory.oom_control"

    def announces_oom_kills(self) -> bool:
        """Tell whether the kernel announces a change to ``oom_kills_file`` (inotify): v2's
        ``memory.events`` is, v1's ``memory.oom_control`` is not."""
        return self.version == 2

    def _note_pressure_unavailable(self) -> None:
        reason = self.pressure_unavailable
        with _LOGGED_LOCK:  # the Docker and libvirt sources each have a reader, on two threads
            if reason is None or reason in _LOGGED:
                return
            _LOGGED.add(reason)
        log.info("per-workload pressure (PSI) is not exported: %s", reason)

    def _pressure(self, directory: str) -> tuple[Pressure | None, ...]:
        """cpu, memory and io pressure of one v2 cgroup, or ``None``s where PSI is unavailable."""
        if self.pressure_unavailable is not None:
            self._note_pressure_unavailable()
            return (None, None, None)
        found: list[Pressure | None] = []
        for resource in ("cpu", "memory", "io"):
            file = f"{directory}/{resource}.pressure"
            try:
                found.append(parse_pressure(read_kernel_file(file)))
            except OSError as exc:
                if exc.errno == errno.EOPNOTSUPP:
                    self.pressure_unavailable = (
                        f"reading {file} gives EOPNOTSUPP: the kernel has PSI turned off "
                        "(booted with psi=0, or cgroup.pressure is 0)"
                    )
                elif exc.errno == errno.ENOENT and os.path.isdir(directory):
                    # The cgroup is there but not its file: a kernel built without PSI.
                    self.pressure_unavailable = (
                        f"{file} does not exist: the kernel has no PSI (CONFIG_PSI), "
                        "or cgroup.pressure is 0"
                    )
                else:
                    found.append(None)  # the cgroup went away while being read
                    continue
                self._note_pressure_unavailable()
                return (None, None, None)
        return tuple(found)

    def _signals_v2(
        self, directory: str, cpu_stat: Mapping[str, int], *, memory: bool
    ) -> CgroupSignals:
        cpu_pressure, memory_pressure, io_pressure = self._pressure(directory)
        periods, throttled_periods, throttled_seconds = parse_throttling(cpu_stat, 2)
        signals = CgroupSignals(
            cpu_pressure=cpu_pressure,
            memory_pressure=memory_pressure,
            io_pressure=io_pressure,
            cpu_periods=periods,
            cpu_throttled_periods=throttled_periods,
            cpu_throttled_seconds=throttled_seconds,
        )
        if not memory:
            return signals
        protection: list[int | None] = []
        for name in ("min", "low", "high"):
            try:
                text = read_kernel_file(f"{directory}/memory.{name}")
            except OSError:
                protection.append(None)
                continue
            protection.append(parse_memory_protection(text, zero_is_unset=name != "high"))
        return dataclasses.replace(
            signals,
            oom_kills=read_oom_kill_counter(f"{directory}/memory.events"),
            memory_min_bytes=protection[0],
            memory_low_bytes=protection[1],
            memory_high_bytes=protection[2],
        )

    def _signals_v1(self, path: str, *, memory: bool) -> CgroupSignals:
        if self.pressure_unavailable is not None:
            self._note_pressure_unavailable()
        try:
            cpu_stat = parse_flat_keyed(read_kernel_file(f"{self._quota_dir}/{path}/cpu.stat"))
        except OSError:
            cpu_stat = {}
        periods, throttled_periods, throttled_seconds = parse_throttling(cpu_stat, 1)
        signals = CgroupSignals(
            cpu_periods=periods,
            cpu_throttled_periods=throttled_periods,
            cpu_throttled_seconds=throttled_seconds,
        )
        if not memory:
            return signals
        base = f"{self._memory_dir}/{path}"
        oom_kills = read_oom_kill_counter(f"{base}/memory.oom_control")
        try:
            soft_limit = parse_soft_limit_v1(read_kernel_file(f"{base}/memory.soft_limit_in_bytes"))
        except OSError:
            soft_limit = None
        return dataclasses.replace(signals, oom_kills=oom_kills, memory_soft_limit_bytes=soft_limit)

    def _read_v1(self, path: str) -> CgroupStats:
        memory = f"{self._memory_dir}/{path}"
        cpu_ns = int(read_kernel_file(f"{self._cpu_dir}/{path}/cpuacct.usage"))
        read_at = time.time()
        usage = int(read_kernel_file(f"{memory}/memory.usage_in_bytes"))
        stat = parse_flat_keyed(read_kernel_file(f"{memory}/memory.stat"))
        inactive_file = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        devices = self._read_blkio_v1(path)
        read_bytes, written_bytes = io_totals(devices) if devices is not None else (None, None)
        return CgroupStats(
            cpu_seconds=cpu_ns / 1e9,
            memory_usage_bytes=usage,
            working_set_bytes=working_set(usage, inactive_file),
            rss_bytes=stat.get("total_rss", stat.get("rss")),
            cache_bytes=stat.get("total_cache", stat.get("cache")),
            read_bytes=read_bytes,
            written_bytes=written_bytes,
            devices=devices or (),
            cpu_read_at=read_at,
            signals=self._signals_v1(path, memory=True),
        )

    def _read_blkio_v1(self, path: str) -> tuple[DeviceIO, ...] | None:
        # The throttle files count I/O under every scheduler; the plain ones only under CFQ/BFQ.
        for name in (
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.io_service_bytes_recursive",
        ):
            try:
                text = read_kernel_file(f"{self._blkio_dir}/{path}/{name}")
            except OSError:
                continue
            return parse_blkio_v1(text)
        return None

    def _read_v2(self, directory: str) -> CgroupStats:
        cpu = parse_flat_keyed(read_kernel_file(f"{directory}/cpu.stat"))
        read_at = time.time()
        usage = int(read_kernel_file(f"{directory}/memory.current"))
        stat = parse_flat_keyed(read_kernel_file(f"{directory}/memory.stat"))
        devices: tuple[DeviceIO, ...] | None
        try:
            devices = parse_io_stat_v2(read_kernel_file(f"{directory}/io.stat"))
        except OSError:
            devices = None  # the io controller is not enabled for this cgroup
        read_bytes, written_bytes = io_totals(devices) if devices is not None else (None, None)
        return CgroupStats(
            cpu_seconds=cpu.get("usage_usec", 0) / 1e6,
            memory_usage_bytes=usage,
            working_set_bytes=working_set(usage, stat.get("inactive_file", 0)),
            rss_bytes=stat.get("anon"),
            cache_bytes=stat.get("file"),
            read_bytes=read_bytes,
            written_bytes=written_bytes,
            devices=devices or (),
            cpu_read_at=read_at,
            signals=self._signals_v2(directory, cpu, memory=True),
        )
