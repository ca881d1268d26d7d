"""The watch-cost benchmark's process accounting: CPU and memory of process trees, from /proc.

Helpers of ``watch_cost.py``, not a benchmark: the CPU a process tree has used (every live
process's ``utime + stime + cutime + cstime`` from ``/proc/PID/stat``, so that a child that
ran and was reaped during a window is counted through its parent), its RSS and PSS summed
over ``/proc/PID/smaps_rollup``, and the engines' processes (dockerd behind the default
socket and its containerd, libvirtd behind its pidfile) whose CPU a collector causes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from _common import BenchError

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DOCKERD_PIDFILE = Path("/var/run/docker.pid")
LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")


class EngineRestarted(BenchError):
    """An engine's process went away during a measurement (another test restarted it):
    the measurement is void and can be made again once the engine is back."""


def _stat(pid: int) -> tuple[int, list[str]]:
    """(parent PID, the fields of ``/proc/PID/stat`` from the state on)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields


def children_map() -> dict[int, list[int]]:
    """Every live process's children, by parent PID."""
    found: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            parent, _fields = _stat(int(entry.name))
        except (OSError, ValueError):
            continue  # gone meanwhile
        found.setdefault(parent, []).append(int(entry.name))
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    kids = children_map()
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(kids.get(current, ()))
    return found


def process_cpu_s(pid: int, *, with_children: bool = True) -> float:
    """CPU seconds a process used (user + system), plus its reaped children's if asked."""
    _parent, fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def tree_cpu_s(pid: int) -> float:
    """CPU seconds the whole tree under ``pid`` has used, reaped children included."""
    total = 0.0
    for member in tree(pid):
        try:
            total += process_cpu_s(member)
        except (OSError, ValueError):
            continue  # exited between the listing and the read: its parent counts it now
    return total


@dataclass(frozen=True)
class TreeMemory:
    """RSS and PSS summed over a process tree, in bytes, and how many processes it had."""

    rss: int
    pss: int
    processes: int


def tree_memory(pid: int) -> TreeMemory:
    """``Rss`` and ``Pss`` of ``/proc/PID/smaps_rollup`` summed over the tree under ``pid``."""
    rss = pss = count = 0
    for member in tree(pid):
        try:
            text = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss += int(rest.split()[0]) * 1024
            elif key == "Pss":
                pss += int(rest.split()[0]) * 1024
    return TreeMemory(rss, pss, count)


def _pid_from(pidfile: Path, comm: str) -> int:
    try:
        pid = int(pidfile.read_text().split()[0])
        found = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError) as exc:
        raise BenchError(f"no live {comm} behind {pidfile}: {exc}") from exc
    if found != comm:
        raise BenchError(f"PID {pid} from {pidfile} is {found!r}, not {comm}")
    return pid


def engine_pids() -> dict[str, int]:
    """The machine's dockerd (behind ``/var/run/docker.pid``), its containerd, and libvirtd.

    The engines whose CPU a collector causes: dockerd answers the API calls, containerd sits
    behind some of them, libvirtd answers the stats calls. Private dockerds other tests start
    have other pidfiles and are left out.
    """
    pids = {"dockerd": _pid_from(DOCKERD_PIDFILE, "dockerd")}
    for child in children_map().get(pids["dockerd"], ()):
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "containerd":
                pids["containerd"] = child
        except OSError:
            continue
    pids["libvirtd"] = _pid_from(LIBVIRTD_PIDFILE, "libvirtd")
    return pids


def engines_cpu_s(pids: dict[str, int]) -> dict[str, float]:
    """Each engine's own CPU seconds so far (not its reaped children: containerd-shims and
    QEMU are the workloads', not the collectors')."""
    found: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            found[name] = process_cpu_s(pid, with_children=False)
        except (OSError, ValueError) as exc:
            raise EngineRestarted(f"{name} (PID {pid}) went away during a measurement") from exc
    return found


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """``after - before``, key by key."""
    return {name: after[name] - before[name] for name in after}


def on_cpu_ns(pids: dict[str, int]) -> int:
    """Nanoseconds every thread of these processes has run, from ``/proc/PID/task/*/schedstat``.

    Exact where ``/proc/PID/stat`` counts in 10 ms ticks: fine enough to tell what an engine
    spent during one short call.
    """
    total = 0
    for pid in pids.values():
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError as exc:
            raise EngineRestarted(f"PID {pid} went away during a measurement") from exc
        for task in tasks:
            try:
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # the thread ended meanwhile
    return total
