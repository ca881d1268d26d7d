"""The history's schema: a new file's version and modes, migrations, files it refuses."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from densityd.history import schema as schema_module
from densityd.history.schema import HISTORY_FILE, MIGRATIONS, StoreError
from densityd.history.store import HistoryStore
from tests.unit.history.test_store import KEY, T0, record_rates, rows


def test_a_fresh_store_has_the_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    state = tmp_path / "state" / "densityd"
    with HistoryStore.open(state) as store:
        assert store.path == state / HISTORY_FILE
        assert rows(store.path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        assert rows(store.path, "PRAGMA journal_mode") == [("wal",)]
        assert rows(store.path, "PRAGMA auto_vacuum") == [(2,)]  # incremental
    assert state.stat().st_mode & 0o777 & ~0o750 == 0  # no more than rwxr-x---


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    HistoryStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / HISTORY_FILE)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match=f"version 99.*version {len(MIGRATIONS)}"):
            HistoryStore.open(tmp_path, readonly=readonly)


def test_an_older_schema_is_migrated_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HistoryStore.open(tmp_path) as store:
        record_rates(store, [0.5] * 5)
    v2 = ("ALTER TABLE workloads ADD COLUMN team TEXT", "UPDATE workloads SET team = 'web'")
    monkeypatch.setattr(schema_module, "MIGRATIONS", [*MIGRATIONS, v2])
    with pytest.raises(StoreError, match="older than version"):
        HistoryStore.open(tmp_path, readonly=True)  # a reader never upgrades
    with HistoryStore.open(tmp_path) as store:
        assert KEY in store.workload_history(T0)
    path = tmp_path / HISTORY_FILE
    assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS) + 1,)]
    assert rows(path, "SELECT team FROM workloads") == [("web",)]


def test_a_failing_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    HistoryStore.open(tmp_path).close()
    broken = ("CREATE TABLE extra (x INTEGER)", "INSERT INTO no_such_table VALUES (1)")
    monkeypatch.setattr(schema_module, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(StoreError, match=f"upgrade to schema version {len(MIGRATIONS) + 1}"):
        HistoryStore.open(tmp_path)
    path = tmp_path / HISTORY_FILE
    assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert rows(path, "SELECT name FROM sqlite_master WHERE name = 'extra'") == []


def test_no_history_for_a_reader_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"no history at {tmp_path / HISTORY_FILE}"):
        HistoryStore.open(tmp_path, readonly=True)
    assert not (tmp_path / HISTORY_FILE).exists()


def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(StoreError, match="not-a-directory"):
        HistoryStore.open(blocker / "state")
    with pytest.raises(StoreError, match="not-a-directory"):
        HistoryStore(blocker / HISTORY_FILE)


def test_a_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / HISTORY_FILE).write_bytes(b"this is not a database, just bytes " * 200)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="not a database"):
            HistoryStore.open(tmp_path, readonly=readonly)


def test_version_1_files_get_pass_counts_from_their_summaries(tmp_path: Path) -> None:
    """Version 2 counts the passes per period; a file from before is estimated when upgraded."""
    with HistoryStore.open(tmp_path) as store:
        record_rates(store, [0.5] * 20)
        path = store.path
    counted = "SELECT period, period_start, passes FROM passes ORDER BY 1, 2"
    written = rows(path, counted)
    assert [n for _, _, n in written] == [21, 21]  # 20 rates: 21 passes, in one hour, one day
    with sqlite3.connect(path) as conn:  # back to version 1, as an older densityd left it
        conn.execute("DROP TABLE passes")
        conn.execute("PRAGMA user_version = 1")
    with HistoryStore.open(tmp_path) as store:
        assert rows(store.path, "PRAGMA user_version") == [(2,)]
        assert rows(
            store.path, "SELECT period, period_start, passes FROM passes ORDER BY 1, 2"
        ) == (written)
