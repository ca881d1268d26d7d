"""The collector over hand-built snapshots: the DESIGN §5 schema, exactly, and valid text."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import replace

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from densityd import __version__
from densityd.collect.sampler import SnapshotHolder
from densityd.model import (
    BlockDevice,
    DiskUsage,
    HostSample,
    HugepagePool,
    NetworkInterface,
    OomKills,
    Pressure,
    Snapshot,
    SourceStatus,
    WorkloadKind,
    WorkloadSample,
)
from densityd.serve.exporter import Exposition, SnapshotCollector, workload_label_names

CONTAINER_ID = "7e649af947a6c1d0e1f7d4d0b0c6f5b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4"
VM_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"

# DESIGN §5: family name (as client_python names it, without _total) -> type, label names.
WORKLOAD_LABELS = ("id", "kind", "name")
DEVICE_LABELS = ("device", "id", "kind", "name")
SCHEMA: dict[str, tuple[str, tuple[str, ...]]] = {
    "densityd_workload_info": ("gauge", ("id", "image", "kind", "name", "os", "state")),
    "densityd_workload_cpu_seconds": ("counter", WORKLOAD_LABELS),
    "densityd_workload_cpu_limit_cores": ("gauge", WORKLOAD_LABELS),
    "densityd_workload_memory_bytes": ("gauge", WORKLOAD_LABELS),
    "densityd_workload_memory_limit_bytes": ("gauge", WORKLOAD_LABELS),
    "densityd_workload_disk_bytes": ("gauge", WORKLOAD_LABELS),
    "densityd_workload_disk_limit_bytes": ("gauge", WORKLOAD_LABELS),
    "densityd_workload_disk_read_bytes": ("counter", DEVICE_LABELS),
    "densityd_workload_disk_written_bytes": ("counter", DEVICE_LABELS),
    "densityd_host_cpu_cores": ("gauge", ()),
    "densityd_host_memory_bytes": ("gauge", ()),
    "densityd_host_memory_available_bytes": ("gauge", ()),
    "densityd_host_disk_bytes": ("gauge", ("path",)),
    "densityd_host_disk_free_bytes": ("gauge", ("path",)),
    "densityd_source_up": ("gauge", ("source",)),
    "densityd_source_duration_seconds": ("gauge", ("source",)),
    "densityd_source_errors": ("counter", ("source",)),
    "densityd_source_last_success_timestamp_seconds": ("gauge", ("source",)),
    "densityd_build_info": ("gauge", ("version",)),
}


def container(**overrides: object) -> WorkloadSample:
    values: dict[str, object] = {
        "kind": WorkloadKind.CONTAINER,
        "id": CONTAINER_ID,
        "name": "web",
        "image": "tiny:latest",
        "cpu_seconds": 12.5,
        "cpu_limit_cores": 0.5,
        "memory_bytes": 21340160,
        "memory_limit_bytes": 134217728,
        "memory_usage_bytes": 22000000,
        "memory_rss_bytes": 53248,
        "memory_cache_bytes": 20971520,
        "disk_bytes": 4096,
        "disk_limit_bytes": None,
        "disk_read_bytes": 1000,
        "disk_written_bytes": 2000,
        "block_devices": (BlockDevice("sda", "", read_bytes=1000, written_bytes=2000),),
    }
    values.update(overrides)
    return WorkloadSample(**values)  # type: ignore[arg-type]


def vm() -> WorkloadSample:
    return WorkloadSample(
        kind=WorkloadKind.VM,
        id=VM_UUID,
        name="db-vm",
        cpu_seconds=300.0,
        cpu_limit_cores=2.0,
        memory_bytes=41943040,
        memory_limit_bytes=536870912,
        disk_bytes=1073741824,
        disk_limit_bytes=10737418240,
        disk_read_bytes=512,
        disk_written_bytes=0,
        block_devices=(BlockDevice("vda", "/img/db.qcow2", 1073741824, 10737418240, 512, 0),),
    )


def snapshot(*workloads: WorkloadSample, **overrides: object) -> Snapshot:
    values: dict[str, object] = {
        "timestamp": 1_700_000_000.0,
        "workloads": workloads,
        "host": HostSample(
            cpu_cores=2,
            memory_bytes=25275863040,
            memory_available_bytes=24869343232,
            disks=(DiskUsage("/var/lib/docker", 270553174016, 84927516672),),
        ),
        "sources": (
            SourceStatus("docker", True, 0.012, 0, 1_699_999_999.5),
            SourceStatus("libvirt", False, 10.0, 4, None, "no answer within the 10s deadline"),
        ),
        "disk_usage_timestamp": 1_699_999_940.0,
        "pass_duration_seconds": 0.02,
    }
    values.update(overrides)
    return Snapshot(**values)  # type: ignore[arg-type]


def collect(snap: Snapshot | None, clock: float = 1_700_000_000.0) -> dict[str, Metric]:
    holder = SnapshotHolder()
    if snap is not None:
        holder.publish(snap)
    families = list(SnapshotCollector(holder, clock=lambda: clock).collect())
    by_name = {family.name: family for family in families}
    assert len(by_name) == len(families), "one family per name"
    return by_name


def values(family: Metric) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def exposition(snap: Snapshot, clock: float = 1_700_000_000.0) -> str:
    holder = SnapshotHolder()
    holder.publish(snap)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(SnapshotCollector(holder, clock=lambda: clock))
    return generate_latest(registry).decode()


def identity(workload: WorkloadSample) -> tuple[tuple[str, str], ...]:
    return (("id", workload.id), ("kind", str(workload.kind)), ("name", workload.name))


def test_families_names_types_and_labels_follow_the_schema() -> None:
    families = collect(snapshot(container(), vm()))
    for name, (kind, labels) in SCHEMA.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        assert family.documentation, name
        assert family.samples, name
        for sample in family.samples:
            assert tuple(sorted(sample.labels)) == labels, name


def test_workload_values() -> None:
    web, db = container(), vm()
    families = collect(snapshot(web, db))
    assert values(families["densityd_workload_cpu_seconds"]) == {
        identity(web): 12.5,
        identity(db): 300.0,
    }
    assert values(families["densityd_workload_memory_bytes"]) == {
        identity(web): 21340160,
        identity(db): 41943040,
    }
    assert values(families["densityd_container_memory_rss_bytes"]) == {identity(web): 53248}
    info = [dict(s.labels) | {"value": s.value} for s in families["densityd_workload_info"].samples]
    assert info == [
        {
            "kind": "container",
            "id": CONTAINER_ID,
            "name": "web",
            "image": "tiny:latest",
            "os": "",
            "state": "running",
            "value": 1,
        },
        {
            "kind": "vm",
            "id": VM_UUID,
            "name": "db-vm",
            "image": "",
            "os": "",
            "state": "running",
            "value": 1,
        },
    ]


def test_counters_end_in_total_and_gauges_do_not() -> None:
    text = exposition(snapshot(container(), vm()))
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    counters = {name for name, (kind, _) in SCHEMA.items() if kind == "counter"}
    for name, family in parsed.items():
        for sample in family.samples:
            if family.type == "counter":
                assert name in counters
                assert sample.name == name + "_total"
            else:
                assert not sample.name.endswith("_total")
    assert "densityd_workload_cpu_seconds_total{" in text
    assert "densityd_source_errors_total{" in text
    assert "densityd_workload_disk_read_bytes_total{" in text
    assert "densityd_workload_disk_written_bytes_total{" in text


def test_block_io_is_exported_per_device() -> None:
    web, db = container(), vm()
    families = collect(snapshot(web, db))
    assert values(families["densityd_workload_disk_read_bytes"]) == {
        (("device", "sda"), *identity(web)): 1000,
        (("device", "vda"), *identity(db)): 512,
    }
    assert values(families["densityd_workload_disk_written_bytes"]) == {
        (("device", "sda"), *identity(web)): 2000,
        (("device", "vda"), *identity(db)): 0,
    }


def io_series(snap: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every block I/O counter sample of ``snap``'s exposition, by family and labels."""
    families = collect(snap)
    return {
        (name, labels): value
        for name in ("densityd_workload_disk_read_bytes", "densityd_workload_disk_written_bytes")
        for labels, value in values(families[name]).items()
    }


def test_io_counters_stay_monotonic_when_a_disk_is_removed() -> None:
    """vdb unplugged between two passes: its series ends, no series goes down."""
    vda = BlockDevice("vda", "/img/a.raw", read_bytes=4096, written_bytes=1000)
    vdb = BlockDevice("vdb", "/img/b.raw", read_bytes=8_000_000, written_bytes=2_000_000)
    before = replace(vm(), disk_read_bytes=8_004_096, block_devices=(vda, vdb))
    grown = replace(vda, read_bytes=8192, written_bytes=1500)
    after = replace(vm(), disk_read_bytes=8192, block_devices=(grown,))
    assert after.disk_read_bytes is not None and before.disk_read_bytes is not None
    assert after.disk_read_bytes < before.disk_read_bytes  # the sum would read as a reset

    first, second = io_series(snapshot(before)), io_series(snapshot(after))
    assert len(first) == 4 and len(second) == 2
    assert second.keys() < first.keys()
    for key, value in second.items():
        assert value >= first[key], key
    assert {dict(labels)["device"] for _, labels in second} == {"vda"}


def test_io_of_a_device_without_counters_or_a_stopped_workload_is_omitted() -> None:
    unknown = container(block_devices=(BlockDevice("sdb", ""),))
    off = replace(vm(), state="shutoff", running=False)
    families = collect(snapshot(unknown, off))
    assert families["densityd_workload_disk_read_bytes"].samples == []
    assert families["densityd_workload_disk_written_bytes"].samples == []
    assert values(families["densityd_vm_block_bytes"]) == {
        (("device", "vda"), *identity(off)): 1073741824
    }


def test_unlimited_limits_are_omitted_not_zero() -> None:
    unlimited = container(id="b" * 64, name="free", cpu_limit_cores=None, memory_limit_bytes=None)
    limited = container()
    families = collect(snapshot(unlimited, limited))
    for name in ("densityd_workload_cpu_limit_cores", "densityd_workload_memory_limit_bytes"):
        ids = {s.labels["id"] for s in families[name].samples}
        assert ids == {CONTAINER_ID}, name
    # disk_limit_bytes is None for both containers: no sample at all, not a 0.
    assert families["densityd_workload_disk_limit_bytes"].samples == []
    text = exposition(snapshot(unlimited, limited))
    assert 'densityd_workload_memory_limit_bytes{id="' + "b" * 64 not in text
    assert "densityd_workload_disk_limit_bytes{" not in text


def test_unknown_usage_of_a_stopped_container_is_omitted() -> None:
    stopped = container(
        state="exited",
        running=False,
        cpu_seconds=None,
        memory_bytes=None,
        memory_usage_bytes=None,
        memory_rss_bytes=None,
        memory_cache_bytes=None,
        disk_read_bytes=None,
        disk_written_bytes=None,
    )
    families = collect(snapshot(stopped))
    assert families["densityd_workload_cpu_seconds"].samples == []
    assert families["densityd_workload_memory_bytes"].samples == []
    [info] = families["densityd_workload_info"].samples
    assert info.labels["state"] == "exited"
    assert values(families["densityd_workload_memory_limit_bytes"]) == {
        identity(stopped): 134217728
    }


def test_host_and_source_values() -> None:
    families = collect(snapshot(container()))
    assert families["densityd_host_cpu_cores"].samples[0].value == 2
    assert families["densityd_host_memory_bytes"].samples[0].value == 25275863040
    assert families["densityd_host_memory_available_bytes"].samples[0].value == 24869343232
    path = (("path", "/var/lib/docker"),)
    assert values(families["densityd_host_disk_bytes"]) == {path: 270553174016}
    assert values(families["densityd_host_disk_free_bytes"]) == {path: 84927516672}
    assert values(families["densityd_source_up"]) == {
        (("source", "docker"),): 1,
        (("source", "libvirt"),): 0,
    }
    assert values(families["densityd_source_errors"]) == {
        (("source", "docker"),): 0,
        (("source", "libvirt"),): 4,
    }
    # Never succeeded: no last-success sample rather than a 0 timestamp.
    assert values(families["densityd_source_last_success_timestamp_seconds"]) == {
        (("source", "docker"),): 1_699_999_999.5
    }
    assert values(families["densityd_build_info"]) == {(("version", __version__),): 1}
    assert families["densityd_last_pass_timestamp_seconds"].samples[0].value == 1_700_000_000.0
    assert families["densityd_last_pass_duration_seconds"].samples[0].value == 0.02


def test_no_samples_before_the_first_snapshot() -> None:
    families = collect(None)
    assert set(SCHEMA) <= set(families)
    for name, family in families.items():
        assert family.samples == [], name


def test_describe_yields_the_same_families_as_collect() -> None:
    holder = SnapshotHolder()
    collector = SnapshotCollector(holder)
    before = [(m.name, m.type) for m in collector.describe()]
    holder.publish(snapshot(container(), vm()))
    described = [(m.name, m.type) for m in collector.describe()]
    collected = [(m.name, m.type) for m in collector.collect()]
    assert described == collected == before
    assert all(m.samples == [] for m in collector.describe())


def test_registry_accepts_the_collector_and_process_metrics() -> None:
    holder = SnapshotHolder()
    holder.publish(snapshot(container()))
    text = Exposition(holder).body().decode()
    assert "densityd_workload_memory_bytes{" in text
    assert "process_resident_memory_bytes " in text


def test_disk_usage_age_uses_the_injected_clock() -> None:
    def age(snap: Snapshot, clock: float) -> list[float]:
        family = collect(snap, clock=clock)["densityd_docker_disk_usage_age_seconds"]
        return [sample.value for sample in family.samples]

    scanned = snapshot(disk_usage_timestamp=1_000.0)
    assert age(scanned, clock=1_060.0) == [60.0]
    assert age(scanned, clock=1_300.5) == [300.5]
    assert age(scanned, clock=990.0) == [0.0]  # a clock step backwards: never negative
    assert age(snapshot(disk_usage_timestamp=None), clock=1_060.0) == []  # no scan yet


def test_collect_reads_the_latest_snapshot_each_time() -> None:
    holder = SnapshotHolder()
    collector = SnapshotCollector(holder)
    holder.publish(snapshot(container(memory_bytes=1)))
    first = {m.name: m for m in collector.collect()}["densityd_workload_memory_bytes"]
    holder.publish(snapshot(container(memory_bytes=2)))
    second = {m.name: m for m in collector.collect()}["densityd_workload_memory_bytes"]
    assert [s.value for s in first.samples] == [1]
    assert [s.value for s in second.samples] == [2]


HOSTILE = [
    'quo"te',
    "back\\slash",
    "new\nline",
    "tab\tand\rcarriage",
    "ünïcødé-名前",
    "emoji-🚀🐳",
    '\\"\n\\n',
    "",
]


def hostile_snapshot() -> Snapshot:
    workloads = tuple(
        container(id=f"{index:064x}", name=name, image=name + ":latest")
        for index, name in enumerate(HOSTILE)
    )
    return snapshot(
        *workloads,
        host=HostSample(
            cpu_cores=2,
            memory_bytes=1,
            memory_available_bytes=1,
            disks=tuple(DiskUsage(f"/data/{name}", 10, 5) for name in HOSTILE),
        ),
        sources=(SourceStatus('so"urce\n🚀', False, 0.5, 1, None, 'err"or\n'),),
    )


def test_hostile_label_values_round_trip() -> None:
    text = exposition(hostile_snapshot())
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    names = {s.labels["name"] for s in parsed["densityd_workload_memory_bytes"].samples}
    assert names == set(HOSTILE)
    images = {s.labels["image"] for s in parsed["densityd_workload_info"].samples}
    assert images == {name + ":latest" for name in HOSTILE}
    paths = {s.labels["path"] for s in parsed["densityd_host_disk_bytes"].samples}
    assert paths == {f"/data/{name}" for name in HOSTILE}
    assert [s.labels["source"] for s in parsed["densityd_source_up"].samples] == ['so"urce\n🚀']


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    return subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_accepts_hostile_names() -> None:
    result = promtool_check(exposition(hostile_snapshot()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
    assert result.stderr.strip() == ""


def test_promtool_accepts_the_full_registry() -> None:
    holder = SnapshotHolder()
    holder.publish(snapshot(container(), vm()))
    result = promtool_check(Exposition(holder).body().decode())
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (0, "", "")


def test_promtool_check_would_catch_a_broken_exposition() -> None:
    # Guard on the two tests above: promtool really rejects what a naive writer produces.
    result = promtool_check('densityd_workload_memory_bytes{name="new\nline"} 1\n')
    assert result.returncode != 0


def sample_names(families: Iterable[Metric]) -> set[str]:
    return {s.name for f in families for s in f.samples}


def test_exposition_has_one_type_line_per_family() -> None:
    text = exposition(snapshot(container(), vm()))
    type_lines = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(type_lines) == len({line.split()[2] for line in type_lines})
    assert sample_names(text_string_to_metric_families(text)) >= {
        "densityd_workload_info",
        "densityd_workload_cpu_seconds_total",
        "densityd_host_disk_free_bytes",
        "densityd_source_errors_total",
        "densityd_build_info",
    }


def test_exposition_is_rendered_when_a_snapshot_is_published() -> None:
    holder = SnapshotHolder()
    exposition = Exposition(holder)
    assert b"densityd_workload_memory_bytes{" not in exposition.body()
    holder.publish(hostile_snapshot())
    plain = exposition.body()
    assert b"densityd_workload_memory_bytes{" in plain
    # The gzip body is two members (densityd's part, then process_*): one valid stream.
    unzipped = gzip.decompress(exposition.body(gzipped=True))

    def ours(text: bytes) -> list[bytes]:
        return [line for line in text.splitlines() if b"densityd_" in line]

    assert ours(unzipped) == ours(plain)
    assert b"process_cpu_seconds_total" in unzipped


def test_exposition_renders_each_snapshot_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import densityd.serve.exporter as exporter

    holder = SnapshotHolder()
    exposition = Exposition(holder)
    calls: list[object] = []
    real_render = exporter.render

    def counting_render(snapshot: object, clock: object = None, extra: object = ()) -> bytes:
        calls.append(snapshot)
        return real_render(snapshot)  # type: ignore[arg-type]

    monkeypatch.setattr(exporter, "render", counting_render)
    snapshot = hostile_snapshot()
    holder.publish(snapshot)
    for _ in range(5):
        exposition.body()
        exposition.body(gzipped=True)
    assert calls == [snapshot]


def info_labels(snap: Snapshot) -> dict[str, dict[str, str]]:
    family = collect(snap)["densityd_workload_info"]
    return {s.labels["id"]: s.labels for s in family.samples}


def test_allowlisted_labels_become_info_labels_and_vms_get_empty_values() -> None:
    labelled = container(labels=(("team", "payments"), ("com.example/tier", "web")))
    found = info_labels(snapshot(labelled, vm()))
    assert found[CONTAINER_ID]["label_team"] == "payments"
    assert found[CONTAINER_ID]["label_com_example_tier"] == "web"
    assert found[VM_UUID]["label_team"] == found[VM_UUID]["label_com_example_tier"] == ""
    assert set(found[VM_UUID]) == set(found[CONTAINER_ID])


def test_no_labels_keep_the_documented_info_label_set() -> None:
    found = info_labels(snapshot(container(), vm()))
    assert set(found[CONTAINER_ID]) == {"kind", "id", "name", "image", "os", "state"}


def test_label_names_are_sanitized_and_collisions_resolved_deterministically() -> None:
    keys = ["team_name", "team.name", "team-name", "9lives", "é", "team_name_2"]
    names = workload_label_names(keys)
    assert names == workload_label_names(reversed(keys))
    assert names["9lives"] == "label_9lives"
    assert names["é"] == "label__"
    # Sorted: "team-name" < "team.name" < "team_name" < "team_name_2".
    assert names["team-name"] == "label_team_name"
    assert names["team.name"] == "label_team_name_2"
    assert names["team_name"] == "label_team_name_3"
    assert names["team_name_2"] == "label_team_name_2_2"
    assert len(set(names.values())) == len(keys)
    for name in names.values():
        assert name.isascii() and name.replace("_", "a").isalnum() and not name[0].isdigit()


def hostile_labelled_snapshot() -> Snapshot:
    workloads = tuple(
        container(id=f"{index:064x}", name=f"c{index}", labels=(("team", value), ("a.b", value)))
        for index, value in enumerate(HOSTILE)
    )
    return snapshot(*workloads, vm())


def test_hostile_label_values_on_workload_info_round_trip() -> None:
    text = exposition(hostile_labelled_snapshot())
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    samples = parsed["densityd_workload_info"].samples
    assert {s.labels["label_team"] for s in samples if s.labels["kind"] == "container"} == set(
        HOSTILE
    )
    assert all(s.labels["label_team"] == s.labels["label_a_b"] for s in samples)


def test_promtool_accepts_hostile_label_values() -> None:
    result = promtool_check(exposition(hostile_labelled_snapshot()))
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (0, "", "")


def test_network_counters_per_interface_vcpu_delay_and_hugepages() -> None:
    eth0 = NetworkInterface("eth0", 1000, 10, 1, 2, 500, 5, 3, 4)
    web = container(interfaces=(eth0,))
    db = replace(
        vm(),
        interfaces=(NetworkInterface("vnet0", receive_bytes=90, transmit_bytes=None),),
        vcpu_delay_seconds=0.5,
        hugepage_size_bytes=2097152,
        hugepage_bytes=536870912,
    )
    families = collect(snapshot(web, db))

    def labelled(workload: WorkloadSample, extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((*identity(workload), extra)))

    received = values(families["densityd_workload_network_receive_bytes"])
    assert received == {
        labelled(web, ("interface", "eth0")): 1000,
        labelled(db, ("interface", "vnet0")): 90,
    }
    assert families["densityd_workload_network_receive_bytes"].type == "counter"
    for name, value in (
        ("receive_packets", 10),
        ("receive_drops", 1),
        ("receive_errors", 2),
        ("transmit_bytes", 500),
        ("transmit_packets", 5),
        ("transmit_drops", 3),
        ("transmit_errors", 4),
    ):
        got = values(families[f"densityd_workload_network_{name}"])
        assert got[labelled(web, ("interface", "eth0"))] == value, name
    # A counter libvirt did not give is absent, never 0.
    transmitted = values(families["densityd_workload_network_transmit_bytes"])
    assert labelled(db, ("interface", "vnet0")) not in transmitted
    assert values(families["densityd_vm_vcpu_delay_seconds"]) == {identity(db): 0.5}
    assert values(families["densityd_vm_hugepages_bytes"]) == {
        labelled(db, ("size", "2097152")): 536870912
    }


def test_a_stopped_workload_has_no_network_or_hugepage_series() -> None:
    stopped = replace(
        vm(),
        running=False,
        state="shutoff",
        interfaces=(NetworkInterface("vnet0", 1, 1, 0, 0, 1, 1, 0, 0),),
        hugepage_size_bytes=2097152,
        hugepage_bytes=536870912,
    )
    families = collect(snapshot(stopped))
    assert not families["densityd_workload_network_receive_bytes"].samples
    assert not families["densityd_vm_hugepages_bytes"].samples
    assert not families["densityd_vm_vcpu_delay_seconds"].samples


def test_host_hugepage_pools_per_size_in_bytes() -> None:
    host = HostSample(
        cpu_cores=2,
        memory_bytes=2**34,
        memory_available_bytes=2**33,
        hugepages=(
            HugepagePool(2097152, total=40, free=8, reserved=2, surplus=1, default=True),
            HugepagePool(1073741824, total=0, free=0, reserved=0, surplus=None),
        ),
    )
    families = collect(snapshot(host=host))
    mib2, gib1 = (("size", "2097152"),), (("size", "1073741824"),)
    assert values(families["densityd_host_hugepages_bytes"]) == {mib2: 40 * 2097152, gib1: 0}
    assert values(families["densityd_host_hugepages_free_bytes"]) == {mib2: 8 * 2097152, gib1: 0}
    assert values(families["densityd_host_hugepages_reserved_bytes"]) == {
        mib2: 2 * 2097152,
        gib1: 0,
    }
    assert values(families["densityd_host_hugepages_surplus_bytes"]) == {mib2: 2097152}


def test_starvation_signals_exported_where_known_only() -> None:
    web = container(
        cpu_pressure=Pressure(4.5, 0.0),
        memory_pressure=Pressure(0.25, None),  # no full line: no full series
        io_pressure=None,  # unknown: no series at all
        cpu_periods=1200,
        cpu_throttled_periods=31,
        cpu_throttled_seconds=2.2,
        oom_kills=2,
        memory_low_bytes=64 * 2**20,
        memory_soft_limit_bytes=None,
    )
    db = replace(vm(), cpu_periods=40, cpu_throttled_periods=0, cpu_throttled_seconds=0.0)
    host = HostSample(
        cpu_cores=2,
        memory_bytes=1,
        memory_available_bytes=1,
        cpu_pressure=Pressure(1402.5, 0.0),
        memory_pressure=Pressure(189.9, 138.4),
        io_pressure=Pressure(8.8, 8.7),
    )
    gone = OomKills("f" * 64, "killed-and-removed", 1)
    families = collect(snapshot(web, db, host=host, removed_oom_kills=(gone,)))
    pressure = families["densityd_workload_pressure_seconds"]
    assert pressure.type == "counter"
    assert values(pressure) == {
        tuple(sorted((*identity(web), ("level", "some"), ("resource", "cpu")))): 4.5,
        tuple(sorted((*identity(web), ("level", "full"), ("resource", "cpu")))): 0.0,
        tuple(sorted((*identity(web), ("level", "some"), ("resource", "memory")))): 0.25,
    }
    assert values(families["densityd_workload_cpu_periods"]) == {
        identity(web): 1200,
        identity(db): 40,
    }
    assert values(families["densityd_workload_cpu_throttled_periods"])[identity(web)] == 31
    assert values(families["densityd_workload_cpu_throttled_seconds"])[identity(db)] == 0.0
    assert values(families["densityd_container_oom_kills"]) == {
        identity(web): 2,
        (("id", gone.id), ("kind", "container"), ("name", gone.name)): 1,
    }
    assert values(families["densityd_container_memory_low_bytes"]) == {identity(web): 64 * 2**20}
    for unset in ("min", "high", "soft_limit"):
        assert values(families[f"densityd_container_memory_{unset}_bytes"]) == {}, unset
    host_pressure = families["densityd_host_pressure_seconds"]
    assert host_pressure.type == "counter"
    assert values(host_pressure)[(("level", "full"), ("resource", "memory"))] == 138.4
    assert len(values(host_pressure)) == 6


def test_a_removed_container_listed_again_is_counted_once() -> None:
    web = container(oom_kills=3)
    families = collect(snapshot(web, removed_oom_kills=(OomKills(web.id, web.name, 2),)))
    assert values(families["densityd_container_oom_kills"]) == {identity(web): 3}
