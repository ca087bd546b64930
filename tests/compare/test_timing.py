"""Latency percentiles and gap distributions against hand-computed values."""

from __future__ import annotations

import random

import pytest

from compare import Criteria, analyze
from compare.timing import GapRecorder, LatencyRecorder
from cutover.events import Flow
from tests.compare.factories import LedgerRun

# HDR histograms keep 3 significant digits.
HDR = 1e-3


def test_latency_percentiles_from_ledger(ledger: LedgerRun) -> None:
    # Candidate acks 1..100 ms after its webhook, confirmations 1 ms later.
    for index in range(100):
        start = index * 1000.0
        ledger.order(f"L{index:03d}", Flow.CANDIDATE, received=start, submitted=start,
                     acked=start + index + 1, confirmed=start + index + 2)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(min_orders=1))
    to_ack = analysis.candidate.webhook_to_ack
    to_confirmation = analysis.candidate.webhook_to_confirmation

    assert to_ack.count == 100
    assert to_ack.p50_ms == pytest.approx(50, rel=HDR)
    assert to_ack.p95_ms == pytest.approx(95, rel=HDR)
    assert to_ack.p99_ms == pytest.approx(99, rel=HDR)
    assert to_ack.max_ms == 100.0
    assert to_confirmation.max_ms == 101.0
    assert analysis.candidate.gap.min_ms == 1.0
    assert analysis.candidate.gap.max_ms == 1.0
    assert analysis.legacy.webhook_to_ack.count == 0


def test_gap_stats_mix_open_and_closed() -> None:
    gaps = GapRecorder()
    for gap in (-3.0, -2.0, -1.0, 5.0, 7.0):
        gaps.record(gap)
    gaps.record_unbounded()

    stats = gaps.stats()

    assert stats.measured == 5
    assert stats.min_ms == -3.0
    assert stats.p50_ms == -1.0
    assert stats.max_ms == 7.0
    assert stats.open == 3
    assert stats.unbounded == 1


def test_gap_stats_only_open() -> None:
    gaps = GapRecorder()
    for gap in (-10.0, -20.0):
        gaps.record(gap)

    stats = gaps.stats()

    assert stats.min_ms == -20.0
    assert stats.p50_ms == -20.0
    assert stats.max_ms == -10.0


def test_gap_stats_empty() -> None:
    stats = GapRecorder().stats()

    assert stats.measured == 0
    assert stats.p50_ms is None


def test_latency_before_webhook_is_counted_not_recorded() -> None:
    latency = LatencyRecorder()
    latency.record(5_000_000, 1_000_000)
    latency.record(None, 1_000_000)
    latency.record(0, 2_000_000)

    stats = latency.stats()

    assert stats.count == 1
    assert stats.before_webhook == 1
    assert stats.max_ms == 2.0


def test_bucketed_recording_builds_the_same_hdr_histogram() -> None:
    """Counting per bucket first gives the histogram that recording each value gives."""
    from hdrh.histogram import HdrHistogram

    from compare.timing import HIGHEST_TRACKABLE_MS, _Histogram

    rng = random.Random(11)
    values_ms = [0.0, 0.001, 2.047, 2.048, 2.049, 4.095, 4.096, 1000.0, HIGHEST_TRACKABLE_MS * 2.0]
    values_ms += [rng.expovariate(1 / 50) for _ in range(5000)]
    values_ms += [rng.uniform(0, 10**7) for _ in range(500)]

    bucketed = _Histogram()
    direct = HdrHistogram(1, HIGHEST_TRACKABLE_MS * 1000, 3)
    for value in values_ms:
        bucketed.record(value)
        direct.record_value(min(round(value * 1000), HIGHEST_TRACKABLE_MS * 1000))

    histogram = bucketed.histogram()
    assert list(histogram.counts[:histogram.counts_len]) == list(direct.counts[:direct.counts_len])
    assert histogram.total_count == direct.total_count == len(values_ms)
    expected = [(min(max(item.value_iterated_to / 1000, min(values_ms)), max(values_ms)),
                 item.count_at_value_iterated_to) for item in direct.get_recorded_iterator()]
    assert bucketed.distribution() == expected
