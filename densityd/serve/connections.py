"""The HTTP server's connection loop: one thread holds every connection, a few run the app.

Why not a thread per connection (wsgiref's ``ThreadingMixIn``), nor cheroot: a client that
connects and says nothing, or sends half a request, must cost a file descriptor and a few
bytes, never a thread. wsgiref gave each connection a thread with no read timeout (62 such
clients held the file-descriptor limit, then the accept loop spun). cheroot hands every new
connection to a worker that blocks reading it for its whole ``timeout`` and does TLS
handshakes on its accept thread: with 4 workers, 20 idle connections made the next scrape a
503. Here one selector thread accepts, does TLS handshakes without blocking, and buffers each
request until its head (and its small body) is complete, under a deadline; only then does a
worker from a fixed pool run the WSGI app and write the answer. The bounds:

- at most ``max_connections`` open at once (lowered to fit ``RLIMIT_NOFILE``); a connection
  over it is answered ``503`` and closed at once, so the limit is never the fd limit;
- ``header_timeout`` to send a whole request head (from connecting, or from the previous
  answer on a kept-alive connection), ``body_timeout`` for its body and, separately, for the
  client to take the answer; past either the connection is closed (``408`` if it had begun);
- ``max_request_bytes`` for head and body together (``431``/``413``);
- ``workers`` threads, and a queue of twice as many complete requests; a request finding
  the queue full is answered ``503`` rather than left waiting.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import queue
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from densityd.serve.http_wire import (
    HEAD_END,
    BadRequest,
    RequestHead,
    WSGIApp,
    environ_for,
    error_response,
    parse_head,
    render,
    run_app,
)

log = logging.getLogger("densityd")

TLSContext = Callable[[], ssl.SSLContext]

# File descriptors kept for everything but HTTP clients: the history, the Docker and libvirt
# connections, the selector, logs. Connections beyond the fd limit minus this are refused.
FD_RESERVE = 64
# How often deadlines are checked; a timeout fires at most this much late.
_SWEEP_INTERVAL = 0.2
# A refused connection is drained this long after its 503, so that the client reads the
# answer instead of a reset (closing with unread data sends RST).
_LINGER = 1.0
# After accept() fails for lack of descriptors, stop accepting this long instead of spinning.
_ACCEPT_PAUSE = 0.5
_RECV = 65536


@dataclass(frozen=True)
class Limits:
    """The server's bounds (see the module docstring); the defaults suit an exporter."""

    workers: int = 8
    max_connections: int = 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_request_bytes: int = 8192


def fitting_max_connections(wanted: int, soft_limit: int | None = None) -> int:
    """``wanted``, lowered so that connections can never exhaust ``RLIMIT_NOFILE``."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft_limit - FD_RESERVE))


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    HEAD = "head"
    BODY = "body"
    BUSY = "busy"  # a worker has it; the loop does not look at it
    CLOSING = "closing"  # answered with an error; draining until the client closes


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    client: tuple[str, int]
    state: _State
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    head: RequestHead | None = None
    body_length: int = 0
    writing: bool = False  # registered for EVENT_WRITE: TLS wants to write before reading


@dataclass(frozen=True)
class _Job:
    connection: _Connection
    head: RequestHead
    body: bytes


class HTTPServer:
    """Serves a WSGI app on ``host:port`` within ``limits``, TLS on when given a context.

    ``tls_context`` is called for every new connection, so a reloaded certificate applies to
    the next connection. The socket is bound here; ``start`` begins serving.
    """

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        limits: Limits = Limits(),  # frozen, so one shared default is safe
        tls_context: TLSContext | None = None,
    ) -> None:
        self._app = app
        self._limits = limits
        self._tls = tls_context
        self._max_connections = fitting_max_connections(limits.max_connections)
        if self._max_connections < limits.max_connections:
            log.warning(
                "serving at most %d connections, not %d: the file descriptor limit "
                "(RLIMIT_NOFILE) is lower; raise it (systemd: LimitNOFILE=)",
                self._max_connections,
                limits.max_connections,
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(128)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self._address = self._listener.getsockname()[:2]
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._connections: dict[int, _Connection] = {}
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=2 * limits.workers)
        self._returned: queue.SimpleQueue[tuple[_Connection, bool]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._accept_paused_until: float | None = None
        self._threads = [threading.Thread(target=self._loop, name="http", daemon=True)] + [
            threading.Thread(target=self._work, name=f"http-worker-{i}", daemon=True)
            for i in range(limits.workers)
        ]

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return int(self._address[1])

    @property
    def max_connections(self) -> int:
        """The connection bound in force (``Limits.max_connections`` fitted to the fd limit)."""
        return self._max_connections

    def start(self) -> None:
        """Start the loop and the workers."""
        self._selector.register(self._listener, selectors.EVENT_READ, self._listener)
        self._selector.register(self._wake_read, selectors.EVENT_READ, self._wake_read)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop serving, close every connection and the listening socket."""
        self._stopping.set()
        self._wake()
        for _ in range(self._limits.workers):
            try:
                self._jobs.put_nowait(None)
            except queue.Full:
                break  # the workers see _stopping after their current job
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=self._limits.body_timeout + 1)
        if not self._threads[0].is_alive():
            self._close_everything()

    # The loop thread: everything below up to _work runs there only.

    def _loop(self) -> None:
        next_sweep = time.monotonic() + _SWEEP_INTERVAL
        while not self._stopping.is_set():
            for key, events in self._selector.select(timeout=_SWEEP_INTERVAL):
                if key.data is self._listener:
                    self._accept()
                elif key.data is self._wake_read:
                    self._take_returned()
                else:
                    try:
                        self._ready(key.data, events)
                    except Exception:  # a bug must cost one connection, never the server
                        log.exception("HTTP connection from %s failed", key.data.client[0])
                        self._close(key.data)
            now = time.monotonic()
            if self._accept_paused_until is not None and now >= self._accept_paused_until:
                self._accept_paused_until = None
                self._selector.register(self._listener, selectors.EVENT_READ, self._listener)
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + _SWEEP_INTERVAL

    def _accept(self) -> None:
        for _ in range(64):  # a burst is taken in one go, but the loop is not starved
            try:
                sock, client = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The listener stays readable: pause rather than spin on accept().
                    log.warning("cannot accept connections: %s; pausing", exc.strerror)
                    self._selector.unregister(self._listener)
                    self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE
                return
            sock.setblocking(False)
            if len(self._connections) >= self._max_connections:
                self._refuse(sock, client)
                continue
            state = _State.HEAD
            if self._tls is not None:
                try:
                    sock = self._tls().wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                except (OSError, ssl.SSLError) as exc:
                    log.debug("TLS with %s failed: %s", client[0], exc)
                    sock.close()
                    continue
                state = _State.HANDSHAKE
            connection = _Connection(
                sock, client[:2], state, time.monotonic() + self._limits.header_timeout
            )
            self._connections[sock.fileno()] = connection
            self._selector.register(sock, selectors.EVENT_READ, connection)

    def _refuse(self, sock: socket.socket, client: tuple[str, int]) -> None:
        """Answer 503 over the connection limit (in clear text: a TLS handshake is not free)."""
        log.debug("refusing %s: %d connections open", client[0], len(self._connections))
        if self._tls is not None:
            sock.close()
            return
        connection = _Connection(sock, client[:2], _State.HEAD, time.monotonic() + _LINGER)
        # Refused connections linger briefly; past twice the limit they are simply closed.
        if len(self._connections) >= 2 * self._max_connections:
            sock.close()
            return
        self._connections[sock.fileno()] = connection
        self._selector.register(sock, selectors.EVENT_READ, connection)
        self._fail(connection, 503, "too many connections; try again later")

    def _ready(self, connection: _Connection, events: int) -> None:
        if connection.state is _State.HANDSHAKE and not self._handshake(connection):
            return
        if connection.writing:
            connection.writing = False
            self._selector.modify(connection.sock, selectors.EVENT_READ, connection)
        while True:
            try:
                data = connection.sock.recv(_RECV)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                connection.writing = True
                self._selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
                return
            except (OSError, ssl.SSLError):
                self._close(connection)
                return
            if not data:
                self._close(connection)
                return
            if connection.state is _State.CLOSING:
                continue  # draining after an error answer
            connection.buffer += data
            if len(connection.buffer) > self._limits.max_request_bytes + _RECV:
                break  # enough to know it is too large; _advance says so
        if connection.state is not _State.CLOSING:
            self._advance(connection)

    def _handshake(self, connection: _Connection) -> bool:
        """Advance a TLS handshake without blocking; whether it is done."""
        sock = connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(sock, selectors.EVENT_READ, connection)
            return False
        except ssl.SSLWantWriteError:
            self._selector.modify(sock, selectors.EVENT_WRITE, connection)
            return False
        except (OSError, ssl.SSLError) as exc:  # plain HTTP, no client certificate, ...
            log.debug("TLS handshake with %s failed: %s", connection.client[0], exc)
            self._close(connection)
            return False
        connection.state = _State.HEAD
        self._selector.modify(sock, selectors.EVENT_READ, connection)
        return True

    def _advance(self, connection: _Connection) -> None:
        """Parse what has arrived; hand a complete request to a worker."""
        limit = self._limits.max_request_bytes
        try:
            if connection.state is _State.HEAD:
                end = connection.buffer.find(HEAD_END)
                if end < 0:
                    if len(connection.buffer) > limit:
                        raise BadRequest(431, "request head too large")
                    return
                if end + len(HEAD_END) > limit:
                    raise BadRequest(431, "request head too large")
                head = parse_head(bytes(connection.buffer[:end]))
                length = head.content_length
                if end + len(HEAD_END) + length > limit:
                    raise BadRequest(413, "request too large")
                del connection.buffer[: end + len(HEAD_END)]
                connection.head, connection.body_length = head, length
                connection.state = _State.BODY
                connection.deadline = time.monotonic() + self._limits.body_timeout
            if connection.state is _State.BODY:
                if len(connection.buffer) < connection.body_length:
                    return
                assert connection.head is not None
                body = bytes(connection.buffer[: connection.body_length])
                del connection.buffer[: connection.body_length]
                self._dispatch(_Job(connection, connection.head, body))
        except BadRequest as exc:
            self._fail(connection, exc.status, str(exc))

    def _dispatch(self, job: _Job) -> None:
        connection = job.connection
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self._fail(connection, 503, "busy; try again later")
            return
        connection.state = _State.BUSY
        self._selector.unregister(connection.sock)

    def _fail(self, connection: _Connection, status: int, message: str) -> None:
        """Answer an error without blocking, then drain until the client closes."""
        try:
            connection.sock.send(error_response(status, message))
            connection.sock.shutdown(socket.SHUT_WR)
        except (OSError, ssl.SSLError):
            self._close(connection)
            return
        connection.state = _State.CLOSING
        connection.deadline = time.monotonic() + _LINGER
        connection.buffer.clear()

    def _take_returned(self) -> None:
        try:
            while self._wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                connection, keep = self._returned.get_nowait()
            except queue.Empty:
                return
            if not keep or self._stopping.is_set():
                self._close(connection)
                continue
            connection.sock.setblocking(False)
            connection.state, connection.head = _State.HEAD, None
            connection.deadline = time.monotonic() + self._limits.header_timeout
            self._selector.register(connection.sock, selectors.EVENT_READ, connection)
            pending = isinstance(connection.sock, ssl.SSLSocket) and connection.sock.pending()
            if connection.buffer or pending:  # pipelined, or already decrypted
                self._ready(connection, selectors.EVENT_READ)

    def _sweep(self, now: float) -> None:
        for connection in list(self._connections.values()):
            if connection.state is _State.BUSY or now < connection.deadline:
                continue
            begun = connection.buffer or connection.state is _State.BODY
            if connection.state in (_State.HEAD, _State.BODY) and begun:
                self._fail(connection, 408, "request not received in time")
            else:
                self._close(connection)  # idle, mid-handshake, or done draining

    def _close(self, connection: _Connection) -> None:
        fd = connection.sock.fileno()
        if fd >= 0 and self._connections.get(fd) is connection:
            del self._connections[fd]
            if connection.state is not _State.BUSY:
                self._selector.unregister(connection.sock)
        with contextlib.suppress(OSError):
            connection.sock.close()

    def _close_everything(self) -> None:
        for connection in list(self._connections.values()):
            self._close(connection)
        while True:
            try:
                connection, _keep = self._returned.get_nowait()
            except queue.Empty:
                break
            connection.sock.close()
        self._selector.close()
        self._listener.close()
        self._wake_read.close()
        self._wake_write.close()

    def _wake(self) -> None:
        # BlockingIOError: already awake (the buffer is full); OSError: stopped.
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    # The worker threads.

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stopping.is_set():
                if job is not None:
                    self._returned.put((job.connection, False))
                return
            try:
                keep = self._answer(job)
            except Exception:  # a bug must cost one connection, never a worker
                log.exception("answering %s failed", job.connection.client[0])
                keep = False
            self._returned.put((job.connection, keep))
            self._wake()

    def _answer(self, job: _Job) -> bool:
        """Run the app for one request and send its answer; whether to keep the connection."""
        connection, head = job.connection, job.head
        environ = environ_for(
            head,
            job.body,
            server=self._address,
            client=connection.client,
            https=self._tls is not None,
        )
        keep = head.keep_alive
        try:
            status, headers, body = run_app(self._app, environ)
            data = render(status, headers, body, keep_alive=keep, head_only=head.method == "HEAD")
        except Exception:
            log.exception("error serving %s", head.target)
            data, keep = error_response(500), False
        try:
            _send_all(connection.sock, data, time.monotonic() + self._limits.body_timeout)
        except (OSError, ssl.SSLError) as exc:
            log.debug("answering %s failed: %s", connection.client[0], exc)
            return False
        return keep


def _send_all(sock: socket.socket, data: bytes, deadline: float) -> None:
    """Send ``data`` by ``deadline`` (a client that reads slowly must not hold a worker)."""
    view = memoryview(data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client did not take the answer in time")
        sock.settimeout(remaining)
        sent = sock.send(view[:_RECV])
        view = view[sent:]
