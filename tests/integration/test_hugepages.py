"""Huge pages: the host's pools against /sys, and a hugepage-backed VM costed in huge pages.

The pool is reserved on this host for the test (``nr_hugepages`` of the 2 MiB size, put back
afterwards). A hugepage VM needs a hugetlbfs mount that libvirt's QEMU driver knows of, and
the driver looks for mounts only when libvirtd starts: the shared ``qemu:///system`` daemon
here started without one (``hugetlbfs filesystem is not mounted or disabled by administrator
config``) and must not be restarted. So the VMs run under a libvirtd of the test's own, in
session mode as the unprivileged ``libvirt-qemu`` user, with ``hugetlbfs_mount`` in its
``qemu.conf`` and a hugetlbfs mounted for that user; densityd (root) reads it over its socket,
``qemu+unix:///session?socket=PATH``, as it would read any libvirtd.

What was seen here (libvirt 9.0, QEMU 7.2, TCG): a 64 MiB hugepage VM takes 32 pages from the
pool as it starts (``free_hugepages`` drops by 32, none left reserved); its QEMU's
``HugetlbPages`` is 64 MiB while its resident set (``balloon.rss``, about 36 MiB) holds none of
them. When the pool has fewer free pages than a VM asks for, it does not start.
"""

from __future__ import annotations

import json
import mmap
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.backends import VMs, missing_backend, value_of, virsh

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PAGE = 2 * MiB
POOL = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
PAGES = 96  # 192 MiB: one 64 MiB VM running, room for exactly two more
VM_MIB = 64
QEMU_USER = "libvirt-qemu"
HUGEPAGES = "<hugepages/>"


def pool_counts() -> dict[str, int]:
    """The 2 MiB pool's page counts from sysfs."""
    return {
        name: int((POOL / f"{name}_hugepages").read_text())
        for name in ("nr", "free", "resv", "surplus")
    }


@pytest.fixture
def pool() -> Iterator[int]:
    """``PAGES`` huge pages of 2 MiB reserved on the host; the old count put back after."""
    if os.geteuid() != 0 or not POOL.is_dir():
        missing_backend("reserving huge pages needs root and /sys/kernel/mm/hugepages")
    old = int((POOL / "nr_hugepages").read_text())
    try:
        (POOL / "nr_hugepages").write_text(str(old + PAGES))
        got = int((POOL / "nr_hugepages").read_text())
        if got != old + PAGES:
            pytest.fail(f"asked for {old + PAGES} huge pages, the kernel gave {got}")
        yield got
    finally:
        (POOL / "nr_hugepages").write_text(str(old))


@dataclass
class SessionLibvirt:
    """A libvirtd of the test's own that can run hugepage VMs."""

    uri: str
    process: subprocess.Popen[bytes]
    mount: Path


@pytest.fixture
def hugepage_libvirt(pool: int) -> Iterator[SessionLibvirt]:
    """A session libvirtd as ``libvirt-qemu`` with a hugetlbfs it may use (module docstring)."""
    if shutil.which("libvirtd") is None or shutil.which("setpriv") is None:
        missing_backend("libvirtd and setpriv are needed for a hugepage libvirtd")
    try:
        user = pwd.getpwnam(QEMU_USER)
    except KeyError:
        missing_backend(f"no {QEMU_USER} user (Debian's libvirt-daemon-system makes it)")
        raise
    home = Path(tempfile.mkdtemp(prefix="densityd-hugepages-", dir="/tmp"))
    mount = home / "hugetlbfs"
    (home / "config" / "libvirt").mkdir(parents=True)
    (home / "run").mkdir()
    mount.mkdir()
    # No virtlogd: QEMU's output goes to a file, one daemon fewer to start and stop.
    (home / "config" / "libvirt" / "qemu.conf").write_text(
        f'hugetlbfs_mount = "{mount}"\nstdio_handler = "file"\n'
    )
    subprocess.run(
        [
            "mount", "-t", "hugetlbfs", "-o",
            f"uid={user.pw_uid},gid={user.pw_gid},mode=0770,pagesize=2M", "none", str(mount),
        ],
        check=True,
    )  # fmt: skip
    for path in (home, *home.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid)
    home.chmod(0o755)
    environment = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    process = subprocess.Popen(
        [
            "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
            "libvirtd",
        ],
        env=environment,
        stdout=(home / "libvirtd.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    socket_path = home / "run" / "libvirt" / "libvirt-sock"
    uri = f"qemu+unix:///session?socket={socket_path}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if socket_path.exists():
                try:
                    virsh("version", uri=uri, timeout=10)
                    break
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass
            if process.poll() is not None:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the session libvirtd did not answer within 30 s")
        if process.poll() is not None:
            pytest.fail(f"libvirtd exited: {(home / 'libvirtd.log').read_text()}")
        yield SessionLibvirt(uri, process, mount)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def hugepage_vms(hugepage_libvirt: SessionLibvirt) -> Iterator[VMs]:
    """VMs on the session libvirtd, destroyed before it stops."""
    workdir = Path(tempfile.mkdtemp(prefix="densityd-vms-", dir="/tmp"))
    workdir.chmod(0o755)
    factory = VMs(workdir, uri=hugepage_libvirt.uri)
    try:
        yield factory
    finally:
        factory.remove_all()
        shutil.rmtree(workdir, ignore_errors=True)


def host_figures(series: Any, size: int) -> dict[str, float | None]:
    labels = {"size": str(size)}
    return {
        "nr": value_of(series, "densityd_host_hugepages_bytes", **labels),
        "free": value_of(series, "densityd_host_hugepages_free_bytes", **labels),
        "resv": value_of(series, "densityd_host_hugepages_reserved_bytes", **labels),
        "surplus": value_of(series, "densityd_host_hugepages_surplus_bytes", **labels),
    }


def test_host_pools_match_sysfs_as_pages_are_reserved_and_taken(
    start_daemon,
    pool: int,  # type: ignore[no-untyped-def]
) -> None:
    daemon = start_daemon("--no-docker", "--no-libvirt")

    def matches(series: Any) -> bool:
        counts = pool_counts()
        return host_figures(series, PAGE) == {k: v * PAGE for k, v in counts.items()}

    daemon.wait_for(matches, what="the 2 MiB pool as sysfs has it")
    # Every size the kernel has is a series, in bytes (1 GiB pages: none reserved, 0).
    sizes = sorted(int(p.name[len("hugepages-") : -2]) * 1024 for p in POOL.parent.iterdir())
    series = daemon.scrape()
    for size in sizes:
        assert value_of(series, "densityd_host_hugepages_bytes", size=str(size)) is not None
    # Pages promised to a mapping (reserved) and faulted in (no longer free): a hugetlb memfd
    # of 16 MiB maps 8 pages, and touching 3 of them takes those 3.
    before = pool_counts()
    descriptor = os.memfd_create("densityd-test", os.MFD_HUGETLB)
    try:
        os.ftruncate(descriptor, 8 * PAGE)
        with mmap.mmap(descriptor, 8 * PAGE) as mapped:
            for page in range(3):
                mapped[page * PAGE] = 1
            now = pool_counts()
            assert (now["free"], now["resv"]) == (before["free"] - 3, before["resv"] + 5)
            daemon.wait_for(matches, what="the reserved and taken pages")
    finally:
        os.close(descriptor)


def plan_json(uri: str, state_dir: Path, *args: str) -> dict[str, Any]:
    """``densityd plan -o json`` over the session libvirtd only, default settings."""
    result = subprocess.run(
        [
            sys.executable, "-m", "densityd", "plan", "--no-docker", "--libvirt-uri", uri,
            "--kind", "vm", "--state-dir", str(state_dir), "-o", "json", *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_a_hugepage_vm_is_costed_in_huge_pages_and_the_plan_holds(
    start_daemon,  # type: ignore[no-untyped-def]
    hugepage_libvirt: SessionLibvirt,
    hugepage_vms: VMs,
    tmp_path: Path,
) -> None:
    before = pool_counts()
    uuid = hugepage_vms.define(memory_mib=VM_MIB, memory_backing=HUGEPAGES)
    name = virsh("domname", uuid, uri=hugepage_libvirt.uri)
    after = pool_counts()
    # It took its 64 MiB from the pool: 32 pages, faulted in or reserved.
    taken = (before["free"] - before["resv"]) - (after["free"] - after["resv"])
    assert taken == VM_MIB * MiB // PAGE

    daemon = start_daemon("--no-docker", "--libvirt-uri", hugepage_libvirt.uri)
    series = daemon.wait_for(
        lambda s: value_of(s, "densityd_vm_hugepages_bytes", id=uuid) is not None,
        what="the VM's huge pages",
    )
    assert value_of(series, "densityd_vm_hugepages_bytes", id=uuid, size=str(PAGE)) == VM_MIB * MiB
    # Its QEMU resident set leaves the huge pages out: below the guest RAM it holds in them.
    pid = subprocess.run(
        ["pgrep", "-f", f"guest={name},"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert int(status["HugetlbPages"].split()[0]) * 1024 == VM_MIB * MiB
    rss = value_of(series, "densityd_workload_memory_bytes", id=uuid)
    assert rss is not None and rss < VM_MIB * MiB
    assert abs(rss - int(status["VmRSS"].split()[0]) * 1024) <= 4 * MiB

    # One more like it costs 64 MiB of pages; 64 pages (128 MiB) are left: exactly 2 more,
    # bound by huge pages, in both views, with the defaults (no reserve or fill on the pool).
    document = plan_json(hugepage_libvirt.uri, tmp_path / "state", "--like", name)
    answers = {a["view"]: a for a in document["answers"]}
    for view in ("allocation", "demand"):
        assert answers[view]["bound"] == "hugepages", answers[view]
        assert answers[view]["remaining"] == 2, answers[view]
        assert answers[view]["cost"]["hugepages_bytes"] == VM_MIB * MiB
    # Ordinary memory is charged QEMU around the guest, not its RAM: in the allocation view
    # oVirt's model (64 MiB + RAM/512 + 8 MiB per vCPU; not calibrated, since no VM's RSS
    # reaches its RAM), in the demand view its measured RSS plus the 15 % buffer.
    assert answers["allocation"]["cost"]["memory_bytes"] == 64 * MiB + VM_MIB * MiB // 512 + 8 * MiB
    assert abs(answers["demand"]["cost"]["memory_bytes"] - rss * 1.15) <= 4 * MiB
    assert answers["allocation"]["total"]["hugepages_bytes"] == pool_counts()["nr"] * PAGE

    # Reality: two more start, and a third finds too few pages.
    for _ in range(2):
        hugepage_vms.define(memory_mib=VM_MIB, memory_backing=HUGEPAGES)
    with pytest.raises(RuntimeError, match=r"(?i)alloc|memory|huge"):
        hugepage_vms.define(memory_mib=VM_MIB, memory_backing=HUGEPAGES)
    # And the plan now says none.
    document = plan_json(hugepage_libvirt.uri, tmp_path / "state", "--like", name)
    assert {a["remaining"] for a in document["answers"]} == {0}
