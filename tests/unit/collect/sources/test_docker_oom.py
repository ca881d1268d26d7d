"""The OOM kill count of one container: its cgroup's counter and the Engine's events."""

from __future__ import annotations

from densityd.collect.sources.docker import _OomCount


def test_unknown_until_the_cgroup_or_an_event_tells() -> None:
    assert _OomCount("web").total() is None
    count = _OomCount("web")
    count.observe(0)
    assert count.total() == 0


def test_a_kill_whose_cgroup_is_gone_counts_by_its_event() -> None:
    count = _OomCount("web")
    count.observe(0)
    count.events += 1  # killed, then removed before its cgroup was read again
    assert count.total() == 1


def test_the_same_kill_seen_by_both_counts_once() -> None:
    count = _OomCount("web")
    count.observe(1)
    count.events += 1
    assert count.total() == 1


def test_a_restart_keeps_the_earlier_cgroups_kills() -> None:
    count = _OomCount("web")
    count.observe(2)
    count.observe(0)  # restarted: a new cgroup counts from 0
    assert count.total() == 2
    count.observe(1)
    assert count.total() == 3
