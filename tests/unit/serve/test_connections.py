"""The connection loop on real sockets: idle and half-sent clients, limits, busy answers, TLS."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from densityd.serve.connections import FD_RESERVE, HTTPServer, Limits, fitting_max_connections
from tests.pki import PKI, make_pki

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


def ok_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"path=" + environ["PATH_INFO"].encode() + b"\n"]


@pytest.fixture
def serve() -> Iterator[Callable[..., HTTPServer]]:
    servers: list[HTTPServer] = []

    def start(app: Any = ok_app, **limits: Any) -> HTTPServer:
        server = HTTPServer(app, "127.0.0.1", 0, Limits(**limits))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def ask(port: int, request: bytes = REQUEST) -> bytes:
    """Send ``request`` on a new connection; everything the server sends until it closes."""
    with connect(port) as sock:
        sock.sendall(request.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1))
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def timed_ask(port: int) -> tuple[float, bytes]:
    begin = time.monotonic()
    answer = ask(port)
    return time.monotonic() - begin, answer


def test_idle_connections_cost_no_thread_and_do_not_delay_a_scrape(
    serve: Callable[..., HTTPServer],
) -> None:
    server = serve(workers=2)
    threads = threading.active_count()
    idle = [connect(server.port) for _ in range(300)]
    try:
        elapsed, answer = timed_ask(server.port)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        assert elapsed < 1.0
        assert threading.active_count() == threads
    finally:
        for sock in idle:
            sock.close()


def test_half_sent_heads_are_answered_408_after_the_header_timeout(
    serve: Callable[..., HTTPServer],
) -> None:
    server = serve(workers=2, header_timeout=0.5)
    half = [connect(server.port) for _ in range(50)]
    try:
        for sock in half:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line, ever
        elapsed, answer = timed_ask(server.port)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert elapsed < 1.0
        begin = time.monotonic()
        answers = [read_all(sock) for sock in half]
        assert time.monotonic() - begin < 2.0
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), set(answers)
    finally:
        for sock in half:
            sock.close()


def test_an_idle_connection_is_closed_after_the_header_timeout(
    serve: Callable[..., HTTPServer],
) -> None:
    server = serve(header_timeout=0.3)
    with connect(server.port) as sock:
        begin = time.monotonic()
        assert sock.recv(100) == b""  # closed without an answer: nothing was asked
        assert 0.25 < time.monotonic() - begin < 1.5


def test_over_the_connection_limit_the_answer_is_503_not_a_hang(
    serve: Callable[..., HTTPServer],
) -> None:
    server = serve(max_connections=5)
    idle = [connect(server.port) for _ in range(5)]
    time.sleep(0.2)  # accepted
    elapsed, answer = timed_ask(server.port)
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert elapsed < 1.0
    for sock in idle:
        sock.close()
    time.sleep(0.3)
    assert ask(server.port).startswith(b"HTTP/1.1 200 OK")


def test_when_every_worker_is_busy_and_the_queue_full_the_answer_is_503(
    serve: Callable[..., HTTPServer],
) -> None:
    release = threading.Event()

    def slow_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        release.wait(10)
        return ok_app(environ, start_response)

    server = serve(slow_app, workers=1)  # one running, a queue of two
    waiting = [connect(server.port) for _ in range(3)]
    try:
        for sock in waiting:
            sock.sendall(REQUEST)
            time.sleep(0.1)
        elapsed, answer = timed_ask(server.port)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert elapsed < 1.0
        release.set()
        for sock in waiting:
            assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
    finally:
        release.set()
        for sock in waiting:
            sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000, b"431"),  # never ends, still too big
        (b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", b"413"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"501"),
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\n\r\n", b"505"),
    ],
)
def test_bad_or_oversized_requests_get_an_error(
    serve: Callable[..., HTTPServer], request_bytes: bytes, status: bytes
) -> None:
    server = serve()
    with connect(server.port) as sock:
        sock.sendall(request_bytes)
        assert read_all(sock).startswith(b"HTTP/1.1 " + status)


def test_a_small_body_is_read_and_kept_alive_requests_share_a_connection(
    serve: Callable[..., HTTPServer],
) -> None:
    seen: list[bytes] = []

    def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ["wsgi.input"].read())
        return ok_app(environ, start_response)

    server = serve(echo)
    with connect(server.port) as sock:
        # Two pipelined requests in one send, the first with a body.
        sock.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 2:
            data += sock.recv(65536)
        assert b"path=/a" in data and b"path=/b" in data
    assert seen == [b"hello", b""]


def test_a_client_that_never_reads_its_answer_frees_the_worker(
    serve: Callable[..., HTTPServer],
) -> None:
    def big(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x" * (64 << 20) if environ["PATH_INFO"] == "/big" else b"small\n"]

    server = serve(big, workers=1, body_timeout=0.5)
    with connect(server.port) as stuck:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /big HTTP/1.1\r\n\r\n")  # and never read
        time.sleep(0.1)
        begin = time.monotonic()
        assert ask(server.port).startswith(b"HTTP/1.1 200 OK")
        assert time.monotonic() - begin < 3.0


def test_the_connection_limit_fits_the_file_descriptor_limit() -> None:
    assert fitting_max_connections(1024, soft_limit=256) == 256 - FD_RESERVE
    assert fitting_max_connections(100, soft_limit=65536) == 100


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_clients_that_never_handshake_do_not_block_the_others(pki: PKI, tmp_path: Path) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pki.server_cert, pki.server_key)
    contexts: list[int] = []

    def current() -> ssl.SSLContext:
        contexts.append(1)  # asked per connection, so a rotated certificate applies at once
        return server_context

    server = HTTPServer(ok_app, "127.0.0.1", 0, Limits(workers=1), tls_context=current)
    server.start()
    silent = [connect(server.port) for _ in range(100)]
    try:
        client = ssl.create_default_context(cafile=str(pki.ca))
        begin = time.monotonic()
        with client.wrap_socket(connect(server.port), server_hostname="127.0.0.1") as tls:
            tls.sendall(REQUEST)
            assert tls.recv(100).startswith(b"HTTP/1.1 200 OK")
        assert time.monotonic() - begin < 1.0
        assert len(contexts) == 101
    finally:
        for sock in silent:
            sock.close()
        server.stop()


def test_an_app_that_raises_gets_500_and_the_worker_serves_on(
    serve: Callable[..., HTTPServer],
) -> None:
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        return ok_app(environ, start_response)

    server = serve(broken, workers=1)
    assert ask(server.port, b"GET /boom HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 500 ")
    assert ask(server.port).startswith(b"HTTP/1.1 200 OK")
