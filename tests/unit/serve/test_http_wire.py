"""HTTP/1.x parsing and rendering: the environ the app sees, the bytes the client gets."""

from __future__ import annotations

import pytest

from densityd.serve.http_wire import BadRequest, environ_for, parse_head, render


def test_the_environ_of_a_request() -> None:
    head = parse_head(
        b"GET /api/v1/plan%2Fx?kind=vm&view=demand HTTP/1.1\r\nHost: h\r\n"
        b"Authorization: Basic YTpi\r\nX-A: 1\r\nX-A: 2\r\nContent-Type: text/plain"
    )
    environ = environ_for(
        head, b"", server=("127.0.0.1", 9847), client=("10.0.0.1", 5000), https=True
    )
    assert environ["PATH_INFO"] == "/api/v1/plan/x"
    assert environ["QUERY_STRING"] == "kind=vm&view=demand"
    assert environ["HTTP_AUTHORIZATION"] == "Basic YTpi"
    assert environ["HTTP_X_A"] == "1,2"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["REMOTE_ADDR"] == "10.0.0.1"


@pytest.mark.parametrize(
    ("head", "keep"),
    [
        (b"GET / HTTP/1.1", True),
        (b"GET / HTTP/1.1\r\nConnection: close", False),
        (b"GET / HTTP/1.0", False),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive", True),
    ],
)
def test_keep_alive(head: bytes, keep: bool) -> None:
    assert parse_head(head).keep_alive is keep


@pytest.mark.parametrize(
    "head", [b"GET /", b"GET / HTTP/1.1\r\nno colon", b"GET / HTTP/1.1\r\n Folded: x"]
)
def test_malformed_heads_are_bad_requests(head: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_head(head)


def test_the_server_sets_length_and_connection() -> None:
    data = render(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", "999"), ("Connection", "x")],
        b"body",
        keep_alive=True,
    )
    assert data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
        b"Connection: keep-alive\r\n\r\nbody"
    )
    assert render("200 OK", [], b"body", keep_alive=False, head_only=True).endswith(
        b"Connection: close\r\n\r\n"
    )
