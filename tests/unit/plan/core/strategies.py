"""Hypothesis strategies for the planner's property tests, over the numbers each test picks.

The properties of ``plan.answer`` need whole bytes (so that sums are exact); the fleet's
equality with ``plan.answer`` needs arbitrary floats too (so that summation order shows).
The shapes of what is generated are the same, so they live here, over a ``Numbers``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from densityd.model import WorkloadKind
from densityd.plan.core.model import GIB, MIB, Profile, Resources, WorkloadDemand


@dataclass(frozen=True)
class Numbers:
    """The strategies for cores and bytes a test draws its resources from."""

    cores: st.SearchStrategy[float]
    memory_bytes: st.SearchStrategy[float]
    disk_bytes: st.SearchStrategy[float]


def resources(numbers: Numbers) -> st.SearchStrategy[Resources]:
    """Any CPU, memory and disk."""
    return st.builds(
        Resources, cpu=numbers.cores, memory=numbers.memory_bytes, disk=numbers.disk_bytes
    )


@st.composite
def workloads(draw: st.DrawFn, numbers: Numbers) -> WorkloadDemand:
    """A container or VM, running or not, with or without each limit."""
    kind = draw(st.sampled_from(list(WorkloadKind)))
    is_vm = kind is WorkloadKind.VM
    return WorkloadDemand(
        kind=kind,
        id="w",
        name="w",
        running=draw(st.booleans()),
        demand=draw(resources(numbers)),
        cpu_limit=draw(st.none() | numbers.cores),
        memory_limit=draw(st.none() | numbers.memory_bytes),
        disk_limit=draw(st.none() | numbers.disk_bytes),
        memory_bytes=draw(st.none() | numbers.memory_bytes),
        guest_memory_bytes=draw(st.none() | numbers.memory_bytes) if is_vm else None,
        vcpus=draw(st.none() | st.integers(1, 32)) if is_vm else None,
        disk_is_overlay=is_vm and draw(st.booleans()),
        history_seconds=draw(st.sampled_from([0.0, 3600.0])),
        disk_bytes=draw(st.none() | numbers.disk_bytes),
    )


@st.composite
def profiles(draw: st.DrawFn, numbers: Numbers) -> Profile:
    """A shape with any of the per-kind options."""
    return Profile(
        name="p",
        demand=draw(resources(numbers)),
        allocation=draw(resources(numbers)),
        image_bytes=draw(st.sampled_from([0.0, 100 * MIB, 5 * GIB])),
        image_present=draw(st.booleans()),
        includes_guest_os=draw(st.booleans()),
        vcpus=draw(st.none() | st.integers(1, 32)),
        disk_is_overlay=draw(st.booleans()),
        image=draw(st.sampled_from(["", "app:1", "web:3"])),
        memory_includes_overhead=draw(st.booleans()),
    )
