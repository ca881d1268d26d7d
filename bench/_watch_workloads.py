"""The watch-cost benchmark's workloads: idle containers and TCG VMs of its own, and their removal.

Helpers of ``watch_cost.py``, not a benchmark. Containers are ``watch-<n>`` running ``sleep``
from ``tiny:latest`` with ``--network none`` and the label ``densityd.watch=1``; VMs are
transient TCG domains ``densityd-watch-<n>`` (32 MiB, 1 vCPU, virtio balloon, no OS: they
idle in the BIOS) with a raw disk in a fresh directory under /tmp. Transient, because
``createXML`` takes 0.2 s here where defining a domain takes about 36 s (libvirtd re-probes
QEMU at every definition), and a destroyed transient domain is gone. Only containers with
that label and domains with that name pattern are ever removed: other helpers and tests use
the same engines at the same time.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import libvirt
from _common import BenchError
from _docker_cli import DockerCli, build_image
from _libvirt_vms import domain_xml, read_write

LABEL = "densityd.watch=1"
CONTAINER_PREFIX = "watch-"
VM_PREFIX = "densityd-watch-"
VM_NAME = re.compile(r"^densityd-watch-\d+$")  # the only domains this benchmark removes
VM_MEMORY_MIB = 32
VM_DISK_BYTES = 16 * 2**20
DISK_DIR_PREFIX = "densityd-watch-vms-"
IDLE = ("sleep", "86400")


class Containers:
    """The benchmark's containers on the machine's engine, through the ``docker`` client."""

    def __init__(self, docker: DockerCli, image: str) -> None:
        self.docker = docker
        self.image = image

    def ensure_image(self) -> None:
        """Build the busybox image when the engine does not hold it."""
        if not self.docker.has_image(self.image):
            build_image(self.docker, self.image)

    def ours(self) -> dict[str, tuple[str, str]]:
        """Our containers: name -> (ID, state)."""
        return self.docker.bench_containers(LABEL)

    def running_names(self) -> list[str]:
        """Names of our running containers, in index order."""
        names = [n for n, (_id, state) in self.ours().items() if state == "running"]
        return sorted(names, key=lambda n: int(n.removeprefix(CONTAINER_PREFIX)))

    def grow_to(self, count: int, workers: int = 4) -> float:
        """Make ``watch-1`` .. ``watch-<count>`` run (shrinking is never needed); seconds."""
        present = set(self.running_names())
        missing = [
            f"{CONTAINER_PREFIX}{i}"
            for i in range(1, count + 1)
            if f"{CONTAINER_PREFIX}{i}" not in present
        ]
        start = time.perf_counter()

        def start_one(name: str) -> None:
            self.docker.run(
                "run", "-d", "--name", name, "--label", LABEL, "--network", "none",
                self.image, *IDLE,
            )  # fmt: skip

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(start_one, missing))
        running = set(self.running_names())
        wanted = {f"{CONTAINER_PREFIX}{i}" for i in range(1, count + 1)}
        if not wanted <= running:
            raise BenchError(f"containers not running: {sorted(wanted - running)[:5]}")
        return time.perf_counter() - start

    def remove_all(self) -> int:
        """Remove every container carrying our label (and no other); how many."""
        ids = [cid for cid, _state in self.ours().values()]
        for start in range(0, len(ids), 50):
            self.docker.run("rm", "-f", *ids[start : start + 50], timeout=600)
        return len(ids)


class Vms:
    """The benchmark's transient TCG domains."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._disk_dir: Path | None = None

    def _dir(self) -> Path:
        if self._disk_dir is None:
            self._disk_dir = Path(tempfile.mkdtemp(prefix=DISK_DIR_PREFIX))
            self._disk_dir.chmod(0o755)  # QEMU runs as another user
        return self._disk_dir

    def running_names(self) -> list[str]:
        """Names of our running domains, in index order."""
        with read_write(self.uri) as conn:
            names = [d.name() for d in conn.listAllDomains() if VM_NAME.match(d.name())]
        return sorted(names, key=lambda n: int(n.removeprefix(VM_PREFIX)))

    def grow_to(self, count: int) -> float:
        """Make ``densityd-watch-1`` .. ``-<count>`` run; seconds taken."""
        start = time.perf_counter()
        present = set(self.running_names())
        with read_write(self.uri) as conn:
            for i in range(1, count + 1):
                name = f"{VM_PREFIX}{i}"
                if name in present:
                    continue
                disk = self._dir() / f"{name}.raw"
                with disk.open("wb") as image:
                    image.truncate(VM_DISK_BYTES)
                xml = domain_xml(name, disk)
                xml = re.sub(r"<memory unit='MiB'>\d+</memory>", _memory(), xml)
                try:
                    conn.createXML(xml, 0)
                except libvirt.libvirtError as exc:
                    raise BenchError(f"starting {name}: {exc.get_error_message()}") from exc
        if len(self.running_names()) < count:
            raise BenchError(f"only {self.running_names()} of {count} bench VMs run")
        return time.perf_counter() - start

    def shrink_to(self, count: int) -> None:
        """Destroy our domains numbered above ``count``."""
        with read_write(self.uri) as conn:
            for domain in conn.listAllDomains():
                name = domain.name()
                if VM_NAME.match(name) and int(name.removeprefix(VM_PREFIX)) > count:
                    with suppress(libvirt.libvirtError):
                        domain.destroy()

    def remove_all(self) -> int:
        """Destroy every ``densityd-watch-<n>`` domain (and no other), delete our disks."""
        removed = 0
        with read_write(self.uri) as conn:
            for domain in conn.listAllDomains():
                if not VM_NAME.match(domain.name()):
                    continue
                try:
                    if domain.isActive():
                        domain.destroy()
                    if domain.isPersistent():
                        domain.undefine()
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise BenchError(f"removing {domain.name()}: {exc}") from exc
                removed += 1
        # Our disk directories, this run's and any a killed run left: no domain uses them now.
        for directory in Path(tempfile.gettempdir()).glob(f"{DISK_DIR_PREFIX}*"):
            with suppress(OSError):
                shutil.rmtree(directory)
        self._disk_dir = None
        return removed


def _memory() -> str:
    return f"<memory unit='MiB'>{VM_MEMORY_MIB}</memory>"
