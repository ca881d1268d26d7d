"""densityd on a cgroup v2 host whose Docker uses the systemd cgroup driver.

The machine CI runs on is cgroup v1, so these tests run in the guest ``.ci/v2-guest`` builds
(Debian 12, systemd as PID 1, the unified hierarchy, ``docker.io`` with its default driver)
and skip elsewhere: a v1 host is a valid host, not a missing backend. Each test reads the
container's own cgroup directory, found from ``/proc/<pid>/cgroup`` of its init process, and
checks both where systemd put it and that densityd's figures agree with its files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.backends import Containers, Daemon, DockerCLI, Series, value_of
from tests.integration.cgroups import (
    CGROUP,
    cgroup_cpu_limit_cores,
    cgroup_cpu_seconds,
    cgroup_io_stat,
    cgroup_memory_limit,
    cgroup_version,
    cgroup_working_set,
    container_cgroup,
)
from tests.integration.test_docker_metrics import docker_stats_memory, has_workload, reading_age

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
FILLER = "dd if=/dev/zero of=/data/x bs=1M count=60 && sleep 3600"


@pytest.fixture(autouse=True)
def _unified_hierarchy() -> None:
    if cgroup_version() != 2:
        pytest.skip("cgroup v1 host")


@pytest.fixture
def systemd_docker(docker_cli: DockerCLI) -> DockerCLI:
    """The engine, which on this host must use the systemd cgroup driver."""
    driver = docker_cli("info", "--format", "{{.CgroupDriver}}")
    assert driver == "systemd", f"Docker's cgroup driver is {driver!r}, expected systemd on v2"
    return docker_cli


@pytest.fixture
def daemon(start_daemon) -> Daemon:  # type: ignore[no-untyped-def]
    """A daemon sampling every second."""
    return start_daemon()  # type: ignore[no-any-return]


def relative(directory: Path) -> str:
    return str(directory.relative_to(CGROUP))


def assert_memory_agrees(daemon: Daemon, docker: DockerCLI, container_id: str) -> None:
    """Working set: densityd against ``memory.current - inactive_file`` and docker stats."""

    def filled(series: Series) -> bool:
        value = value_of(series, "densityd_workload_memory_bytes", id=container_id)
        return value is not None and value >= 60 * MiB

    daemon.wait_for(filled, timeout=60, what="60 MiB in the filler's tmpfs")
    # dd is done and the filler idles: the file read right after the scrape agrees within
    # 1 MiB (kernel bookkeeping, page tables); docker stats prints 3-4 significant digits.
    time.sleep(1.5)
    reported = value_of(daemon.scrape(), "densityd_workload_memory_bytes", id=container_id)
    assert reported is not None
    truth = cgroup_working_set(docker, container_id)
    assert abs(reported - truth) <= 1 * MiB, (reported, truth)
    assert abs(reported - docker_stats_memory(docker, container_id)) <= 1 * MiB
    assert 60 * MiB <= reported <= 70 * MiB


def test_default_container_is_a_scope_in_system_slice(
    daemon: Daemon, containers: Containers, systemd_docker: DockerCLI
) -> None:
    """Under the systemd driver a container is ``system.slice/docker-<id>.scope``."""
    burner = containers.run("--cpus", "0.5", command="yes > /dev/null")
    assert relative(container_cgroup(systemd_docker, burner)) == (
        f"system.slice/docker-{burner}.scope"
    )
    daemon.wait_for(has_workload(burner, "densityd_workload_cpu_seconds_total"), what="burner")
    # The file, read after the scrape, is ahead by at most 0.5 core times the reading's age
    # (a pass can take seconds under TCG), plus 0.1 s for a burst within one CFS period.
    series = daemon.scrape()
    reported = value_of(series, "densityd_workload_cpu_seconds_total", id=burner)
    truth = cgroup_cpu_seconds(systemd_docker, burner)
    age = reading_age(series)
    assert reported is not None
    assert 0 <= truth - reported <= 0.5 * age + 0.1, (reported, truth, age)


@pytest.mark.parametrize(
    ("parent", "expanded"),
    [
        ("densityd-test.slice", "densityd.slice/densityd-test.slice"),
        (
            "densityd-test-nested.slice",
            "densityd.slice/densityd-test.slice/densityd-test-nested.slice",
        ),
    ],
)
def test_cgroup_parent_slices_nest_by_name(
    daemon: Daemon,
    containers: Containers,
    systemd_docker: DockerCLI,
    parent: str,
    expanded: str,
) -> None:
    """``--cgroup-parent a-b.slice`` nests as ``a.slice/a-b.slice``; densityd still finds it."""
    filler = containers.run("--cgroup-parent", parent, "--tmpfs", "/data:size=200m", command=FILLER)
    assert relative(container_cgroup(systemd_docker, filler)) == (
        f"{expanded}/docker-{filler}.scope"
    )
    assert_memory_agrees(daemon, systemd_docker, filler)


def test_limits_match_memory_max_and_cpu_max(
    daemon: Daemon, containers: Containers, systemd_docker: DockerCLI
) -> None:
    """The exported limits equal ``memory.max`` and ``cpu.max``; no limit, no series."""
    limited = containers.run("--memory", "96m", "--cpus", "0.75")
    unlimited = containers.run()
    assert cgroup_memory_limit(systemd_docker, limited) == 96 * MiB
    assert cgroup_cpu_limit_cores(systemd_docker, limited) == 0.75
    assert cgroup_memory_limit(systemd_docker, unlimited) is None
    assert cgroup_cpu_limit_cores(systemd_docker, unlimited) is None

    series = daemon.wait_for(
        lambda s: has_workload(limited)(s) and has_workload(unlimited)(s), what="both"
    )
    assert value_of(series, "densityd_workload_memory_limit_bytes", id=limited) == 96 * MiB
    assert value_of(series, "densityd_workload_cpu_limit_cores", id=limited) == 0.75
    # Unlimited is omitted, never exported as 0.
    assert value_of(series, "densityd_workload_memory_limit_bytes", id=unlimited) is None
    assert value_of(series, "densityd_workload_cpu_limit_cores", id=unlimited) is None


def test_memory_working_set_in_system_slice(
    daemon: Daemon, containers: Containers, systemd_docker: DockerCLI
) -> None:
    """A capped filler's working set matches the v2 files and docker stats."""
    filler = containers.run("--memory", "128m", "--tmpfs", "/data:size=200m", command=FILLER)
    assert_memory_agrees(daemon, systemd_docker, filler)
    inspect = json.loads(systemd_docker("inspect", filler))[0]
    assert inspect["HostConfig"]["Memory"] == 128 * MiB


def device_name(number: str) -> str:
    """The kernel's name (``vda``) of block device ``MAJ:MIN``, as densityd labels it."""
    for line in Path("/sys/dev/block", number, "uevent").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "DEVNAME":
            return value
    return number


def test_block_io_per_device_matches_io_stat(
    daemon: Daemon, containers: Containers, systemd_docker: DockerCLI
) -> None:
    """``densityd_workload_disk_{read,written}_bytes_total{device}`` equal ``io.stat``."""
    writer = containers.run(
        command="dd if=/dev/zero of=/blob bs=1M count=20 conv=fsync && sleep 3600"
    )

    def written(series: Series) -> bool:
        return any(
            name == "densityd_workload_disk_written_bytes_total"
            and ("id", writer) in labels
            and value >= 20 * MiB
            for (name, labels), value in series.items()
        )

    daemon.wait_for(written, timeout=90, what="20 MiB written through fsync")
    # Read it back past the page cache, so that rbytes moves too.
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    systemd_docker("exec", writer, "dd", "if=/blob", "of=/dev/null", "bs=1M")
    # The writer idles now: its io.stat is steady, and the pass after this moment agrees
    # with the file exactly (the journal's own writes are charged to the root, not to it).
    time.sleep(1.5)
    after = time.time()
    series = daemon.wait_for(
        lambda s: (value_of(s, "densityd_last_pass_timestamp_seconds") or 0) > after,
        what="a pass after the read",
    )
    stat = cgroup_io_stat(systemd_docker, writer)
    assert stat, "io.stat is empty: the io controller is not enabled for the scope"
    for number, (read_bytes, written_bytes) in stat.items():
        name = device_name(number)
        assert (
            value_of(series, "densityd_workload_disk_read_bytes_total", id=writer, device=name)
            == read_bytes
        ), (name, stat)
        assert (
            value_of(series, "densityd_workload_disk_written_bytes_total", id=writer, device=name)
            == written_bytes
        ), (name, stat)
    assert sum(w for _, w in stat.values()) >= 20 * MiB
    assert sum(r for r, _ in stat.values()) >= 20 * MiB
