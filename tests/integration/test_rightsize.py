"""Rightsizing against the real engine: containers with generous limits that use little.

Three containers limited to 512 MiB and 1 CPU each fill 20 MiB of tmpfs and sleep, in a
declared capacity of 2 cores and 4 GiB (so no host reserve, system usage or shims move the
numbers). With no history the recommendation is the fresh sample's demand: the working set
+ 15 % and the CPU rate over the plan's 1 s window. Each is checked against the kernel's own
figures for the same container (the cgroup's working set and CPU seconds), and the slots
resizing frees against what those figures make room for.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.backends import VM_PREFIX, Containers, Daemon, DockerCLI, value_of
from tests.integration.cgroups import cgroup_cpu_seconds, cgroup_working_set
from tests.integration.test_plan_reality import plan_json

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
GIB = 1024 * MIB
LIMIT = 512 * MIB
FILL_MIB = 20
BUFFER = 1.15
# The working set read around the plan's own reading: tmpfs pages do not move, the rest
# (a sleeping shell) by a few pages.
MEMORY_TOLERANCE = 2 * MIB
# Idle containers: the CPU rate over 1 s of a sleeping process, against the cgroup's.
CPU_TOLERANCE = 0.02
PROFILE_MEMORY = 64 * MIB
PROFILE_CPU = 0.01
CAPACITY = ("--capacity", "cpu=2,memory=4Gi")


def start(containers: Containers, prefix: str, count: int = 3) -> list[str]:
    ids = [
        containers.run(
            "--memory",
            "512m",
            "--cpus",
            "1",
            "--tmpfs",
            "/data:size=100m",
            name=f"{prefix}-{index}",
            command=f"dd if=/dev/zero of=/data/x bs=1M count={FILL_MIB} && exec sleep 3600",
        )
        for index in range(count)
    ]
    time.sleep(2)  # the fill is done and the shell is asleep
    return ids


def test_resizing_generous_containers_frees_what_their_measured_use_leaves(
    containers: Containers, docker_cli: DockerCLI, tmp_path: Path
) -> None:
    prefix = f"{VM_PREFIX}rs-{uuid.uuid4().hex[:6]}"
    ids = start(containers, prefix)
    before = {
        i: (cgroup_working_set(docker_cli, i), cgroup_cpu_seconds(docker_cli, i)) for i in ids
    }
    started = time.monotonic()
    document = plan_json(
        "--rightsize",
        "--no-history",
        "--state-dir",
        str(tmp_path / "state"),
        "--scope",
        f"{prefix}-*",
        *CAPACITY,
        "--profile",
        f"cpu={PROFILE_CPU},memory={PROFILE_MEMORY // MIB}Mi",
    )
    seconds = time.monotonic() - started
    after = {i: (cgroup_working_set(docker_cli, i), cgroup_cpu_seconds(docker_cli, i)) for i in ids}
    part = document["rightsizing"]
    assert isinstance(part, dict)
    by_id = {item["id"]: item for item in part["workloads"]}
    assert set(by_id) == set(ids)
    for container_id in ids:
        item = by_id[container_id]
        working_set = (before[container_id][0] + after[container_id][0]) / 2
        assert working_set >= FILL_MIB * MIB  # the tmpfs is charged to it
        assert item["recommended_memory_bytes"] == pytest.approx(
            working_set * BUFFER, abs=MEMORY_TOLERANCE * BUFFER
        ), item
        assert item["memory_limit_bytes"] == LIMIT
        assert item["overprovisioned_memory_bytes"] == LIMIT - item["recommended_memory_bytes"]
        rate = (after[container_id][1] - before[container_id][1]) / seconds
        assert item["recommended_cpu"] == pytest.approx(rate, abs=CPU_TOLERANCE), item
        assert item["cpu_limit"] == 1.0
        assert item["overprovisioned_cpu"] == pytest.approx(1.0 - item["recommended_cpu"])
        # Resizing frees exactly the over-provisioning (within a declared capacity no shim).
        assert item["frees"]["memory_bytes"] == item["overprovisioned_memory_bytes"]
    # The slots: 4 GiB x 0.9 usable. Today 3 x 512 MiB are promised; resized, their demand.
    usable = 4 * GIB * 0.9
    today = math.floor((usable - 3 * LIMIT) / PROFILE_MEMORY)
    recommended = [by_id[i]["recommended_memory_bytes"] for i in ids]
    resized = math.floor((usable - sum(recommended)) / PROFILE_MEMORY)
    measured = sum((before[i][0] + after[i][0]) / 2 * BUFFER for i in ids)
    [answer] = part["answers"]
    assert answer["by_view"]["allocation"]["remaining"] == today
    assert answer["remaining"] == today  # the allocation view binds today
    assert answer["rightsized_remaining"] == resized
    assert abs(resized - math.floor((usable - measured) / PROFILE_MEMORY)) <= 1
    assert answer["more"] == resized - today > 20
    assert answer["rightsized_bound"] == "memory"


def test_the_daemon_exports_recommendations_that_match_the_cgroups(
    containers: Containers,
    docker_cli: DockerCLI,
    start_daemon: Callable[..., Daemon],
) -> None:
    prefix = f"{VM_PREFIX}rsd-{uuid.uuid4().hex[:6]}"
    ids = start(containers, prefix, count=2)
    daemon = start_daemon("--scope", f"{prefix}-*", *CAPACITY)

    def ready(series: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> bool:
        return all(
            value_of(series, "densityd_workload_overprovisioned_memory_bytes", id=i) is not None
            for i in ids
        ) and any(n == "densityd_plan_rightsized_remaining" for n, _ in series)

    series = daemon.wait_for(ready, timeout=30, what="rightsizing series")
    for container_id in ids:
        working_set = cgroup_working_set(docker_cli, container_id)
        recommended = value_of(
            series, "densityd_workload_recommended_memory_bytes", id=container_id
        )
        over = value_of(series, "densityd_workload_overprovisioned_memory_bytes", id=container_id)
        assert recommended == pytest.approx(working_set * BUFFER, abs=MEMORY_TOLERANCE * BUFFER)
        assert over == pytest.approx(LIMIT - recommended)
        cpu = value_of(series, "densityd_workload_recommended_cpu_cores", id=container_id)
        assert cpu is not None and 0 <= cpu < CPU_TOLERANCE
        over_cpu = value_of(series, "densityd_workload_overprovisioned_cpu_cores", id=container_id)
        assert over_cpu == pytest.approx(1.0 - cpu)
    remaining = value_of(
        series, "densityd_plan_rightsized_remaining", kind="container", profile="median-container"
    )
    today = value_of(
        series, "densityd_plan_remaining", kind="container", profile="median-container"
    )
    assert remaining is not None and today is not None
    assert remaining > today  # the median container's 512 MiB allocation binds today
