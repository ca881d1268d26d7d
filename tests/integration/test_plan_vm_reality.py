"""``densityd plan`` for VMs, allocation view, checked against reality.

A memory cgroup with a fixed limit holds a few running QEMU VMs; the planner is asked how
many more of the same VM fit under that limit; then identical VMs are started in the same
cgroup until the limit is hit. Planned with default settings (the 0.9 fill target; no host
reserve within a declared capacity), the prediction must never overpromise, and be at most 3
below what really fitted.

The mechanism (verified with libvirt 9.0 / QEMU 7.2 on a cgroup v1 hybrid host, TCG):

- A limit shared by several domains: a libvirt resource partition,
  ``<resource><partition>/machine/NAME</partition></resource>``. On cgroup v1 libvirt does
  not create partitions: ``NAME.partition`` must exist under ``machine`` in every hierarchy
  libvirt places domains in (here blkio, cpu, cpuset, freezer, memory and the unified v2
  one, else ``Failed to create v1 controller cpu for group``), and the cpuset one needs
  ``cpuset.cpus``/``cpuset.mems`` copied from its parent (else writing ``tasks`` fails with
  ENOSPC). ``memory.limit_in_bytes`` on the memory one is the shared limit; each domain's
  ``qemu-N-NAME.libvirt-qemu`` group sits below it.
- A VM that really holds its guest RAM: with no OS the guest never touches its RAM, so QEMU
  idles at ~40 MB RSS; ``<memoryBacking><allocation mode='immediate'/></memoryBacking>``
  makes QEMU preallocate it (``"prealloc":true`` on ``pc.ram``) before ``virsh start``
  returns. A 256 MiB guest then has ~291 MiB of RSS (``balloon.rss``) of which ~271 MiB is
  charged to its memory cgroup (the rest is shared file pages - QEMU's binary, ROMs -
  charged to whichever group read them first).
- Past the limit nothing refuses to start: the preallocation trips the cgroup's OOM killer,
  which kills *some* QEMU in the partition - often an older VM rather than the new one - and
  libvirt reports that domain ``shut off (crashed)``. So "what fitted" is how many VMs ran
  at the same time: after each start, every VM started so far must still be running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.backends import VM_PREFIX, VMs, missing_backend, parse_domstats, virsh

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
KiB = 1024

CGROUP_ROOT = Path("/sys/fs/cgroup")
GUEST_MIB = 256
VCPUS = 1
DISK_MIB = 16
BASE_VMS = 2
# Seven guests' worth of RAM: with ~271 MiB charged per 256 MiB guest, six VMs fit and the
# seventh trips the OOM killer, so the real answer is 4 more on top of the 2 running.
LIMIT_BYTES = 7 * GUEST_MIB * MiB
# How long a started VM must stay running (with all the others) to count as fitted: the
# preallocation is done when ``virsh start`` returns, and the OOM kill follows at once.
SETTLE_SECONDS = 4.0
# The plan must not depend on this host's CPU or disk: declare both far out of the way so
# that only the memory limit can bind.
CAPACITY = f"cpu=64,memory={LIMIT_BYTES},disk=1Ti"


@dataclass
class Partition:
    """A libvirt resource partition ``/machine/NAME`` with a memory limit (cgroup v1)."""

    name: str
    created: list[Path] = field(default_factory=list)

    @property
    def resource(self) -> str:
        """The partition as the domain XML names it."""
        return f"/machine/{self.name}"

    @property
    def memory_dir(self) -> Path:
        """The partition's group in the memory hierarchy."""
        return CGROUP_ROOT / "memory" / "machine" / f"{self.name}.partition"

    def create(self, limit_bytes: int) -> None:
        """Make ``NAME.partition`` in every hierarchy holding ``machine``; set the limit."""
        for machine in sorted(CGROUP_ROOT.glob("*/machine")):
            if not machine.is_dir():
                continue
            group = machine / f"{self.name}.partition"
            group.mkdir()
            self.created.append(group)
            if machine.parent.name == "cpuset":
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (group / knob).write_text((machine / knob).read_text())
        if self.memory_dir not in self.created:
            raise AssertionError(f"no memory hierarchy with a machine group: {self.created}")
        (self.memory_dir / "memory.limit_in_bytes").write_text(str(limit_bytes))
        written = int((self.memory_dir / "memory.limit_in_bytes").read_text())
        assert written == limit_bytes, f"memory limit {written} instead of {limit_bytes}"

    def usage(self) -> int:
        """Memory charged to the partition now."""
        return int((self.memory_dir / "memory.usage_in_bytes").read_text())

    def remove(self) -> None:
        """Remove the groups (the domains' own groups below them must be gone first)."""
        for group in reversed(self.created):
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # libvirt removes a stopped domain's group a bit later
        self.created.clear()


def cgroup_v1_memory_ready() -> None:
    """Skip (or fail under CI) unless we can make v1 memory groups under libvirt's machine."""
    if os.geteuid() != 0:
        missing_backend("memory cgroups for libvirt partitions need root")
    if not (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists():
        missing_backend("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")


@pytest.fixture
def partition(vms: VMs) -> Iterator[Partition]:
    """A memory-limited libvirt partition; its VMs are destroyed before it is removed."""
    cgroup_v1_memory_ready()
    if not (CGROUP_ROOT / "memory" / "machine").is_dir():
        # libvirt makes /machine (in the hierarchies it uses) when it first starts a VM.
        vms.define(memory_mib=32, disks_mib=(1,))
        virsh("destroy", vms.names[-1], check=False)
    made = Partition(f"densityd-planvm-{uuid.uuid4().hex[:8]}")
    try:
        made.create(LIMIT_BYTES)
        yield made
    finally:
        vms.remove_all()
        made.remove()


def domain_xml(name: str, image: Path, partition: Partition) -> str:
    """A TCG domain with preallocated guest RAM, placed in ``partition``."""
    return (
        f"<domain type='qemu'><name>{name}</name>"
        f"<memory unit='MiB'>{GUEST_MIB}</memory><vcpu>{VCPUS}</vcpu>"
        "<memoryBacking><allocation mode='immediate'/></memoryBacking>"
        f"<resource><partition>{partition.resource}</partition></resource>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        "<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{image}'/><target dev='vda' bus='virtio'/></disk>"
        "<memballoon model='virtio'/></devices></domain>"
    )


def define_vm(vms: VMs, name: str, partition: Partition) -> None:
    """Define (not start) one VM of the test's shape; ``vms`` removes it afterwards."""
    image = vms.workdir / f"{name}.raw"
    with image.open("wb") as handle:
        handle.truncate(DISK_MIB * MiB)
    image.chmod(0o666)
    xml_path = vms.workdir / f"{name}.xml"
    xml_path.write_text(domain_xml(name, image, partition))
    vms.names.append(name)
    virsh("define", str(xml_path))


def running(prefix: str) -> set[str]:
    """Names of the running domains whose names start with ``prefix``."""
    names = virsh("list", "--name", "--state-running").split()
    return {name for name in names if name.startswith(prefix)}


def rss_bytes(name: str) -> int:
    """QEMU's resident set of a running domain (``balloon.rss``, in KiB)."""
    stats = parse_domstats(virsh("domstats", name, "--balloon"))
    return int(stats.get("balloon.rss", "0")) * KiB


def wait_for_preallocation(names: list[str], timeout: float = 30) -> dict[str, int]:
    """Wait until each VM holds at least its guest RAM and its RSS has stopped moving."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    while time.monotonic() < deadline:
        now = {name: rss_bytes(name) for name in names}
        if all(
            rss >= GUEST_MIB * MiB and abs(rss - last.get(name, 0)) <= MiB
            for name, rss in now.items()
        ):
            return now
        last = now
        time.sleep(0.5)
    raise AssertionError(f"guest RAM not preallocated within {timeout}s: RSS {last}")


def stays_running(expected: set[str], prefix: str) -> set[str]:
    """Watch for ``SETTLE_SECONDS``; return the expected VMs that stopped running."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        lost = expected - running(prefix)
        if lost or time.monotonic() >= deadline:
            return lost
        time.sleep(0.5)


def plan_json(like: str, prefix: str, state_dir: Path) -> dict[str, Any]:
    """``densityd plan -o json`` for one more VM like ``like``, against the declared limit."""
    command = [
        sys.executable,
        "-m",
        "densityd",
        "plan",
        "--like",
        like,
        "--kind",
        "vm",
        "--view",
        "allocation",
        "--scope",
        prefix + "*",
        "--capacity",
        CAPACITY,
        "--no-docker",
        "--state-dir",
        str(state_dir),
        "-o",
        "json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"densityd plan exited {result.returncode}:\n{result.stderr}\n{result.stdout}"
    )
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_vm_allocation_plan_never_overpromises_and_is_close(
    partition: Partition, vms: VMs, tmp_path: Path
) -> None:
    """Two preallocated VMs under a shared memory limit: the plan's "how many more" holds."""
    prefix = f"{VM_PREFIX}planvm-{uuid.uuid4().hex[:6]}-"
    base = [f"{prefix}{index}" for index in range(BASE_VMS)]
    for name in base:
        define_vm(vms, name, partition)
        virsh("start", name)
    base_rss = wait_for_preallocation(base)
    charged = partition.usage()
    # The mechanism works: the guests' RAM is charged to the partition, under its limit.
    assert charged >= BASE_VMS * GUEST_MIB * MiB, (
        f"partition {partition.name} is charged {charged / MiB:.0f} MiB for {BASE_VMS} VMs "
        f"of {GUEST_MIB} MiB: the VMs are not in it"
    )
    assert running(prefix) == set(base)

    document = plan_json(base[0], prefix, tmp_path / "state")
    picked = [
        a for a in document["answers"] if a.get("kind") == "vm" and a.get("view") == "allocation"
    ]
    assert len(picked) == 1, f"expected one vm/allocation answer: {document['answers']}"
    answer = picked[0]
    predicted = answer["remaining"]
    summary = (
        f"limit {LIMIT_BYTES / MiB:.0f} MiB, {BASE_VMS} VMs of {GUEST_MIB} MiB running with "
        f"RSS {[round(r / MiB, 1) for r in base_rss.values()]} MiB and "
        f"{charged / MiB:.1f} MiB charged to the cgroup; plan: remaining {predicted}, "
        f"bound {answer.get('bound')}, cost {answer.get('cost')}, used {answer.get('used')}, "
        f"free {answer.get('free')}, usable {answer.get('usable')}"
    )
    assert answer["bound"] == "memory", summary
    assert isinstance(predicted, int) and predicted >= 0, summary

    # Reality: identical VMs, one by one, until one fails to start or any VM dies. No need
    # to go past predicted + 4: by then the plan is known to underpromise by more than 3.
    actual = 0
    outcome = ""
    expected = set(base)
    extra_rss: list[float] = []
    for index in range(BASE_VMS, BASE_VMS + predicted + 4):
        name = f"{prefix}{index}"
        define_vm(vms, name, partition)
        try:
            virsh("start", name, timeout=120)
        except RuntimeError as exc:
            state = virsh("domstate", name, "--reason", check=False)
            outcome = f"VM #{index + 1} did not start ({state}): {exc}"
            break
        expected.add(name)
        lost = stays_running(expected, prefix)
        if lost:
            reasons = {n: virsh("domstate", n, "--reason", check=False) for n in sorted(lost)}
            outcome = f"VM #{index + 1} started, then these stopped: {reasons}"
            break
        extra_rss.append(round(rss_bytes(name) / MiB, 1))
        actual += 1
    detail = (
        f"{summary}; reality: {actual if outcome else f'at least {actual}'} more ran together "
        f"({outcome or 'all started and stayed running'}; their RSS {extra_rss} "
        f"MiB; cgroup usage {partition.usage() / MiB:.1f} MiB)"
    )
    assert predicted <= actual, f"the plan overpromises: {detail}"
    print(detail)  # for docs/planner-truth.md: pytest -s shows it
    assert actual - predicted <= 3, f"the plan is too cautious: {detail}"
