"""Per-phase figures and accounting, from a real SQLite ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from cutover.ledger import Event, RunCounter, open_ledger, start_run
from loadtest.phases import SentOrder, analyze_phases, read_order_logs, read_timeline
from loadtest.shapes import Profile, Stage

RUN = "load-test-phases"
T0 = 1_790_000_000.0
PROFILE = Profile("two-step", (Stage("low", 10, 1, 1), Stage("high", 10, 5, 5)))


def _event(key, flow, kind, at_s, **extra) -> Event:
    return Event(run_id=RUN, order_key=key, flow=flow, kind=kind, instance_id="proxy-1",
                 wall_time=datetime.fromtimestamp(T0 + at_s, UTC), mono_ns=int((T0 + at_s) * 1e9), **extra)


def _legacy_open(key, at_s):
    return [
        _event(key, "legacy", "webhook.received", at_s),
        _event(key, "legacy", "confirmation.sent", at_s + 0.01),
        _event(key, "legacy", "erp.submitted", at_s + 2.5),
        _event(key, "legacy", "erp.acked", at_s + 3.0),
    ]


def _candidate_closed(key, at_s, *extra):
    return [
        _event(key, "candidate", "mirror.sent", at_s + 0.001, status=200),
        *extra,
        _event(key, "candidate", "erp.submitted", at_s + 0.1),
        _event(key, "candidate", "erp.acked", at_s + 0.2),
        _event(key, "candidate", "confirmation.quarantined", at_s + 0.21),
    ]


@pytest.fixture
def engine(sqlite_url):
    engine = open_ledger(sqlite_url)
    start_run(engine, RUN, "loadtest", {})
    events = [
        *_legacy_open("A", 2), *_candidate_closed("A", 2),
        *_legacy_open("B", 12),
        *_candidate_closed("B", 12, _event("B", "candidate", "erp.throttled", 12.05, status=429),
                           _event("B", "candidate", "pending_notice.quarantined", 12.08)),
        *_legacy_open("C", 13), _event("C", "candidate", "mirror.dropped", 13.001),
        *_legacy_open("F", 5), *_candidate_closed("F", 5),
    ]
    with Session(engine) as session:
        session.add_all(events)
        session.commit()
    return engine


def _sent():
    return [
        SentOrder("A", T0 + 1.99, 200, None),
        SentOrder("B", T0 + 11.99, 200, None),
        SentOrder("C", T0 + 12.99, 200, None),
        SentOrder("D", T0 + 14, 0, "ConnectionRefusedError"),
        SentOrder("E", T0 + 15, 200, None),
    ]


def _count(engine, name, value):
    with Session(engine) as session:
        session.add(RunCounter(run_id=RUN, instance_id="proxy-1", name=name, value=value))
        session.commit()


def test_orders_fall_into_phase_of_their_webhook(engine):
    figures = analyze_phases(engine, RUN, PROFILE, T0, _sent())

    low, high = figures.phases
    assert (low.name, high.name) == ("low", "high")
    assert low.orders == 2
    assert high.orders == 2
    assert low.legacy.open_gaps == 2
    assert high.legacy.open_gaps == 2
    assert low.candidate.open_gaps == 0
    assert high.candidate.open_gaps == 0


def test_phase_counts_throttles_notices_and_mirror_losses(engine):
    low, high = analyze_phases(engine, RUN, PROFILE, T0, _sent()).phases

    assert high.candidate.erp_throttles == 1
    assert high.candidate.pending_notices == 1
    assert high.mirror_losses == 1
    assert high.candidate.classes["not_mirrored"] == 1
    assert low.candidate.erp_throttles == 0
    assert low.mirror_losses == 0


def test_phase_times_confirmation_and_gap(engine):
    low = analyze_phases(engine, RUN, PROFILE, T0, _sent()).phases[0]

    assert low.legacy.time_to_confirmation.p50_ms == pytest.approx(10, rel=0.01)
    assert low.candidate.time_to_confirmation.p50_ms == pytest.approx(209, rel=0.01)
    assert low.legacy.gap.max_ms == pytest.approx(-2990, rel=0.01)
    assert low.candidate.gap.open == 0


def test_phase_sent_rate_and_shortfall(engine):
    low, high = analyze_phases(engine, RUN, PROFILE, T0, _sent()).phases

    assert low.sent == 1
    assert low.planned_orders == 10
    assert low.shortfall == 9
    assert high.sent == 4
    assert high.sent_ok == 3
    assert high.offered_rate == pytest.approx(0.4)


def test_accounting_covers_losses_with_counters(engine):
    _count(engine, "ledger.lost", 1)

    accounting = analyze_phases(engine, RUN, PROFILE, T0, _sent()).accounting

    assert accounting.sent == 5
    assert accounting.in_ledger == 3
    assert accounting.no_response == 1
    assert accounting.answered_not_in_ledger == 1
    assert accounting.not_in_logs == 1
    assert accounting.unaccounted == 0


def test_accounting_flags_an_answered_order_missing_from_ledger(engine):
    accounting = analyze_phases(engine, RUN, PROFILE, T0, _sent()).accounting

    assert accounting.ledger_lost == 0
    assert accounting.unaccounted == 1


def test_series_counts_open_gaps_per_second(engine):
    series = analyze_phases(engine, RUN, PROFILE, T0, _sent()).series

    assert series["legacy_open_gaps"][2] == 1
    assert series["legacy_open_gaps"][12] == 1
    assert sum(series["candidate_open_gaps"]) == 0
    assert series["target_rate"][0] == 1
    assert series["target_rate"][15] == 5
    assert sum(series["sent_rate"]) == 5


def test_read_order_logs_skips_torn_line(tmp_path):
    (tmp_path / "orders-host-1.jsonl").write_text(
        '{"key":"1","at":1.5,"status":200,"error":null,"ms":3}\n{"key":"2","at":', encoding="utf-8")
    (tmp_path / "orders-host-2.jsonl").write_text(
        '{"key":"3","at":2.5,"status":0,"error":"timeout","ms":5000}\n', encoding="utf-8")

    orders = read_order_logs(tmp_path)

    assert [order.key for order in orders] == ["1", "3"]
    assert orders[1].error == "timeout"


def test_read_timeline_requires_the_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_timeline(tmp_path / "timeline.jsonl")
