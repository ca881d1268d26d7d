"""A data filesystem that hangs: statvfs on it never returns, and only that path is lost.

The hang is real: a FUSE mount (bindfs) whose daemon is stopped with SIGSTOP, so every
``statvfs`` of it blocks in the kernel as one of a dead NFS server does. The mount is
unfrozen and unmounted after the test, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.integration.backends import Daemon, Series, missing_backend, value_of

pytestmark = pytest.mark.integration

PROFILE = {"profile": "cpu=0.5,memory=256Mi", "kind": "container"}


@dataclass
class FuseMount:
    """A bindfs mount and the PID of the FUSE daemon serving it."""

    path: Path
    pid: int

    def freeze(self) -> None:
        """Stop the FUSE daemon: from now on every call into the mount blocks."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Let the FUSE daemon answer again."""
        os.kill(self.pid, signal.SIGCONT)


def _fuse_daemon_of(mount: Path) -> int:
    """The PID of the bindfs process serving ``mount`` (it forks into the background)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"bindfs") and os.fsencode(mount) in argv:
                return int(entry.name)
    raise AssertionError(f"no bindfs process serves {mount}")


@pytest.fixture
def fuse_mount(tmp_path: Path) -> Iterator[FuseMount]:
    """A FUSE mount of a scratch directory, unfrozen and unmounted afterwards."""
    bindfs = shutil.which("bindfs")
    if bindfs is None:
        missing_backend("bindfs is not installed (Debian package bindfs; .ci/run installs it)")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        missing_backend("/dev/fuse is not usable here (run as root)")
    source, mount = tmp_path / "source", tmp_path / "mount"
    source.mkdir()
    mount.mkdir()
    subprocess.run([bindfs, str(source), str(mount)], check=True, timeout=30)
    fuse = FuseMount(mount, _fuse_daemon_of(mount))
    try:
        yield fuse
    finally:
        with contextlib.suppress(OSError):
            fuse.thaw()
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def _plan(daemon: Daemon) -> dict[str, object]:
    response = requests.get(f"{daemon.url}/api/v1/plan", params=PROFILE, timeout=10)
    assert response.status_code == 200, response.text
    document: dict[str, object] = response.json()
    return document


def test_a_hung_filesystem_costs_only_its_own_path(  # type: ignore[no-untyped-def]
    start_daemon: Callable[..., Daemon], docker_cli, fuse_mount: FuseMount, tmp_path: Path
) -> None:
    """The host's CPU, memory and plans, and the other paths, stay current; the hung path is
    reported down and comes back when the filesystem answers again."""
    healthy = tmp_path / "healthy"
    healthy.mkdir()
    hung, fine = str(fuse_mount.path), str(healthy)
    daemon = start_daemon(
        "--no-libvirt",
        "--source-timeout",
        "1",
        "--host-disk-path",
        hung,
        "--host-disk-path",
        fine,
    )

    def path_up(series: Series, path: str) -> float | None:
        return value_of(series, "densityd_host_disk_up", path=path)

    daemon.wait_for(lambda s: path_up(s, hung) == 1 and path_up(s, fine) == 1, what="both paths")
    fuse_mount.freeze()
    frozen_at = time.time()
    series = daemon.wait_for(lambda s: path_up(s, hung) == 0, what="the hung path down")
    time.sleep(3)  # several passes into the hang
    series = daemon.scrape()
    assert path_up(series, hung) == 0
    assert value_of(series, "densityd_host_disk_bytes", path=hung) is None  # not a stale figure
    assert path_up(series, fine) == 1
    assert value_of(series, "densityd_host_disk_bytes", path=fine) is not None
    fine_success = value_of(series, "densityd_host_disk_last_success_timestamp_seconds", path=fine)
    assert fine_success is not None and fine_success > frozen_at + 2
    hung_success = value_of(series, "densityd_host_disk_last_success_timestamp_seconds", path=hung)
    assert hung_success is not None and hung_success <= frozen_at + 1
    assert value_of(series, "densityd_host_disk_errors_total", path=hung) == 1  # one stuck call
    assert value_of(series, "densityd_source_up", source="host") == 1
    assert value_of(series, "densityd_source_up", source="docker") == 1
    host_success = value_of(series, "densityd_source_last_success_timestamp_seconds", source="host")
    assert host_success is not None and host_success > frozen_at + 2
    assert (value_of(series, "densityd_host_memory_bytes") or 0) > 0
    assert (value_of(series, "densityd_host_cpu_cores") or 0) > 0
    answers = _plan(daemon)["answers"]
    assert isinstance(answers, list) and answers
    for answer in answers:  # a plan bound by CPU or memory, which the hang does not touch
        assert answer["remaining"] is not None and answer["bound"] in ("cpu", "memory"), answer
    lines = [line for line in daemon.log().splitlines() if hung in line]
    assert len(lines) == 1 and "WARNING" in lines[0] and "deadline" in lines[0], daemon.log()

    fuse_mount.thaw()
    daemon.wait_for(lambda s: path_up(s, hung) == 1, timeout=10, what="the path back")
    assert f"filesystem {hung} is back up" in daemon.log()
