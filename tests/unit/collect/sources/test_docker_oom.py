"""The OOM kill count of one container: its cgroup's counter and the Engine's events."""

from __future__ import annotations

from densityd.collect.sources.docker import _OomCount


def test_unknown_until_the_cgroup_or_an_event_tells() -> None:
    assert _OomCount("web").total() is None
    count = _OomCount("web")
    count.observe(0, 1.0)
    assert count.total() == 0


def test_a_kill_whose_cgroup_is_gone_counts_by_its_event() -> None:
    count = _OomCount("web")
    count.observe(0, 1.0)
    count.events += 1  # killed, then removed before its cgroup was read again
    assert count.total() == 1


def test_the_same_kill_seen_by_both_counts_once() -> None:
    count = _OomCount("web")
    count.observe(1, 1.0)
    count.events += 1
    assert count.total() == 1


def test_a_restart_keeps_the_earlier_cgroups_kills() -> None:
    count = _OomCount("web")
    count.observe(2, 1.0)
    count.observe(0, 2.0)  # restarted: a new cgroup counts from 0
    assert count.total() == 2
    count.observe(1, 3.0)
    assert count.total() == 3


def test_a_reading_from_before_a_kill_observed_after_it_changes_nothing() -> None:
    """The pass read 0 before the kill; the kernel's notice read 1 after it and was observed
    first: the late 0 is not a restart, and the next pass's 1 is the same kill."""
    count = _OomCount("web")
    count.observe(1, 2.0)
    count.observe(0, 1.0)  # read at 1.0, before the notice's read at 2.0
    assert count.total() == 1
    count.observe(1, 3.0)
    assert count.total() == 1
