"""Verdicts on whole runs: GO, NO-GO and insufficient evidence, with their reasons."""

from __future__ import annotations

import pytest

from compare import Criteria, RunNotFoundError, Status, Verdict, analyze
from cutover.events import EventKind, Flow
from tests.compare.factories import LedgerRun


def criterion(analysis, name: str):
    return next(result for result in analysis.criteria_results if result.name == name)


def test_correct_run_is_go(ledger: LedgerRun) -> None:
    ledger.good_orders(200)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)

    assert analysis.verdict == Verdict.GO
    assert analysis.exit_code == 0
    assert analysis.orders == 200
    assert analysis.compared_orders == 200
    assert all(result.status == Status.PASS for result in analysis.criteria_results)
    assert analysis.candidate.classes["closed"] == 200
    assert analysis.parity == 1.0


def test_correct_run_shows_legacy_open_gaps(ledger: LedgerRun) -> None:
    ledger.good_orders(200)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)

    assert analysis.legacy.open_gaps == 200
    assert analysis.legacy.open_gap_share == 1.0
    assert analysis.legacy.gap.min_ms == -75.0
    assert analysis.candidate.open_gaps == 0
    assert analysis.candidate.gap.min_ms == 5.0


def test_one_early_confirmation_in_200_is_no_go(ledger: LedgerRun) -> None:
    keys = ledger.good_orders(199)
    ledger.order("late-ack", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60)
    ledger.order("late-ack", Flow.CANDIDATE, received=1, submitted=10, confirmed=70, acked=71)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    open_gap = criterion(analysis, "no_open_gap")

    assert len(keys) + 1 == analysis.orders
    assert analysis.verdict == Verdict.NO_GO
    assert analysis.exit_code == 1
    assert open_gap.status == Status.FAIL
    assert open_gap.figure == 1
    assert open_gap.examples == ("late-ack",)
    assert analysis.order_rows(1)[0].order_key == "late-ack"


def test_fewer_than_min_orders_is_insufficient_evidence(ledger: LedgerRun) -> None:
    ledger.good_orders(99)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    enough = criterion(analysis, "enough_orders")

    assert analysis.verdict == Verdict.INSUFFICIENT_EVIDENCE
    assert analysis.exit_code == 2
    assert enough.status == Status.FAIL
    assert enough.figure == 99
    assert enough.threshold == 100


def test_confirmation_after_rejection_fails_critical(ledger: LedgerRun) -> None:
    ledger.good_orders(3)
    ledger.order("R", Flow.LEGACY, received=0, submitted=10, rejected=40)
    ledger.order("R", Flow.CANDIDATE, received=1, submitted=10, rejected=40, confirmed=45)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    open_gap = criterion(analysis, "no_open_gap")

    # Too few orders for a GO, but one confirmed rejection proves the fault.
    assert analysis.verdict == Verdict.NO_GO
    assert open_gap.critical
    assert open_gap.status == Status.FAIL
    assert open_gap.examples == ("R",)
    assert analysis.candidate.classes["confirmed_without_erp"] == 1
    assert analysis.candidate.gap.unbounded == 1


def test_two_acks_fail_duplicate_criterion(ledger: LedgerRun) -> None:
    ledger.good_orders(150)
    ledger.order("D", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60)
    ledger.order("D", Flow.CANDIDATE, received=1, submitted=[10, 20], acked=[50, 60],
                 confirmed=70)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    duplicate = criterion(analysis, "no_duplicate")

    assert analysis.verdict == Verdict.NO_GO
    assert duplicate.status == Status.FAIL
    assert duplicate.examples == ("D",)
    assert analysis.candidate.duplicate_acks == 1


def test_duplicate_confirmation_fails_duplicate_criterion(ledger: LedgerRun) -> None:
    ledger.good_orders(150)
    ledger.order("D", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60)
    ledger.order("D", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=[60, 61])
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)

    assert criterion(analysis, "no_duplicate").examples == ("D",)
    assert analysis.candidate.duplicate_confirmations == 1


def test_missing_in_candidate_is_no_go(ledger: LedgerRun) -> None:
    ledger.good_orders(150)
    ledger.order("M", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.order("M", Flow.CANDIDATE, received=1)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    missing = criterion(analysis, "no_missing_order")

    assert analysis.verdict == Verdict.NO_GO
    assert not missing.critical
    assert missing.examples == ("M",)
    assert analysis.missing_in_candidate == 1


def test_not_mirrored_is_excluded_but_counted(ledger: LedgerRun) -> None:
    ledger.good_orders(200)
    ledger.order("lost", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.event("lost", Flow.CANDIDATE, EventKind.MIRROR_DROPPED, 0)
    ledger.counter("mirror.dropped", 1)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)

    assert analysis.verdict == Verdict.GO
    assert analysis.orders == 201
    assert analysis.compared_orders == 200
    assert analysis.candidate.classes["not_mirrored"] == 1
    assert analysis.evidence["orders_not_mirrored"] == 1
    assert analysis.evidence["mirror_dropped_events"] == 1
    assert analysis.counters["mirror.dropped"] == 1
    assert criterion(analysis, "evidence_loss").examples == ("lost",)


def test_many_orders_not_mirrored_is_insufficient_evidence(ledger: LedgerRun) -> None:
    ledger.good_orders(100)
    for index in range(5):
        key = f"lost-{index}"
        ledger.order(key, Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60)
        ledger.event(key, Flow.CANDIDATE, EventKind.MIRROR_FAILED, 0)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    loss = criterion(analysis, "evidence_loss")

    assert analysis.verdict == Verdict.INSUFFICIENT_EVIDENCE
    assert loss.status == Status.FAIL
    assert loss.figure == pytest.approx(5 / 105, abs=1e-6)


def test_unknown_run_names_runs_present(ledger: LedgerRun) -> None:
    with pytest.raises(RunNotFoundError, match=r"Run 'nope' not found in the ledger at "
                                                r"sqlite:///.*ledger\.sqlite; runs present .*run-1"):
        analyze(ledger.engine, "nope")


@pytest.mark.parametrize(
    "settings, message",
    [
        pytest.param({"min_orders": 0}, "min_orders must be at least 1", id="min-orders"),
        pytest.param({"min_parity": 99.9}, "min_parity must be a share", id="parity-percent"),
        pytest.param({"max_missing": -1}, "max_missing must be 0 or more", id="negative"),
    ],
)
def test_criteria_reject_invalid_thresholds(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Criteria(**settings)
