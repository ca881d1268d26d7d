"""Record every snapshot in the history store, and report whether that works.

The daemon keeps serving metrics when the history cannot be written (a full disk, a
read-only state directory): the failure is logged once per outage and exported as
``densityd_history_up 0``, and recording resumes by itself when a write succeeds again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from densityd.history.schema import StoreError
from densityd.history.store import HistoryStore
from densityd.model import Snapshot

log = logging.getLogger("densityd.history")

MAINTAIN_EVERY_SECONDS = 300.0


class HistoryRecorder:
    """Writes snapshots to the store; a Prometheus collector of its own health."""

    def __init__(
        self,
        open_store: Callable[[], HistoryStore],
        path: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._open_store = open_store
        self._path = path
        self._clock = clock
        self._store: HistoryStore | None = None
        self._lock = threading.Lock()
        self._up = False
        self._errors = 0
        self._last_success: float | None = None
        self._last_error = ""
        self._next_maintenance = 0.0

    @property
    def store(self) -> HistoryStore | None:
        """The open store, ``None`` until it could be opened."""
        return self._store

    @property
    def up(self) -> bool:
        """Whether the latest write succeeded."""
        return self._up

    def record(self, snapshot: Snapshot) -> None:
        """Write one snapshot (and roll up and prune every few minutes); never raises."""
        with self._lock:
            try:
                if self._store is None:
                    self._store = self._open_store()
                self._store.record(snapshot)
                now = self._clock()
                if now >= self._next_maintenance:
                    self._store.maintain(now)
                    self._next_maintenance = now + MAINTAIN_EVERY_SECONDS
            except StoreError as exc:
                self._failed(str(exc))
                return
            if not self._up:
                log.info("history: recording to %s", self._path)
            self._up = True
            self._last_success = self._clock()

    def _failed(self, reason: str) -> None:
        self._errors += 1
        if self._up or not self._last_error:
            # One line per outage, not one per pass.
            log.error("history: cannot record (metrics are still served): %s", reason)
        self._up = False
        self._last_error = reason

    def close(self) -> None:
        """Close the store."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def describe(self) -> Iterator[Metric]:
        """The history families, without samples."""
        return self._families(with_samples=False)

    def collect(self) -> Iterator[Metric]:
        """Whether history is being recorded, its errors, its last write and its size."""
        return self._families(with_samples=True)

    def _families(self, with_samples: bool) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "densityd_history_up", "1 when the latest pass was recorded in the local history."
        )
        errors = CounterMetricFamily(
            "densityd_history_errors", "Passes that could not be recorded in the history."
        )
        last = GaugeMetricFamily(
            "densityd_history_last_write_timestamp_seconds",
            "When a pass was last recorded in the history (Unix time).",
        )
        size = GaugeMetricFamily(
            "densityd_history_size_bytes", "Size of the history database on disk, with its WAL."
        )
        if with_samples:
            up.add_metric([], 1 if self._up else 0)
            errors.add_metric([], self._errors)
            if self._last_success is not None:
                last.add_metric([], self._last_success)
            size.add_metric([], _size_on_disk(self._path))
        yield from (up, errors, last, size)


def _size_on_disk(path: Path) -> float:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):  # no WAL between checkpoints
            total += path.with_name(path.name + suffix).stat().st_size
    return float(total)
