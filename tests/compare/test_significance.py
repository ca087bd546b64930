"""Known results of the Mann-Whitney U test and Cliff's delta, and their use per stage."""

from __future__ import annotations

import math

import pytest

from compare import Criteria, analyze
from compare.significance import compare_distributions
from cutover.events import Flow
from tests.compare.factories import LedgerRun


def sample(*values: float) -> list[tuple[float, int]]:
    return [(value, 1) for value in values]


def test_disjoint_samples_have_delta_one() -> None:
    result = compare_distributions(sample(1, 2, 3), sample(4, 5, 6))

    assert result is not None
    assert result.u == 9.0
    assert result.cliffs_delta == 1.0
    assert result.magnitude == "large"
    assert result.direction == "candidate slower"
    # z = (9 - 4.5 - 0.5) / sqrt(9 * 7 / 12)
    assert result.z == pytest.approx(4 / math.sqrt(63 / 12), abs=1e-4)


def test_ties_use_mean_ranks_and_tie_correction() -> None:
    # Hand-computed: U = 53.5; three tied pairs give sum(t^3 - t) = 18, so
    # var = 8 * 8 / 12 * (17 - 18 / 240) = 90.2667 and z = 21 / 9.5009.
    result = compare_distributions(sample(1, 2, 3, 4, 5, 6, 7, 8),
                                   sample(3, 5, 7, 9, 11, 13, 15, 17))

    assert result is not None
    assert result.u == 53.5
    assert result.z == pytest.approx(2.2103, abs=1e-4)
    assert result.p_value == pytest.approx(0.02708, abs=1e-4)
    assert result.cliffs_delta == pytest.approx(2 * 53.5 / 64 - 1, abs=1e-4)


def test_counts_weigh_like_repeated_values() -> None:
    weighted = compare_distributions([(1.0, 3), (2.0, 1)], [(2.0, 2), (5.0, 2)])
    repeated = compare_distributions(sample(1, 1, 1, 2), sample(2, 2, 5, 5))

    assert weighted == repeated


def test_all_values_tied_has_no_difference() -> None:
    result = compare_distributions(sample(5, 5), sample(5, 5, 5))

    assert result is not None
    assert result.p_value == 1.0
    assert result.cliffs_delta == 0.0
    assert result.direction == "no difference"


def test_empty_side_gives_none() -> None:
    assert compare_distributions([], sample(1)) is None


def test_stage_comparison_from_ledger(ledger: LedgerRun) -> None:
    # Legacy acks 80 ms after the webhook, the candidate 39 ms after its copy.
    ledger.good_orders(30)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(min_orders=1))
    to_ack = analysis.timing_comparisons["webhook_to_ack"]
    to_submission = analysis.timing_comparisons["webhook_to_submission"]

    assert to_ack is not None
    assert to_ack.cliffs_delta == -1.0
    assert to_ack.direction == "candidate faster"
    assert to_ack.p_value < 1e-6
    assert to_submission is not None and to_submission.legacy_count == 30
    assert analysis.candidate.webhook_to_submission.p50_ms == 9.0
    assert analysis.legacy.webhook_to_submission.p50_ms == 30.0


def test_stage_without_legacy_values_is_none(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, confirmed=5)
    ledger.order("A", Flow.CANDIDATE, received=1, submitted=10, acked=40, confirmed=45)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(min_orders=1))

    assert analysis.timing_comparisons["webhook_to_ack"] is None
    assert analysis.timing_comparisons["webhook_to_confirmation"] is not None
