"""The Docker benchmark's containers, through the ``docker`` command-line client.

Helpers of ``docker_sampling.py``, not a benchmark: the client (``docker info``, images, the
containers carrying the bench label, removing only those), the busybox-static image built
without a registry, and growing the set of idle ``bench-<n>`` containers in place.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import BenchError

LABEL = "densityd.bench=1"
NAME_PREFIX = "bench-"
BUSYBOX_APPLETS = ("sh", "sleep", "dd", "yes", "cat")
RUN_OPTIONS = ("--network", "none")  # idle containers need no network (the engine has no bridge)
IDLE = ("sleep", "3600")


# -- Docker through its command-line client --------------------------------------------------


class DockerCli:
    """The ``docker`` command-line client, used for everything except densityd's own pass."""

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS``; raise ``BenchError`` with its stderr when it fails."""
        try:
            done = subprocess.run(
                [self.executable, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"docker {' '.join(args[:2])}: {exc}") from exc
        if done.returncode != 0:
            raise BenchError(f"docker {' '.join(args[:2])}: {done.stderr.strip()}")
        return done

    def info(self) -> dict[str, Any]:
        """The engine's ``docker info`` document."""
        return dict(json.loads(self.run("info", "--format", "{{json .}}").stdout))

    def has_image(self, image: str) -> bool:
        """Tell whether the engine holds ``image``."""
        done = subprocess.run(
            [self.executable, "image", "inspect", image], capture_output=True, check=False
        )
        return done.returncode == 0

    def bench_containers(self, label: str = LABEL) -> dict[str, tuple[str, str]]:
        """Every container carrying ``label`` (the bench label): name -> (ID, state)."""
        listing = ("ps", "-a", "--no-trunc", "--filter", f"label={label}")
        out = self.run(*listing, "--format", "{{.ID}}\t{{.Names}}\t{{.State}}").stdout
        found: dict[str, tuple[str, str]] = {}
        for line in out.splitlines():
            container_id, name, state = line.split("\t")
            found[name] = (container_id, state)
        return found

    def running_bench_names(self) -> set[str]:
        """Names of the running containers carrying the bench label."""
        return {
            name for name, (_id, state) in self.bench_containers().items() if state == "running"
        }

    def remove_bench_containers(self) -> int:
        """Remove every container carrying the bench label (and no other); return how many."""
        ids = [cid for cid, _state in self.bench_containers().values()]
        for start in range(0, len(ids), 50):
            self.run("rm", "-f", *ids[start : start + 50], timeout=300)
        return len(ids)


def build_image(docker: DockerCli, image: str) -> None:
    """Make ``image`` from busybox-static without a registry (DESIGN §4)."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        found = shutil.which("busybox")
        if found is None:
            raise BenchError("no busybox binary; apt-get install busybox-static")
        busybox = Path(found)
    with tempfile.TemporaryDirectory(prefix="densityd-bench-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        tar = subprocess.run(
            ["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True
        ).stdout
    done = subprocess.run(
        [docker.executable, "import", "-", image], input=tar, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"docker import: {done.stderr.decode(errors='replace').strip()}")


def bench_name(index: int) -> str:
    """The name of the index-th benchmark container (1-based)."""
    return f"{NAME_PREFIX}{index}"


def grow_to(docker: DockerCli, image: str, count: int) -> float:
    """Start the missing ``bench-1`` .. ``bench-<count>`` containers; return the seconds taken."""
    present = docker.running_bench_names()
    missing = [bench_name(i) for i in range(1, count + 1) if bench_name(i) not in present]
    start = time.perf_counter()

    def start_one(name: str) -> None:
        docker.run("run", "-d", "--name", name, "--label", LABEL, *RUN_OPTIONS, image, *IDLE)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(start_one, missing))  # re-raises the first failure
    running = docker.running_bench_names()
    wanted = {bench_name(i) for i in range(1, count + 1)}
    if not wanted <= running:
        raise BenchError(f"containers not running: {sorted(wanted - running)[:5]}...")
    return time.perf_counter() - start
