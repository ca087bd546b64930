"""Verdicts on whole runs: GO, NO-GO and insufficient evidence, with their reasons."""

from __future__ import annotations

import pytest

from compare import Criteria, RunNotFoundError, Status, Verdict, analyze
from cutover.events import EventKind, Flow
from tests.compare.factories import LedgerRun, confirmation_email, sales_order


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
    after_rejection = criterion(analysis, "no_confirmation_after_rejection")
    assert after_rejection.critical
    assert after_rejection.status == Status.FAIL
    assert after_rejection.examples == ("R",)
    assert criterion(analysis, "no_confirmation_without_erp").status == Status.PASS
    assert analysis.candidate.classes["confirmed_without_erp"] == 1
    assert analysis.candidate.gap.unbounded == 1


def test_two_acks_fail_duplicate_criterion(ledger: LedgerRun) -> None:
    ledger.good_orders(150)
    ledger.order("D", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60)
    ledger.order("D", Flow.CANDIDATE, received=1, submitted=[10, 20], acked=[50, 60],
                 confirmed=70)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    duplicate = criterion(analysis, "no_duplicate_erp_order")

    assert analysis.verdict == Verdict.NO_GO
    assert duplicate.critical
    assert duplicate.status == Status.FAIL
    assert duplicate.examples == ("D",)
    assert analysis.candidate.duplicate_acks == 1


def test_duplicate_confirmation_fails_duplicate_criterion(ledger: LedgerRun) -> None:
    ledger.good_orders(150)
    ledger.order("D", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60)
    ledger.order("D", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=[60, 61])
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)

    duplicate = criterion(analysis, "no_duplicate_confirmation")
    assert analysis.verdict == Verdict.NO_GO
    assert not duplicate.critical
    assert duplicate.examples == ("D",)
    assert criterion(analysis, "no_duplicate_erp_order").status == Status.PASS
    assert analysis.candidate.duplicate_confirmations == 1


def test_missing_in_candidate_is_no_go(ledger: LedgerRun) -> None:
    ledger.good_orders(150)
    ledger.order("M", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.order("M", Flow.CANDIDATE, received=1)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    missing = criterion(analysis, "no_missing_order")

    assert analysis.verdict == Verdict.NO_GO
    assert missing.critical
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


def test_parity_between_thresholds_is_marginal_go(ledger: LedgerRun) -> None:
    ledger.good_orders(99)
    ledger.order("R", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.order("R", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=60,
                 snapshot=sales_order("R", (("7", 2, 20),)))
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(min_parity=0.99))
    parity = criterion(analysis, "erp_parity")

    # 99 of 100 equal: 0.99 meets min_parity but not marginal_parity (1.0).
    assert parity.figure == 0.99
    assert parity.status == Status.MARGINAL
    assert parity.passed
    assert parity.examples == ("R",)
    assert analysis.verdict == Verdict.GO
    assert analysis.marginal_criteria == [parity]


def test_parity_below_threshold_fails(ledger: LedgerRun) -> None:
    ledger.good_orders(98)
    for key in ("R1", "R2"):
        ledger.order(key, Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
        ledger.order(key, Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=60,
                     snapshot=sales_order(key, (("7", 2, 20),)))
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)

    assert criterion(analysis, "erp_parity").figure == 0.98
    assert criterion(analysis, "erp_parity").status == Status.FAIL
    assert analysis.verdict == Verdict.NO_GO


def test_rounded_price_fails_confirmation_parity(ledger: LedgerRun) -> None:
    ledger.good_orders(120)
    ledger.order("P", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5,
                 email=confirmation_email("P", (("7", 2, "19.90"),), total="39.80"))
    ledger.order("P", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=60,
                 email=confirmation_email("P", (("7", 2, "20.00"),), total="39.80"))
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    content = criterion(analysis, "confirmation_parity")

    assert content.status == Status.FAIL
    assert content.examples == ("P",)
    assert analysis.confirmation_pairs == 121
    assert "19.90" in analysis.confirmation_examples[0].difference
    assert criterion(analysis, "erp_parity").status == Status.PASS
    assert analysis.verdict == Verdict.NO_GO


def test_currency_change_fails_confirmation_parity(ledger: LedgerRun) -> None:
    ledger.good_orders(120)
    ledger.order("C", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.order("C", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=60,
                 email=confirmation_email("C", currency="USD"))
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)

    assert criterion(analysis, "confirmation_parity").examples == ("C",)


def test_too_few_hours_is_insufficient_evidence(ledger: LedgerRun) -> None:
    # 200 orders one second apart: 199 s from the first webhook to the last.
    ledger.good_orders(200)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(min_hours_covered=24))
    hours = criterion(analysis, "hours_covered")

    assert hours.status == Status.FAIL
    assert hours.evidence
    assert hours.figure == round(199 / 3600, 3)
    assert analysis.verdict == Verdict.INSUFFICIENT_EVIDENCE
    assert analysis.exit_code == 2


def test_no_burst_is_insufficient_evidence(ledger: LedgerRun) -> None:
    ledger.good_orders(200)
    ledger.commit()

    # One order a second is 60 a minute at most.
    calm = analyze(ledger.engine, ledger.run_id, Criteria(min_burst_orders_per_min=120))
    assert criterion(calm, "burst_seen").figure == 60.0
    assert calm.verdict == Verdict.INSUFFICIENT_EVIDENCE

    # 150 orders within 1.5 s, long after the calm ones.
    for index in range(150):
        ledger.good_order(f"burst-{index:03d}", start_ms=300_000 + index * 10)
    ledger.commit()
    bursty = analyze(ledger.engine, ledger.run_id, Criteria(min_burst_orders_per_min=120))
    assert criterion(bursty, "burst_seen").figure == 150.0
    assert criterion(bursty, "burst_seen").status == Status.PASS
    assert bursty.verdict == Verdict.GO


def test_critical_failure_beats_insufficient_evidence(ledger: LedgerRun) -> None:
    ledger.good_orders(5)
    ledger.order("M", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.order("M", Flow.CANDIDATE, received=1)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(min_hours_covered=24))

    assert criterion(analysis, "enough_orders").status == Status.FAIL
    assert criterion(analysis, "hours_covered").status == Status.FAIL
    assert analysis.verdict == Verdict.NO_GO


def test_late_confirmation_fails_sla(ledger: LedgerRun) -> None:
    ledger.good_orders(150)
    ledger.order("slow", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.order("slow", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=90_001)
    ledger.commit()

    strict = analyze(ledger.engine, ledger.run_id,
                     Criteria(confirmation_sla_ms=30_000, min_within_sla=1.0,
                              marginal_within_sla=1.0))
    sla = criterion(strict, "confirmation_sla")
    assert sla.status == Status.FAIL
    assert sla.examples == ("slow",)
    assert strict.verdict == Verdict.NO_GO

    # Default: 60 s, 99 % of orders; 150 of 151 is 99.3 %, short of 99.9 %.
    default = criterion(analyze(ledger.engine, ledger.run_id), "confirmation_sla")
    assert default.status == Status.MARGINAL


def test_candidate_ack_where_legacy_rejected_is_extra(ledger: LedgerRun) -> None:
    ledger.good_orders(150)
    ledger.order("X", Flow.LEGACY, received=0, submitted=10, rejected=50, confirmed=5)
    ledger.order("X", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=60)
    ledger.order("only-candidate", Flow.CANDIDATE, received=1, submitted=10, acked=50,
                 confirmed=60)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    extra = criterion(analysis, "no_extra_side_effect")

    assert extra.status == Status.FAIL
    assert not extra.critical
    assert set(extra.examples) == {"X", "only-candidate"}
    assert analysis.verdict == Verdict.NO_GO
