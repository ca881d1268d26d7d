"""The HTTP side: the WSGI app through wsgiref's test helpers, and a real server on port 0."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client.parser import text_string_to_metric_families

from densityd import __version__
from densityd.collect.sampler import SnapshotHolder
from densityd.model import Snapshot, SourceStatus, WorkloadKind, WorkloadSample
from densityd.serve.exporter import Exposition
from densityd.serve.web import WebServer, WSGIApp, health, make_app


def fresh_snapshot(**overrides: Any) -> Snapshot:
    values: dict[str, Any] = {
        "timestamp": time.time(),
        "workloads": (
            WorkloadSample(kind=WorkloadKind.CONTAINER, id="c1", name="web", memory_bytes=4096),
        ),
        "sources": (
            SourceStatus("docker", True, 0.01, 0, time.time()),
            SourceStatus("libvirt", False, 0.0, 2, None, "<refused> & gone"),
        ),
    }
    values.update(overrides)
    return Snapshot(**values)


def call(app: WSGIApp, path: str) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = status
        captured["headers"] = dict(headers)

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], body


@pytest.fixture
def holder() -> SnapshotHolder:
    return SnapshotHolder()


@pytest.fixture
def app(holder: SnapshotHolder) -> WSGIApp:
    return make_app(Exposition(holder), holder, max_age=60.0)


def test_metrics(app: WSGIApp, holder: SnapshotHolder) -> None:
    holder.publish(fresh_snapshot())
    status, headers, body = call(app, "/metrics")
    assert status.startswith("200")
    assert headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [memory] = families["densityd_workload_memory_bytes"].samples
    assert memory.labels == {"kind": "container", "id": "c1", "name": "web"}
    assert memory.value == 4096
    assert "process_resident_memory_bytes" in families


def test_metrics_before_the_first_snapshot(app: WSGIApp) -> None:
    status, _headers, body = call(app, "/metrics")
    assert status.startswith("200")
    assert b"# TYPE densityd_workload_memory_bytes gauge" in body
    assert b"densityd_workload_memory_bytes{" not in body


def test_landing_page(app: WSGIApp, holder: SnapshotHolder) -> None:
    status, headers, body = call(app, "/")
    assert status.startswith("200")
    assert headers["Content-Type"].startswith("text/html")
    assert f"densityd {__version__}".encode() in body
    assert b'href="metrics"' in body
    assert b"no pass has finished yet" in body

    holder.publish(fresh_snapshot())
    _status, _headers, body = call(app, "/")
    assert b"<li>docker: up</li>" in body
    assert b"libvirt: down: &lt;refused&gt; &amp; gone" in body  # escaped, not markup
    assert b"<refused>" not in body


def test_healthz(app: WSGIApp, holder: SnapshotHolder) -> None:
    status, headers, body = call(app, "/healthz")
    assert status.startswith("503")
    assert headers["Content-Type"].startswith("text/plain")
    assert body == b"no sampling pass has finished yet\n"

    holder.publish(fresh_snapshot())  # one source down is not unhealthy: the daemon works
    status, _headers, body = call(app, "/healthz")
    assert status.startswith("200")
    assert body == b"ok\n"

    holder.publish(fresh_snapshot(timestamp=time.time() - 600))
    status, _headers, body = call(app, "/healthz")
    assert status.startswith("503")
    assert b"ago" in body


@pytest.mark.parametrize("path", ["/nope", "/metrics/", "/healthz/x", "/index.html"])
def test_unknown_paths_are_404(app: WSGIApp, path: str) -> None:
    status, _headers, body = call(app, path)
    assert status.startswith("404")
    assert body == b"not found\n"


def test_health_uses_the_clock() -> None:
    holder = SnapshotHolder()
    assert health(holder, 60.0, clock=lambda: 1000.0) == (
        False,
        "no sampling pass has finished yet",
    )
    holder.publish(Snapshot(timestamp=1000.0))
    assert health(holder, 60.0, clock=lambda: 1060.0) == (True, "ok")
    assert health(holder, 60.0, clock=lambda: 1061.0) == (
        False,
        "the last sampling pass was 61s ago",
    )


@pytest.fixture
def server(app: WSGIApp) -> Iterator[WebServer]:
    web = WebServer(app, "127.0.0.1", 0)
    web.start()
    yield web
    web.stop()


def fetch(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str, bytes]:
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_real_server(server: WebServer, holder: SnapshotHolder) -> None:
    assert server.port > 0
    assert fetch(server.port, "/healthz")[0] == 503
    holder.publish(fresh_snapshot())
    code, content_type, body = fetch(server.port, "/metrics")
    assert code == 200
    assert content_type.startswith("text/plain")
    assert b'densityd_source_up{source="libvirt"} 0.0' in body
    assert fetch(server.port, "/healthz")[:2] == (200, "text/plain; charset=utf-8")
    assert fetch(server.port, "/")[0] == 200
    assert fetch(server.port, "/missing")[0] == 404


def test_real_server_serves_concurrent_clients(server: WebServer, holder: SnapshotHolder) -> None:
    holder.publish(fresh_snapshot())
    # A client that connects and says nothing must not hold up a scrape.
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        begin = time.monotonic()
        assert fetch(server.port, "/metrics")[0] == 200
        assert time.monotonic() - begin < 5.0
    finally:
        idle.close()


def test_real_server_on_ipv6_loopback(app: WSGIApp) -> None:
    try:
        web = WebServer(app, "::1", 0)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    web.start()
    try:
        assert fetch(web.port, "/", host="[::1]")[0] == 200
    finally:
        web.stop()


def test_stop_releases_the_port(app: WSGIApp) -> None:
    web = WebServer(app, "127.0.0.1", 0)
    web.start()
    port = web.port
    web.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
