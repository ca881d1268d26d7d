"""The CPU-rate histogram the history keeps per workload and period: log buckets, one blob a row.

Bucket k >= 1 holds rates in (``ZERO_RATE`` * GAMMA**(k-1), ``ZERO_RATE`` * GAMMA**k] and reads
back as the value within ``RATE_ACCURACY`` (2.5 %) of all of them (DDSketch-style); rates below
``ZERO_RATE`` (1 millicore) go to bucket 0 and read back as 0. Any percentile over any window
is read back by adding up the window's blobs (``hist_merge``, also a SQL function).
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import TypeVar

if array("i").itemsize != 4:  # pragma: no cover - every platform densityd runs on
    raise ImportError("densityd.history needs a 4-byte C int")

# The CPU-rate histogram: bucket k >= 1 holds rates in (ZERO_RATE * GAMMA**(k-1),
# ZERO_RATE * GAMMA**k] and reads back as the value within RATE_ACCURACY of all of them.
RATE_ACCURACY = 0.025


ZERO_RATE = 0.001


_GAMMA = (1 + RATE_ACCURACY) / (1 - RATE_ACCURACY)


_LOG_GAMMA = math.log(_GAMMA)


_K = TypeVar("_K")


def rate_bucket(rate: float) -> int:
    """The histogram bucket of a CPU rate in cores: 0 below ``ZERO_RATE``, else 1, 2, ..."""
    if not rate >= ZERO_RATE:  # also NaN
        return 0
    return max(1, math.ceil(math.log(rate / ZERO_RATE) / _LOG_GAMMA))


def bucket_rate(bucket: int) -> float:
    """The rate a bucket reads back as: within ``RATE_ACCURACY`` of every rate it holds."""
    if bucket <= 0:
        return 0.0
    return float(ZERO_RATE * 2 * _GAMMA**bucket / (_GAMMA + 1))


def _pairs(blob: bytes | None) -> array[int]:
    """A histogram blob's values: bucket, count, bucket, count... (little-endian int32)."""
    values = array("i", blob or b"")
    if sys.byteorder == "big":  # pragma: no cover
        values.byteswap()
    return values


def _blob(values: array[int]) -> bytes:
    """The blob of ``_pairs`` values."""
    if sys.byteorder == "big":  # pragma: no cover
        values = array("i", values)
        values.byteswap()
    return values.tobytes()


class RateHistogram:
    """A sparse CPU-rate histogram: count per bucket.

    Its blob form (``cpu_hist.counts``, ``cpu_hist_total.counts``) is little-endian int32
    pairs ``bucket, count``, by bucket, without zero counts. A histogram read from one blob
    keeps that form until something is merged into it: a workload's totals then walk to a
    percentile without a Python loop over their buckets.
    """

    __slots__ = ("_counts", "_pairs")

    def __init__(self) -> None:
        self._pairs: array[int] | None = None
        self._counts: dict[int, int] = {}

    @classmethod
    def from_blob(cls, blob: bytes | None) -> RateHistogram:
        """Decode a blob (``None`` or empty: no counts)."""
        hist = cls()
        hist.merge(blob)
        return hist

    @property
    def counts(self) -> dict[int, int]:
        """The count per bucket."""
        if self._pairs is not None:
            self._counts = dict(zip(self._pairs[0::2], self._pairs[1::2], strict=True))
            self._pairs = None
        return self._counts

    def merge(self, blob: bytes | None, sign: int = 1) -> None:
        """Add (``sign`` 1) or take away (-1) the counts of a blob."""
        values = _pairs(blob)
        if sign > 0 and self._pairs is None and not self._counts:
            self._pairs = values
            return
        counts = self.counts
        for bucket, count in zip(values[0::2], values[1::2], strict=True):
            counts[bucket] = counts.get(bucket, 0) + sign * count

    def add(self, bucket: int, count: int = 1) -> None:
        """Add ``count`` to one bucket."""
        counts = self.counts
        counts[bucket] = counts.get(bucket, 0) + count

    def to_blob(self) -> bytes:
        """The blob form (empty when every count is zero)."""
        if self._pairs is not None:
            return _blob(self._pairs)
        values: array[int] = array("i")
        for bucket in sorted(self._counts):
            if count := self._counts[bucket]:
                values.extend((bucket, count))
        return _blob(values)

    def percentile(self, fraction: float) -> float | None:
        """The nearest-rank percentile (``fraction`` in (0, 1]); ``None`` without counts."""
        pairs = self._pairs
        if pairs is not None and (not pairs or min(pairs[1::2]) > 0):
            buckets: Sequence[int] = pairs[0::2]
            counts: Iterable[int] = pairs[1::2]
        else:
            # Counts below zero could only come from totals that drifted: they count as none.
            buckets = sorted(b for b, c in self.counts.items() if c > 0)
            counts = (self._counts[b] for b in buckets)
        cumulative = list(accumulate(counts))
        if not cumulative:
            return None
        # The small epsilon keeps 0.07 x 100 (= 7.000000000000001) at rank 7, not 8.
        rank = max(1, math.ceil(fraction * cumulative[-1] - 1e-9))
        return bucket_rate(buckets[bisect_left(cumulative, rank)])


class RunningPercentile:
    """One histogram's nearest-rank percentile, kept up to date as counts are added.

    ``RateHistogram.percentile`` walks every bucket; a live reader that adds one count per
    pass asks this instead, which moves in O(1) while the percentile stays in its bucket and
    walks again only when it leaves it. The answer is ``RateHistogram.percentile``'s.
    """

    __slots__ = ("_at", "_below", "_bucket", "_fraction", "_hist", "_total")

    def __init__(self, hist: RateHistogram, fraction: float) -> None:
        self._hist = hist
        self._fraction = fraction
        self._bucket: int | None = None
        self._below = self._at = self._total = 0
        self._walk()

    def _rank(self, total: int) -> int:
        return max(1, math.ceil(self._fraction * total - 1e-9))  # as ``percentile``

    def _walk(self) -> None:
        """Find the percentile's bucket and the counts below and in it."""
        counts = self._hist.counts
        positive = sorted((b, c) for b, c in counts.items() if c > 0)
        total = sum(c for _, c in positive)
        self._bucket, self._total = None, total
        if not total:
            return
        rank, below = self._rank(total), 0
        for bucket, count in positive:
            if below + count >= rank:
                self._bucket, self._below, self._at = bucket, below, count
                return
            below += count

    def add(self, bucket: int, count: int = 1) -> None:
        """Add ``count`` (> 0) to one bucket of the histogram, and move the percentile on."""
        counts = self._hist.counts
        before = counts.get(bucket, 0)
        counts[bucket] = before + count
        if before < 0 or self._bucket is None:
            self._walk()  # a drifted count or a first one: walk
            return
        self._total += count
        if bucket < self._bucket:
            self._below += count
        elif bucket == self._bucket:
            self._at += count
        if not self._below < self._rank(self._total) <= self._below + self._at:
            self._walk()

    def value(self) -> float | None:
        """The percentile, ``None`` without counts."""
        return None if self._bucket is None else bucket_rate(self._bucket)


def hist_merge(stored: bytes | None, change: bytes | None, sign: int) -> bytes:
    """SQL ``hist_merge(a, b, sign)``: the histogram blob ``a`` plus ``sign`` times ``b``."""
    values, delta = _pairs(stored), _pairs(change)
    if len(delta) == 2 and delta[1] > 0 and sign > 0:
        # The common case, per workload per pass: one bucket gains a count.
        buckets = values[0::2]
        index = bisect_left(buckets, delta[0])
        if index < len(buckets) and buckets[index] == delta[0]:
            values[2 * index + 1] += delta[1]
        else:
            values[2 * index : 2 * index] = delta
        return _blob(values)
    hist = RateHistogram.from_blob(stored)
    hist.merge(change, sign)
    return hist.to_blob()


def histogram_at(hists: dict[_K, RateHistogram], key: _K) -> RateHistogram:
    """The histogram under ``key``, a new empty one if there was none."""
    hist = hists.get(key)
    if hist is None:
        hist = hists[key] = RateHistogram()
    return hist
