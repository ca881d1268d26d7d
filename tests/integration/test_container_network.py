"""A container's network counters checked against ``/proc/PID/net/dev`` at the same time.

dockerd here runs with ``--bridge=none --iptables=false``: the default bridge network is
gone, but a user-defined network with the bridge driver still works (``docker network create
--driver bridge``): its containers get an ``eth0`` on a Linux bridge and reach each other by
IP (the embedded DNS is not relied on). Known traffic: a client container fetches a 1 MiB file
three times from a ``busybox httpd`` in a server container. Host-network containers (and
``--network none``, which has only ``lo``) have no network series.

Runs in the cgroup v2 guest too (``.ci/v2-guest``): nothing here depends on the cgroup version.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.backends import Containers, Daemon, DockerCLI, Series, value_of

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
FETCHES = 3
# /proc/net/dev's columns as densityd's metric names: receive, then transmit.
COLUMNS = {
    "receive_bytes": 0,
    "receive_packets": 1,
    "receive_errors": 2,
    "receive_drops": 3,
    "transmit_bytes": 8,
    "transmit_packets": 9,
    "transmit_errors": 10,
    "transmit_drops": 11,
}


@pytest.fixture
def daemon(start_daemon, docker_cli: DockerCLI) -> Daemon:  # type: ignore[no-untyped-def]
    """A daemon sampling containers (only) every second."""
    return start_daemon("--no-libvirt")  # type: ignore[no-any-return]


def net_dev(pid: str) -> dict[str, list[int]]:
    """``/proc/PID/net/dev`` as {interface: its 16 counters}."""
    counters = {}
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        counters[name.strip()] = [int(field) for field in rest.split()]
    return counters


def network_series(
    series: Series, container_id: str
) -> list[tuple[str, frozenset[tuple[str, str]]]]:
    return [
        key
        for key in series
        if key[0].startswith("densityd_workload_network_") and ("id", container_id) in key[1]
    ]


def test_counters_per_interface_match_proc_net_dev_after_known_traffic(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI, network: str
) -> None:
    server = containers.run(
        "--network",
        network,
        command="dd if=/dev/zero of=/tmp/blob bs=1024 count=1024 2>/dev/null; "
        "exec busybox httpd -f -p 8080 -h /tmp",
    )
    client = containers.run("--network", network)
    address = docker_cli(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", server
    )
    assert address, "the server has no address on the network"
    for _ in range(FETCHES):
        docker_cli(
            "exec",
            client,
            "busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            f"http://{address}:8080/blob",
        )
    received = "densityd_workload_network_receive_bytes_total"
    series = daemon.wait_for(
        lambda s: (
            (value_of(s, received, id=client, interface="eth0") or 0) >= FETCHES * MiB
            and (
                value_of(s, received.replace("receive", "transmit"), id=server, interface="eth0")
                or 0
            )
            >= FETCHES * MiB
        ),
        what="the fetched bytes in both containers' counters",
    )
    for container_id in (client, server):
        pid = docker_cli("inspect", "-f", "{{.State.Pid}}", container_id)
        truth = net_dev(pid)
        assert set(truth) == {"lo", "eth0"}
        # Idle after the fetches: an IPv6 neighbour or router frame at most in between.
        for metric, column in COLUMNS.items():
            got = value_of(
                series,
                f"densityd_workload_network_{metric}_total",
                id=container_id,
                interface="eth0",
            )
            assert got is not None, metric
            slack = 1024 if metric.endswith("bytes") else 4 if metric.endswith("packets") else 0
            assert 0 <= truth["eth0"][column] - got <= slack, (metric, got, truth["eth0"][column])
        # Loopback is the container talking to itself: never a series.
        assert value_of(series, received, id=container_id, interface="lo") is None
    # The client received the files, the server sent them: rx and tx are not swapped.
    assert value_of(series, received, id=client, interface="eth0") >= FETCHES * MiB  # type: ignore[operator]
    sent = value_of(
        series, "densityd_workload_network_transmit_bytes_total", id=client, interface="eth0"
    )
    assert sent is not None and sent < MiB


def test_a_container_in_another_containers_namespace_has_its_interfaces(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI, network: str
) -> None:
    # --network container:X shares X's namespace: both show the same eth0.
    first = containers.run("--network", network)
    second = containers.run("--network", f"container:{first}")
    received = "densityd_workload_network_receive_bytes_total"
    series = daemon.wait_for(
        lambda s: value_of(s, received, id=second, interface="eth0") is not None,
        what="the joined container's eth0",
    )
    assert value_of(series, received, id=second, interface="eth0") == value_of(
        series, received, id=first, interface="eth0"
    )


def test_host_network_and_no_network_containers_have_no_network_series(
    daemon: Daemon, containers: Containers, docker_cli: DockerCLI, network: str
) -> None:
    on_host = containers.run("--network", "host")
    isolated = containers.run("--network", "none")
    joined_host = containers.run("--network", f"container:{on_host}")
    bridged = containers.run("--network", network)
    series = daemon.wait_for(
        lambda s: (
            value_of(s, "densityd_workload_network_receive_bytes_total", id=bridged) is not None
            and all(
                value_of(s, "densityd_workload_memory_bytes", id=c) is not None
                for c in (on_host, isolated, joined_host)
            )
        ),
        what="the four containers sampled",
    )
    # The host's own figures, repeated per container, would only be counted twice.
    assert network_series(series, on_host) == []
    # In a host-network container's namespace, by inode (its NetworkMode is container:...).
    assert network_series(series, joined_host) == []
    # --network none: only lo, so nothing.
    pid = docker_cli("inspect", "-f", "{{.State.Pid}}", isolated)
    assert set(net_dev(pid)) == {"lo"}
    assert network_series(series, isolated) == []
