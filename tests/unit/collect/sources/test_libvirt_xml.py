"""The domain and storage-pool XML parsers against recorded and hand-written documents.

Recorded on this machine (libvirt 9.0.0, QEMU 7.2, TCG) from ``densityd-unit-rec``, a domain
defined with ``<memory unit='MiB'>128</memory>``, ``<vcpu>1</vcpu>``, one virtio raw disk made
with ``truncate -s 64M``, ``<memballoon model='virtio'/>`` and libosinfo metadata for Debian 12:

- ``domain-running.xml``: ``virsh dumpxml`` while it ran (libvirt rewrites the memory in KiB and
  adds an empty ``<backingStore/>`` to the raw disk);
- ``domain-shutoff.xml``: the same domain after ``virsh destroy``;
- ``domain-running-cdrom.xml``: the same VM with an extra SATA CD-ROM holding an image;
- ``pool-dir.xml``: ``virsh pool-dumpxml`` of a directory pool ``densityd-unit-pool``.

Hand-written in the format libvirt prints: ``domain-overlay-cdrom.xml`` (a qcow2 overlay with
its ``<backingStore>`` chain, a CD-ROM and a floppy, memory in GiB, ``<vcpu current='1'>4``),
``domain-blockdev-bytes.xml`` (a block device ``<source dev=...>``, memory in bytes, no
metadata) and ``domain-two-disks-mib.xml`` (two disks, memory in MiB, metadata without
libosinfo).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from densityd.collect.sources.libvirt_xml import (
    DiskConfig,
    DomainConfig,
    parse_domain_xml,
    pool_target_path,
)
from tests import paths

FIXTURES = paths.FIXTURES / "libvirt"
RECORDED_UUID = "2ddd56f2-2d15-48c6-8283-999f359d6d55"
RECORDED_DISK = DiskConfig(
    target="vda",
    source="/tmp/densityd-unit-rec.vdLUCR/disk.raw",
    format="raw",
    has_backing_file=False,
)
MiB = 1024**2
GiB = 1024**3


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_recorded_running_domain() -> None:
    assert parse_domain_xml(read("domain-running.xml")) == DomainConfig(
        name="densityd-unit-rec",
        uuid=RECORDED_UUID,
        memory_bytes=128 * MiB,
        vcpus=1,
        os="http://debian.org/debian/12",
        disks=(RECORDED_DISK,),
        balloon_model="virtio",
    )


def test_recorded_running_domain_has_an_empty_backing_store_that_is_not_a_backing_file() -> None:
    # libvirt marks the end of every chain with <backingStore/>; a raw disk has nothing under it.
    assert "<backingStore/>" in read("domain-running.xml")
    config = parse_domain_xml(read("domain-running.xml"))
    assert [disk.has_backing_file for disk in config.disks] == [False]


def test_recorded_shutoff_domain_matches_the_running_one() -> None:
    running = parse_domain_xml(read("domain-running.xml"))
    shutoff = parse_domain_xml(read("domain-shutoff.xml"))
    assert shutoff == running
    assert shutoff.memory_bytes == 134217728


def test_recorded_cdrom_is_not_one_of_the_disks() -> None:
    text = read("domain-running-cdrom.xml")
    assert "device='cdrom'" in text
    config = parse_domain_xml(text)
    assert config.uuid == "436c8504-b58e-4a99-a7e0-55f3c050fdcc"
    assert config.disks == (RECORDED_DISK,)


def test_qcow2_overlay_with_cdrom_and_floppy() -> None:
    assert parse_domain_xml(read("domain-overlay-cdrom.xml")) == DomainConfig(
        name="web-overlay",
        uuid="5f0b8a7e-3c1d-4e2f-9a8b-7c6d5e4f3a2b",
        memory_bytes=2 * GiB,  # <memory unit='GiB'>2</memory>, not currentMemory (1 GiB)
        vcpus=1,  # <vcpu current='1'>4</vcpu>: the guest runs on the current count
        os="http://ubuntu.com/ubuntu/22.04",
        disks=(
            DiskConfig(
                target="vda",
                source="/var/lib/libvirt/images/web-overlay.qcow2",  # the overlay, not its base
                format="qcow2",
                has_backing_file=True,
            ),
        ),
        balloon_model="virtio",
    )


def test_block_device_memory_in_bytes_and_no_metadata() -> None:
    assert parse_domain_xml(read("domain-blockdev-bytes.xml")) == DomainConfig(
        name="db-lvm",
        uuid="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        memory_bytes=536870912,
        vcpus=2,
        os="",
        disks=(
            DiskConfig(
                target="vdb", source="/dev/vg0/db-lvm", format="raw", has_backing_file=False
            ),
        ),
    )


def test_two_disks_memory_in_mib_and_metadata_without_libosinfo() -> None:
    assert parse_domain_xml(read("domain-two-disks-mib.xml")) == DomainConfig(
        name="app-2disk",
        uuid="9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
        memory_bytes=768 * MiB,
        vcpus=3,
        os="",
        disks=(
            DiskConfig(
                target="vda", source="/srv/vm/app-root.raw", format="raw", has_backing_file=False
            ),
            # No device= attribute: libvirt's default is a disk.
            DiskConfig(
                target="vdb",
                source="/srv/vm/app-data.qcow2",
                format="qcow2",
                has_backing_file=False,
            ),
        ),
    )


def test_test_driver_node_file_domains() -> None:
    # The node file test_libvirt.py opens as test:///...; its domains parse like libvirt's.
    root = ET.fromstring(read("testnode.xml"))
    configs = [parse_domain_xml(ET.tostring(d, encoding="unicode")) for d in root.iter("domain")]
    assert [(c.name, c.memory_bytes, c.vcpus, c.os, len(c.disks)) for c in configs] == [
        ("web-1", 512 * MiB, 1, "", 1),
        ("db-off", GiB, 4, "http://alpinelinux.org/alpinelinux/3.18", 1),
    ]


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("<memory>8388608</memory>", 8388608 * 1024),  # no unit: KiB
        ("<memory unit='KiB'>131072</memory>", 131072 * 1024),
        ("<memory unit='k'>1024</memory>", 1024 * 1024),
        ("<memory unit='KB'>1000</memory>", 1000 * 1000),
        ("<memory unit='MiB'>128</memory>", 128 * MiB),
        ("<memory unit='M'>3</memory>", 3 * MiB),
        ("<memory unit='MB'>500</memory>", 500 * 1000**2),
        ("<memory unit='GiB'>4</memory>", 4 * GiB),
        ("<memory unit='G'>1</memory>", GiB),
        ("<memory unit='GB'>2</memory>", 2 * 1000**3),
        ("<memory unit='TiB'>1</memory>", 1024**4),
        ("<memory unit='b'>4096</memory>", 4096),
        ("<memory unit='bytes'>536870912</memory>", 536870912),
        ("<memory unit='KiB'> 2048 </memory>", 2048 * 1024),
        ("<memory unit='KiB'></memory>", None),
        ("", None),
    ],
)
def test_memory_units(memory: str, expected: int | None) -> None:
    config = parse_domain_xml(f"<domain><name>m</name>{memory}</domain>")
    assert config.memory_bytes == expected


@pytest.mark.parametrize(
    ("vcpu", "expected"),
    [
        ("<vcpu>2</vcpu>", 2),
        ("<vcpu placement='static'>8</vcpu>", 8),
        ("<vcpu placement='static' current='1'>4</vcpu>", 1),
        ("<vcpu current='3'>4</vcpu>", 3),
        ("<vcpu/>", None),
        ("", None),
    ],
)
def test_vcpus(vcpu: str, expected: int | None) -> None:
    assert parse_domain_xml(f"<domain><name>v</name>{vcpu}</domain>").vcpus == expected


def test_minimal_domain_has_no_sizes_and_no_disks() -> None:
    assert parse_domain_xml("<domain type='qemu'><name> bare </name></domain>") == DomainConfig(
        name="bare", uuid="", memory_bytes=None, vcpus=None, os="", disks=()
    )


def test_network_disk_source_is_its_name_and_a_disk_without_source_is_empty() -> None:
    config = parse_domain_xml(
        """<domain><name>n</name><devices>
          <disk type='network' device='disk'>
            <driver name='qemu' type='raw'/>
            <source protocol='rbd' name='pool/image'/>
            <target dev='vdc' bus='virtio'/>
          </disk>
          <disk type='file' device='disk'><target dev='vdd' bus='virtio'/></disk>
        </devices></domain>"""
    )
    assert config.disks == (
        DiskConfig(target="vdc", source="pool/image", format="raw", has_backing_file=False),
        DiskConfig(target="vdd", source="", format="", has_backing_file=False),
    )


def test_recorded_pool_target_path() -> None:
    assert pool_target_path(read("pool-dir.xml")) == "/tmp/densityd-unit-rec.vdLUCR/pool"


@pytest.mark.parametrize(
    "text",
    [
        "<pool type='rbd'><name>ceph</name><source><name>rbd</name></source></pool>",
        "<pool type='dir'><name>p</name><target><path>  </path></target></pool>",
        "<pool type='dir'><name>p</name><target/></pool>",
    ],
)
def test_pool_without_a_target_path(text: str) -> None:
    assert pool_target_path(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<domain><name>cut",
        "<domain><name>x</name></domian>",
        "not xml at all",
        "<domain><memory unit='KiB'>1</memory><domain>",
    ],
)
def test_malformed_domain_xml_raises(text: str) -> None:
    with pytest.raises(ET.ParseError):
        parse_domain_xml(text)


@pytest.mark.parametrize("text", ["", "<pool><target><path>/x</path></target>", "<<>>"])
def test_malformed_pool_xml_raises(text: str) -> None:
    with pytest.raises(ET.ParseError):
        pool_target_path(text)


def test_balloon_model_and_stats_period() -> None:
    def domain(devices: str) -> DomainConfig:
        return parse_domain_xml(f"<domain><name>x</name><devices>{devices}</devices></domain>")

    with_period = domain("<memballoon model='virtio'><stats period='2'/></memballoon>")
    assert (with_period.balloon_model, with_period.balloon_period) == ("virtio", 2)
    without = domain("<memballoon model='virtio'/>")
    assert (without.balloon_model, without.balloon_period) == ("virtio", None)
    none = domain("<memballoon model='none'/>")
    assert (none.balloon_model, none.balloon_period) == ("none", None)
    absent = domain("")
    assert (absent.balloon_model, absent.balloon_period) == (None, None)
