"""The libvirt benchmark's VMs: ``densityd-bench-<i>``, defined, started, reused and removed.

Helpers of ``libvirt_scrape.py``, not a benchmark: the TCG domain with no OS the benchmark runs
(its XML, its raw disk in a fresh directory under /tmp), a read-write connection for defining
and removing it, and the only code that ever destroys or undefines a domain, which touches
nothing but domains named ``densityd-bench-<digits>``.
"""

from __future__ import annotations

import re
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
from _common import BenchError

NAME_PREFIX = "densityd-bench-"
BENCH_NAME = re.compile(r"^densityd-bench-\d+$")  # the only domains this script ever removes
DISK_DIR_PREFIX = "densityd-bench-vms-"
VM_MEMORY_MIB = 128
VM_DISK_BYTES = 64 * 2**20


# -- the bench VMs -----------------------------------------------------------------------------


def domain_xml(name: str, disk: Path) -> str:
    """A TCG domain with no OS: it idles in the BIOS as a real running domain."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{VM_MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


def bench_name(index: int) -> str:
    """The name of the index-th benchmark VM (1-based)."""
    return f"{NAME_PREFIX}{index}"


@contextmanager
def read_write(uri: str) -> Iterator[Any]:
    """A read-write libvirt connection for defining and removing the bench VMs."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise BenchError(f"cannot connect to {uri}: {exc.get_error_message()}") from exc
    try:
        yield conn
    finally:
        with suppress(libvirt.libvirtError):
            conn.close()


def _disk_files(domain: Any) -> list[Path]:
    root = ET.fromstring(domain.XMLDesc(0))
    return [
        Path(source.attrib["file"])
        for source in root.iterfind("./devices/disk/source")
        if "file" in source.attrib
    ]


def _is_our_disk_dir(directory: Path) -> bool:
    return directory.parent == Path(tempfile.gettempdir()) and directory.name.startswith(
        DISK_DIR_PREFIX
    )


def _remove(domain: Any) -> None:
    """Destroy and undefine one bench domain; delete its disks if they live in our directory."""
    disks = _disk_files(domain)
    try:
        persistent = domain.isPersistent()  # a transient domain is gone once destroyed
        if domain.isActive():
            domain.destroy()
        if persistent:
            domain.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise BenchError(f"removing {domain.name()}: {exc.get_error_message()}") from exc
    for disk in disks:
        if _is_our_disk_dir(disk.parent):
            disk.unlink(missing_ok=True)
            with suppress(OSError):  # not empty: someone else's file there; leave it
                disk.parent.rmdir()


def remove_bench_vms(uri: str) -> int:
    """Destroy and undefine every ``densityd-bench-<i>`` domain (and no other); how many."""
    with read_write(uri) as conn:
        ours = [d for d in conn.listAllDomains() if BENCH_NAME.match(d.name())]
        for domain in ours:
            _remove(domain)
    return len(ours)


@dataclass
class VmSetup:
    """How the bench VMs came to run."""

    names: list[str]
    reused: list[str]  # already running (left by an earlier --keep run)
    removed: list[str]  # bench VMs beyond --vms, or not running, removed first
    define_s: list[float]  # per VM defined by this run
    start_s: list[float]


def start_bench_vms(uri: str, count: int, disk_dir: Path) -> VmSetup:
    """Make ``densityd-bench-1`` .. ``-<count>`` run, and no other bench VM.

    Running ones left by an earlier ``--keep`` run are reused (defining a domain can take
    half a minute on a host where libvirtd re-probes QEMU at every definition); the others
    are defined with a disk in ``disk_dir`` and started.
    """
    names = [bench_name(i) for i in range(1, count + 1)]
    setup = VmSetup(names, [], [], [], [])
    with read_write(uri) as conn:
        for domain in conn.listAllDomains():
            name = domain.name()
            if not BENCH_NAME.match(name):
                continue
            if name in names and domain.isActive():
                setup.reused.append(name)
            else:
                _remove(domain)
                setup.removed.append(name)
        for name in names:
            if name in setup.reused:
                continue
            disk = disk_dir / f"{name}.raw"
            with disk.open("wb") as image:
                image.truncate(VM_DISK_BYTES)
            try:
                start = time.perf_counter()
                domain = conn.defineXML(domain_xml(name, disk))
                setup.define_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                domain.create()
                setup.start_s.append(time.perf_counter() - start)
            except libvirt.libvirtError as exc:
                raise BenchError(f"starting {name}: {exc.get_error_message()}") from exc
            print(
                f"  {name}: defined in {setup.define_s[-1]:.1f} s, "
                f"started in {setup.start_s[-1]:.1f} s"
            )
        running = {
            d.name()
            for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            if BENCH_NAME.match(d.name())
        }
    if running != set(names):
        raise BenchError(f"bench VMs running: {sorted(running)}, wanted {names}")
    return setup
