"""Helpers shared by the benchmarks in ``bench/``: scraping, percentiles, processes, signals.

Not a benchmark itself. The scripts import it as ``_common`` (Python puts a script's own
directory first on ``sys.path``), so run them as ``python bench/<script>.py``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any


class BenchError(Exception):
    """The benchmark cannot go on, or what it measured is not what it meant to measure."""


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * pct / 100))
    return ordered[rank - 1]


class LatencySummary:
    """Mixin for a dataclass with ``latencies_ms``: its percentiles and a JSON summary."""

    latencies_ms: list[float]

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ms)

    def summary(self) -> dict[str, Any]:
        """The raw numbers plus the percentiles, for ``--json``."""
        return {
            **asdict(self),  # type: ignore[call-overload]
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


def parse_counts(text: str) -> list[int]:
    """An option's ``10,50,200`` -> ``[10, 50, 200]`` (sorted, each at least 1)."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("must be comma-separated integers") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("must list at least one count, each at least 1")
    return counts


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int, timeout: float = 10.0, path: str = "/metrics") -> tuple[float, bytes]:
    """GET ``path`` over a fresh connection (no keep-alive, no gzip); (seconds, body).

    Raises ``OSError`` (``TimeoutError`` past ``timeout`` seconds of silence) when the server
    does not answer, and ``BenchError`` when it answers with anything but 200.
    """
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise BenchError(f"{path} answered {response.status}")
    return elapsed, body


def proc_status_bytes(pid: int, key: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no {key} in /proc/{pid}/status")


def stop_child(child: subprocess.Popen[bytes]) -> None:
    """Make sure our own daemon is gone (after a failure or Ctrl-C): SIGTERM, then SIGKILL."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so that whatever the benchmark made is cleaned up."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` ("" when it names none)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


def machine_basics() -> dict[str, Any]:
    """The CPU count, CPU model and kernel every benchmark reports its numbers with."""
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "kernel": platform.release()}


def loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages, as ``/proc/loadavg`` prints them."""
    return Path("/proc/loadavg").read_text().split()[:3]


def clean_env(prefix: str = "DENSITYD_") -> dict[str, str]:
    """This process's environment without the variables that would configure densityd."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefix)}


def run_benchmark(
    run: Callable[[], dict[str, Any]],
    json_path: Path | None,
    cleanup: Callable[[], None] | None = None,
) -> int:
    """Run a benchmark, write its JSON to ``json_path`` if given, always clean up; the status.

    1 when it fails (``BenchError``, also from ``cleanup``), 130 when interrupted (Ctrl-C, or
    SIGTERM). ``cleanup`` runs whatever happened and prints what it removed.
    """
    status = 0
    with sigterm_as_interrupt():
        try:
            document = run()
            if json_path:
                json_path.write_text(json.dumps(document, indent=2) + "\n")
                print(f"\nwrote {json_path}")
        except BenchError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            status = 130
        finally:
            if cleanup is not None:
                try:
                    cleanup()
                except BenchError as exc:
                    print(f"cleanup failed: {exc}", file=sys.stderr)
                    status = status or 1
    return status


def print_targets(found: Sequence[dict[str, Any]]) -> None:
    """One line per target: met, NOT MET or not measured, the target and what was measured."""
    for target in found:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[target["met"]]
        print(f"  [{verdict}] {target['target']}: {target['measured']}")


def progress(text: str) -> None:
    """A progress line on stderr, so that stdout holds only the results."""
    print(text, file=sys.stderr, flush=True)
