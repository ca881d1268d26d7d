"""HTTP/1.x on the wire: a request head into a WSGI environ, a WSGI answer into bytes.

Only what densityd serves: GET-style requests whose whole head and (small) body the server
has already buffered. No chunked request bodies, no ``Expect: 100-continue``; every response
carries a ``Content-Length``, so a connection can be kept alive without chunking.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

HEAD_END = b"\r\n\r\n"
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class BadRequest(Exception):
    """The request cannot be served; ``status`` is the code to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestHead:
    """A parsed request line and headers (names lower-cased, values as sent)."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (lower case), None when absent."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    @property
    def content_length(self) -> int:
        """The body's length; ``BadRequest`` for a chunked or malformed body."""
        if self.header("transfer-encoding") is not None:
            raise BadRequest(501, "chunked request bodies are not supported")
        value = self.header("content-length")
        if value is None:
            return 0
        if not value.isdigit():
            raise BadRequest(400, "bad Content-Length")
        return int(value)

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept open after the answer."""
        connection = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


def parse_head(data: bytes) -> RequestHead:
    """Parse the bytes before the blank line; raise ``BadRequest`` if they are not HTTP/1.x."""
    try:
        text = data.decode("iso-8859-1")
    except UnicodeDecodeError:  # pragma: no cover - every byte decodes in latin-1
        raise BadRequest(400, "undecodable request") from None
    request_line, *lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0].isalpha():
        raise BadRequest(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(505, f"unsupported version {version!r}")
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "bad header line")
        headers.append((name.lower(), value.strip()))
    return RequestHead(method, target, version, tuple(headers))


def environ_for(
    head: RequestHead,
    body: bytes,
    *,
    server: tuple[str, int],
    client: tuple[str, int],
    https: bool,
) -> dict[str, Any]:
    """The WSGI environ (PEP 3333) of one request."""
    path, _, query = head.target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": "",
        # PEP 3333: PATH_INFO is the decoded path as latin-1 str, as wsgiref gives it.
        "PATH_INFO": unquote(path, encoding="iso-8859-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": head.version,
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if https else "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in head.headers:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def run_app(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Call ``app``; its status, headers and whole body (densityd's bodies are in memory)."""
    answer: dict[str, Any] = {}

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        answer["status"], answer["headers"] = status, list(headers)
        return lambda _data: None  # the legacy write() callable; densityd's app never uses it

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if "status" not in answer:
        raise RuntimeError("the application did not call start_response")
    return answer["status"], answer["headers"], body


def render(
    status: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    keep_alive: bool,
    head_only: bool = False,
) -> bytes:
    """The response's bytes, with ``Content-Length`` and ``Connection`` set by the server."""
    lines = [f"HTTP/1.1 {status}"]
    for name, value in headers:
        if name.lower() not in ("content-length", "connection", "transfer-encoding"):
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")
    return head if head_only else head + body


def error_response(status: int, message: str = "") -> bytes:
    """A small plain-text answer that closes the connection (busy, timeout, bad request)."""
    text = f"{status} {_REASONS.get(status, 'Error')}"
    body = ((message or text) + "\n").encode()
    return render(text, [("Content-Type", "text/plain; charset=utf-8")], body, keep_alive=False)
