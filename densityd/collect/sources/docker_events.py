"""Follow an engine's container events on one long-lived ``GET /events`` stream.

The Docker source's discovery: instead of listing every container at every pass, it keeps a
table of containers and changes only what the engine's events say changed. This module owns
the stream, on a thread of its own, and turns events into marks the next pass consumes
(``take``): which containers changed (to inspect again), which were removed, whether a full
list is needed. It never calls anything else on the engine, so however the stream stalls or
breaks, a pass is never held up by it.

- After every (re)connect, a resynchronisation is asked for: the pass lists every container
  and inspects what changed, so that nothing that happened while no stream was open is lost.
  A reconnect asks for events ``since`` the last one seen (the engine replays what it still
  holds: Docker keeps its last 256 events in memory, Podman its event log), which brings back
  the ``update`` and ``oom`` events a list cannot show.
- A stream that ended by an error or by the engine closing it (dockerd stopped or restarted)
  asks for a *full* resynchronisation: engine facts read again and every container inspected,
  since a restarted engine holds no events from before its restart.
- A stream quiet for ``idle_timeout`` seconds is reopened (``since`` the last event), which
  finds a connection that died without a word (a remote engine's TCP peer gone).
- ``oom`` events are handed to ``on_oom`` as they come, so a container OOM-killed and removed
  between two passes is still counted.

Docker names a container's removal ``destroy``; Podman's compatible endpoint uses Docker's
names for most events (``die``, not libpod's ``died``) and ``remove`` for the removal. An
action not known here marks the container changed: one inspect too many, never a miss.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests.exceptions
import urllib3.exceptions

log = logging.getLogger("densityd.sources.docker")

# Events that never change what densityd reports of a container (exec_*, health checks,
# attach and copy requests): a busy host sends many, and each would cost an inspect.
IGNORED_ACTION_PREFIXES = (
    "exec",
    "health_status",
    "attach",
    "detach",
    "resize",
    "top",
    "export",
    "copy",
    "archive-path",
    "extract-to-dir",
    "commit",
)
REMOVED_ACTIONS = frozenset({"destroy", "remove"})
OOM_ACTION = "oom"
# A container's processes have ended: the engine removes its cgroup only after this event.
EXIT_ACTIONS = frozenset({"die", "died"})
# Reconnection after a failure: at once, then doubling up to the maximum, so that a restarted
# engine is followed again within moments and a stopped one costs a connect every 2 s.
FIRST_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 2.0


@dataclass
class Changes:
    """What the events said since the last ``take``: the work of the next pass."""

    dirty: set[str] = field(default_factory=set)
    """Containers that changed (created, started, stopped, renamed, updated...)."""
    removed: set[str] = field(default_factory=set)
    """Containers removed (``destroy``)."""
    resync: bool = False
    """The stream (re)connected: list every container and inspect what changed."""
    full: bool = False
    """The stream broke (the engine may have restarted): re-read everything."""
    connected: bool = False
    """Whether the stream is open now: if not, the pass must list on its own."""


def event_action(event: Mapping[str, Any]) -> str:
    """An event's action (``start``, ``exec_create: sh -c ...``), across API versions."""
    return str(event.get("Action") or event.get("status") or "")


def event_container(event: Mapping[str, Any]) -> str:
    """The ID of the container an event is about (``""`` when it names none)."""
    actor: Mapping[str, Any] = event.get("Actor") or {}
    return str(event.get("id") or actor.get("ID") or "")


def event_nanos(event: Mapping[str, Any]) -> int:
    """When the engine logged the event, in ns since the epoch (its own clock)."""
    return int(event.get("timeNano") or int(event.get("time") or 0) * 10**9)


def classify(event: Mapping[str, Any]) -> str:
    """What an event means to the container table: ``removed``, ``oom``, ``changed`` or
    ``ignored``."""
    if str(event.get("Type") or "container") != "container" or not event_container(event):
        return "ignored"
    action = event_action(event)
    if action == OOM_ACTION:
        return "oom"
    if action in REMOVED_ACTIONS:
        return "removed"
    if action.startswith(IGNORED_ACTION_PREFIXES):
        return "ignored"
    return "changed"


def since_parameter(nanos: int) -> str:
    """``since`` as the Engine API takes it with ns precision: ``SECONDS.NANOSECONDS``."""
    return f"{nanos // 10**9}.{nanos % 10**9:09d}"


def _quiet(exc: BaseException) -> bool:
    """Whether a stream ended because nothing came for its idle timeout (not an error)."""
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None:
            continue
        if isinstance(
            current,
            urllib3.exceptions.ReadTimeoutError | requests.exceptions.ReadTimeout | TimeoutError,
        ):
            return True
        pending.extend([current.__cause__, current.__context__])
    return False


def _set_read_timeout(response: Any, seconds: float) -> None:
    """Let each read of an open streamed response wait ``seconds`` (unix or TCP socket)."""
    raw = response.raw._fp.fp.raw
    sock = getattr(raw, "_sock", raw)
    if hasattr(sock, "settimeout"):
        sock.settimeout(seconds)


class ContainerEvents:
    """The container events of one engine, followed on a thread, as marks for the passes."""

    def __init__(
        self,
        new_client: Callable[[], Any],
        idle_timeout: float,
        on_oom: Callable[[Mapping[str, Any]], None],
        where: str,
        on_exit: Callable[[str], None] | None = None,
    ) -> None:
        """``new_client``: a Docker API client whose calls are bounded by the pass's timeout
        (the stream waits that long for its answer to begin, then ``idle_timeout`` per read).
        ``where`` names the engine in the log. ``on_exit`` is told a container's ID when its
        ``die`` event comes, while its cgroup may still be there to read."""
        self._new_client = new_client
        self._idle_timeout = idle_timeout
        self._on_oom = on_oom
        self._on_exit = on_exit
        self._where = where
        self._lock = threading.Lock()
        self._changes = Changes(resync=True, full=False)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # cuts a wait between two connection attempts short
        self._attempted = threading.Condition()
        self._attempts = 0  # connection attempts that ended (opened the stream or failed)
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self._last_event_nanos: int | None = None
        self._opened_at: float | None = None

    # -- what the passes see --------------------------------------------------------------

    def start(self) -> None:
        """Start following the stream (once; later calls do nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
            self._thread.start()

    @property
    def connected(self) -> bool:
        """Whether the stream is open now."""
        return self._connected.is_set()

    def connect_now(self, timeout: float) -> bool:
        """Start the stream if need be, have it try to connect now, and wait (at most
        ``timeout`` seconds) until it is open or that attempt failed; tell whether it is open.

        A pass that finds the stream down calls this first, so that an engine back from a
        restart is followed again at once, and the pass's list comes after the stream opened.
        """
        self.start()
        if self._connected.is_set():
            return True
        with self._attempted:
            before = self._attempts
            self._wake.set()
            self._attempted.wait_for(
                lambda: self._attempts > before or self._connected.is_set(), timeout
            )
        return self._connected.is_set()

    def take(self) -> Changes:
        """The marks gathered since the last call, which start anew."""
        with self._lock:
            taken = self._changes
            taken.connected = self.connected
            self._changes = Changes()
            return taken

    def give_back(self, changes: Changes) -> None:
        """Put back the marks of a pass that failed, so that the next one does their work."""
        with self._lock:
            current = self._changes
            current.dirty |= changes.dirty
            current.removed |= changes.removed
            current.resync = current.resync or changes.resync
            current.full = current.full or changes.full

    def close(self) -> None:
        """Stop following: end the thread and its connection."""
        self._stopping.set()
        self._wake.set()
        self._close_response()

    # -- the stream thread ----------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            client: Any = None
            try:
                client = self._new_client()
                for event in self._open(client):
                    self._on_event(event)
                if self._stopping.is_set():
                    return
                raise ConnectionError("the engine closed the event stream")
            except Exception as exc:  # any failure of the stream: reconnect and resync
                if self._stopping.is_set():
                    return
                quiet = _quiet(exc)
                was_open = self._connected.is_set()
                self._connected.clear()
                with self._lock:
                    self._changes.resync = True
                    # Only a stream that was quiet for its idle timeout has missed nothing
                    # the replay ``since`` its last event cannot bring back. (Before the
                    # first opening there is nothing to re-read: the table is being made.)
                    self._changes.full = self._changes.full or (was_open and not quiet)
                if quiet:
                    log.debug("docker events at %s: quiet, reopening the stream", self._where)
                    failures = 0
                elif was_open:
                    log.info(
                        "docker events at %s: stream ended (%s); reconnecting", self._where, exc
                    )
                    failures = 0
                else:
                    log.debug("docker events at %s: cannot connect: %s", self._where, exc)
                    failures += 1
                self._attempt_ended()
            finally:
                self._close_response()
                if client is not None:
                    client.close()
            if failures:
                delay = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (failures - 1))
                self._wake.wait(delay)
                self._wake.clear()

    def _attempt_ended(self) -> None:
        with self._attempted:
            self._attempts += 1
            self._attempted.notify_all()

    def _open(self, client: Any) -> Iterator[Mapping[str, Any]]:
        """Open the stream (``since`` the last event seen, or the previous stream's opening)
        and yield its events; mark a resync once the engine has answered."""
        params: dict[str, Any] = {"filters": json.dumps({"type": ["container"]})}
        if self._last_event_nanos is not None:
            params["since"] = since_parameter(self._last_event_nanos)
        elif self._opened_at is not None:
            params["since"] = since_parameter(int(self._opened_at * 10**9))
        opened_at = time.time()
        response = client._get(client._url("/events"), params=params, stream=True)
        self._response = response
        client._raise_for_status(response)
        _set_read_timeout(response, self._idle_timeout)
        self._opened_at = opened_at
        with self._lock:
            # Whatever happened before this point is found by the list the pass now makes.
            self._changes.resync = True
        self._connected.set()
        self._attempt_ended()
        log.debug("docker events at %s: stream open (%s)", self._where, params.get("since"))
        stream: Iterator[Mapping[str, Any]] = client._stream_helper(response, decode=True)
        yield from stream

    def _on_event(self, event: Mapping[str, Any]) -> None:
        nanos = event_nanos(event)
        if nanos and (self._last_event_nanos is None or nanos > self._last_event_nanos):
            self._last_event_nanos = nanos
        kind = classify(event)
        if kind == "ignored":
            return
        if kind == "oom":
            self._on_oom(event)
            return
        container_id = event_container(event)
        if self._on_exit is not None and event_action(event) in EXIT_ACTIONS:
            self._on_exit(container_id)
        with self._lock:
            if kind == "removed":
                self._changes.removed.add(container_id)
                self._changes.dirty.discard(container_id)
            else:
                self._changes.dirty.add(container_id)

    def _close_response(self) -> None:
        response, self._response = self._response, None
        if response is None:
            return
        with contextlib.suppress(OSError, AttributeError):
            # Shut the socket down, not only close it: that wakes a read blocked on it.
            raw = response.raw._fp.fp.raw
            sock = getattr(raw, "_sock", raw)
            if hasattr(sock, "shutdown"):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            response.close()
