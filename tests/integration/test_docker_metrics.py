"""densityd's container figures checked against the cgroup files, docker inspect and docker stats.

The cgroup helpers read v1 or v2 files, whichever the host has (``tests/integration/cgroups``),
so this file also runs in the cgroup v2 guest (``.ci/v2-guest``).

Each test runs real containers with known settings on the real engine, scrapes a real
``densityd run``, and reads the same figure from ground truth right after the scrape. The
tolerances are stated next to each comparison and say why they are what they are.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.backends import (
    Containers,
    Daemon,
    DockerCLI,
    Series,
    promtool,
    value_of,
)
from tests.integration.cgroups import cgroup_cpu_seconds, cgroup_version, cgroup_working_set

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def docker_stats_memory(docker: DockerCLI, container_id: str) -> float:
    """The MEM USAGE column of ``docker stats --no-stream`` in bytes."""
    text = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container_id)
    match = re.match(r"([\d.]+)([KMG]i?B|B)", text)
    assert match, text
    scale = {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB, "kB": 1000, "MB": 1e6}
    return float(match.group(1)) * scale[match.group(2)]


def reading_age(series: Series, source: str = "docker") -> float:
    """At most how old, now, the reading of ``source`` in a scrape is.

    It was taken during the source's last successful call, which ended at its last-success
    timestamp and lasted its duration. Under QEMU's TCG on a shared machine a pass can take
    seconds, so "one interval old" would not bound it.
    """
    ended = value_of(series, "densityd_source_last_success_timestamp_seconds", source=source)
    took = value_of(series, "densityd_source_duration_seconds", source=source)
    assert ended is not None and took is not None
    return time.time() - ended + took


def has_workload(container_id: str, metric: str = "densityd_workload_info"):  # type: ignore[no-untyped-def]
    """A predicate: the container has a sample of ``metric``."""
    return lambda series: value_of(series, metric, id=container_id) is not None


@pytest.fixture
def daemon(start_daemon, docker_cli: DockerCLI) -> Daemon:  # type: ignore[no-untyped-def]
    """A daemon sampling every second and sizing writable layers every 2 s."""
    return start_daemon("--disk-interval", "2")  # type: ignore[no-any-return]


def test_cpu_burner_limited_to_half_a_core(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI
) -> None:
    """CPU seconds match cpuacct.usage; the limit matches NanoCpus; the rate is ~0.5 core."""
    burner = containers.run("--cpus", "0.5", command="yes > /dev/null")
    daemon.wait_for(has_workload(burner, "densityd_workload_cpu_seconds_total"), what="burner")

    inspect = json.loads(docker_cli("inspect", burner))[0]
    assert inspect["HostConfig"]["NanoCpus"] == 500_000_000
    series = daemon.scrape()
    assert value_of(series, "densityd_workload_cpu_limit_cores", id=burner) == 0.5

    # The cgroup, read after the scrape, is ahead of the reading by at most 0.5 core times
    # the reading's age; 0.1 s more for a burst within one 100 ms CFS period.
    reported = value_of(series, "densityd_workload_cpu_seconds_total", id=burner)
    truth = cgroup_cpu_seconds(docker_cli, burner)
    age = reading_age(series)
    assert reported is not None
    assert 0 <= truth - reported <= 0.5 * age + 0.1, (reported, truth, age)

    # The CFS quota holds the burner to 0.5 core: over about 4 s its CPU time grows by 0.5
    # within 0.1 core times the time between the two readings. Each reading was taken during
    # its pass's Docker call (which ended at the last-success stamp and lasted its duration),
    # so that time is known within the two calls' durations, not from the scrapes' clock: a
    # pass under TCG on a busy machine can start a second late.
    def reading(series: Series) -> tuple[float, float, float]:
        cpu = value_of(series, "densityd_workload_cpu_seconds_total", id=burner)
        ended = value_of(series, "densityd_source_last_success_timestamp_seconds", source="docker")
        took = value_of(series, "densityd_source_duration_seconds", source="docker")
        assert cpu is not None and ended is not None and took is not None
        return cpu, ended, took

    first, first_ended, first_took = reading(daemon.scrape())
    time.sleep(4)
    second, second_ended, second_took = reading(daemon.scrape())
    shortest = (second_ended - second_took) - first_ended
    longest = second_ended - (first_ended - first_took)
    assert shortest > 2, (first_ended, second_ended)
    assert 0.4 * shortest <= second - first <= 0.6 * longest, (second - first, shortest, longest)


def test_memory_filler_against_cgroup_and_docker_stats(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI
) -> None:
    """Working set matches the cgroup files and docker stats; the limit matches inspect."""
    filler = containers.run(
        "--memory",
        "128m",
        "--tmpfs",
        "/data:size=200m",
        command="dd if=/dev/zero of=/data/x bs=1M count=60 && sleep 3600",
    )

    def filled(series: Series) -> bool:
        value = value_of(series, "densityd_workload_memory_bytes", id=filler)
        return value is not None and value >= 60 * MiB

    series = daemon.wait_for(filled, what="60 MiB in the filler's tmpfs")
    inspect = json.loads(docker_cli("inspect", filler))[0]
    assert inspect["HostConfig"]["Memory"] == 128 * MiB
    assert value_of(series, "densityd_workload_memory_limit_bytes", id=filler) == 128 * MiB

    # The filler is idle once dd is done, so its memory is steady: the cgroup file read right
    # after the scrape agrees within 1 MiB (kernel bookkeeping, page-table pages).
    time.sleep(1.5)
    series = daemon.scrape()
    reported = value_of(series, "densityd_workload_memory_bytes", id=filler)
    assert reported is not None
    assert abs(reported - cgroup_working_set(docker_cli, filler)) <= 1 * MiB
    # docker stats prints three or four significant digits ("61.1MiB"): 1 MiB covers rounding.
    assert abs(reported - docker_stats_memory(docker_cli, filler)) <= 1 * MiB
    assert 60 * MiB <= reported <= 70 * MiB
    usage = value_of(series, "densityd_container_memory_usage_bytes", id=filler)
    assert usage is not None and usage >= reported


def test_disk_writer_writable_layer(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI
) -> None:
    """The writable layer's size equals docker's SizeRw, and its age is exported."""
    writer = containers.run(command="dd if=/dev/zero of=/blob bs=1M count=20 && sync && sleep 3600")

    def written(series: Series) -> bool:
        value = value_of(series, "densityd_workload_disk_bytes", id=writer)
        return value is not None and value >= 20 * MiB

    series = daemon.wait_for(written, timeout=30, what="20 MiB in the writable layer")
    size_rw = int(docker_cli("inspect", "--size", "--format", "{{.SizeRw}}", writer))
    # Both come from the engine's own size walk of the same layer: equal once written.
    assert value_of(series, "densityd_workload_disk_bytes", id=writer) == size_rw
    assert 20 * MiB <= size_rw <= 21 * MiB
    age = value_of(series, "densityd_docker_disk_usage_age_seconds")
    assert age is not None and 0 <= age <= 2 + 2  # --disk-interval 2, plus one pass of slack
    # No quota was set: the limit is omitted, never exported as 0.
    assert value_of(series, "densityd_workload_disk_limit_bytes", id=writer) is None


def test_removed_container_series_are_gone_after_next_pass(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI
) -> None:
    """Once a container is removed, no series carry its ID after the next pass."""
    doomed = containers.run()
    daemon.wait_for(has_workload(doomed, "densityd_workload_memory_bytes"), what="container")
    docker_cli("rm", "-f", doomed)
    removed_at = time.time()

    series = daemon.wait_for(
        lambda s: (value_of(s, "densityd_last_pass_timestamp_seconds") or 0) > removed_at + 0.1,
        what="a pass after the removal",
    )
    leftovers = [name for (name, labels) in series if ("id", doomed) in labels]
    assert leftovers == []


def test_stopped_container_keeps_limits_but_no_usage(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI
) -> None:
    """An exited container is listed with its limits (it claims them when started)."""
    stopped = containers.run("--memory", "64m", command="exit 0")

    def exited(series: Series) -> bool:
        return value_of(series, "densityd_workload_info", id=stopped, state="exited") == 1

    series = daemon.wait_for(exited, what="the exited container")
    assert value_of(series, "densityd_workload_memory_limit_bytes", id=stopped) == 64 * MiB
    assert value_of(series, "densityd_workload_memory_bytes", id=stopped) is None
    assert value_of(series, "densityd_workload_cpu_seconds_total", id=stopped) is None


def test_live_scrape_passes_promtool(
    daemon: Daemon, containers: Containers, tmp_path: Path
) -> None:
    """``promtool check metrics`` accepts a live scrape with containers in every state, the
    starvation signals of this host's cgroup version among them."""
    running = containers.run("--memory", "32m", "--memory-reservation", "16m", "--cpus", "0.25")
    containers.run(command="exit 3")
    daemon.wait_for(has_workload(running, "densityd_workload_memory_bytes"), what="container")
    text = daemon.metrics_text()
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    per_version = {
        1: ("densityd_container_memory_soft_limit_bytes",),
        2: ("densityd_container_memory_low_bytes", "densityd_workload_pressure_seconds_total"),
    }
    for family in (
        "densityd_workload_info",
        "densityd_workload_cpu_seconds_total",
        "densityd_host_memory_bytes",
        "densityd_source_up",
        "densityd_build_info",
        "densityd_workload_cpu_periods_total",
        "densityd_workload_cpu_throttled_seconds_total",
        "densityd_container_oom_kills_total",
        "densityd_host_pressure_seconds_total",
        *per_version[cgroup_version()],
    ):
        assert f"\n{family}" in text, family


def test_metadata_refreshed_after_docker_update(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI
) -> None:
    """``docker update`` of a running container's limits shows up without a restart."""
    target = containers.run("--memory", "64m", "--memory-swap", "128m")
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_limit_bytes", id=target) == 64 * MiB,
        what="the first limit",
    )
    docker_cli("update", "--memory", "96m", "--memory-swap", "192m", "--cpus", "0.75", target)
    series = daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_limit_bytes", id=target) == 96 * MiB,
        what="the updated limit",
    )
    assert value_of(series, "densityd_workload_cpu_limit_cores", id=target) == 0.75


def test_sample_command_json_and_table(containers: Containers, docker_cli: DockerCLI) -> None:
    """``densityd sample`` prints the same containers, with CPU % over its window."""
    burner = containers.run("--cpus", "0.5", command="yes > /dev/null")
    time.sleep(1)
    result = subprocess.run(
        [sys.executable, "-m", "densityd", "sample", "-o", "json", "--cpu-window", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "densityd.sample/v1"
    mine = [w for w in document["workloads"] if w["id"] == burner]
    assert len(mine) == 1
    assert mine[0]["kind"] == "container" and mine[0]["cpu_limit_cores"] == 0.5
    # The quota caps the burner at 50 % of one core; over a 2 s window, within 10 points.
    assert mine[0]["cpu_percent"] == pytest.approx(50, abs=10)
    assert "source docker: found Docker" in result.stderr

    table = subprocess.run(
        [sys.executable, "-m", "densityd", "sample", "--cpu-window", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    assert burner[:12] in table.stdout and "source docker: up" in table.stdout
