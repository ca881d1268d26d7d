"""Parse libvirt domain and storage-pool XML into what densityd needs, without libvirt.

Kept apart from ``libvirt.py`` so that it can be tested on XML documents alone. Example of
the parts read from a domain::

    <domain type='qemu'>
      <name>web-1</name>
      <uuid>21a31a1a-51b4-4fef-a715-3ba9c40616a3</uuid>
      <metadata>
        <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
          <libosinfo:os id="http://debian.org/debian/12"/>
        </libosinfo:libosinfo>
      </metadata>
      <memory unit='KiB'>1048576</memory>
      <vcpu placement='static' current='1'>2</vcpu>
      <memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>
      <devices>
        <memballoon model='virtio'><stats period='10'/></memballoon>
        <disk type='file' device='disk'>
          <driver name='qemu' type='qcow2'/>
          <source file='/var/lib/libvirt/images/web-1.qcow2'/>
          <backingStore type='file'><format type='qcow2'/>
            <source file='/var/lib/libvirt/images/base.qcow2'/></backingStore>
          <target dev='vda' bus='virtio'/>
        </disk>
      </devices>
    </domain>
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

LIBOSINFO_NS = "http://libosinfo.org/xmlns/libvirt/domain/1.0"

_UNIT_BYTES = {
    "b": 1, "bytes": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DiskConfig:
    """One disk of a domain as configured."""

    target: str
    source: str
    format: str
    has_backing_file: bool


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """What a domain's XML says about its size and identity."""

    name: str
    uuid: str
    memory_bytes: int | None
    vcpus: int | None
    os: str
    disks: tuple[DiskConfig, ...]
    # ``<memballoon model=...>`` (None: no element) and its ``<stats period>`` in seconds.
    balloon_model: str | None = None
    balloon_period: int | None = None
    # ``<memoryBacking><hugepages>``: the guest RAM is in huge pages, of ``hugepage_size_bytes``
    # (None: the host's default size, which the XML leaves unsaid).
    hugepages: bool = False
    hugepage_size_bytes: int | None = None
    # ``<resource><partition>``: the cgroup partition a running domain is placed in.
    partition: str = "/machine"


def _bytes(element: ET.Element | None) -> int | None:
    """An XML size element (``<memory unit='KiB'>N</memory>``) in bytes; KiB by default."""
    if element is None or not (element.text or "").strip():
        return None
    unit = element.get("unit", "KiB").lower()
    return int(element.text or "0") * _UNIT_BYTES.get(unit, 1024)


def hugepage_backing(root: ET.Element) -> tuple[bool, int | None]:
    """Whether a domain's RAM is backed by huge pages, and their size (None: the default).

    ``<hugepages/>`` alone takes the host's default size; ``<page size= unit=>`` (KiB by
    default) names one. Pages can differ per guest NUMA node (``nodeset``); the size of the
    page without a nodeset, which covers every node not named, is taken, else the first one's.
    """
    hugepages = root.find("memoryBacking/hugepages")
    if hugepages is None:
        return False, None
    pages = [p for p in hugepages.findall("page") if (p.get("size") or "").strip().isdigit()]
    if not pages:
        return True, None
    page = next((p for p in pages if not p.get("nodeset")), pages[0])
    unit = page.get("unit", "KiB").lower()
    return True, int(page.get("size") or "0") * _UNIT_BYTES.get(unit, 1024)


def parse_domain_xml(text: str) -> DomainConfig:
    """Read a domain's name, UUID, memory, vCPUs, OS and disks from its XML."""
    root = ET.fromstring(text)
    vcpu = root.find("vcpu")
    vcpus: int | None = None
    if vcpu is not None and (vcpu.text or "").strip():
        vcpus = int(vcpu.get("current") or vcpu.text or "0")
    os_element = root.find(f"metadata/{{{LIBOSINFO_NS}}}libosinfo/{{{LIBOSINFO_NS}}}os")
    disks = []
    for disk in root.findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue  # a CD-ROM or floppy is not the VM's own storage
        source = disk.find("source")
        target = disk.find("target")
        driver = disk.find("driver")
        backing = disk.find("backingStore/source")
        disks.append(
            DiskConfig(
                target=target.get("dev", "") if target is not None else "",
                source=(
                    (source.get("file") or source.get("dev") or source.get("name") or "")
                    if source is not None
                    else ""
                ),
                format=driver.get("type", "") if driver is not None else "",
                has_backing_file=backing is not None,
            )
        )
    balloon = root.find("devices/memballoon")
    balloon_period: int | None = None
    if balloon is not None:
        stats = balloon.find("stats")
        period = stats.get("period", "") if stats is not None else ""
        balloon_period = int(period) if period.strip().isdigit() else None
    hugepages, hugepage_size = hugepage_backing(root)
    return DomainConfig(
        hugepages=hugepages,
        hugepage_size_bytes=hugepage_size,
        partition=(root.findtext("resource/partition") or "").strip() or "/machine",
        balloon_model=balloon.get("model", "") if balloon is not None else None,
        balloon_period=balloon_period,
        name=(root.findtext("name") or "").strip(),
        uuid=(root.findtext("uuid") or "").strip(),
        memory_bytes=_bytes(root.find("memory")),
        vcpus=vcpus,
        os=os_element.get("id", "") if os_element is not None else "",
        disks=tuple(disks),
    )


def pool_target_path(text: str) -> str | None:
    """The directory a storage pool keeps its volumes in, from the pool's XML."""
    return (ET.fromstring(text).findtext("target/path") or "").strip() or None
