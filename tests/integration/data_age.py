"""How old each source's data gets while a backend is restarted: scraped in the background."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import requests

from tests.integration.backends import (
    Daemon,
    assert_back_within_two_intervals,
    parse_metrics,
    value_of,
)

LAST_SUCCESS = "densityd_source_last_success_timestamp_seconds"


class DataAge:
    """Scrapes a daemon every ``step`` seconds and keeps, per source, the oldest its data got.

    A source's data age at a scrape is the scrape's time minus the source's last success. Use
    as a context manager around the fault; ``worst`` holds the result.
    """

    def __init__(self, daemon: Daemon, step: float = 0.2) -> None:
        self._daemon = daemon
        self._step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.worst: dict[str, float] = {}
        self.scrapes = 0

    def __enter__(self) -> DataAge:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        while not self._stop.wait(self._step):
            try:
                series = parse_metrics(self._daemon.metrics_text())
            except requests.RequestException:
                continue
            now = time.time()
            self.scrapes += 1
            for (name, labels), value in series.items():
                if name == LAST_SUCCESS:
                    source = dict(labels)["source"]
                    self.worst[source] = max(self.worst.get(source, 0.0), now - value)


def assert_restarts_never_stall(
    daemon: Daemon,
    source: str,
    workload_id: str,
    restart: tuple[Callable[[], None], Callable[[], None]],
    others: Sequence[str],
    interval: float,
) -> None:
    """Restart ``source``'s backend three times (stop, 2 s down, start, which returns once it
    answers): ``others``' data never gets older than two intervals meanwhile, and ``source``
    with ``workload_id`` is back within two intervals of each start."""
    stop, start = restart
    daemon.wait_for(
        lambda s: value_of(s, "densityd_workload_memory_bytes", id=workload_id) is not None,
        what=f"{workload_id} before the restarts",
    )
    with DataAge(daemon) as ages:
        for _ in range(3):
            stop()
            time.sleep(2)
            start()
            assert_back_within_two_intervals(
                daemon, source, workload_id, time.monotonic(), interval
            )
    assert ages.scrapes > 20
    for other in others:
        assert ages.worst[other] <= 2 * interval, (ages.worst, daemon.log())
