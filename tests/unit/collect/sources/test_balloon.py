"""Whether a VM's guest figures are current, from recorded balloon stats (DESIGN §4.1).

The records are what ``getAllDomainStats`` returned for the real test guest (256 MiB, 80 MiB
of tmpfs filled, ``<stats period='2'/>``), and for the same domain without a period.
"""

from __future__ import annotations

from densityd.collect.sources.balloon import (
    CURRENT,
    NO_BALLOON,
    NO_STATS_PERIOD,
    NOT_REPORTED,
    STALE,
    STALE_PERIODS,
    Seen,
    guest_stats,
)
from densityd.collect.sources.libvirt import guest_memory_used, vm_sample
from densityd.collect.sources.libvirt_xml import DomainConfig

REPORTING = {
    "state.state": 1,
    "balloon.current": 262144,
    "balloon.maximum": 262144,
    "balloon.unused": 101136,
    "balloon.available": 210884,
    "balloon.usable": 104432,
    "balloon.last-update": 1796131767,
    "balloon.disk_caches": 2200,
    "balloon.rss": 277224,
}
NO_PERIOD = {"state.state": 1, "balloon.current": 262144, "balloon.maximum": 262144,
             "balloon.rss": 277224}  # fmt: skip


def test_a_first_report_is_current_and_remembered() -> None:
    judged = guest_stats(REPORTING, "virtio", 2, None, now=100.0)
    assert (judged.status, judged.age_seconds) == (CURRENT, 0.0)
    assert judged.seen == Seen(1796131767, 100.0)


def test_an_advancing_last_update_stays_current() -> None:
    seen = Seen(1796131767, 100.0)
    later = {**REPORTING, "balloon.last-update": 1796131769}
    judged = guest_stats(later, "virtio", 2, seen, now=150.0)
    assert (judged.status, judged.age_seconds, judged.seen) == (
        CURRENT,
        0.0,
        Seen(1796131769, 150.0),
    )


def test_a_last_update_that_stops_advancing_goes_stale_after_a_few_periods() -> None:
    seen = Seen(1796131767, 100.0)
    limit = STALE_PERIODS * 2 + 1
    assert guest_stats(REPORTING, "virtio", 2, seen, now=100.0 + limit).status == CURRENT
    stale = guest_stats(REPORTING, "virtio", 2, seen, now=100.0 + limit + 0.5)
    assert (stale.status, stale.age_seconds, stale.seen) == (STALE, limit + 0.5, seen)


def test_the_guest_clock_is_never_compared_with_the_host_clock() -> None:
    # A guest whose clock is a year behind the host is current as long as its stamp advances.
    behind = {**REPORTING, "balloon.last-update": 1_700_000_000}
    assert guest_stats(behind, "virtio", 2, None, now=1796131767.0).status == CURRENT


def test_why_there_are_no_figures() -> None:
    assert guest_stats(NO_PERIOD, "virtio", None, None, 0.0).status == NO_STATS_PERIOD
    assert guest_stats(NO_PERIOD, "virtio", 2, None, 0.0).status == NOT_REPORTED
    assert guest_stats(NO_PERIOD, "none", None, None, 0.0).status == NO_BALLOON
    assert guest_stats(NO_PERIOD, None, None, None, 0.0).status == NO_BALLOON
    # A zero stamp is QEMU's "never updated".
    zero = {**REPORTING, "balloon.last-update": 0}
    assert guest_stats(zero, "virtio", 2, None, 0.0).status == NOT_REPORTED


def test_the_one_report_a_driver_sends_as_it_loads_is_not_current_without_a_period() -> None:
    # Recorded: a guest without <stats period> still shows the figures of its driver's first
    # report, with a last-update that never advances.
    assert guest_stats(REPORTING, "virtio", None, None, 0.0).status == NO_STATS_PERIOD


def _config() -> DomainConfig:
    return DomainConfig("g", "u", 256 * 1024**2, 1, "", (), "virtio", 2)


def test_only_current_figures_are_exported_as_guest_memory() -> None:
    current = guest_stats(REPORTING, "virtio", 2, None, 0.0)
    sample = vm_sample("u", _config(), REPORTING, (), guest=current)
    assert (
        sample.guest_memory_used_bytes == guest_memory_used(REPORTING) == (210884 - 104432) * 1024
    )
    assert sample.guest_stats_status == CURRENT
    stale = guest_stats(REPORTING, "virtio", 2, Seen(1796131767, 0.0), 60.0)
    sample = vm_sample("u", _config(), REPORTING, (), guest=stale)
    assert sample.guest_memory_used_bytes is None  # unknown, not zero
    assert (sample.guest_stats_status, sample.guest_stats_age_seconds) == (STALE, 60.0)
    off = vm_sample("u", _config(), {**REPORTING, "state.state": 5}, (), guest=current)
    assert (off.guest_memory_used_bytes, off.guest_stats_status) == (None, "")
