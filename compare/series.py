"""Counts over time in buckets that widen as the run grows, so memory stays bounded."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

__all__ = ["SeriesPoint", "TimeSeries"]

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class SeriesPoint:
    """One bucket: its start in seconds from the first event, and its counts by name."""

    start_s: float
    counts: dict[str, int]


class TimeSeries:
    """Named counts per time bucket; the bucket width doubles whenever there are too many buckets.

    Times are ns on one clock. Buckets are aligned to multiples of their
    width on that clock, not to the first time seen. So the buckets depend
    only on the times recorded, not on their order, and the series of two
    parts of a run merge into the series of the whole run.
    """

    def __init__(self, first_width_s: float = 1.0, max_buckets: int = 4096) -> None:
        self.width_ns = round(first_width_s * _NS_PER_S)
        self.max_buckets = max_buckets
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._buckets: dict[int, Counter[str]] = {}

    def add(self, at_ns: int, name: str, count: int = 1) -> None:
        if self.first_ns is None or at_ns < self.first_ns:
            self.first_ns = at_ns
        if self.last_ns is None or at_ns > self.last_ns:
            self.last_ns = at_ns
        index = at_ns // self.width_ns
        counts = self._buckets.get(index)
        if counts is None:
            counts = self._buckets[index] = Counter()
        counts[name] += count
        while len(self._buckets) > self.max_buckets:
            self._widen()

    def merge(self, other: TimeSeries) -> None:
        """Add the counts of another series recorded on the same clock with the same settings."""
        if other.first_ns is None:
            return
        while self.width_ns < other.width_ns:
            self._widen()
        factor = self.width_ns // other.width_ns
        for index, counts in other._buckets.items():
            self._buckets.setdefault(index // factor, Counter()).update(counts)
        self.first_ns = other.first_ns if self.first_ns is None else min(self.first_ns, other.first_ns)
        self.last_ns = other.last_ns if self.last_ns is None else max(self.last_ns, other.last_ns)
        while len(self._buckets) > self.max_buckets:
            self._widen()

    @property
    def span_s(self) -> float | None:
        """Seconds from the first to the last time recorded."""
        if self.first_ns is None or self.last_ns is None:
            return None
        return (self.last_ns - self.first_ns) / _NS_PER_S

    def peak_per_minute(self, name: str) -> float | None:
        """Return the highest count of `name` in a window of about a minute, per minute.

        The window is the whole number of buckets closest to 60 s. With
        buckets wider than a minute it is one bucket, so the figure is the
        mean rate in the busiest bucket, a lower bound of the real peak.
        """
        if not self._buckets:
            return None
        span = max(1, round(60 * _NS_PER_S / self.width_ns))
        indexes = sorted(index for index, counts in self._buckets.items() if counts[name])
        best = window = 0
        first = 0
        for index in indexes:
            window += self._buckets[index][name]
            while indexes[first] <= index - span:
                window -= self._buckets[indexes[first]][name]
                first += 1
            best = max(best, window)
        return best * 60 * _NS_PER_S / (span * self.width_ns)

    def points(self, max_points: int = 120) -> list[SeriesPoint]:
        """Return the buckets in time order, merged so that at most `max_points` remain.

        Each point starts at a whole number of its widths from the first bucket.
        """
        if not self._buckets:
            return []
        first = min(self._buckets)
        last = max(self._buckets) - first
        merge = max(1, -(-(last + 1) // max_points))
        merged: dict[int, Counter[str]] = {}
        for index in range(0, last + 1):
            counts = self._buckets.get(first + index)
            target = merged.setdefault(index // merge, Counter())
            if counts:
                target.update(counts)
        width_s = self.width_ns * merge / _NS_PER_S
        return [SeriesPoint(index * width_s, dict(counts)) for index, counts in sorted(merged.items())]

    def _widen(self) -> None:
        self.width_ns *= 2
        widened: dict[int, Counter[str]] = {}
        for index, counts in self._buckets.items():
            widened.setdefault(index // 2, Counter()).update(counts)
        self._buckets = widened
