"""Scrape latency of a running densityd while hundreds of connections sit idle or half-sent.

A fault benchmark (issue 13): ``idle_connection_latency`` opens N connections to the daemon
that never finish a request (idle: nothing sent; half-sent: a request head without its end),
then times sequential scrapes of the URL while they are held, and reads the daemon's thread
and descriptor counts from ``/proc/PID`` when given its pid. Standard library only, so that
``bench/faults.py`` and the tests can import it as they are::

    $ python bench/_fault_connections.py http://127.0.0.1:9847/metrics --pid 4242
    {"connections": 500.0, "scrapes": 50.0, "errors": 0.0, "p50_s": 0.004, "p99_s": 0.011,
     "max_s": 0.011, "threads_before": 12.0, "threads": 12.0, "fds": 517.0}
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import socket
import ssl
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

HALF_SENT = b"GET /metrics HTTP/1.1\r\nHost: densityd\r\nUser-Agent: half-sent\r\n"


def _percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 50 values is the largest)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * pct / 100)) - 1]


def _proc_threads(pid: int) -> float:
    """The ``Threads:`` line of ``/proc/PID/status``."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return float(line.split()[1])
    raise ValueError(f"/proc/{pid}/status has no Threads line")


def _proc_fds(pid: int) -> float:
    """How many descriptors ``pid`` holds (NaN when /proc/PID/fd is not readable)."""
    try:
        return float(len(os.listdir(f"/proc/{pid}/fd")))
    except OSError:
        return math.nan


def _scrape(url: str, auth: tuple[str, str] | None, timeout: float) -> tuple[float, bool]:
    """One scrape on a new connection: seconds taken, and whether it answered 200."""
    parts = urlsplit(url)
    host, port = (
        parts.hostname or "127.0.0.1",
        parts.port or (443 if parts.scheme == "https" else 80),
    )
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        # A benchmark on loopback measures the server, not the certificate.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    begin = time.monotonic()
    try:
        connection.request("GET", parts.path or "/metrics", headers=headers)
        response = connection.getresponse()
        response.read()
        ok = response.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
    finally:
        connection.close()
    return time.monotonic() - begin, ok


def _hold(url: str, count: int, half_sent: bool) -> list[socket.socket]:
    """``count`` connections that never finish a request (fewer if the server refuses)."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    held = []
    for _ in range(count):
        try:
            sock = socket.create_connection(address, timeout=5)
            if half_sent:
                sock.sendall(HALF_SENT)
        except OSError:
            break
        held.append(sock)
    return held


def idle_connection_latency(
    url: str,
    connections: int = 500,
    scrapes: int = 50,
    *,
    pid: int | None = None,
    half_sent: bool = False,
    auth: tuple[str, str] | None = None,
    timeout: float = 10.0,
) -> dict[str, float]:
    """Scrape ``url`` ``scrapes`` times while ``connections`` idle (or half-sent) ones are held.

    Returns ``connections`` (how many could be opened), ``scrapes``, ``errors`` (scrapes
    that failed or were not 200), ``p50_s``/``p99_s``/``max_s`` of the scrapes, and with
    ``pid`` the daemon's ``threads_before`` and ``threads`` (``/proc/PID/status``) and
    ``fds`` while the connections are held.
    """
    result: dict[str, float] = {}
    if pid is not None:
        result["threads_before"] = _proc_threads(pid)
    held = _hold(url, connections, half_sent)
    try:
        time.sleep(0.2)  # let the daemon accept them all before the first scrape
        timings = [_scrape(url, auth, timeout) for _ in range(scrapes)]
        if pid is not None:
            result["threads"] = _proc_threads(pid)
            result["fds"] = _proc_fds(pid)
    finally:
        for sock in held:
            sock.close()
    latencies = [seconds for seconds, _ok in timings]
    result.update(
        connections=float(len(held)),
        scrapes=float(scrapes),
        errors=float(sum(not ok for _seconds, ok in timings)),
        p50_s=_percentile(latencies, 50),
        p99_s=_percentile(latencies, 99),
        max_s=max(latencies),
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run it against a URL and print the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the URL to scrape, e.g. http://127.0.0.1:9847/metrics")
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--pid", type=int, help="the daemon's pid, for its thread count")
    parser.add_argument("--half-sent", action="store_true", help="send half a request head")
    args = parser.parse_args(argv)
    result = idle_connection_latency(
        args.url, args.connections, args.scrapes, pid=args.pid, half_sent=args.half_sent
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
