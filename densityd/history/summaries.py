"""The reads plans make of the history: per-workload summaries and the trend over a window.

A window ``[since, until]`` is read from the summary periods overlapping it: whole days from
the daily rows, a day the window only partly covers from its hourly rows while they are kept
(the last ``raw_seconds``), else from its daily row. So the window's start is rounded down to
the hour within the last 48 h and to the day (UTC) before; ``first_timestamp`` says where the
data really starts. Each function reads through one connection inside one read transaction
(``HistoryStore`` opens it), so all its queries see the same committed state.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from densityd.history.histogram import RateHistogram, histogram_at
from densityd.history.schema import DAY, HOUR, floor_to, host_sample
from densityd.model import HostSample, WorkloadKind
from densityd.plan.core.model import Resources, TrendPoint, WorkloadHistory

_FOREVER = 2**62


@dataclass(frozen=True, slots=True)
class Selection:
    """The summary periods one window is read from, in time order.

    ``ranges`` are ``(period, first start, last start)``, inclusive; ``days`` is the run of
    daily rows among them (``None``: none), for choosing how to sum the histograms.
    """

    ranges: tuple[tuple[int, int, int], ...]
    days: tuple[int, int] | None


def select_periods(since: float, until: float | None, hourly_from: int | None) -> Selection:
    """The periods overlapping ``[since, until]``: see the module docstring for the rounding."""
    start = math.floor(since)
    end = None if until is None else math.floor(until)
    if end is not None and end < start:
        return Selection((), None)
    first_day = floor_to(start, DAY)
    last_day = None if end is None else floor_to(end, DAY)

    def hourly(moment: int) -> bool:
        return hourly_from is not None and hourly_from <= floor_to(moment, HOUR)

    starts_inside = start > first_day
    ends_inside = end is not None and last_day is not None and end < last_day + DAY - 1
    if end is not None and last_day == first_day:
        if (starts_inside or ends_inside) and hourly(start):
            return Selection(((HOUR, floor_to(start, HOUR), floor_to(end, HOUR)),), None)
        return Selection(((DAY, first_day, first_day),), (first_day, first_day))
    head: list[tuple[int, int, int]] = []
    tail: list[tuple[int, int, int]] = []
    day_lo, day_hi = first_day, _FOREVER if last_day is None else last_day
    if starts_inside and hourly(start):
        head.append((HOUR, floor_to(start, HOUR), first_day + DAY - HOUR))
        day_lo += DAY
    if end is not None and last_day is not None and ends_inside and hourly(last_day):
        tail.append((HOUR, last_day, floor_to(end, HOUR)))
        day_hi -= DAY
    if day_lo > day_hi:
        return Selection((*head, *tail), None)
    return Selection((*head, (DAY, day_lo, day_hi), *tail), (day_lo, day_hi))


@dataclass(slots=True)
class Span:
    """One workload's summary over a window, merged from its period rows."""

    first: int
    last: int
    memory: int | None
    disk_first: int | None
    disk_last: int | None

    def take(
        self, last: int, memory: int | None, disk_first: int | None, disk_last: int | None
    ) -> None:
        """Take in a later period row of the same workload (rows come in time order)."""
        self.last = last
        if memory is not None and (self.memory is None or memory > self.memory):
            self.memory = memory
        if self.disk_first is None:
            self.disk_first = disk_first
        if disk_last is not None:
            self.disk_last = disk_last


def _float(value: int | None) -> float | None:
    """``value`` as a float, ``None`` kept."""
    return None if value is None else float(value)


def workload_history(
    conn: sqlite3.Connection, since: float, percentile: float = 0.95, until: float | None = None
) -> dict[tuple[str, str], WorkloadHistory]:
    """Per workload (keyed ``(kind, id)``) what it used over the window ``[since, until]``.

    ``cpu_rate_percentile`` is the ``percentile`` (a fraction in (0, 1]) of the CPU rate
    between consecutive passes, within ``RATE_ACCURACY``; the window is rounded outwards
    to whole hours (last ``raw_seconds``) or days (before), as the module docstring says.
    """
    if not 0 < percentile <= 1:
        raise ValueError(f"percentile must be in (0, 1], got {percentile}")
    selection = select_periods(since, until, hourly_from(conn))
    merged = spans(conn, selection)
    rates = cpu_histograms(conn, selection)
    names = workload_names(conn)
    found: dict[tuple[str, str], WorkloadHistory] = {}
    for wid, span in merged.items():
        hist = rates.get(wid)
        rate = None if hist is None else hist.percentile(percentile)
        item = workload_item(names.get(wid), span, rate)
        if item is not None:
            found[(item.kind.value, item.id)] = item
    return found


def workload_item(
    named: tuple[str, str, str] | None,
    span: Span,
    cpu_rate_percentile: float | None,
) -> WorkloadHistory | None:
    """One workload's ``WorkloadHistory`` from its merged rows; ``None`` for a wid unnamed."""
    if named is None:
        return None
    kind, ext_id, name = named
    return WorkloadHistory(
        kind=WorkloadKind(kind),
        id=ext_id,
        name=name,
        first_timestamp=float(span.first),
        last_timestamp=float(span.last),
        cpu_rate_percentile=cpu_rate_percentile,
        memory_max=_float(span.memory),
        disk_first=_float(span.disk_first),
        disk_last=_float(span.disk_last),
    )


def trend(
    conn: sqlite3.Connection,
    since: float,
    keys: Collection[tuple[str, str]] | None = None,
    kind: str | None = None,
) -> list[TrendPoint]:
    """Total demand per summary period since ``since``, over ``keys`` (all if ``None``) of
    ``kind`` (all kinds if ``None``).

    Per period (timestamp = its start): ``cpu`` the sum of the workloads' mean CPU rates,
    ``memory`` the sum of their maxima, ``disk`` the sum of their last disk bytes, each
    weighted by the share of the period's passes the workload was in. Sorted
    by time. The periods are hours when the hourly rows hold all the data since ``since``
    (a window within the last 48 h, or a younger history), else days: one size for all
    points, as a daily maximum is no point on the same curve as an hourly one. The period
    still under way is left out: its maximum so far is low early in the period, so it would
    make the trend rise and fall with the time of day.
    """
    if keys is not None and not keys:
        return []
    period = trend_period(since, hourly_from(conn), _oldest(conn))
    condition = ""
    params: list[int | str] = [period, math.floor(since) - period]
    if keys is not None or kind is not None:
        wanted = None if keys is None else {(str(k), ext_id) for k, ext_id in keys}
        wids = [
            wid
            for wid, (k, ext_id, _name) in workload_names(conn).items()
            if (wanted is None or (k, ext_id) in wanted) and (kind is None or k == kind)
        ]
        condition = "AND wid IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(wids))
    # Each workload counts for the share of the period's passes it was in (its weight): what
    # was in use at the same time, so six container IDs of a service redeployed six times a
    # day are one service's worth, not six.
    rows = conn.execute(
        "SELECT period_start, "
        "SUM(CASE WHEN cpu_span_ms > 0 THEN CAST(cpu_used_ms AS REAL) / cpu_span_ms * w END), "
        "SUM(memory_max * w), SUM(disk_last * w) "
        "FROM (SELECT s.*, COALESCE(MIN(1.0, CAST(s.samples AS REAL) / p.passes), 1.0) AS w "
        "FROM summary AS s LEFT JOIN passes AS p USING (period, period_start) "
        f"WHERE s.period = ? AND s.period_start > ? {condition}) "
        "GROUP BY period_start ORDER BY period_start",
        params,
    ).fetchall()
    # The latest pass (of the host, or of any workload): a period is over once a pass came at
    # or after its end.
    latest = conn.execute(
        "SELECT MAX(ts) FROM (SELECT MAX(ts) AS ts FROM host "
        "UNION ALL SELECT MAX(last_ts) FROM summary WHERE period = ? AND period_start >= ?)",
        (period, rows[-1][0] if rows else 0),
    ).fetchone()[0]
    rows = [row for row in rows if latest is not None and row[0] + period <= latest]
    return [
        TrendPoint(
            timestamp=float(start),
            demand=Resources(cpu=float(cpu or 0), memory=float(memory or 0), disk=float(disk or 0)),
        )
        for start, cpu, memory, disk in rows
    ]


def trend_period(since: float, hourly_from: int | None, oldest: float | None) -> int:
    """The period the trend since ``since`` is summed over: hours when the hourly rows hold
    all the data since then, else days (``trend``)."""
    start = max(since, oldest or since)
    return HOUR if hourly_from is not None and hourly_from <= floor_to(start, HOUR) else DAY


def host_history(conn: sqlite3.Connection, since: float) -> list[tuple[float, HostSample]]:
    """The host's capacity per pass (per 5 minutes, the worst case, past ``raw_seconds``)."""
    found: list[tuple[float, HostSample]] = []
    for table in ("host_5m", "host"):
        rows = conn.execute(
            "SELECT ts, cpu_cores, memory_bytes, memory_available_bytes, disks "
            f"FROM {table} WHERE ts >= ? ORDER BY ts",
            (math.floor(since),),
        )
        found.extend((float(ts), host_sample(*values)) for ts, *values in rows)
    found.sort(key=lambda item: item[0])
    return found


def oldest_timestamp(conn: sqlite3.Connection) -> float | None:
    """When the oldest pass still held was recorded; ``None`` for an empty history."""
    return _oldest(conn)


def hourly_from(conn: sqlite3.Connection) -> int | None:
    """The start of the oldest hourly row still kept; ``None`` when there is none."""
    row = conn.execute("SELECT MIN(period_start) FROM summary WHERE period = ?", (HOUR,))
    value = row.fetchone()[0]
    return None if value is None else int(value)


def workload_names(conn: sqlite3.Connection) -> dict[int, tuple[str, str, str]]:
    """Every workload's kind, ID and latest name, by wid."""
    rows = conn.execute("SELECT wid, kind, ext_id, name FROM workloads")
    return {wid: (kind, ext_id, name) for wid, kind, ext_id, name in rows}


def spans(conn: sqlite3.Connection, selection: Selection) -> dict[int, Span]:
    """Per wid its summary over the selected periods."""
    found: dict[int, Span] = {}
    # Range by range and row by row in time order, so first and last are what they say.
    for period, first, last in selection.ranges:
        rows = conn.execute(
            "SELECT wid, first_ts, last_ts, memory_max, disk_first, disk_last FROM summary "
            "WHERE period = ? AND period_start BETWEEN ? AND ? ORDER BY period_start",
            (period, first, last),
        )
        for wid, first_ts, last_ts, memory, disk_first, disk_last in rows:
            span = found.get(wid)
            if span is None:
                found[wid] = Span(first_ts, last_ts, memory, disk_first, disk_last)
            else:
                span.take(last_ts, memory, disk_first, disk_last)
    return found


def cpu_histograms(conn: sqlite3.Connection, selection: Selection) -> dict[int, RateHistogram]:
    """Per wid the CPU-rate histogram over the selected periods.

    When the window leaves out fewer days than it takes in, it is read as the totals
    minus the days left out: one blob per workload instead of one per workload and day.
    """
    hists: dict[int, RateHistogram] = {}
    ranges = [(period, first, last, 1) for period, first, last in selection.ranges]
    if selection.days is not None and _mostly_inside(conn, selection.days):
        for wid, blob in conn.execute("SELECT wid, counts FROM cpu_hist_total"):
            histogram_at(hists, wid).merge(blob)
        first, last = selection.days
        ranges = [r for r in ranges if r[0] == HOUR]
        ranges += [(DAY, -_FOREVER, first - DAY, -1), (DAY, last + DAY, _FOREVER, -1)]
    for period, first, last, sign in ranges:
        rows = conn.execute(
            "SELECT wid, counts FROM cpu_hist WHERE period = ? AND period_start BETWEEN ? AND ?",
            (period, first, last),
        )
        for wid, blob in rows:
            histogram_at(hists, wid).merge(blob, sign)
    return hists


def _mostly_inside(conn: sqlite3.Connection, days: tuple[int, int]) -> bool:
    """Whether the run of days holds more of the stored days than it leaves out."""
    # Two subqueries: SQLite answers a lone MIN or MAX from the index, not both at once.
    oldest, newest = conn.execute(
        "SELECT (SELECT MIN(period_start) FROM summary WHERE period = ?1), "
        "(SELECT MAX(period_start) FROM summary WHERE period = ?1)",
        (DAY,),
    ).fetchone()
    if oldest is None:
        return False
    stored = (newest - oldest) // DAY + 1
    inside = max(0, (min(newest, days[1]) - max(oldest, days[0])) // DAY + 1)
    return bool(inside > stored - inside)


def _oldest(conn: sqlite3.Connection) -> float | None:
    """The first timestamp of the oldest daily row (daily rows hold every pass)."""
    value = conn.execute(
        "SELECT MIN(first_ts) FROM summary WHERE period = ?1 AND period_start = "
        "(SELECT MIN(period_start) FROM summary WHERE period = ?1)",
        (DAY,),
    ).fetchone()[0]
    return None if value is None else float(value)
