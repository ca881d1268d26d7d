"""Recording snapshots in the history: health metrics, one log line per outage, recovery."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from densityd.history.recorder import HistoryRecorder
from densityd.history.schema import HISTORY_FILE, StoreError
from densityd.history.store import HistoryStore
from densityd.serve.exporter import render
from tests.unit.plan.inputs.test_local import container, snapshot

MIB = 1024 * 1024


def metric(recorder: HistoryRecorder, name: str) -> float | None:
    for line in render(None, extra=[recorder]).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_records_every_snapshot_and_reports_up(tmp_path: Path) -> None:
    recorder = HistoryRecorder(lambda: HistoryStore.open(tmp_path), tmp_path / HISTORY_FILE)
    assert metric(recorder, "densityd_history_up") == 0
    for step in range(3):
        recorder.record(snapshot(container("web", 100 * MIB, cpu=step), timestamp=1000 + step))
    assert recorder.up
    assert metric(recorder, "densityd_history_up") == 1
    assert metric(recorder, "densityd_history_errors_total") == 0
    assert (metric(recorder, "densityd_history_size_bytes") or 0) > 0
    store = recorder.store
    assert store is not None
    history = store.workload_history(since=0)
    assert ("container", "web-id") in history
    recorder.close()


def test_a_failing_store_is_reported_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    def open_store() -> HistoryStore:
        attempts.append(1)
        if len(attempts) <= 3:
            raise StoreError(f"cannot write history to {tmp_path}: database or disk is full")
        return HistoryStore.open(tmp_path)

    recorder = HistoryRecorder(open_store, tmp_path / HISTORY_FILE)
    with caplog.at_level(logging.INFO, logger="densityd.history"):
        for step in range(3):
            recorder.record(snapshot(container("web", MIB), timestamp=1000 + step))
        assert not recorder.up
        assert metric(recorder, "densityd_history_up") == 0
        assert metric(recorder, "densityd_history_errors_total") == 3
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "disk is full" in errors[0].getMessage()
        recorder.record(snapshot(container("web", MIB), timestamp=1010))
    assert recorder.up
    assert metric(recorder, "densityd_history_up") == 1
    assert any("recording to" in r.getMessage() for r in caplog.records)
    recorder.close()
