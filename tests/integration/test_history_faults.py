"""The history under faults, with a real daemon and real containers: kill -9, a full disk.

- ``kill -9`` while the daemon records a pass every 0.2 s, several times over one state
  directory: each time the database (with its WAL, as the kill left them) passes
  ``PRAGMA integrity_check``, holds the passes recorded up to the kill, and the restarted
  daemon keeps every row that was there and records again.
- A full disk under the state directory (a small tmpfs, filled with a file): the daemon keeps
  sampling and serving ``/metrics``, reports ``densityd_history_up 0`` and counts
  ``densityd_history_errors_total``, logs the outage once, and records again, logging that
  it does, once the file is gone.
"""

from __future__ import annotations

import contextlib
import errno
import random
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from densityd.history.schema import HISTORY_FILE
from tests.integration.backends import Containers, Daemon, Series, missing_backend, value_of

INTERVAL = 0.2
CANNOT_RECORD = "history: cannot record (metrics are still served)"
RECORDING = "history: recording to"


def _history_up(series: Series) -> bool:
    return value_of(series, "densityd_history_up") == 1


def _last_write(series: Series) -> float:
    return value_of(series, "densityd_history_last_write_timestamp_seconds") or 0.0


def _snapshot(state: Path, into: Path) -> Path:
    """Copy the database and its WAL as they are (not the -shm: a reader rebuilds it)."""
    into.mkdir()
    for suffix in ("", "-wal"):
        source = state / f"{HISTORY_FILE}{suffix}"
        if source.exists():
            shutil.copy2(source, into / source.name)
    return into / HISTORY_FILE


def _check(path: Path) -> tuple[set[tuple[int, int]], int]:
    """``integrity_check`` must say ok; the (ts, wid) of every sample, and the host rows."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        samples = set(conn.execute("SELECT ts, wid FROM samples"))
        hosts = int(conn.execute("SELECT count(*) FROM host").fetchone()[0])
    return samples, hosts


def _live_samples(path: Path) -> set[tuple[int, int]]:
    """The samples of the database a daemon is writing, read through a read-only connection."""
    uri = f"{path.absolute().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
        return set(conn.execute("SELECT ts, wid FROM samples"))


def test_kill_9_during_writes_keeps_a_sound_history(
    containers: Containers, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Three kill -9s at random moments of a 0.2 s recording loop lose nothing committed."""
    for _ in range(3):
        containers.run()
    state = tmp_path / "state"
    rng = random.Random()
    kept: set[tuple[int, int]] = set()
    for round_ in range(3):
        daemon = start_daemon("--no-libvirt", interval=INTERVAL)
        started = time.time()
        daemon.wait_for(
            lambda s, t=started: _history_up(s) and _last_write(s) > t + 1,
            timeout=30,
            what="a second of recorded passes",
        )
        # Every row kept from the kills before is still there after this restart.
        assert kept <= _live_samples(state / HISTORY_FILE)
        time.sleep(rng.uniform(0.5, 2.0))
        written = _last_write(daemon.scrape())
        daemon.process.kill()
        daemon.process.wait(timeout=10)
        assert CANNOT_RECORD not in daemon.log()

        samples, hosts = _check(_snapshot(state, tmp_path / f"after-kill-{round_}"))
        # The passes up to the last write the daemon reported were committed, so are kept:
        # rows are per whole second (5 passes a second share one), so at least 2 seconds'
        # worth of the 3 containers and the host since the last kill.
        assert samples >= kept
        assert len(samples - kept) >= 3 * 2
        assert hosts >= 2 * (round_ + 1)
        newest = max(ts for ts, _wid in samples)
        assert newest >= round(written) - 1, f"last pass reported at {written}, kept {newest}"
        kept = samples

    # The database the daemon left behind is sound as it is, and a last restart keeps it all.
    daemon = start_daemon("--no-libvirt", interval=INTERVAL)
    restarted = time.time()
    # A second of passes, as above: the very first pass may come before Docker answers, and
    # then records the host only.
    daemon.wait_for(
        lambda s: _history_up(s) and _last_write(s) > restarted + 1,
        timeout=30,
        what="recording after the last kill",
    )
    assert kept < _live_samples(state / HISTORY_FILE)
    assert daemon.stop() == 0
    assert _check(state / HISTORY_FILE)[0] > kept
    assert "Traceback" not in daemon.log()


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/state`` on its own 8 MiB tmpfs (the state directory start_daemon uses)."""
    state = tmp_path / "state"
    state.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0750", "tmpfs", str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        missing_backend(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield state
    finally:
        # The test stops its daemons first; a lazy unmount covers one that would not stop.
        if subprocess.run(["umount", str(state)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(state)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file into ``directory`` until its filesystem is full; return it."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    # Small writes too, so that not even one page is left.
    with filler.open("ab", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 512)
    return filler


def test_full_disk_keeps_serving_and_recording_resumes(
    small_state_dir: Path,
    start_daemon: Callable[..., Daemon],
    containers: Containers,
    tmp_path: Path,
) -> None:
    """A full state directory: metrics served, history down once in the log, then back."""
    ids = [containers.run() for _ in range(3)]
    daemon = start_daemon("--no-libvirt", interval=0.3)
    freed_at = float("inf")
    try:
        daemon.wait_for(
            lambda s: _history_up(s) and value_of(s, "densityd_workload_info", id=ids[0]),
            timeout=30,
            what="history up with the containers",
        )
        assert daemon.log().count(RECORDING) == 1
        filler = _fill(small_state_dir)
        filled_at = time.time()

        # The WAL may still have room from before its last checkpoint: a few dozen passes.
        down = daemon.wait_for(
            lambda s: value_of(s, "densityd_history_up") == 0,
            timeout=45,
            what="densityd_history_up 0 on a full disk",
        )
        errors = value_of(down, "densityd_history_errors_total")
        assert errors is not None and errors >= 1
        last_write = _last_write(down)
        assert last_write < time.time()
        # Sampling and serving go on: fresh passes, every container, the source up.
        time.sleep(2)
        later = daemon.scrape()
        assert value_of(later, "densityd_history_up") == 0
        assert (value_of(later, "densityd_history_errors_total") or 0) >= errors + 3
        assert _last_write(later) == last_write
        pass_ts = value_of(later, "densityd_last_pass_timestamp_seconds")
        assert pass_ts is not None and pass_ts > filled_at + 1
        assert time.time() - pass_ts < 2
        assert value_of(later, "densityd_source_up", source="docker") == 1
        for container_id in ids:
            assert value_of(later, "densityd_workload_info", id=container_id) == 1
        # One line for the outage, however many passes it lasted.
        log = daemon.log()
        assert log.count(CANNOT_RECORD) == 1, log
        assert "full" in log.split(CANNOT_RECORD, 1)[1].splitlines()[0]

        filler.unlink()
        freed_at = time.time()
        daemon.wait_for(
            lambda s: _history_up(s) and _last_write(s) > freed_at,
            timeout=20,
            what="recording again once the disk has room",
        )
        log = daemon.log()
        assert log.count(RECORDING) == 2, log
        assert log.rindex(RECORDING) > log.index(CANNOT_RECORD)
        assert log.count(CANNOT_RECORD) == 1
        assert "Traceback" not in log
    finally:
        assert daemon.stop() == 0
    samples, _hosts = _check(small_state_dir / HISTORY_FILE)
    assert max(ts for ts, _wid in samples) >= int(freed_at)
