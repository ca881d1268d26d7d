"""Name the host's block devices by number, as the kernel does: ``8:0`` -> ``sda``.

cgroup I/O files and the Engine's blkio stats name a device only by ``MAJ:MIN``; sysfs has
its name in ``/sys/dev/block/MAJ:MIN/uevent``::

    MAJOR=8
    MINOR=0
    DEVNAME=sda
    DEVTYPE=disk

A host has few devices and they rarely change, so each number is read once and remembered,
not once per container per pass. The sysfs root is a parameter, so that densityd can run with
the host's ``/sys`` mounted elsewhere and so that tests can hand it a recorded tree.
"""

from __future__ import annotations

import re
from pathlib import Path

from densityd.collect.sources.cgroups import DEVICE_NUMBER

# What a kernel device name holds; anything else (a hand-made tree) is not trusted as a name.
_DEVICE_NAME = re.compile(r"[A-Za-z0-9._+!/-]{1,64}")


class BlockDeviceNames:
    """Remembers the name of each block device number it was asked about."""

    def __init__(self, sys_root: Path | str | None = "/sys") -> None:
        # None: the numbers belong to another host (a remote engine), whose names are unknown.
        self._root = Path(sys_root) if sys_root is not None else None
        self._names: dict[str, str] = {}
        self._asked: set[str] = set()

    def name(self, device: str) -> str:
        """The kernel's name of device ``MAJ:MIN`` (its uevent ``DEVNAME``), else ``MAJ:MIN``."""
        self._asked.add(device)
        name = self._names.get(device)
        if name is None:
            name = self._names[device] = self._lookup(device)
        return name

    def forget_unasked(self) -> None:
        """Forget every number not asked about since the last call (once a pass).

        A removed device's number can be given to another device later (loop, device-mapper
        and nbd numbers are reused), which must then be looked up again, not named as the old.
        """
        self._names = {d: n for d, n in self._names.items() if d in self._asked}
        self._asked = set()

    def _lookup(self, device: str) -> str:
        if self._root is None or not DEVICE_NUMBER.fullmatch(device):
            return device
        try:
            text = (self._root / "dev" / "block" / device / "uevent").read_text()
        except (OSError, UnicodeDecodeError):
            return device  # no sysfs here, or the device is already gone
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key == "DEVNAME" and _DEVICE_NAME.fullmatch(value.strip()):
                return value.strip()
        return device
