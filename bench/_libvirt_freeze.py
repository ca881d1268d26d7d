"""The libvirt benchmark's frozen libvirtd: SIGSTOP for a few seconds while both are scraped.

Helpers of ``libvirt_scrape.py``, not a benchmark: libvirtd's PID (from its pidfile, checked)
and its state and CPU time from ``/proc``, whether a URI is this host's libvirtd, stopping it
inside a block that always resumes it (also through a watchdog process, should the script
die), and the scrape windows, a control one with libvirtd running and the frozen one, with
what they found and how long each exporter took to answer in full again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import BenchError, percentile, scrape
from _libvirt_exporters import Exporter, Memory, densityd_source, wait_for

LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")
FREEZE_CLIENT_TIMEOUT_S = 5.0
FREEZE_MAX_S = 20.0  # other people's tests use this libvirtd too: keep the freeze short
FREEZE_SCRAPE_PERIOD_S = 0.02  # densityd is scraped at most 50 times a second while frozen


# -- a frozen libvirtd -------------------------------------------------------------------------


@dataclass
class Attempt:
    """One scrape during a window."""

    started_s: float  # since the window began (the SIGSTOP, when freezing)
    elapsed_ms: float
    outcome: str  # "ok", "timeout" or "error: ..."
    listed_all: bool | None  # whether it listed every bench VM (None: no answer)
    ended_after_window: bool  # answered only after the window closed (libvirtd resumed)


@dataclass
class WindowSide:
    """One exporter's scrapes during a window."""

    name: str
    attempts: list[Attempt] = field(default_factory=list)

    def _ok(self) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome == "ok"]

    @property
    def answered(self) -> int:
        return len(self._ok())

    @property
    def answered_in_window(self) -> int:
        return sum(1 for a in self._ok() if not a.ended_after_window)

    @property
    def timeouts(self) -> int:
        return sum(1 for a in self.attempts if a.outcome == "timeout")

    @property
    def errors(self) -> int:
        return sum(1 for a in self.attempts if a.outcome.startswith("error"))

    @property
    def lost_vms(self) -> int:
        return sum(1 for a in self.attempts if a.listed_all is False)

    def latency_ms(self, pct: float) -> float | None:
        """Percentile over every attempt (a timed-out one counts as its time to time out)."""
        values = [a.elapsed_ms for a in self.attempts]
        return percentile(values, pct) if values else None

    def summary(self) -> dict[str, Any]:
        """The attempts plus the counts and percentiles, for ``--json``."""
        return {
            **asdict(self),
            "answered": self.answered,
            "answered_in_window": self.answered_in_window,
            "timeouts": self.timeouts,
            "errors": self.errors,
            "lost_vms": self.lost_vms,
            "p50_ms": self.latency_ms(50),
            "p99_ms": self.latency_ms(99),
            "max_ms": self.latency_ms(100),
        }


@dataclass
class Window:
    """Both exporters scraped concurrently, the same way, for a few seconds."""

    seconds: float
    densityd: WindowSide
    exporter: WindowSide
    densityd_libvirt_up: list[float]  # densityd_source_up{source="libvirt"} values seen, in order

    def summary(self) -> dict[str, Any]:
        """Everything, for ``--json``."""
        return {
            **asdict(self),
            "densityd": self.densityd.summary(),
            "exporter": self.exporter.summary(),
        }


@dataclass
class FreezeResult:
    """libvirtd stopped for a while, against a control window just before it."""

    libvirtd_pid: int
    client_timeout_s: float
    control: Window  # the same scraping with libvirtd running
    frozen: Window
    densityd_libvirt_errors_before: float | None
    densityd_libvirt_errors_after: float | None
    exporter_recovered_s: float | None  # from SIGCONT to a full answer
    densityd_recovered_s: float | None  # from SIGCONT to a libvirt pass succeeding again
    memory_after: dict[str, Memory]

    def summary(self) -> dict[str, Any]:
        """Everything, for ``--json``."""
        return {**asdict(self), "control": self.control.summary(), "frozen": self.frozen.summary()}


def is_local(uri: str) -> bool:
    scheme, _, rest = uri.partition("://")
    return "+" not in scheme and not rest.split("/", 1)[0].strip("@")


def libvirtd_pid() -> int:
    """libvirtd's PID from its pidfile, checked to be a live, running libvirtd."""
    try:
        pid = int(LIBVIRTD_PIDFILE.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError) as exc:
        raise BenchError(f"no live libvirtd behind {LIBVIRTD_PIDFILE}: {exc}") from exc
    if comm != "libvirtd":
        raise BenchError(f"PID {pid} from {LIBVIRTD_PIDFILE} is {comm!r}, not libvirtd")
    if process_state(pid) == "T":
        raise BenchError(f"libvirtd (PID {pid}) is already stopped; not touching it")
    return pid


def _stat_fields(pid: int) -> list[str]:
    """``/proc/PID/stat`` from the state on (field 3), split."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def process_state(pid: int) -> str:
    """The one-letter state of a process (R, S, D, T, ...)."""
    return _stat_fields(pid)[0]


def process_cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far, in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def stopped(pid: int, seconds: float) -> Iterator[None]:
    """Keep ``pid`` stopped (SIGSTOP) inside the block; ALWAYS SIGCONT it on the way out.

    Should this script die inside the block, a watchdog process of its own session sends the
    SIGCONT anyway a few seconds after ``seconds``.
    """
    watchdog: subprocess.Popen[bytes] | None = None
    try:
        watchdog = subprocess.Popen(
            ["sh", "-c", f"sleep {seconds + 5:g}; kill -CONT {pid}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives a Ctrl-C sent to this script's process group
        )
        os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)  # first thing, whatever happened
        if watchdog is not None:
            with suppress(ProcessLookupError):  # our own child's group: the sh and its sleep
                os.killpg(watchdog.pid, signal.SIGKILL)
            watchdog.wait()


def _scrape_loop(
    exporter: Exporter,
    names: set[str],
    side: WindowSide,
    began: float,
    stop: threading.Event,
    closed: threading.Event,
    period: float,
    on_body: Callable[[str], None] = lambda _text: None,
) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        listed_all: bool | None = None
        try:
            _elapsed, body = scrape(exporter.port, timeout=FREEZE_CLIENT_TIMEOUT_S)
        except TimeoutError:
            outcome = "timeout"
        except (OSError, BenchError) as exc:
            outcome = f"error: {exc}"
        else:
            outcome = "ok"
            text = body.decode()
            listed_all = names <= exporter.listed(text)
            on_body(text)
        ended = time.perf_counter()
        side.attempts.append(
            Attempt(
                started_s=started - began,
                elapsed_ms=(ended - started) * 1000,
                outcome=outcome,
                listed_all=listed_all,
                ended_after_window=closed.is_set(),
            )
        )
        stop.wait(max(0.0, period - (ended - started)))


def scrape_window(
    densityd: Exporter,
    exporter: Exporter,
    names: set[str],
    seconds: float,
    hold: AbstractContextManager[None],
    after: Callable[[], None] = lambda: None,
) -> Window:
    """Scrape both concurrently for ``seconds`` inside ``hold``; call ``after`` once it is left.

    densityd is scraped every 20 ms at most, the exporter back to back, each with a 5 s client
    timeout; scrapes still in flight when the window closes are waited for after ``after``.
    """
    result = Window(seconds, WindowSide(densityd.name), WindowSide(exporter.name), [])

    def note_up(text: str) -> None:
        value = densityd_source("libvirt", "densityd_source_up", text)
        ups = result.densityd_libvirt_up
        if value is not None and (not ups or ups[-1] != value):
            ups.append(value)

    stop, closed = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    try:
        with hold:
            began = time.perf_counter()
            threads = [
                threading.Thread(
                    target=_scrape_loop,
                    args=(densityd, names, result.densityd, began, stop, closed),
                    kwargs={"period": FREEZE_SCRAPE_PERIOD_S, "on_body": note_up},
                    daemon=True,
                ),
                threading.Thread(
                    target=_scrape_loop,
                    args=(exporter, names, result.exporter, began, stop, closed, 0.0),
                    daemon=True,
                ),
            ]
            for thread in threads:
                thread.start()
            stop.wait(seconds)
            result.seconds = time.perf_counter() - began
    finally:
        closed.set()
        stop.set()
    after()
    for thread in threads:
        thread.join(FREEZE_CLIENT_TIMEOUT_S + 5)
    return result


def freeze_libvirtd(
    seconds: float, densityd: Exporter, exporter: Exporter, names: set[str]
) -> FreezeResult:
    """A control window, then libvirtd stopped for ``seconds`` while scraping both the same way.

    Afterwards, how long each exporter took to answer in full again.
    """
    errors_before = densityd_source(
        "libvirt", "densityd_source_errors_total", scrape(densityd.port)[1].decode()
    )
    print(f"  control: scraping both for {seconds:g} s with libvirtd running")
    control = scrape_window(densityd, exporter, names, seconds, nullcontext())
    pid = libvirtd_pid()
    recovered: dict[str, float | None] = {"exporter": None, "densityd": None}

    def recovery() -> None:
        resumed_at = time.perf_counter()
        resume_wall = time.time()
        print(f"  libvirtd (PID {pid}) resumed; state now {process_state(pid)}")

        def exporter_full() -> bool:
            return names <= exporter.listed(scrape(exporter.port, 10)[1].decode())

        def densityd_fresh() -> bool:
            text = scrape(densityd.port)[1].decode()
            when = densityd_source(
                "libvirt", "densityd_source_last_success_timestamp_seconds", text
            )
            up = densityd_source("libvirt", "densityd_source_up", text)
            return up == 1 and when is not None and when > resume_wall

        # Timed from the SIGCONT; the scrape loops' last attempts may still be in flight.
        if wait_for(exporter_full, 60):
            recovered["exporter"] = time.perf_counter() - resumed_at
        if wait_for(densityd_fresh, 60):
            recovered["densityd"] = time.perf_counter() - resumed_at

    print(f"  stopping libvirtd (PID {pid}) for {seconds:g} s (SIGSTOP), scraping both")
    frozen = scrape_window(
        densityd, exporter, names, seconds, stopped(pid, seconds), after=recovery
    )
    return FreezeResult(
        libvirtd_pid=pid,
        client_timeout_s=FREEZE_CLIENT_TIMEOUT_S,
        control=control,
        frozen=frozen,
        densityd_libvirt_errors_before=errors_before,
        densityd_libvirt_errors_after=densityd_source(
            "libvirt", "densityd_source_errors_total", scrape(densityd.port)[1].decode()
        ),
        exporter_recovered_s=recovered["exporter"],
        densityd_recovered_s=recovered["densityd"],
        memory_after={densityd.name: densityd.memory(), exporter.name: exporter.memory()},
    )
