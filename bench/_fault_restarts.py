"""The faults of ``faults.py``: libvirtd and a private dockerd restarted, watched by scraping.

``Watch`` scrapes one exporter in the background and keeps what a user would see: for
densityd each source's data age (scrape time minus ``densityd_source_last_success_timestamp_
seconds``) and whether it is up; for any exporter the scrape latencies and failures.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import BenchError, percentile, scrape
from _libvirt_exporters import samples
from _libvirt_freeze import LIBVIRTD_PIDFILE, libvirtd_pid

LAST_SUCCESS = "densityd_source_last_success_timestamp_seconds"
BUSYBOX = Path("/bin/busybox")


@dataclass
class Watch:
    """Background scrapes of one exporter every ``step`` seconds while a fault happens."""

    name: str
    port: int
    step: float = 0.2
    latencies_s: list[float] = field(default_factory=list)
    failures: int = 0
    worst_age_s: dict[str, float] = field(default_factory=dict)
    up: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watch:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def _loop(self) -> None:
        while not self._stop.wait(self.step):
            try:
                elapsed, body = scrape(self.port, timeout=10)
            except (OSError, BenchError):
                self.failures += 1
                continue
            now = time.time()
            self.latencies_s.append(elapsed)
            text = body.decode(errors="replace")
            for labels, value in samples(text, LAST_SUCCESS):
                source = labels["source"]
                age = now - float(value)
                self.worst_age_s[source] = max(self.worst_age_s.get(source, 0.0), age)
            for labels, value in samples(text, "densityd_source_up"):
                self.up[labels["source"]] = float(value)

    def summary(self) -> dict[str, Any]:
        """Scrapes, failures, latency percentiles (ms) and each source's worst data age (s)."""
        ms = [s * 1000 for s in self.latencies_s]
        latency = (
            {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms)}
            if ms
            else None
        )
        return {
            "scrapes": len(ms),
            "failures": self.failures,
            "latency": latency,
            "worst_data_age_s": {k: round(v, 2) for k, v in sorted(self.worst_age_s.items())},
        }


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` every 50 ms; the seconds it took, or ``BenchError`` after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise BenchError(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)
    return time.monotonic() - start


def virsh_answers(uri: str) -> bool:
    """Whether ``virsh version`` gets an answer within 5 s."""
    try:
        result = subprocess.run(
            ["virsh", "-c", uri, "version"], capture_output=True, timeout=5, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


@dataclass
class Libvirtd:
    """The machine's libvirtd, restarted by this benchmark (and left running)."""

    uri: str
    log_path: Path
    started: subprocess.Popen[bytes] | None = None

    def restart(self, down_s: float) -> float:
        """SIGTERM libvirtd, wait until it is gone, start it ``down_s`` seconds later; the
        monotonic time it answered again."""
        pid = libvirtd_pid()
        os.kill(pid, signal.SIGTERM)
        if self.started is not None and self.started.pid == pid:
            self.started.wait(30)  # ours: reap it, or it lingers as a zombie
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, "libvirtd stopping")
        time.sleep(down_s)
        with self.log_path.open("ab") as log:
            self.started = subprocess.Popen(
                ["libvirtd"], stdout=log, stderr=log, start_new_session=True
            )
        wait_until(lambda: virsh_answers(self.uri), 60, "libvirtd answering")
        return time.monotonic()

    def ensure_running(self) -> None:
        """Start libvirtd if a failed restart left none (the pidfile names none alive)."""
        if LIBVIRTD_PIDFILE.exists() and virsh_answers(self.uri):
            return
        with self.log_path.open("ab") as log:
            subprocess.Popen(["libvirtd"], stdout=log, stderr=log, start_new_session=True)
        wait_until(lambda: virsh_answers(self.uri), 60, "libvirtd answering")


@dataclass
class PrivateEngine:
    """A dockerd of this benchmark's own (own data root and socket), free to restart."""

    root: Path
    docker: str = "/usr/bin/docker"
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        return f"unix://{self.root}/docker.sock"

    def cli(self, *args: str, check: bool = True) -> str:
        """The docker client against this engine."""
        result = subprocess.run(
            [self.docker, "-H", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise BenchError(f"docker {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def answers(self) -> bool:
        return (
            subprocess.run(
                [self.docker, "-H", self.socket, "info"],
                capture_output=True,
                timeout=10,
                check=False,
            ).returncode
            == 0
        )

    def start(self) -> float:
        """Start dockerd (live-restore: its containers survive a restart); the monotonic time
        it answers."""
        with (self.root / "dockerd.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "dockerd", "--data-root", str(self.root / "data"),
                    "--exec-root", str(self.root / "exec"),
                    "--pidfile", str(self.root / "docker.pid"), "-H", self.socket,
                    "--iptables=false", "--bridge=none", "--storage-driver=vfs",
                    "--live-restore",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )  # fmt: skip
        wait_until(self.answers, 60, "the private dockerd answering")
        return time.monotonic()

    def stop(self) -> None:
        """SIGTERM dockerd (by its PID) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def import_tiny(self, scratch: Path) -> None:
        """Import ``tiny:latest`` (busybox's ``sleep``) into this engine: no registry here."""
        rootfs = scratch / "rootfs"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in ("sh", "sleep"):
            with suppress(FileExistsError):
                (rootfs / "bin" / applet).symlink_to("busybox")
        archive = subprocess.run(
            ["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True
        )
        result = subprocess.run(
            [self.docker, "-H", self.socket, "import", "-", "tiny:latest"],
            input=archive.stdout,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(f"docker import: {result.stderr.decode(errors='replace').strip()}")

    def restart(self, down_s: float) -> float:
        """Stop, wait ``down_s`` seconds, start; the monotonic time it answered again."""
        self.stop()
        time.sleep(down_s)
        return self.start()
