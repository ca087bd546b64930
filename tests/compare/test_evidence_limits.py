"""Evidence the comparator must not call: gaps finer than clock skew, lost events."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from compare import Criteria, analyze
from cutover.events import Flow
from cutover.ledger import ProxyInstance
from tests.compare.factories import LedgerRun


def _register(ledger: LedgerRun, instance_id: str, offset_ms: float, uncertainty_ms: float) -> None:
    with Session(ledger.engine) as session:
        session.add(ProxyInstance(run_id=ledger.run_id, instance_id=instance_id, host_name="test",
                                  started_at=datetime(2024, 11, 29, tzinfo=UTC),
                                  clock_offset_ms=offset_ms, clock_uncertainty_ms=uncertainty_ms,
                                  clock_reference="test"))
        session.commit()


def _order_across_proxies(ledger: LedgerRun, key: str, confirmed_after_ack_ms: float) -> None:
    """The ack is seen by proxy-a and the confirmation by proxy-b."""
    ledger.order(key, Flow.LEGACY, received=0, confirmed=5, submitted=30, acked=80)
    ledger.order(key, Flow.CANDIDATE, received=1, submitted=10)
    ledger.event(key, Flow.CANDIDATE, "erp.acked", 40, instance_id="proxy-a", status=204)
    ledger.event(key, Flow.CANDIDATE, "confirmation.quarantined", 40 + confirmed_after_ack_ms,
                 instance_id="proxy-b")


def test_gap_within_skew_bound_is_insufficient_evidence(ledger):
    _register(ledger, "proxy-1", 0.0, 0.5)
    _register(ledger, "proxy-a", 1.0, 0.5)
    _register(ledger, "proxy-b", -1.0, 0.5)
    ledger.good_orders(5)
    # Confirmed 1 ms before the ack by the wall clocks, but the clocks may be
    # 3 ms apart: neither open nor closed can be called.
    _order_across_proxies(ledger, "skewed", -1.0)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, criteria=Criteria(min_orders=5))

    results = {result.name: result for result in analysis.criteria_results}
    assert results["gaps_resolvable"].status == "FAIL"
    assert results["gaps_resolvable"].examples == ("skewed",)
    assert "3.000 ms" in results["gaps_resolvable"].description
    assert results["no_open_gap"].status == "PASS"
    assert analysis.verdict == "INSUFFICIENT EVIDENCE"
    assert analysis.clock_skew is not None and analysis.clock_skew.bound_ms == 3.0


def test_gap_beyond_skew_bound_is_called_open(ledger):
    _register(ledger, "proxy-1", 0.0, 0.5)
    _register(ledger, "proxy-a", 1.0, 0.5)
    _register(ledger, "proxy-b", -1.0, 0.5)
    ledger.good_orders(5)
    _order_across_proxies(ledger, "early", -50.0)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, criteria=Criteria(min_orders=5))

    results = {result.name: result for result in analysis.criteria_results}
    assert "gaps_resolvable" not in results
    assert results["no_open_gap"].examples == ("early",)
    assert analysis.verdict == "NO-GO"


def test_events_lost_by_the_ledger_make_evidence_insufficient(ledger):
    ledger.good_orders(5)
    ledger.counter("ledger.lost", 3)
    ledger.counter("events.transform_failed", 1, instance_id="proxy-2")
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, criteria=Criteria(min_orders=5))

    results = {result.name: result for result in analysis.criteria_results}
    assert results["no_recording_loss"].status == "FAIL"
    assert results["no_recording_loss"].figure == 4
    assert "ledger.lost 3" in results["no_recording_loss"].description
    assert analysis.verdict == "INSUFFICIENT EVIDENCE"
