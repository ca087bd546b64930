"""Known-answer tests of the per-order classes and gaps, read back from a real ledger."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from compare import Criteria, OrderClass, analyze, inspect_order
from cutover.events import EventKind, Flow
from cutover.ledger import Event
from tests.compare.factories import LedgerRun

SMALL_RUN = Criteria(min_orders=1)


def inspect(ledger: LedgerRun, key: str):
    ledger.commit()
    row = inspect_order(ledger.engine, ledger.run_id, key)
    assert row is not None
    return row


def test_confirmation_after_ack_is_closed(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.CANDIDATE, received=0, submitted=10, acked=100, confirmed=150)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.CLOSED
    assert row.candidate_gap_ms == 50.0
    assert row.severity is not None  # the legacy flow never saw it


def test_ack_one_ms_after_confirmation_is_open(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.CANDIDATE, received=0, submitted=10, confirmed=99, acked=100)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.OPEN
    assert row.candidate_gap_ms == -1.0
    assert "candidate confirmed 1 ms before the ERP acknowledgement" in row.issues


def test_clock_tie_is_closed(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, submitted=10, acked=100, confirmed=100)

    row = inspect(ledger, "A")

    assert row.legacy == OrderClass.CLOSED
    assert row.legacy_gap_ms == 0.0


def test_confirmation_without_ack_is_confirmed_without_erp(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.CANDIDATE, received=0, submitted=10, confirmed=20)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.CONFIRMED_WITHOUT_ERP
    assert row.candidate_gap_ms is None


def test_pending_notice_before_ack_stays_closed(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.CANDIDATE, received=0, submitted=10, pending_notice=2000,
                 acked=2500, confirmed=2510)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.CLOSED
    assert row.candidate_gap_ms == 10.0


def test_confirmation_after_rejection_is_confirmed_without_erp(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.CANDIDATE, received=0, submitted=10, rejected=50, confirmed=60)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.CONFIRMED_WITHOUT_ERP
    assert "candidate confirmed without ERP acknowledgement after a rejection" in row.issues


def test_rejection_without_confirmation_is_rejected(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, submitted=10, rejected=50)

    assert inspect(ledger, "A").legacy == OrderClass.REJECTED


def test_ack_without_confirmation_is_acked_unconfirmed(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, submitted=10, acked=50)

    assert inspect(ledger, "A").legacy == OrderClass.ACKED_UNCONFIRMED


def test_throttled_only_is_pending(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, submitted=10, throttled=20)

    row = inspect(ledger, "A")

    assert row.legacy == OrderClass.PENDING
    assert row.candidate == OrderClass.NOT_RECEIVED


def test_rejection_then_ack_then_confirmation_is_closed(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.CANDIDATE, received=0, submitted=[10, 300], rejected=50,
                 acked=400, confirmed=410)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.CLOSED
    assert row.candidate_gap_ms == 10.0


def test_events_inserted_out_of_order(ledger: LedgerRun) -> None:
    # The confirmation row goes into the ledger first, the webhook last; the
    # monotonic times still put the confirmation 1 ms before the ack.
    ledger.event("A", Flow.CANDIDATE, EventKind.CONFIRMATION_QUARANTINED, 99)
    ledger.event("A", Flow.CANDIDATE, EventKind.ERP_ACKED, 100, status=204)
    ledger.event("A", Flow.CANDIDATE, EventKind.ERP_SUBMITTED, 10, snapshot="{}")
    ledger.event("A", Flow.CANDIDATE, EventKind.MIRROR_SENT, 0)
    ledger.event("B", Flow.CANDIDATE, EventKind.ERP_ACKED, 100, status=204)
    ledger.event("B", Flow.CANDIDATE, EventKind.CONFIRMATION_QUARANTINED, 101)
    ledger.event("B", Flow.CANDIDATE, EventKind.MIRROR_SENT, 0)
    ledger.commit()

    a = inspect_order(ledger.engine, ledger.run_id, "A")
    b = inspect_order(ledger.engine, ledger.run_id, "B")

    assert a is not None and b is not None
    assert a.candidate == OrderClass.OPEN
    assert a.candidate_gap_ms == -1.0
    assert b.candidate == OrderClass.CLOSED
    assert b.candidate_gap_ms == 1.0


def test_snapshot_is_last_submission_before_first_ack(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60,
                 snapshot='{"attempt": 2}')
    ledger.order("A", Flow.CANDIDATE, received=0, acked=50, confirmed=60)
    ledger.event("A", Flow.CANDIDATE, EventKind.ERP_SUBMITTED, 5, snapshot='{"attempt": 1}')
    ledger.event("A", Flow.CANDIDATE, EventKind.ERP_SUBMITTED, 10, snapshot='{"attempt": 2}')
    # Submitted again after the ack: not the acknowledged payload.
    ledger.event("A", Flow.CANDIDATE, EventKind.ERP_SUBMITTED, 70, snapshot='{"attempt": 3}')

    row = inspect(ledger, "A")

    assert row.payload is not None
    assert row.payload.equal


def test_mirror_loss_is_not_mirrored(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60)
    ledger.event("A", Flow.CANDIDATE, EventKind.MIRROR_DROPPED, 0)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.NOT_MIRRORED
    assert not row.missing_in_candidate
    assert not row.compared


def test_failed_mirror_with_erp_activity_counts(ledger: LedgerRun) -> None:
    # A timed-out mirror may still have reached the candidate.
    ledger.event("A", Flow.CANDIDATE, EventKind.MIRROR_FAILED, 0,
                 detail=json.dumps({"reason": "timeout"}))
    ledger.order("A", Flow.CANDIDATE, submitted=10, acked=50, confirmed=40)

    assert inspect(ledger, "A").candidate == OrderClass.OPEN


def test_candidate_without_outcome_is_missing(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60)
    ledger.order("A", Flow.CANDIDATE, received=0, submitted=10, throttled=20)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.PENDING
    assert row.missing_in_candidate


def test_candidate_unconfirmed_where_legacy_confirmed_is_missing(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60)
    ledger.order("A", Flow.CANDIDATE, received=0, submitted=10, acked=50)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.ACKED_UNCONFIRMED
    assert row.missing_in_candidate


def test_candidate_rejected_like_legacy_is_not_missing(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, submitted=10, rejected=50)
    ledger.order("A", Flow.CANDIDATE, received=0, submitted=10, rejected=50)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.REJECTED
    assert not row.missing_in_candidate


def test_two_instances_are_timed_by_wall_clock(ledger: LedgerRun) -> None:
    # Instance 2's monotonic clock starts far ahead of instance 1's, so only
    # wall time can order these events.
    ledger.event("A", Flow.CANDIDATE, EventKind.MIRROR_SENT, 0, instance_id="proxy-1")
    ledger.event("A", Flow.CANDIDATE, EventKind.ERP_ACKED, 100, instance_id="proxy-1")
    ledger.event("A", Flow.CANDIDATE, EventKind.CONFIRMATION_QUARANTINED, 90,
                 instance_id="proxy-2")
    ledger.commit()
    with Session(ledger.engine) as session:
        event = session.exec(select(Event).where(Event.instance_id == "proxy-2")).one()
        event.mono_ns += 10**15
        session.add(event)
        session.commit()

    analysis = analyze(ledger.engine, ledger.run_id, SMALL_RUN)
    row = inspect_order(ledger.engine, ledger.run_id, "A")

    assert row is not None
    assert row.candidate == OrderClass.OPEN
    assert row.candidate_gap_ms == pytest.approx(-10.0)
    assert analysis.evidence["orders_timed_by_wall_clock"] == 1


def test_inspect_order_unknown_key_returns_none(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0)
    ledger.commit()

    assert inspect_order(ledger.engine, ledger.run_id, "nope") is None


def test_event_recorded_twice_counts_once(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, confirmed=5, submitted=30, acked=80)
    ledger.order("A", Flow.CANDIDATE, received=1, submitted=10, acked=40, confirmed=45)
    # The same ack and confirmation rows stored a second time.
    ledger.event("A", Flow.CANDIDATE, EventKind.ERP_ACKED, 40, status=204)
    ledger.event("A", Flow.CANDIDATE, EventKind.CONFIRMATION_QUARANTINED, 45)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, SMALL_RUN)
    row = inspect_order(ledger.engine, ledger.run_id, "A")

    assert row is not None
    assert row.candidate == OrderClass.CLOSED
    assert row.candidate_gap_ms == 5.0
    assert not row.candidate_duplicate_erp
    assert not row.candidate_duplicate_confirmation
    assert analysis.evidence["repeated_events"] == 2
    assert analysis.verdict == "GO"


def test_second_ack_at_another_time_is_duplicate(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.CANDIDATE, received=1, submitted=[10, 60], acked=[40, 70],
                 confirmed=45)

    row = inspect(ledger, "A")

    assert row.candidate == OrderClass.CLOSED
    assert row.candidate_gap_ms == 5.0
    assert row.candidate_duplicate_erp
    assert "candidate got 2 ERP acknowledgements" in row.issues


def test_no_ack_at_all_is_missing_and_unbounded(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, confirmed=5, submitted=30, acked=80)
    ledger.order("A", Flow.CANDIDATE, received=1, submitted=10, throttled=[20, 30])
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, SMALL_RUN)
    row = inspect_order(ledger.engine, ledger.run_id, "A")

    assert row is not None
    assert row.candidate == OrderClass.PENDING
    assert row.candidate_gap_ms is None
    assert row.missing_in_candidate
    assert analysis.verdict == "NO-GO"
    assert analysis.candidate.webhook_to_ack.count == 0


def test_confirmed_without_any_erp_answer_is_critical(ledger: LedgerRun) -> None:
    ledger.order("A", Flow.LEGACY, received=0, confirmed=5, submitted=30, acked=80)
    ledger.order("A", Flow.CANDIDATE, received=1, submitted=10, confirmed=50)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, SMALL_RUN)
    results = {result.name: result for result in analysis.criteria_results}

    assert analysis.verdict == "NO-GO"
    assert results["no_confirmation_without_erp"].status == "FAIL"
    assert results["no_confirmation_without_erp"].examples == ("A",)
    assert results["no_confirmation_after_rejection"].status == "PASS"
    assert analysis.candidate.gap.unbounded == 1
