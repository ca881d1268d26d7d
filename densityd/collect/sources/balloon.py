"""Whether a VM's guest memory figures are current: the balloon driver's reports, and their age.

The guest's balloon driver reports its memory (``balloon.available``, ``balloon.usable``, ...)
every ``<memballoon><stats period='N'/>`` seconds, stamped ``balloon.last-update``: the
guest's own clock in Unix seconds (QEMU's ``guest-stats`` ``last-update``), which may differ
from the host's. So the age is measured on the host: the source remembers, per VM, the
``last-update`` value it saw and when (host time) it first saw it; a value that has not
advanced for more than ``STALE_PERIODS`` periods (plus one second, its resolution) is stale —
a paused or hung guest, or a driver that stopped reporting. QEMU keeps answering with the last
figures it got, so without this they would be exported as current forever.

Every running VM gets one status, exported as ``densityd_vm_guest_memory_status``; only
``current`` exports ``densityd_vm_guest_memory_used_bytes`` (unknown is not zero):

- ``current``: reported within the last few periods;
- ``stale``: ``last-update`` stopped advancing;
- ``not_reported``: a balloon device with a period, but no figures (no balloon driver in the
  guest, or it has not reported yet: the first report comes a period or so after it loads);
- ``no_stats_period``: a balloon device without a ``<stats period>``, so nothing is asked of
  the guest (the period cannot be set over densityd's read-only connection: it belongs in the
  domain XML). The driver still sends one report as it loads and QEMU keeps answering with it
  (``last-update`` set, never advancing): figures from the guest's boot, not exported;
- ``no_balloon``: no balloon device (``<memballoon model='none'/>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STALE_PERIODS = 3

CURRENT = "current"
STALE = "stale"
NOT_REPORTED = "not_reported"
NO_STATS_PERIOD = "no_stats_period"
NO_BALLOON = "no_balloon"
STATUSES = (CURRENT, STALE, NOT_REPORTED, NO_STATS_PERIOD, NO_BALLOON)


@dataclass(frozen=True, slots=True)
class Seen:
    """The last ``balloon.last-update`` seen for one VM, and the host time it was first seen."""

    last_update: int
    first_seen_at: float


@dataclass(frozen=True, slots=True)
class GuestStats:
    """One VM's guest-figure status this pass, its age (seconds, host clock), what to remember."""

    status: str
    age_seconds: float | None
    seen: Seen | None


def guest_stats(
    stats: Mapping[str, Any],
    balloon_model: str | None,
    period: int | None,
    previous: Seen | None,
    now: float,
) -> GuestStats:
    """Judge one running VM's balloon figures at host time ``now`` against what was seen before.

    ``balloon_model`` and ``period`` come from the domain XML (``None``: not configured).
    """
    if balloon_model is None or balloon_model == "none":
        return GuestStats(NO_BALLOON, None, None)
    if not period:
        # The driver sends one report as it loads, and QEMU keeps answering with it: figures
        # with no period are from the guest's boot and never refreshed (seen on the test guest).
        return GuestStats(NO_STATS_PERIOD, None, None)
    last_update = stats.get("balloon.last-update")
    reported = (
        isinstance(last_update, int)
        and not isinstance(last_update, bool)
        and last_update > 0
        and "balloon.available" in stats
        and "balloon.usable" in stats
    )
    if not reported:
        return GuestStats(NOT_REPORTED, None, None)
    assert isinstance(last_update, int)
    if previous is not None and previous.last_update == last_update:
        seen = previous
    else:
        seen = Seen(last_update, now)
    age = max(0.0, now - seen.first_seen_at)
    status = STALE if age > STALE_PERIODS * period + 1 else CURRENT
    return GuestStats(status, age, seen)
