"""Helpers over the real backends: the docker CLI, test containers, a densityd subprocess.

Nothing here is mocked. The tests need a running Docker engine (``.ci/run`` starts one) and
skip when there is none, unless ``DENSITYD_REQUIRE_BACKENDS=1`` (set by ``.ci/run``) turns a
missing backend into a failure so that CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

TINY_IMAGE = "tiny:latest"
TEST_LABEL = "densityd.test"
REQUIRE_BACKENDS = os.environ.get("DENSITYD_REQUIRE_BACKENDS") == "1"


def missing_backend(reason: str) -> None:
    """Skip, or fail when CI demands every backend."""
    if REQUIRE_BACKENDS:
        pytest.fail(f"backend required but missing: {reason}")
    pytest.skip(reason)


def docker_binary() -> str:
    """Debian's client matches Debian's engine; a newer client on PATH may not (DESIGN §4)."""
    if os.path.exists("/usr/bin/docker"):
        return "/usr/bin/docker"
    return shutil.which("docker") or "docker"


@dataclass
class DockerCLI:
    """The ``docker`` command against one engine."""

    binary: str
    host: str | None = None

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        command = [self.binary, *(["-H", self.host] if self.host else []), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def ok(self) -> bool:
        """Tell whether the engine answers."""
        try:
            self("info", "--format", "{{.ServerVersion}}", timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            return False
        return True


def build_tiny_image(docker: DockerCLI, workdir: Path) -> None:
    """Import a busybox-only root filesystem as ``tiny:latest`` (no registry is reachable)."""
    archive = tiny_image_archive(workdir)
    subprocess.run(
        [
            docker.binary,
            *(["-H", docker.host] if docker.host else []),
            "import",
            str(archive),
            TINY_IMAGE,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def tiny_image_archive(workdir: Path) -> Path:
    """A tar of a busybox-only root filesystem (``sh sleep dd yes cat rm sync``), for any
    engine's ``import``."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        missing_backend("busybox (Debian's busybox-static) is not installed")
    archive = workdir / "tiny.tar"
    with tarfile.open(archive, "w") as tar:
        for directory in ("bin", "tmp", "data"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "sleep", "dd", "yes", "cat", "rm", "sync"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return archive


@dataclass
class Containers:
    """Starts containers labelled for the tests and removes them afterwards."""

    docker: DockerCLI
    started: list[str] = field(default_factory=list)

    def run(self, *args: str, command: str = "sleep 3600", name: str | None = None) -> str:
        """``docker run -d`` a tiny container (named ``name``, else at random); its full ID."""
        name = name or f"densityd-test-{uuid.uuid4().hex[:8]}"
        container_id = self.docker(
            "run",
            "-d",
            "--name",
            name,
            "--label",
            f"{TEST_LABEL}=1",
            *args,
            TINY_IMAGE,
            "sh",
            "-c",
            command,
        )
        self.started.append(container_id)
        return container_id

    def remove_all(self) -> None:
        """Remove every container this fixture started."""
        if self.started:
            self.docker("rm", "-f", *self.started, check=False)
            self.started.clear()


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Series:
    """Exposition text as {(sample name, labels): value}."""
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def value_of(series: Series, metric: str, /, **labels: str) -> float | None:
    """The value of the one sample of ``metric`` whose labels include ``labels``."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in series.items() if n == metric and wanted <= ls]
    if len(found) > 1:
        raise AssertionError(f"{metric}{labels} matches {len(found)} series")
    return found[0] if found else None


@dataclass
class Daemon:
    """A ``densityd run`` subprocess on a loopback port."""

    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def metrics_text(self) -> str:
        """One scrape of /metrics."""
        response = requests.get(f"{self.url}/metrics", timeout=5)
        response.raise_for_status()
        return response.text

    def scrape(self) -> Series:
        """One scrape, parsed."""
        return parse_metrics(self.metrics_text())

    def wait_for(
        self, predicate: Callable[[Series], bool], timeout: float = 20, what: str = "condition"
    ) -> Series:
        """Scrape until ``predicate`` holds; fail with the last scrape's gist otherwise."""
        deadline = time.monotonic() + timeout
        series: Series = {}
        while time.monotonic() < deadline:
            try:
                series = self.scrape()
            except requests.RequestException:
                series = {}
            if series and predicate(series):
                return series
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; log:\n{self.log()}")

    def log(self) -> str:
        """The daemon's stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def promtool() -> str:
    """Path to promtool (Debian's prometheus package)."""
    path = shutil.which("promtool")
    if path is None:
        missing_backend("promtool is not installed (Debian package prometheus)")
    assert path is not None
    return path


# The job Prometheus scrapes densityd under in the tests; test_fleet_prometheus selects it.
PROMETHEUS_JOB = "densityd-fleet"


@dataclass
class PrometheusServer:
    """A ``prometheus`` subprocess on a loopback port."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's ``result`` list."""
        response = requests.post(f"{self.url}/api/v1/query", data={"query": promql}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def stop(self) -> None:
        """SIGTERM and wait; kill it when it does not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


LIBVIRT_URI = "qemu:///system"
VM_PREFIX = "densityd-test-"


def virsh(*args: str, uri: str = LIBVIRT_URI, check: bool = True, timeout: float = 60) -> str:
    """Run ``virsh -c URI ...`` and return its output."""
    result = subprocess.run(
        ["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def parse_domstats(text: str) -> dict[str, str]:
    """``virsh domstats`` output of one domain as {key: value}."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key] = value
    return values


def parse_dominfo(text: str) -> dict[str, str]:
    """``virsh dominfo`` output as {field: value}."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return values


@dataclass
class VMs:
    """Defines (and starts) QEMU/TCG test domains with raw disks; removes them afterwards."""

    workdir: Path
    names: list[str] = field(default_factory=list)
    uri: str = LIBVIRT_URI

    def define(
        self,
        memory_mib: int = 128,
        vcpus: int = 1,
        disks_mib: tuple[int, ...] = (64,),
        written_mib: int = 0,
        scsi_disks_mib: tuple[int, ...] = (),
        name: str | None = None,
        os_id: str | None = None,
        start: bool = True,
        transient: bool = False,
        guest: Any = None,
        cmdline: str = "",
        balloon: str | None = "virtio",
        balloon_period: int | None = None,
        console: Path | None = None,
        interface: str = "",
        memory_backing: str = "",
        network_boot: bool = False,
    ) -> str:
        """Define a domain (started unless ``start`` is false); returns its UUID.

        ``guest`` (a ``tests.integration.guest.GuestImage``) boots a real Linux guest by direct
        kernel boot with ``cmdline`` (``console=ttyS0`` is added), its serial console written to
        ``console``. ``balloon`` is the ``<memballoon>`` model (``None``: no element at all) and
        ``balloon_period`` its ``<stats period>`` in seconds (``None``: no stats element).

        ``disks_mib`` are virtio disks (vda, vdb, ...); ``scsi_disks_mib`` are SCSI disks (sda,
        ...) on a virtio-scsi controller, which the BIOS tries to boot from first (so it reads
        them) and which ``virsh detach-disk --live`` removes without a guest OS's help.

        ``interface`` is ``<interface>`` XML (``type='ethernet'`` gives a host tap, ``vnetN``,
        without a bridge); ``network_boot`` boots from it: the NIC's iPXE ROM then sends DHCP
        requests and reads the tap (until a guest driver runs, QEMU reads nothing from it and
        frames written into it are lost uncounted). ``memory_backing`` is what goes inside
        ``<memoryBacking>`` (``<hugepages/>``).
        """
        name = name or f"{VM_PREFIX}{uuid.uuid4().hex[:8]}"
        shapes = [("vd", "virtio", index, size) for index, size in enumerate(disks_mib)]
        scsi = [("sd", "scsi", index, size) for index, size in enumerate(scsi_disks_mib)]
        disks = ["<controller type='scsi' model='virtio-scsi'/>"] if scsi else []
        for order, (prefix, bus, index, size) in enumerate([*scsi, *shapes], start=1):
            image = self.workdir / f"{uuid.uuid4().hex[:8]}-{prefix}{index}.raw"
            with image.open("wb") as handle:
                handle.truncate(size * 1024 * 1024)
                if written_mib and bus == "virtio" and index == 0:
                    handle.write(b"\xa5" * written_mib * 1024 * 1024)
            image.chmod(0o666)
            disks.append(
                f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                f"<source file='{image}'/>"
                f"<target dev='{prefix}{chr(ord('a') + index)}' bus='{bus}'/>"
                # A boot order only when there are SCSI disks: the BIOS then reads every disk.
                + (f"<boot order='{order}'/>" if scsi else "")
                + "</disk>"
            )
        metadata = (
            "<metadata><libosinfo:libosinfo "
            "xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>"
            f"<libosinfo:os id='{os_id}'/></libosinfo:libosinfo></metadata>"
            if os_id
            else ""
        )
        boot = serial = ""
        if network_boot:
            boot = "<boot dev='network'/>"
        if guest is not None:
            boot = (
                f"<kernel>{guest.kernel}</kernel><initrd>{guest.initrd}</initrd>"
                f"<cmdline>{xml_escape(('console=ttyS0 ' + cmdline).strip())}</cmdline>"
            )
        if console is not None:
            # libvirt makes the console of the first serial port by itself.
            serial = f"<serial type='file'><source path='{console}'/><target port='0'/></serial>"
        if balloon is None:
            memballoon = ""
        elif balloon_period is None:
            memballoon = f"<memballoon model='{balloon}'/>"
        else:
            memballoon = (
                f"<memballoon model='{balloon}'><stats period='{balloon_period}'/></memballoon>"
            )
        xml = (
            f"<domain type='qemu'><name>{xml_escape(name)}</name>{metadata}"
            f"<memory unit='MiB'>{memory_mib}</memory><vcpu>{vcpus}</vcpu>"
            + (f"<memoryBacking>{memory_backing}</memoryBacking>" if memory_backing else "")
            + f"<os><type arch='x86_64' machine='pc'>hvm</type>{boot}</os>"
            f"<devices>{''.join(disks)}{interface}{serial}{memballoon}</devices></domain>"
        )
        xml_path = self.workdir / f"{uuid.uuid4().hex[:8]}.xml"
        xml_path.write_text(xml)
        self.names.append(name)
        if transient:
            virsh("create", str(xml_path), uri=self.uri)
        else:
            virsh("define", str(xml_path), uri=self.uri)
            if start:
                virsh("start", name, uri=self.uri)
        return virsh("domuuid", name, uri=self.uri)

    def remove_all(self) -> None:
        """Destroy and undefine every domain this fixture made."""
        for name in self.names:
            virsh("destroy", name, uri=self.uri, check=False)
            virsh("undefine", name, uri=self.uri, check=False)
        self.names.clear()


def assert_served_while_down(daemon: Daemon, source: str) -> None:
    """With ``source``'s backend frozen: reported down, passes on time, scrapes still fast."""
    series = daemon.wait_for(
        lambda s: value_of(s, "densityd_source_up", source=source) == 0,
        timeout=10,
        what=f"{source} reported down while frozen",
    )
    assert value_of(series, "densityd_source_up", source="host") == 1
    # Passes keep completing on schedule around the stuck call (deadline 1 s).
    duration = value_of(series, "densityd_last_pass_duration_seconds")
    assert duration is not None and duration <= 1.5
    slowest = 0.0
    for _ in range(20):
        started = time.monotonic()
        daemon.metrics_text()
        slowest = max(slowest, time.monotonic() - started)
    # A correctness bound, not a benchmark: a scrape must never wait for the backend.
    assert slowest < 0.5


def assert_back_within_two_intervals(
    daemon: Daemon, source: str, workload_id: str, back_at: float, interval: float
) -> None:
    """After the backend answers again (at monotonic ``back_at``), the source and workload are
    back within two intervals, and the recovery is logged."""
    daemon.wait_for(
        lambda s: (
            value_of(s, "densityd_source_up", source=source) == 1
            and value_of(s, "densityd_workload_memory_bytes", id=workload_id) is not None
        ),
        timeout=15,
        what=f"{source} back with {workload_id}",
    )
    # Two intervals, plus the 0.2 s polling step of wait_for.
    assert time.monotonic() - back_at <= 2 * interval + 0.3
    assert f"source {source} is back up" in daemon.log()


class PrivateDockerd:
    """A dockerd with its own directories and socket (short paths: sockets have a length limit)."""

    def __init__(self, root: Path, docker_binary: str) -> None:
        self.root = root
        self.socket = f"unix://{root}/docker.sock"
        self.cli = DockerCLI(docker_binary, host=self.socket)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start dockerd and wait until it answers."""
        log = (self.root / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            [
                # A network namespace of its own: with --bridge=none dockerd deletes the
                # docker0 bridge it finds, which the shared engine may be using (the v2 guest's
                # is). unshare execs dockerd: the PID is dockerd's, for the signals.
                "unshare",
                "--net",
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "docker.pid"),
                "-H",
                self.socket,
                "--iptables=false",
                "--bridge=none",
                "--storage-driver=vfs",
                "--live-restore",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not self.cli.ok():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError((self.root / "dockerd.log").read_text()[-2000:])
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM dockerd (by its PID) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# How long an Engine's event takes to reach densityd's stream after the command that caused
# it returned: milliseconds here, more under TCG.
EVENT_DELIVERY = 0.5


def reading_started(series: Series) -> float | None:
    """When the Docker reading in this scrape began (Unix time), if the source is up."""
    if value_of(series, "densityd_source_up", source="docker") != 1:
        return None
    ended = value_of(series, "densityd_source_last_success_timestamp_seconds", source="docker")
    took = value_of(series, "densityd_source_duration_seconds", source="docker")
    if ended is None or took is None:
        return None
    return ended - took


def first_reading_after(daemon: Daemon, changed_at: float, timeout: float = 20) -> Series:
    """The first scrape whose Docker reading began after ``changed_at`` (plus the event's
    delivery)."""
    return daemon.wait_for(
        lambda s: (reading_started(s) or 0) >= changed_at + EVENT_DELIVERY,
        timeout=timeout,
        what="a docker reading begun after the change",
    )
