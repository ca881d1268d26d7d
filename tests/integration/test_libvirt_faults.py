"""libvirt faults: not running at start, restarted mid-run, frozen, domains vanishing mid-pass.

The restart and freeze tests act on the machine's libvirtd (found by its PID file): stopping
libvirtd leaves QEMU processes running, and a restarted libvirtd reattaches to them, so the
other tests' VMs survive. Every test leaves libvirtd running and unfrozen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from densityd.collect.sources.libvirt import LibvirtSource
from tests.integration.backends import (
    LIBVIRT_URI,
    VMs,
    assert_back_within_two_intervals,
    assert_served_while_down,
    missing_backend,
    value_of,
    virsh,
)
from tests.integration.data_age import assert_restarts_never_stall

pytestmark = pytest.mark.integration

PID_FILE = Path("/run/libvirtd.pid")


def _exited(pid: int) -> bool:
    """Whether a process is gone; one an earlier test started is this process's child, and is
    reaped here rather than left a zombie that still has its /proc entry."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


class Libvirtd:
    """The machine's libvirtd, by the PID in its PID file."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    @property
    def pid(self) -> int:
        """The running libvirtd's PID."""
        pid = int(PID_FILE.read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() != "libvirtd":
            raise RuntimeError(f"PID {pid} from {PID_FILE} is not libvirtd")
        return pid

    def answers(self) -> bool:
        """Whether virsh gets an answer within 5 s."""
        try:
            virsh("version", timeout=5)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def stop(self) -> None:
        """SIGTERM libvirtd and wait until its process is gone (QEMU keeps running)."""
        pid = self.pid
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not _exited(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _exited(pid), "libvirtd did not stop"

    def start(self) -> None:
        """Start libvirtd detached (it writes its PID file) and wait until it answers."""
        log = (self.log_dir / "libvirtd.log").open("ab")
        subprocess.Popen(["libvirtd"], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.answers():
            assert time.monotonic() < deadline, "libvirtd did not come back"
            time.sleep(0.2)


@pytest.fixture
def libvirtd(libvirt_ready: str) -> Iterator[Libvirtd]:
    """Control over the machine's libvirtd; it is running and unfrozen after the test."""
    if not PID_FILE.exists():
        missing_backend(f"no {PID_FILE}: libvirtd was not started as DESIGN §4 shows")
    control = Libvirtd(Path(tempfile.mkdtemp(prefix="densityd-libvirtd-")))
    try:
        yield control
    finally:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            os.kill(control.pid, signal.SIGCONT)
        if not control.answers():
            control.start()


def test_libvirtd_not_running_at_start(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """source_up 0, one clear log line, retries; the rest is served."""
    absent = f"{LIBVIRT_URI}?socket=/tmp/densityd-absent/libvirt-sock"
    daemon = start_daemon("--no-docker", "--libvirt-uri", absent)
    series = daemon.wait_for(
        lambda s: (value_of(s, "densityd_source_errors_total", source="libvirt") or 0) >= 3,
        what="three failed libvirt passes",
    )
    assert value_of(series, "densityd_source_up", source="libvirt") == 0
    assert value_of(series, "densityd_source_up", source="host") == 1
    lines = [line for line in daemon.log().splitlines() if "libvirt" in line and "WARNING" in line]
    assert len(lines) == 1, daemon.log()
    assert f"cannot connect to libvirt at {absent}" in lines[0]


def test_libvirtd_restarted_mid_run(start_daemon, vms: VMs, libvirtd: Libvirtd) -> None:  # type: ignore[no-untyped-def]
    """After libvirtd restarts, the VMs are back within two intervals."""
    interval = 1.0
    uuid = vms.define()
    daemon = start_daemon("--no-docker", "--source-timeout", "0.8", interval=interval)
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_bytes", id=uuid) is not None,
        what="the VM before the restart",
    )
    libvirtd.stop()
    daemon.wait_for(
        lambda s: value_of(s, "densityd_source_up", source="libvirt") == 0,
        what="libvirt reported down",
    )
    libvirtd.start()
    assert_back_within_two_intervals(daemon, "libvirt", uuid, time.monotonic(), interval)


def test_frozen_libvirtd_hits_the_deadline_and_recovers(  # type: ignore[no-untyped-def]
    start_daemon, vms: VMs, libvirtd: Libvirtd
) -> None:
    """SIGSTOPped libvirtd: the pass gives up at its deadline, scrapes stay fast, recovery."""
    uuid = vms.define()
    daemon = start_daemon("--no-docker", "--source-timeout", "1")
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_bytes", id=uuid) is not None,
        what="the VM before the freeze",
    )
    pid = libvirtd.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        assert_served_while_down(daemon, "libvirt")
    finally:
        os.kill(pid, signal.SIGCONT)
    daemon.wait_for(
        lambda s: (
            value_of(s, "densityd_source_up", source="libvirt") == 1
            and value_of(s, "densityd_workload_memory_bytes", id=uuid) is not None
        ),
        timeout=30,
        what="recovery after SIGCONT",
    )


def test_domain_destroyed_mid_pass_is_skipped(vms: VMs) -> None:
    """A transient domain destroyed between the stats call and its XML read is left out."""
    survivor = vms.define()
    victim = vms.define(transient=True)
    source = LibvirtSource(LIBVIRT_URI)
    try:
        conn = source._connect()
        real_stats = conn.domainListGetStats

        def racing_stats(*args: Any) -> Any:
            records = real_stats(*args)
            virsh("destroy", victim)  # a transient domain is gone once destroyed
            return records

        conn.domainListGetStats = racing_stats
        reading = source.sample()
    finally:
        source.close()
    ids = {w.id for w in reading.workloads}
    assert survivor in ids
    assert victim not in ids


def test_libvirtd_restarts_never_stall_the_other_sources(  # type: ignore[no-untyped-def]
    start_daemon, docker_cli, vms: VMs, libvirtd: Libvirtd
) -> None:
    """Three libvirtd restarts at --interval 2: Docker's and the host's data never get older
    than two intervals, and libvirt is back within two intervals of libvirtd answering."""
    interval = 2.0
    uuid = vms.define()
    daemon = start_daemon(interval=interval)
    restart = (libvirtd.stop, libvirtd.start)
    assert_restarts_never_stall(daemon, "libvirt", uuid, restart, ("docker", "host"), interval)
    assert "maximum number of running instances" not in daemon.log()
