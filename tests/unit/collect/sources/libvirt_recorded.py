"""The recorded libvirt stats and domain XML the source tests read.

``stats-running.json`` and ``stats-shutoff.json`` are the dicts ``getAllDomainStats`` returned
on this machine (libvirt 9.0.0, QEMU 7.2, TCG) for ``densityd-unit-rec`` (128 MiB, 1 vCPU, one
virtio raw disk made with ``truncate -s 64M``, idling in the BIOS) while it ran and after
``virsh destroy``, requested with the source's own stats groups and flags.
``stats-running-cdrom.json`` is the same VM with an extra SATA CD-ROM holding an 8 MiB image.
While it ran, ``blockInfo('vda')`` said (capacity, allocation, physical) = (67108864, 4096,
67108864); shut off, (67108864, 0, 67108864). The matching XML is described in
``test_libvirt_xml.py``.
"""

from __future__ import annotations

import json
from typing import Any

import libvirt

from densityd.collect.sources.libvirt_xml import parse_domain_xml
from tests import paths

FIXTURES = paths.FIXTURES / "libvirt"


RECORDED_UUID = "2ddd56f2-2d15-48c6-8283-999f359d6d55"


RECORDED_PATH = "/tmp/densityd-unit-rec.vdLUCR/disk.raw"


# libvirt's own names for its virDomainState values.
LIBVIRT_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def load(name: str) -> dict[str, Any]:
    stats: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return stats


def config_of(name: str) -> Any:
    return parse_domain_xml((FIXTURES / name).read_text())
