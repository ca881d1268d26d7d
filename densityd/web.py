"""The HTTP server: ``/metrics``, a landing page at ``/``, and ``/healthz``.

A threaded WSGI server so that a slow client never holds up the next scrape; every handler
reads only in-memory state.
"""

from __future__ import annotations

import html
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST

from densityd import __version__
from densityd.exporter import Exposition
from densityd.sampler import SnapshotHolder

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingWSGIServerV6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log; stay quiet."""


def _landing_page(holder: SnapshotHolder) -> bytes:
    snapshot = holder.latest
    rows = ""
    if snapshot is not None:
        for status in snapshot.sources:
            state = "up" if status.up else f"down: {status.last_error}"
            rows += f"<li>{html.escape(status.name)}: {html.escape(state)}</li>"
    return (
        "<!doctype html><html><head><title>densityd</title></head><body>"
        f"<h1>densityd {html.escape(__version__)}</h1>"
        "<p>Container and VM density metrics for Prometheus.</p>"
        '<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li></ul>'
        f"<h2>Sources</h2><ul>{rows or '<li>no pass has finished yet</li>'}</ul>"
        "</body></html>"
    ).encode()


def health(
    holder: SnapshotHolder, max_age: float, clock: Callable[[], float] = time.time
) -> tuple[bool, str]:
    """Healthy while sampling passes keep finishing (backends being down is not unhealthy)."""
    snapshot = holder.latest
    if snapshot is None:
        return False, "no sampling pass has finished yet"
    age = clock() - snapshot.timestamp
    if age > max_age:
        return False, f"the last sampling pass was {age:.0f}s ago"
    return True, "ok"


def make_app(exposition: Exposition, holder: SnapshotHolder, max_age: float) -> WSGIApp:
    """The WSGI application routing densityd's three paths."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
            body = exposition.body(gzipped=gzipped)
            headers = [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
            if gzipped:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]
        if path == "/healthz":
            ok, why = health(holder, max_age)
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "text/plain; charset=utf-8")],
            )
            return [why.encode() + b"\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [_landing_page(holder)]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found\n"]

    return app


class WebServer:
    """Serves the app on a background thread until stopped."""

    def __init__(self, app: WSGIApp, host: str, port: int) -> None:
        server_class = _ThreadingWSGIServerV6 if ":" in host else _ThreadingWSGIServer
        self._server = make_server(host, port, app, server_class, _QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
