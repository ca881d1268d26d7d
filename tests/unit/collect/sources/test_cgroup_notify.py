"""The notifier's watches on real files and a real inotify instance: a change reaches the
callback, a dropped or vanished file's does not, and a file made again is watched again."""

from __future__ import annotations

import queue
import time
from pathlib import Path

from densityd.collect.sources.cgroup_notify import CgroupFileNotifier

WAIT_SECONDS = 5.0


def _notifier() -> tuple[CgroupFileNotifier, queue.Queue[tuple[str, str]]]:
    changes: queue.Queue[tuple[str, str]] = queue.Queue()
    return CgroupFileNotifier(lambda key, path: changes.put((key, path)), "test"), changes


def _keys_within(changes: queue.Queue[tuple[str, str]], seconds: float) -> set[str]:
    """The keys of every change announced within ``seconds`` (a rewrite is announced twice:
    truncate, then write)."""
    keys: set[str] = set()
    while True:
        try:
            keys.add(changes.get(timeout=seconds)[0])
        except queue.Empty:
            return keys


def test_a_change_to_a_watched_file_reaches_the_callback_with_its_key(tmp_path: Path) -> None:
    watched, other = tmp_path / "memory.events", tmp_path / "other"
    watched.write_text("oom_kill 0\n")
    other.write_text("")
    notifier, changes = _notifier()
    try:
        notifier.follow({"c1": str(watched)})
        other.write_text("x")  # not watched
        watched.write_text("oom_kill 1\n")
        assert changes.get(timeout=WAIT_SECONDS) == ("c1", str(watched))
        assert notifier.unavailable is None
    finally:
        notifier.close()


def test_a_file_no_longer_followed_is_not_watched(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("")
    second.write_text("")
    notifier, changes = _notifier()
    try:
        notifier.follow({"a": str(first), "b": str(second)})
        notifier.follow({"b": str(second)})
        first.write_text("x")
        second.write_text("x")
        assert changes.get(timeout=WAIT_SECONDS) == ("b", str(second))
        assert _keys_within(changes, 0.5) <= {"b"}
    finally:
        notifier.close()


def test_a_file_made_again_at_the_same_path_is_watched_again(tmp_path: Path) -> None:
    """A container restarted in place: its cgroup goes, and comes back at the same path."""
    path = tmp_path / "memory.events"
    path.write_text("")
    notifier, changes = _notifier()
    try:
        notifier.follow({"c1": str(path)})
        assert notifier.watched() == {"c1"}
        path.unlink()  # the kernel ends the watch (IN_IGNORED)
        deadline = time.monotonic() + WAIT_SECONDS
        while notifier.watched():
            assert time.monotonic() < deadline, "the ended watch was not forgotten"
            time.sleep(0.01)
        path.write_text("")
        notifier.follow({"c1": str(path)})
        path.write_text("oom_kill 1\n")
        assert changes.get(timeout=WAIT_SECONDS) == ("c1", str(path))
    finally:
        notifier.close()


def test_a_file_gone_before_it_is_watched_is_skipped(tmp_path: Path) -> None:
    notifier, changes = _notifier()
    present = tmp_path / "present"
    present.write_text("")
    try:
        notifier.follow({"gone": str(tmp_path / "missing"), "here": str(present)})
        present.write_text("x")
        assert changes.get(timeout=WAIT_SECONDS) == ("here", str(present))
        assert notifier.unavailable is None
    finally:
        notifier.close()
