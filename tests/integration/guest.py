"""A real Linux guest for the libvirt tests: Debian's kernel and a busybox initramfs.

DESIGN §4.1: Debian's ``linux-image`` package (the one ``linux-image-amd64`` depends on) is
downloaded and unpacked; its virtio drivers are modules, so the initramfs's ``/init`` loads
them in order, then ``virtio_balloon``, fills a tmpfs with as many MiB as the kernel command
line's ``densityd.fill=N`` asks, prints ``/proc/meminfo`` between markers on the serial console
and sleeps. libvirt boots it directly (``<kernel>``/``<initrd>``/``<cmdline>``).

The kernel and initramfs are built once and kept under ``/var/cache/densityd-ci/guest/<hash>``,
the hash covering the kernel package's file name, the init script and busybox.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("DENSITYD_GUEST_CACHE", "/var/cache/densityd-ci/guest"))
BUSYBOX = "/bin/busybox"
# DESIGN §4.1's order: each module needs the ones before it.
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_balloon",
)
MEMINFO_BEGIN = "densityd-meminfo-begin"
MEMINFO_END = "densityd-meminfo-end"

INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {" ".join(MODULES)}; do
  insmod /lib/modules/$m.ko || echo "densityd: insmod $m failed"
done
fill=0
for word in $(cat /proc/cmdline); do
  case "$word" in densityd.fill=*) fill="${{word#densityd.fill=}}" ;; esac
done
mkdir -p /fill
mount -t tmpfs -o size=90% tmpfs /fill
[ "$fill" -gt 0 ] && dd if=/dev/zero of=/fill/x bs=1M count="$fill" 2>/dev/null
sync
echo 3 > /proc/sys/vm/drop_caches
sleep 1
echo {MEMINFO_BEGIN}
cat /proc/meminfo
echo {MEMINFO_END}
while true; do sleep 3600; done
"""


@dataclass(frozen=True)
class GuestImage:
    """A kernel and initramfs that libvirt's direct kernel boot can start."""

    kernel: Path
    initrd: Path


def _newc_entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    """One ``cpio -H newc`` record (so that building needs no ``cpio`` binary)."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(f"{value:08X}".encode() for value in fields)
    record = header + encoded
    record += b"\0" * (-len(record) % 4)
    record += data + b"\0" * (-len(data) % 4)
    return record


def build_initramfs(modules_dir: Path, busybox: Path) -> bytes:
    """The gzipped newc archive: busybox, /init, the virtio modules, empty mount points."""
    directory, regular = 0o040755, 0o100755
    entries: list[tuple[str, int, bytes]] = [
        (name, directory, b"") for name in ("bin", "dev", "proc", "sys", "lib", "lib/modules")
    ]
    entries.append(("bin/busybox", regular, busybox.read_bytes()))
    entries.append(("init", regular, INIT.encode()))
    for module in MODULES:
        found = list(modules_dir.rglob(f"{module}.ko"))
        if not found:
            raise FileNotFoundError(f"{module}.ko not in {modules_dir}")
        entries.append((f"lib/modules/{module}.ko", 0o100644, found[0].read_bytes()))
    archive = b"".join(
        _newc_entry(name, mode, data, ino) for ino, (name, mode, data) in enumerate(entries, 1)
    )
    archive += _newc_entry("TRAILER!!!", 0, b"", 0)
    return subprocess.run(["gzip", "-9n"], input=archive, capture_output=True, check=True).stdout


def kernel_package() -> str:
    """The versioned kernel package ``linux-image-amd64`` depends on (6.1 in bookworm)."""
    out = subprocess.run(
        ["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if match is None:
        raise RuntimeError(f"no kernel package in: {out}")
    return match.group(1)


def guest_image() -> GuestImage:
    """Build (or find cached) the guest kernel and initramfs."""
    package = kernel_package()
    busybox = Path(BUSYBOX)
    digest = hashlib.sha256()
    for part in (package.encode(), INIT.encode(), busybox.read_bytes()):
        digest.update(hashlib.sha256(part).digest())
    target = CACHE_ROOT / digest.hexdigest()[:16]
    image = GuestImage(kernel=target / "vmlinuz", initrd=target / "initrd.gz")
    if image.kernel.exists() and image.initrd.exists():
        return image
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_ROOT, prefix=".build-") as work:
        work_dir = Path(work)
        subprocess.run(
            ["apt-get", "download", package], cwd=work_dir, capture_output=True, check=True
        )
        (deb,) = work_dir.glob("*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work_dir / "x")], check=True)
        (vmlinuz,) = (work_dir / "x" / "boot").glob("vmlinuz-*")
        staged = work_dir / "out"
        staged.mkdir()
        shutil.copyfile(vmlinuz, staged / "vmlinuz")
        (staged / "initrd.gz").write_bytes(build_initramfs(work_dir / "x" / "lib", busybox))
        for path in (staged, *staged.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            staged.rename(target)
        except OSError:
            if not target.exists():  # another session built the same hash meanwhile: fine
                raise
    return image


def read_meminfo(console: Path, timeout: float = 90) -> dict[str, int]:
    """The guest's ``/proc/meminfo`` from its serial console log, in bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = console.read_text(errors="replace") if console.exists() else ""
        if MEMINFO_END in text:
            block = text.split(MEMINFO_BEGIN, 1)[1].split(MEMINFO_END, 1)[0]
            values = {}
            for line in block.splitlines():
                match = re.match(r"(\w+):\s+(\d+) kB", line.strip())
                if match:
                    values[match.group(1)] = int(match.group(2)) * 1024
            return values
        time.sleep(0.5)
    raise AssertionError(f"no meminfo on the guest console {console} after {timeout}s")


def guest_used(meminfo: dict[str, int]) -> int:
    """What the guest itself counts as used, the way the balloon driver does: total - available."""
    return meminfo["MemTotal"] - meminfo["MemAvailable"]
