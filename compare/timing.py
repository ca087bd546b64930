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
    """An HDR histogram of non-negative ms values with exact minimum and maximum."""

    def __init__(self) -> None:
        self._histogram = HdrHistogram(1, HIGHEST_TRACKABLE_MS * _US_PER_MS, _SIGNIFICANT_DIGITS)
        self.count = 0
        self.min_ms = math.inf
        self.max_ms = -math.inf

    def record(self, value_ms: float) -> None:
        micros = min(round(value_ms * _US_PER_MS), HIGHEST_TRACKABLE_MS * _US_PER_MS)
        self._histogram.record_value(micros)
        self.count += 1
        self.min_ms = min(self.min_ms, value_ms)
        self.max_ms = max(self.max_ms, value_ms)

    def distribution(self) -> Distribution:
        """Return the recorded values, bucketed, in ascending order."""
        if not self.count:
            return []
        return [
            (min(max(item.value_iterated_to / _US_PER_MS, self.min_ms), self.max_ms),
             item.count_at_value_iterated_to)
            for item in self._histogram.get_recorded_iterator()
        ]

    def percentile(self, percentile: float) -> float:
        """Return the value at `percentile`, clamped to the exact range seen."""
        value = self._histogram.get_value_at_percentile(percentile) / _US_PER_MS
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
