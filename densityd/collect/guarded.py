"""One backend call at a time, on its own thread and under its own deadline, with backoff.

A call runs on a daemon thread and records its own outcome when it returns, so nobody has to
wait for it: a pass waits only as long as it chooses to, and a call still running past its
deadline is reported down by whoever looks next while it carries on. A call that hangs is
never started twice, so a frozen backend costs one stuck thread, not one per pass; an answer
that only comes after the deadline is dropped, and the next call starts at the next
opportunity. A call that fails is retried at every opportunity for the first 30 s of the
outage, then with exponential backoff, and its state changes are logged once each (down, with
why; back up), never once per attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from densityd.model import SourceStatus

log = logging.getLogger("densityd.sampler")

T = TypeVar("T")

# Retry at every opportunity during the first seconds of an outage (a restarting backend is
# back within them, and must be picked up within two intervals); after that, back off
# exponentially from the first delay up to the maximum between attempts.
BACKOFF_AFTER_SECONDS = 30.0
FIRST_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a call returned, or why there is nothing (``error`` empty on success)."""

    value: T | None
    error: str


@dataclass
class _Attempt:
    """One running call: when it started (monotonic and wall clock) and when it is due."""

    started: float
    deadline: float
    started_at: float
    done: threading.Event = field(default_factory=threading.Event)
    overdue: bool = False


class GuardedCall(Generic[T]):
    """One backend call run on its own thread under a deadline, with status and backoff.

    ``what`` names the thing called in the log lines ("source docker is down: ...",
    "filesystem /srv is down: ...").
    """

    def __init__(
        self,
        name: str,
        call: Callable[[], T],
        timeout: float,
        clock: Callable[[], float] = time.time,
        *,
        retries: bool = True,
        what: str = "source",
    ) -> None:
        self.name = name
        self._call = call
        self._timeout = timeout
        self._clock = clock
        # False for a one-shot command (sample, plan): nothing will try again.
        self._retries = retries
        self._what = what
        self._lock = threading.Lock()
        self._attempt: _Attempt | None = None
        self._latest: T | None = None
        self._errors_total = 0
        self._down_since: float | None = None
        self._backoff = 0.0
        self._next_attempt = 0.0
        self._up: bool | None = None
        self._last_success: float | None = None
        self._last_error = ""
        self._duration = 0.0

    # -- running ------------------------------------------------------------------------

    def start(self) -> bool:
        """Start the call unless one is still running or it is backing off; tell whether."""
        with self._lock:
            self._check_deadline()
            if self._attempt is not None or self._clock() < self._next_attempt:
                return False
            started = time.monotonic()
            attempt = _Attempt(started, started + self._timeout, self._clock())
            self._attempt = attempt
        # A daemon thread per call, not an executor: a call stuck in a frozen backend must
        # not keep the process from exiting on SIGTERM.
        threading.Thread(
            target=self._run, args=(attempt,), name=f"{self._what}-{self.name}", daemon=True
        ).start()
        return True

    def _run(self, attempt: _Attempt) -> None:
        value: T | None = None
        error = ""
        try:
            value = self._call()
        except BaseException as exc:  # any backend failure: isolate it, report it, carry on
            error = str(exc) or type(exc).__name__
        with self._lock:
            self._duration = self._clock() - attempt.started_at
            if attempt.overdue:
                log.debug("%s %s answered after its deadline; dropped", self._what, self.name)
            elif time.monotonic() > attempt.deadline:
                self._failed(self._deadline_reason())
            elif error:
                self._failed(error)
            else:
                self._succeeded(value)
            self._attempt = None
        attempt.done.set()

    def wait(self, until: float) -> None:
        """Wait for the running call until monotonic ``until`` or its deadline, if sooner."""
        attempt = self._attempt
        if attempt is not None:
            attempt.done.wait(max(0.0, min(until, attempt.deadline) - time.monotonic()))
        with self._lock:
            self._check_deadline()

    def run(self) -> Outcome[T]:
        """Start the call and wait for it until its deadline: for one-shot use."""
        started = self.start()
        self.wait(time.monotonic() + self._timeout)
        with self._lock:
            if started and self._up:
                return Outcome(self._latest, "")
            return Outcome(None, self._last_error or "backing off")

    @property
    def latest(self) -> T | None:
        """What the latest call returned, while it is current (``None`` once one failed)."""
        with self._lock:
            self._check_deadline()
            return self._latest

    @property
    def running(self) -> bool:
        """Whether a call is running now (possibly past its deadline)."""
        return self._attempt is not None

    # -- outcomes -------------------------------------------------------------------------

    def _deadline_reason(self) -> str:
        return f"no answer within the {self._timeout:g}s deadline"

    def _check_deadline(self) -> None:
        """Report a call still running past its deadline as failed, once (lock held)."""
        attempt = self._attempt
        if attempt is not None and not attempt.overdue and time.monotonic() >= attempt.deadline:
            attempt.overdue = True
            self._duration = self._clock() - attempt.started_at
            self._failed(self._deadline_reason())

    def _succeeded(self, value: T | None) -> None:
        if self._up is False:
            log.info("%s %s is back up", self._what, self.name)
        self._up = True
        self._latest = value
        self._down_since = None
        self._backoff = 0.0
        self._next_attempt = 0.0
        self._last_success = self._clock()
        self._last_error = ""

    def _failed(self, reason: str) -> None:
        self._errors_total += 1
        self._latest = None
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
        if now - self._down_since >= BACKOFF_AFTER_SECONDS:
            self._backoff = min(MAX_BACKOFF_SECONDS, max(FIRST_BACKOFF_SECONDS, 2 * self._backoff))
            self._next_attempt = now + self._backoff
        if self._up is not False:
            retrying = " (retrying with backoff)" if self._retries else ""
            log.warning("%s %s is down: %s%s", self._what, self.name, reason, retrying)
        else:
            log.debug("%s %s still down: %s", self._what, self.name, reason)
        self._up = False
        self._last_error = reason

    def mark_down(self, reason: str) -> None:
        """Record a failure already reported elsewhere (the start-up probe): no log line."""
        with self._lock:
            self._up = False
            self._latest = None
            self._last_error = reason
            self._down_since = self._clock()

    # -- what it says about itself ------------------------------------------------------

    @property
    def down(self) -> bool:
        """Whether the latest call failed (``False`` before the first call)."""
        with self._lock:
            self._check_deadline()
            return self._up is False

    def due(self, every: float) -> bool:
        """Whether ``every`` seconds have passed since the last success (or there was none)."""
        return self._last_success is None or self._clock() - self._last_success >= every

    def status(self) -> SourceStatus:
        """The self-monitoring view of this call."""
        with self._lock:
            self._check_deadline()
            error = self._last_error
            attempt = self._attempt
            if attempt is not None and attempt.overdue:
                stuck = time.monotonic() - attempt.started
                error = f"{error}; the call is still running after {stuck:.1f}s"
            return SourceStatus(
                name=self.name,
                up=bool(self._up),
                duration_seconds=self._duration,
                errors_total=self._errors_total,
                last_success_timestamp=self._last_success,
                last_error=error,
            )


def gather(calls: Sequence[GuardedCall[T]], wait_until: float) -> list[T | None]:
    """Start each call that is free, wait for them until monotonic ``wait_until``, and return
    each one's latest current answer (``None`` for a call down, or not answered yet).

    A call still running at ``wait_until`` but within its deadline carries on: its answer is
    the latest at the next gathering. One that was already running before is not waited for.
    """
    started = [call for call in calls if call.start()]
    for call in started:
        call.wait(wait_until)
    return [call.latest for call in calls]
