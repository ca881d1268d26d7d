"""How old each source's data gets while a backend is restarted: scraped in the background."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import requests

from tests.integration.backends import Daemon, parse_metrics

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
