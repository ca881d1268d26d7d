"""The live plan's reads of the history, kept in memory and moved on pass by pass.

``densityd plan`` reads the history once; the daemon's live plan reads it at every pass, and
over 2,000 workloads x 14 days a read takes 0.1-0.5 s. ``FollowedHistory`` answers the same
reads as ``HistoryStore`` (``workload_history``, ``trend``, ``oldest_timestamp``) with the
same results, reading the file only when that is needed:

- one pass appended in time order (``Changes.appends``) is added in memory: its summary
  rows into each workload's merged span and its CPU-rate counts into the histogram, exactly
  as the upserts changed the rows (``summaries.Span.take``), its new workloads and names;
- the window's periods (``summaries.select_periods``: they move when the window's start
  crosses an hour or a day) or the percentile changed: the summaries are read again;
- the trend holds finished periods only, so it is read again when a period ends (the latest
  pass moved into another hour), when the window's start moves past a period, or for other
  keys; an appended pass changes no finished period;
- anything else that changed the file (``Changes.rewrites``: a backfill, a late pass, a
  prune that dropped rows, another writer): everything is read again.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, field

from densityd.history import summaries
from densityd.history.histogram import RateHistogram, RunningPercentile, histogram_at
from densityd.history.recording import Batch
from densityd.history.schema import DAY, HOUR, floor_to
from densityd.history.store import Changes, HistoryStore
from densityd.plan.core.model import TrendPoint, WorkloadHistory


@dataclass(slots=True)
class _Window:
    """``summaries.workload_history`` over one selection of periods, kept as merged rows."""

    selection: summaries.Selection
    percentile: float
    spans: dict[int, summaries.Span]
    hists: dict[int, RateHistogram]
    ranks: dict[int, RunningPercentile] = field(default_factory=dict)
    found: dict[int, WorkloadHistory] = field(default_factory=dict)

    def cpu_rate(self, wid: int) -> float | None:
        """The workload's CPU-rate percentile, ``None`` without a rate."""
        rank = self.ranks.get(wid)
        if rank is None:
            hist = self.hists.get(wid)
            if hist is None:
                return None
            rank = self.ranks[wid] = RunningPercentile(hist, self.percentile)
        return rank.value()

    def add_counts(self, wid: int, counts: RateHistogram) -> None:
        """Add one pass's CPU-rate counts to the workload's histogram."""
        rank = self.ranks.get(wid)
        if rank is None:
            histogram_at(self.hists, wid).merge(counts.to_blob())
            return
        for bucket, count in counts.counts.items():
            if count > 0:
                rank.add(bucket, count)

    def covers(self, period: int, start: int) -> bool:
        """Whether the selection reads the summary row of ``period`` starting at ``start``."""
        return any(p == period and lo <= start <= hi for p, lo, hi in self.selection.ranges)


@dataclass(slots=True)
class _State:
    """What every read depends on besides its arguments, as of ``synced``."""

    synced: tuple[int, int]  # (rewrites, appends) of the store
    hourly_from: int | None
    oldest: float | None
    latest: int | None  # the latest host row or summary row's last timestamp
    names: dict[int, tuple[str, str, str]]


class FollowedHistory:
    """A store's plan reads, answered from memory while only passes were appended."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self._state: _State | None = None
        self._window: _Window | None = None
        self._trends: dict[tuple[object, ...], list[TrendPoint]] = {}
        self.reads = 0  # how many times the summaries were read from the file (for tests)

    # -- the reads, as HistoryStore's ----------------------------------------------------

    def workload_history(
        self, since: float, percentile: float = 0.95
    ) -> dict[tuple[str, str], WorkloadHistory]:
        """``HistoryStore.workload_history(since, percentile)``, the window open-ended."""
        if not 0 < percentile <= 1:
            raise ValueError(f"percentile must be in (0, 1], got {percentile}")
        state = self._sync()
        selection = summaries.select_periods(since, None, state.hourly_from)
        window = self._window
        if window is None or window.selection != selection or window.percentile != percentile:
            with self.store.pinned() as changes, self.store.reading() as conn:
                if (changes.rewrites, changes.appends) != state.synced:
                    state = self._reload(conn, changes)
                    selection = summaries.select_periods(since, None, state.hourly_from)
                window = self._window = self._read_window(conn, selection, percentile)
        found: dict[tuple[str, str], WorkloadHistory] = {}
        for wid, span in window.spans.items():
            item = window.found.get(wid)
            if item is None:
                item = summaries.workload_item(state.names.get(wid), span, window.cpu_rate(wid))
                if item is None:
                    continue
                window.found[wid] = item
            found[(item.kind.value, item.id)] = item
        return found

    def trend(
        self,
        since: float,
        keys: Collection[tuple[str, str]] | None = None,
        kind: str | None = None,
    ) -> list[TrendPoint]:
        """``HistoryStore.trend(since, keys, kind)``."""
        if keys is not None and not keys:
            return []
        state = self._sync()
        period = summaries.trend_period(since, state.hourly_from, state.oldest)
        # What the result depends on: the periods since the window's start, the last finished
        # period (a pass in a later hour finishes it), which workloads.
        key = (
            period,
            floor_to(math.floor(since), period),
            None if state.latest is None else floor_to(state.latest, HOUR),
            None if keys is None else frozenset(keys),
            kind,
        )
        found = self._trends.get(key)
        if found is None:
            # Trends of an earlier last period are over for good.
            for old in [k for k in self._trends if k[2] != key[2]]:
                del self._trends[old]
            found = self._trends[key] = self.store.trend(since, keys, kind)
        return list(found)

    def oldest_timestamp(self) -> float | None:
        """``HistoryStore.oldest_timestamp()``."""
        return self._sync().oldest

    # -- keeping up ------------------------------------------------------------------------

    def _sync(self) -> _State:
        """The state as of the store's latest write: the appended pass added, else reread."""
        changes = self.store.changes()
        state = self._state
        now = (changes.rewrites, changes.appends)
        if state is not None and state.synced == now:
            return state
        if (
            state is not None
            and changes.last is not None
            and now == (state.synced[0], state.synced[1] + 1)
        ):
            self._append(state, changes.last)
            state.synced = now
            return state
        with self.store.pinned() as pinned, self.store.reading() as conn:
            return self._reload(conn, pinned)

    def _reload(self, conn: sqlite3.Connection, changes: Changes) -> _State:
        """Everything read again from the file; the window and the trends dropped."""
        latest = conn.execute(
            "SELECT MAX(ts) FROM (SELECT MAX(ts) AS ts FROM host "
            "UNION ALL SELECT MAX(last_ts) FROM summary)"
        ).fetchone()[0]
        self._state = _State(
            synced=(changes.rewrites, changes.appends),
            hourly_from=summaries.hourly_from(conn),
            oldest=summaries.oldest_timestamp(conn),
            latest=None if latest is None else int(latest),
            names=summaries.workload_names(conn),
        )
        self._window = None
        self._trends.clear()
        return self._state

    def _read_window(
        self, conn: sqlite3.Connection, selection: summaries.Selection, percentile: float
    ) -> _Window:
        self.reads += 1
        return _Window(
            selection,
            percentile,
            summaries.spans(conn, selection),
            summaries.cpu_histograms(conn, selection),
        )

    def _append(self, state: _State, batch: Batch) -> None:
        """Move the state and the window on by one pass, as its writes moved the file on."""
        for key, wid in batch.wids.items():
            state.names[wid] = (*key, "")
        for wid, meta in batch.meta.items():
            kind, ext_id, _ = state.names[wid]
            state.names[wid] = (kind, ext_id, meta[0])
        hours = [start for period, start, _ in batch.periods if period == HOUR]
        if state.hourly_from is None and hours:
            state.hourly_from = min(hours)
        days = [(start, row.first) for (p, start, _), row in batch.periods.items() if p == DAY]
        if state.oldest is None and days:
            first_day = min(start for start, _ in days)
            state.oldest = float(min(first for start, first in days if start == first_day))
        if batch.hosts or batch.samples:
            newest = max([row[0] for row in batch.hosts] + [row[0] for row in batch.samples])
            state.latest = newest if state.latest is None else max(state.latest, newest)
        window = self._window
        if window is None:
            return
        renamed = set(batch.meta)
        for (period, start, wid), row in batch.periods.items():
            if not window.covers(period, start):
                continue
            span = window.spans.get(wid)
            if span is None:
                window.spans[wid] = summaries.Span(
                    row.first, row.last, row.memory, row.disk_first, row.disk_last
                )
            else:
                span.take(row.last, row.memory, row.disk_first, row.disk_last)
            counts = batch.hists.get((period, start, wid))
            if counts is not None:
                window.add_counts(wid, counts)
            window.found.pop(wid, None)
        for wid in renamed:
            window.found.pop(wid, None)
