"""The real daemon under hostile connections: idle, half-sent, more than the fd limit allows.

Issue 13 item 4: 62 half-sent requests held the daemon's file-descriptor limit, the next
scrape failed and the accept loop spun at a full core. Each test here holds real sockets
open against a real ``densityd run`` and reads its threads, descriptors and CPU time from
``/proc/PID``. The holding and timing is the fault benchmark's own
(``bench/_fault_connections.py``), so the benchmark is exercised too.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable

import pytest
import requests

from bench._fault_connections import idle_connection_latency
from tests.integration.backends import Daemon, Series, value_of

pytestmark = pytest.mark.integration

NO_BACKENDS = ("--no-docker", "--no-libvirt", "--no-history")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (``/proc/PID/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # clock ticks; USER_HZ is 100 on Linux


def settled(daemon: Daemon, passes: int = 3) -> Daemon:
    """The daemon once it has run a few passes: the scheduler's and the sources' threads are
    started lazily, by the first passes, and a count taken before them would blame the
    connections for them."""
    seen: set[float] = set()

    def another_pass(series: Series) -> bool:
        stamp = value_of(series, "densityd_last_pass_timestamp_seconds")
        if stamp is not None:
            seen.add(stamp)
        return len(seen) > passes

    daemon.wait_for(another_pass, timeout=30, what=f"{passes} more passes")
    return daemon


def test_500_idle_connections_neither_delay_a_scrape_nor_add_threads(
    start_daemon: Callable[..., Daemon],
) -> None:
    daemon = settled(start_daemon(*NO_BACKENDS))
    result = idle_connection_latency(
        f"{daemon.url}/metrics", connections=500, scrapes=20, pid=daemon.process.pid
    )
    assert result["connections"] == 500
    assert result["errors"] == 0, result
    assert result["max_s"] < 1.0, result
    # wsgiref had one thread per connection: 500 more. A few may come from the scheduler.
    assert result["threads"] <= result["threads_before"] + 4, result
    assert result["fds"] >= 500, result  # the connections were really held


def test_500_half_sent_requests_are_cut_off_by_the_header_timeout(
    start_daemon: Callable[..., Daemon],
) -> None:
    daemon = settled(start_daemon(*NO_BACKENDS, "--web-header-timeout", "2"))
    result = idle_connection_latency(
        f"{daemon.url}/metrics",
        connections=500,
        scrapes=20,
        pid=daemon.process.pid,
        half_sent=True,
    )
    assert result["errors"] == 0, result
    assert result["max_s"] < 1.0, result
    assert result["threads"] <= result["threads_before"] + 4, result
    # And they do not stay: the daemon answers 408 and closes them.
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        begin = time.monotonic()
        answer = sock.recv(100)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert 1.5 < time.monotonic() - begin < 4.0


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_past_the_fd_limit_the_answer_is_503_and_the_accept_loop_does_not_spin(
    start_daemon: Callable[..., Daemon],
) -> None:
    daemon = start_daemon(*NO_BACKENDS, preexec=low_fd_limit)
    assert "serving at most 192 connections, not 1024" in daemon.log()
    held = []
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    try:
        for _ in range(400):  # more than the limit of 256 descriptors
            held.append(socket.create_connection((host, int(port)), timeout=10))
        time.sleep(0.5)
        response = requests.get(f"{daemon.url}/metrics", timeout=5)
        assert response.status_code == 503, response.text
        assert "too many connections" in response.text
        before, begin = cpu_seconds(daemon.process.pid), time.monotonic()
        time.sleep(2)
        busy = (cpu_seconds(daemon.process.pid) - before) / (time.monotonic() - begin)
        assert busy < 0.2, f"the daemon used {busy:.0%} of a core while full"
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while requests.get(f"{daemon.url}/metrics", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "still refusing after the connections closed"
        time.sleep(0.2)
    assert daemon.process.poll() is None
