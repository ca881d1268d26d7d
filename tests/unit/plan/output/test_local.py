"""The plan's JSON document (the contract for scripts) and its table (for operators)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import pytest

from densityd.model import WorkloadKind
from densityd.plan.core.model import (
    GIB,
    MIB,
    RESOURCES,
    Answer,
    PlanSettings,
    Resource,
    ResourceAnswer,
    Resources,
    View,
)
from densityd.plan.output.document import PLAN_SCHEMA, plan_document, settings_assumptions
from densityd.plan.output.local import plan_table, table_label

CONTAINER, VM = WorkloadKind.CONTAINER, WorkloadKind.VM
GENERATED_AT = 1_764_590_400.0  # 2025-12-01 12:00 UTC

HOST: dict[str, Any] = {
    "name": "node1",
    "capacity": {"cpu": 8.0, "memory_bytes": 16 * GIB, "disk_bytes": 100 * GIB},
    "declared": ["memory"],
    "history_seconds": 13 * 86400.0,
    "workloads": {"container": 5, "vm": 2},
}


def resource_answers(fits: dict[Resource, int | None]) -> tuple[ResourceAnswer, ...]:
    """One ResourceAnswer per resource with distinct, recognisable numbers."""
    sizes = {Resource.CPU: 1.0, Resource.MEMORY: float(GIB), Resource.DISK: 10.0 * GIB}
    return tuple(
        ResourceAnswer(
            resource=resource,
            total=8 * sizes[resource],
            usable=7 * sizes[resource],
            used=3 * sizes[resource],
            system=1 * sizes[resource],
            free=4 * sizes[resource],
            cost=0.5 * sizes[resource],
            fits=fits.get(resource),
        )
        for resource in RESOURCES
    )


def make_answer(
    kind: WorkloadKind = CONTAINER,
    view: View = View.DEMAND,
    remaining: int | None = 12,
    *,
    profile: str = "web",
    bound: Resource | None = Resource.MEMORY,
    **changes: Any,
) -> Answer:
    answer = Answer(
        kind=kind,
        profile=profile,
        view=view,
        remaining=remaining,
        bound=bound,
        cost=Resources(cpu=0.5, memory=512.0 * MIB, disk=5.0 * GIB),
        resources=resource_answers({Resource.CPU: 40, Resource.MEMORY: remaining}),
        overhead={"shim": 13.0 * MIB},
    )
    return dataclasses.replace(answer, **changes)


def document(answers: list[Answer], **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "host": HOST,
        "answers": answers,
        "assumptions": settings_assumptions(PlanSettings()),
        "generated_at": GENERATED_AT,
    }
    arguments.update(overrides)
    return plan_document(**arguments)


def normalised(text: str) -> str:
    """The table with wrapping undone: one space between words."""
    return " ".join(text.split())


# -- the document ----------------------------------------------------------------------------


def test_document_top_level() -> None:
    assumptions = {"target_fill": 0.9, "scope": "all workloads"}
    comparison = {"profile": "web", "container_remaining": 40, "vm_remaining": 6, "ratio": 6.7}
    result = document(
        [make_answer()], assumptions=assumptions, comparison=comparison, generated_at=12.5
    )
    assert list(result) == [
        "schema",
        "generated_at",
        "host",
        "answers",
        "comparison",
        "assumptions",
    ]
    assert result["schema"] == "densityd.plan/v1" == PLAN_SCHEMA
    assert result["generated_at"] == 12.5
    assert result["host"] == HOST
    assert result["comparison"] == comparison
    assert result["assumptions"] == assumptions
    assert len(result["answers"]) == 1


def test_document_comparison_defaults_to_null() -> None:
    assert document([make_answer()])["comparison"] is None
    assert '"comparison": null' in json.dumps(document([make_answer()]))


def test_answer_object_exactly() -> None:
    answer = make_answer(
        time_to_full_seconds=792_000.0,
        notes=("2 workloads have no memory limit: counted at their demand",),
    )
    result = document([answer], origins={"web": "like web-1"})["answers"][0]
    assert result == {
        "kind": "container",
        "profile": "web",
        "profile_origin": "like web-1",
        "view": "demand",
        "headline": True,
        "remaining": 12,
        "bound": "memory",
        "cost": {"cpu": 0.5, "memory_bytes": 536_870_912, "disk_bytes": 5_368_709_120},
        "total": {"cpu": 8.0, "memory_bytes": 8 * GIB, "disk_bytes": 80 * GIB},
        "usable": {"cpu": 7.0, "memory_bytes": 7 * GIB, "disk_bytes": 70 * GIB},
        "used": {"cpu": 3.0, "memory_bytes": 3 * GIB, "disk_bytes": 30 * GIB},
        "system": {"cpu": 1.0, "memory_bytes": 1 * GIB, "disk_bytes": 10 * GIB},
        "free": {"cpu": 4.0, "memory_bytes": 4 * GIB, "disk_bytes": 40 * GIB},
        "fits": {"cpu": 40, "memory_bytes": 12, "disk_bytes": None},
        "overhead": {"shim": 13_631_488},
        "time_to_full_seconds": 792_000.0,
        "notes": ["2 workloads have no memory limit: counted at their demand"],
    }


def test_units_bytes_are_whole_cores_are_floats() -> None:
    answer = make_answer(cost=Resources(cpu=1, memory=1.15 * 512 * MIB, disk=0.4))
    cost = document([answer])["answers"][0]["cost"]
    assert cost == {"cpu": 1.0, "memory_bytes": 617_401_549, "disk_bytes": 0}
    assert isinstance(cost["cpu"], float)
    assert isinstance(cost["memory_bytes"], int)
    assert isinstance(cost["disk_bytes"], int)


def test_profile_origin_is_null_when_not_known() -> None:
    result = document([make_answer()], origins={"other": "given"})
    assert result["answers"][0]["profile_origin"] is None
    assert document([make_answer()])["answers"][0]["profile_origin"] is None


def test_unbounded_and_unknown_values_are_null_and_the_document_is_strict_json() -> None:
    resources = (
        ResourceAnswer(Resource.CPU, 8.0, 7.0, 3.0, 0.0, math.inf, 0.0, None),
        ResourceAnswer(Resource.MEMORY, 1.0, 1.0, math.nan, 0.0, 1.0, 0.0, None),
    )
    answer = make_answer(
        remaining=None,
        bound=None,
        resources=resources,
        cost=Resources(),
        time_to_full_seconds=math.inf,
    )
    result = document([answer])
    item = result["answers"][0]
    assert item["remaining"] is None
    assert item["bound"] is None
    assert item["free"] == {"cpu": None, "memory_bytes": 1, "disk_bytes": None}
    assert item["used"]["memory_bytes"] is None
    assert item["total"]["disk_bytes"] is None  # no disk side at all
    assert item["fits"] == {"cpu": None, "memory_bytes": None, "disk_bytes": None}
    assert item["time_to_full_seconds"] is None
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    assert '"remaining": null' in text


def test_headline_is_the_stricter_answer_of_each_kind_and_profile() -> None:
    answers = [
        make_answer(CONTAINER, View.ALLOCATION, 20),
        make_answer(CONTAINER, View.DEMAND, 12),
        make_answer(VM, View.ALLOCATION, 3),
        make_answer(VM, View.DEMAND, 6),
        make_answer(CONTAINER, View.ALLOCATION, 2, profile="db"),
        make_answer(CONTAINER, View.DEMAND, 9, profile="db"),
    ]
    flags = [item["headline"] for item in document(answers)["answers"]]
    assert flags == [False, True, True, False, True, False]


def test_unbounded_counts_as_the_most_remaining() -> None:
    answers = [make_answer(view=View.ALLOCATION, remaining=None), make_answer(remaining=0)]
    flags = [item["headline"] for item in document(answers)["answers"]]
    assert flags == [False, True]
    answers = [make_answer(remaining=None), make_answer(view=View.ALLOCATION, remaining=None)]
    flags = [item["headline"] for item in document(answers)["answers"]]
    assert flags == [True, False]


def test_one_headline_on_a_tie() -> None:
    answers = [make_answer(view=View.ALLOCATION, remaining=5), make_answer(remaining=5)]
    flags = [item["headline"] for item in document(answers)["answers"]]
    assert flags == [True, False]


def test_settings_assumptions_defaults_exactly() -> None:
    result = settings_assumptions(PlanSettings())
    expected_start = {
        "reserved": {"cpu": 0.0, "memory_bytes": 536_870_912, "disk_bytes": 0},
        "ratio": {"cpu": 4.0, "memory": 1.0, "disk": 1.0},
        "target_fill": 0.9,
        "percentile": 0.95,
        "memory_buffer": 0.15,
        "window_seconds": 1_209_600.0,
        "container_shim_bytes": 13_631_488,
        "shim_measured": False,
        "qemu_overhead": "64 MiB + RAM/512 + 8 MiB per vCPU",
        "guest_os": "debian",
    }
    assert {key: result[key] for key in expected_start} == expected_start
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_settings_assumptions_cover_every_setting() -> None:
    result = settings_assumptions(PlanSettings())
    qemu = {"qemu_base_bytes", "qemu_ram_divisor", "qemu_per_vcpu_bytes"}
    for item in dataclasses.fields(PlanSettings):
        assert item.name in result or item.name in qemu, item.name
    assert not qemu & set(result)


def test_settings_assumptions_follow_the_settings() -> None:
    settings = PlanSettings(
        reserved=Resources(cpu=1.0, memory=2.0 * GIB, disk=10.0 * GIB),
        ratio=Resources(cpu=16.0, memory=1.5, disk=1.0),
        qemu_base_bytes=71.5 * MIB,
        qemu_ram_divisor=256.0,
        qemu_per_vcpu_bytes=4 * MIB,
        guest_os="alpine",
        shim_measured=True,
    )
    result = settings_assumptions(settings)
    assert result["reserved"] == {"cpu": 1.0, "memory_bytes": 2 * GIB, "disk_bytes": 10 * GIB}
    assert result["ratio"] == {"cpu": 16.0, "memory": 1.5, "disk": 1.0}
    assert result["qemu_overhead"] == "71.5 MiB + RAM/256 + 4 MiB per vCPU"
    assert result["guest_os"] == "alpine"
    assert result["shim_measured"] is True


def test_calibrated_qemu_base_says_so() -> None:
    if "qemu_calibrated" not in {item.name for item in dataclasses.fields(PlanSettings)}:
        pytest.skip("PlanSettings has no qemu_calibrated")
    settings = dataclasses.replace(PlanSettings(), qemu_calibrated=True)
    formula = settings_assumptions(settings)["qemu_overhead"]
    assert formula == "64 MiB (measured) + RAM/512 + 8 MiB per vCPU"


# -- the table -------------------------------------------------------------------------------


def two_kinds() -> dict[str, Any]:
    """A container and a VM answer for one shape, both views of the container, compared."""
    answers = [
        make_answer(CONTAINER, View.ALLOCATION, 20),
        make_answer(
            CONTAINER,
            View.DEMAND,
            12,
            time_to_full_seconds=9 * 86400 + 4 * 3600 + 100,
            notes=("2 workloads have no memory limit: counted at their demand",),
        ),
        make_answer(
            VM,
            View.DEMAND,
            6,
            overhead={"qemu": 72.5 * MIB, "guest_os_memory": 512.0 * MIB, "guest_os_disk": GIB},
            notes=("VM disks are counted at their allocated size",),
        ),
    ]
    assumptions = settings_assumptions(PlanSettings())
    assumptions["scope"] = ["team=a", "team=b"]
    assumptions["notes"] = ["history covers 13d of the 14d window"]
    comparison = {"profile": "web", "container_remaining": 40, "vm_remaining": 6, "ratio": 6.7}
    return document(
        answers, assumptions=assumptions, comparison=comparison, origins={"web": "given"}
    )


def test_table_headline_sentences() -> None:
    table = normalised(plan_table(two_kinds()))
    assert (
        "container web: 12 more (demand view), memory binds; full in 9d 4h at the current trend"
        in table
    )
    assert "vm web: 6 more (demand view), memory binds; no growth trend" in table
    assert "container web: 20 more" not in table  # the allocation view is not the headline


def test_table_unbounded_headline() -> None:
    table = plan_table(document([make_answer(remaining=None, bound=None)]))
    assert "container web: unbounded (demand view): it costs nothing of any resource" in table
    assert "*" not in table


def test_table_rows_per_view_and_resource_with_the_binding_one_marked() -> None:
    lines = plan_table(two_kinds()).splitlines()
    header = next(line for line in lines if "RESOURCE" in line)
    for title in ("VIEW", "TOTAL", "USABLE", "USED (SYSTEM)", "FREE", "COST", "FITS"):
        assert title in header
    memory_rows = [line for line in lines if "memory*" in line.split()[:2]]
    assert len(memory_rows) == 3  # container allocation, container demand, VM demand
    assert not any(" memory " in line for line in lines if "GiB (" in line)
    demand_memory = memory_rows[1].split()
    # TOTAL, USABLE, USED (SYSTEM), FREE, COST, FITS: bytes in human units, FITS marked.
    assert demand_memory == [
        "memory*",
        "8.0GiB",
        "7.0GiB",
        "3.0GiB",
        "(1.0GiB)",
        "4.0GiB",
        "512.0MiB",
        "12*",
    ]
    cpu_rows = [line.split() for line in lines if line.split()[:2] == ["demand", "cpu"]]
    assert cpu_rows[0] == ["demand", "cpu", "8", "7", "3", "(1)", "4", "0.5", "40"]
    disk_rows = [line.split() for line in lines if line.split()[:1] == ["disk"]]
    assert disk_rows[0][-1] == "unbounded"
    assert not any("cpu*" in line or "disk*" in line for line in lines)


def test_table_lists_the_overhead_once_when_the_views_agree() -> None:
    table = plan_table(two_kinds())
    assert table.count("overhead per slot: containerd shim 13.0MiB") == 1
    assert "overhead per slot: QEMU 72.5MiB, guest OS RAM 512.0MiB, guest OS disk 1.0GiB" in table
    differing = [
        make_answer(view=View.ALLOCATION, overhead={"shim": 13.0 * MIB, "image": 5.0 * MIB}),
        make_answer(),
    ]
    table = plan_table(document(differing))
    assert "overhead per slot, allocation view: containerd shim 13.0MiB, image 5.0MiB" in table
    assert "overhead per slot, demand view: containerd shim 13.0MiB" in table


def test_table_comparison_line() -> None:
    table = normalised(plan_table(two_kinds()))
    assert (
        "As containers: 40 more; as VMs: 6 more — 6.7\u00d7 more as containers; the VM pays "
        "QEMU 72.5MiB and a debian guest OS 512.0MiB RAM / 1.0GiB disk" in table
    )


def test_table_comparison_without_a_guest_os_or_ratio() -> None:
    answers = [make_answer(VM, overhead={"qemu": 80.0 * MIB})]
    comparison = {"profile": "web", "container_remaining": None, "vm_remaining": 0, "ratio": None}
    table = normalised(plan_table(document(answers, comparison=comparison)))
    assert "As containers: unbounded; as VMs: 0 more; the VM pays QEMU 80.0MiB" in table
    assert "guest OS 512" not in table and "a debian guest OS" not in table
    assert "\u00d7" not in table


def test_table_lists_every_assumption_and_every_note() -> None:
    result = two_kinds()
    lines = plan_table(result).splitlines()
    start = lines.index("Assumptions:")
    listed = lines[start:]
    for key in result["assumptions"]:
        label = table_label(key)
        assert any(line.strip().startswith(f"{label}:") for line in listed), (key, label)
    assert "  reserved: cpu 0, memory 512.0MiB, disk 0B" in listed
    assert "  overcommit ratios: cpu 4, memory 1, disk 1" in listed
    assert "  window: 14d" in listed
    assert "  QEMU overhead: 64 MiB + RAM/512 + 8 MiB per vCPU" in listed
    assert "  shim measured: no" in listed
    assert "  reserve kept within a declared capacity: none" in listed
    assert "    - team=a" in listed and "    - team=b" in listed
    assert "    - history covers 13d of the 14d window" in listed
    assert "  - 2 workloads have no memory limit: counted at their demand" in listed
    assert "  - VM disks are counted at their allocated size" in listed


def test_table_notes_are_listed_once() -> None:
    note = "a note every view repeats"
    answers = [make_answer(view=View.ALLOCATION, notes=(note,)), make_answer(notes=(note,))]
    assert plan_table(document(answers)).count(note) == 1


def test_table_host_lines() -> None:
    lines = plan_table(document([make_answer()])).splitlines()
    assert lines[0] == "Plan for host node1 at 2025-12-01 12:00 UTC"
    host = normalised("\n".join(lines[1:3]))
    assert host == (
        "Host: 8 cores, 16.0GiB memory, 100.0GiB disk; declared: memory; history 13d; "
        "workloads: 5 containers, 2 VMs"
    )
    assert lines[2].startswith("  ")  # a wrapped line hangs under the first


def test_table_is_at_most_100_columns() -> None:
    long_note = "word " * 60
    answers = [make_answer(notes=(long_note,), profile="a-rather-long-profile-name-" * 2)]
    comparison = {
        "profile": "x",
        "container_remaining": 123456,
        "vm_remaining": 7,
        "ratio": 17636.6,
    }
    table = plan_table(document(answers, comparison=comparison))
    assert max(len(line) for line in table.splitlines()) <= 100


def test_table_reads_the_same_from_the_json_text() -> None:
    # The daemon serves JSON; a client rendering it must print what the CLI prints.
    result = two_kinds()
    assert plan_table(json.loads(json.dumps(result))) == plan_table(result)


def test_every_table_line_is_written_for_a_person() -> None:
    """Issue 12: no internal key names in the text (the JSON keeps them)."""
    result = two_kinds()
    result["host"]["memory_available_bytes"] = 10 * GIB
    result["host"]["data_disks"] = {
        "container": {"path": "/var/lib/docker", "total_bytes": 100 * GIB, "free_bytes": 60 * GIB}
    }
    result["host"]["sources"] = {"docker": True, "libvirt": False}
    table = plan_table(result)
    for line in table.splitlines():
        assert not re.search(r"[a-z]_(bytes|seconds|given)\b", line), line
    assert "memory available: 10.0GiB" in table
    assert "data disks: containers on /var/lib/docker (60.0GiB free of 100.0GiB)" in table
    assert "sources: docker up, libvirt down" in table
