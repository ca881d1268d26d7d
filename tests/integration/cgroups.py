"""Ground truth from a container's cgroup files, on a cgroup v1 or v2 host.

The container's cgroup is found from ``/proc/<pid>/cgroup`` of its init process, which names
it under either Docker cgroup driver (``docker/<id>`` for cgroupfs,
``system.slice/docker-<id>.scope`` or a ``--cgroup-parent`` slice for systemd), so the
helpers never guess a layout the way densityd does: they check it.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.backends import DockerCLI

CGROUP = Path("/sys/fs/cgroup")


def cgroup_version(root: Path = CGROUP) -> int:
    """2 on the unified hierarchy, else 1."""
    return 2 if (root / "cgroup.controllers").exists() else 1


def init_pid(docker: DockerCLI, container_id: str) -> int:
    """The host PID of a running container's init process."""
    pid = int(docker("inspect", "--format", "{{.State.Pid}}", container_id))
    assert pid > 0, f"{container_id} is not running"
    return pid


def proc_cgroup_path(pid: int, controller: str) -> tuple[Path, str]:
    """The hierarchy's mount and the cgroup path of ``pid`` for ``controller`` (v1 or v2)."""
    text = Path(f"/proc/{pid}/cgroup").read_text()
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if cgroup_version() == 2:
            if hierarchy == "0" and controllers == "":
                return CGROUP, path.lstrip("/")
        elif controller in controllers.split(","):
            # The hierarchy is mounted under its controller list ("cpu,cpuacct").
            return CGROUP / controllers, path.lstrip("/")
    raise AssertionError(f"no {controller} cgroup in /proc/{pid}/cgroup:\n{text}")


def container_cgroup(docker: DockerCLI, container_id: str, controller: str = "memory") -> Path:
    """The directory of a running container's cgroup for ``controller``."""
    mount, path = proc_cgroup_path(init_pid(docker, container_id), controller)
    directory = mount / path
    assert directory.is_dir(), directory
    return directory


def flat_keyed(path: Path) -> dict[str, int]:
    """A ``key value`` per line file (``memory.stat``, ``cpu.stat``)."""
    return {
        key: int(value) for key, value in (line.split() for line in path.read_text().splitlines())
    }


def cgroup_working_set(docker: DockerCLI, container_id: str) -> int:
    """Usage minus inactive file cache, as ``docker stats`` computes it (DESIGN §3).

    v1: ``memory.usage_in_bytes`` - ``total_inactive_file``; v2: ``memory.current`` -
    ``inactive_file``; floored at 0.
    """
    directory = container_cgroup(docker, container_id, "memory")
    stat = flat_keyed(directory / "memory.stat")
    if cgroup_version() == 2:
        usage = int((directory / "memory.current").read_text())
        return max(0, usage - stat["inactive_file"])
    usage = int((directory / "memory.usage_in_bytes").read_text())
    return max(0, usage - stat["total_inactive_file"])


def cgroup_cpu_seconds(docker: DockerCLI, container_id: str) -> float:
    """CPU time: v1 ``cpuacct.usage`` (ns), v2 ``cpu.stat`` ``usage_usec``."""
    if cgroup_version() == 2:
        directory = container_cgroup(docker, container_id)
        return flat_keyed(directory / "cpu.stat")["usage_usec"] / 1e6
    directory = container_cgroup(docker, container_id, "cpuacct")
    return int((directory / "cpuacct.usage").read_text()) / 1e9


def cgroup_memory_limit(docker: DockerCLI, container_id: str) -> int | None:
    """v2 ``memory.max`` in bytes; None for ``max`` (no limit)."""
    text = (container_cgroup(docker, container_id) / "memory.max").read_text().strip()
    return None if text == "max" else int(text)


def cgroup_cpu_limit_cores(docker: DockerCLI, container_id: str) -> float | None:
    """v2 ``cpu.max`` as quota / period in cores; None for ``max`` (no quota)."""
    quota, period = (container_cgroup(docker, container_id) / "cpu.max").read_text().split()
    return None if quota == "max" else int(quota) / int(period)


def cgroup_io_stat(docker: DockerCLI, container_id: str) -> dict[str, tuple[int, int]]:
    """v2 ``io.stat``: ``{"MAJ:MIN": (rbytes, wbytes)}``."""
    devices: dict[str, tuple[int, int]] = {}
    for line in (container_cgroup(docker, container_id) / "io.stat").read_text().splitlines():
        device, *fields = line.split()
        values = dict(field.split("=", 1) for field in fields)
        devices[device] = (int(values.get("rbytes", 0)), int(values.get("wbytes", 0)))
    return devices
