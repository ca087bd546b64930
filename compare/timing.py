"""Latency and gap distributions, kept in HDR histograms.

Values are recorded in microseconds with 3 significant digits, so a
percentile is within 0.1 % of the exact value. Minimum and maximum are kept
exactly. Values above `HIGHEST_TRACKABLE_MS` (7 days) are recorded as that
value, which caps the percentiles but not the maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

__all__ = [
    "HIGHEST_TRACKABLE_MS",
    "Distribution",
    "GapRecorder",
    "GapStats",
    "LatencyRecorder",
    "LatencyStats",
]

# (value in ms, number of values) pairs in ascending value order. Each value
# is the upper end of an HDR bucket, so values within 0.1 % share a pair.
Distribution = list[tuple[float, int]]

HIGHEST_TRACKABLE_MS = 7 * 24 * 3600 * 1000
_SIGNIFICANT_DIGITS = 3
_US_PER_MS = 1000
_HIGHEST_US = HIGHEST_TRACKABLE_MS * _US_PER_MS


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles in ms of one latency over the orders where it was measured."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    # Orders whose end event came before their webhook, for example when
    # proxies with skewed wall clocks recorded them. They are not recorded.
    before_webhook: int = 0


@dataclass(frozen=True)
class GapStats:
    """Distribution in ms of the confirmation-minus-acknowledgement gap."""

    measured: int
    min_ms: float | None
    p50_ms: float | None
    max_ms: float | None
    # Orders confirmed before the acknowledgement (negative gap).
    open: int
    # Orders confirmed with no acknowledgement at all: open without bound,
    # and not part of the other figures.
    unbounded: int


class _Histogram:
    """An HDR histogram of non-negative ms values with exact minimum and maximum.

    Values are counted per HDR bucket in a dict first and added to the HDR
    histogram, bucket by bucket, when it is read. The hdrh package records
    in pure Python, at about a microsecond a value, and a dict increment is
    several times cheaper. The dict has at most one entry per bucket, so
    memory stays bounded. The histogram read is the one recording each
    value would have built.
    """

    def __init__(self) -> None:
        self._histogram = HdrHistogram(1, HIGHEST_TRACKABLE_MS * _US_PER_MS, _SIGNIFICANT_DIGITS)
        # A value's bucket is its top bits: the value with its lowest `shift`
        # bits cleared, where shift grows with the value's bit length.
        histogram = self._histogram
        self._mask = histogram.sub_bucket_mask
        self._bits = histogram.sub_bucket_half_count_magnitude + 1 + histogram.unit_magnitude
        self._pending: dict[int, int] = {}
        self.count = 0
        self.min_ms = math.inf
        self.max_ms = -math.inf

    def record(self, value_ms: float) -> None:
        micros = round(value_ms * _US_PER_MS)
        if micros > _HIGHEST_US:
            micros = _HIGHEST_US
        shift = (micros | self._mask).bit_length() - self._bits
        lowest = micros >> shift << shift
        pending = self._pending
        pending[lowest] = pending.get(lowest, 0) + 1
        self.count += 1
        if value_ms < self.min_ms:
            self.min_ms = value_ms
        if value_ms > self.max_ms:
            self.max_ms = value_ms

    def merge(self, other: _Histogram) -> None:
        """Add the values another histogram recorded."""
        pending = self._pending
        for value, count in other._bucket_counts().items():
            pending[value] = pending.get(value, 0) + count
        self.count += other.count
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)

    def _bucket_counts(self) -> dict[int, int]:
        """Return every value recorded so far as counts per bucket's lowest value."""
        histogram = self._histogram
        counts = dict(self._pending)
        if histogram.total_count:
            for index, count in enumerate(histogram.counts[:histogram.counts_len]):
                if count:
                    value = histogram.get_value_from_index(index)
                    counts[value] = counts.get(value, 0) + count
        return counts

    def __getstate__(self) -> dict[str, object]:
        # hdrh's histogram keeps its counts in ctypes buffers, which don't
        # pickle, so a histogram leaves a worker process as its bucket counts.
        return {"pending": self._bucket_counts(), "count": self.count,
                "min_ms": self.min_ms, "max_ms": self.max_ms}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()
        self._pending = dict(state["pending"])
        self.count, self.min_ms, self.max_ms = state["count"], state["min_ms"], state["max_ms"]

    def histogram(self) -> HdrHistogram:
        """Return the HDR histogram with every value recorded so far."""
        histogram = self._histogram
        for value, count in self._pending.items():
            histogram.record_value(value, count)
        self._pending.clear()
        return histogram

    def distribution(self) -> Distribution:
        """Return the recorded values, bucketed, in ascending order."""
        if not self.count:
            return []
        histogram = self.histogram()
        counts = histogram.counts
        # Each non-empty bucket at the upper end of its value range, as
        # hdrh's recorded-values iterator gives it, without its per-bucket cost.
        return [
            (min(max(histogram.get_highest_equivalent_value(histogram.get_value_from_index(index))
                     / _US_PER_MS, self.min_ms), self.max_ms), count)
            for index, count in enumerate(counts[:histogram.counts_len]) if count
        ]

    def percentile(self, percentile: float) -> float:
        """Return the value at `percentile`, clamped to the exact range seen."""
        value = self.histogram().get_value_at_percentile(percentile) / _US_PER_MS
        return min(max(value, self.min_ms), self.max_ms)


class LatencyRecorder:
    def __init__(self) -> None:
        self._histogram = _Histogram()
        self._before_webhook = 0

    def record(self, start_ns: int | None, end_ns: int | None) -> None:
        """Record end minus start; skip the order when either time is missing."""
        if start_ns is None or end_ns is None:
            return
        if end_ns < start_ns:
            self._before_webhook += 1
            return
        self._histogram.record((end_ns - start_ns) / 1e6)

    def distribution(self) -> Distribution:
        return self._histogram.distribution()

    def merge(self, other: LatencyRecorder) -> None:
        """Add the latencies another recorder recorded."""
        self._histogram.merge(other._histogram)
        self._before_webhook += other._before_webhook

    def stats(self) -> LatencyStats:
        histogram = self._histogram
        if not histogram.count:
            return LatencyStats(0, None, None, None, None, self._before_webhook)
        return LatencyStats(
            count=histogram.count,
            p50_ms=_round(histogram.percentile(50)),
            p95_ms=_round(histogram.percentile(95)),
            p99_ms=_round(histogram.percentile(99)),
            max_ms=_round(histogram.max_ms),
            before_webhook=self._before_webhook,
        )


class GapRecorder:
    """Gaps of one flow; negative gaps go to a histogram of their magnitude."""

    def __init__(self) -> None:
        self._negative = _Histogram()
        self._non_negative = _Histogram()
        self._unbounded = 0

    def record(self, gap_ms: float) -> None:
        if gap_ms < 0:
            self._negative.record(-gap_ms)
        else:
            self._non_negative.record(gap_ms)

    def record_unbounded(self) -> None:
        self._unbounded += 1

    def merge(self, other: GapRecorder) -> None:
        """Add the gaps another recorder recorded."""
        self._negative.merge(other._negative)
        self._non_negative.merge(other._non_negative)
        self._unbounded += other._unbounded

    def distribution(self) -> Distribution:
        """Return the measured gaps, negative ones included, in ascending order."""
        negative = [(-value, count) for value, count in reversed(self._negative.distribution())]
        return negative + self._non_negative.distribution()

    def stats(self) -> GapStats:
        negative, non_negative = self._negative, self._non_negative
        measured = negative.count + non_negative.count
        if not measured:
            return GapStats(0, None, None, None, 0, self._unbounded)

        minimum = -negative.max_ms if negative.count else non_negative.min_ms
        maximum = non_negative.max_ms if non_negative.count else -negative.min_ms
        return GapStats(
            measured=measured,
            min_ms=_round(minimum),
            p50_ms=_round(self._percentile(50)),
            max_ms=_round(maximum),
            open=negative.count,
            unbounded=self._unbounded,
        )

    def _percentile(self, percentile: float) -> float:
        # The value of the rank-th smallest gap: the negative gaps come
        # first, largest magnitude first, then the non-negative ones.
        negative, non_negative = self._negative, self._non_negative
        rank = max(1, math.ceil(percentile / 100 * (negative.count + non_negative.count)))
        if rank <= negative.count:
            rank_in_magnitudes = negative.count - rank + 1
            return -negative.percentile(100 * rank_in_magnitudes / negative.count)
        rank_in_non_negative = rank - negative.count
        return non_negative.percentile(100 * rank_in_non_negative / non_negative.count)


def _round(value: float) -> float:
    return round(float(value), 3)
