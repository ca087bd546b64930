"""The SQL join yields exactly what the Python join yields, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from compare.join import EvidenceTally, join_orders
from compare.sql_join import GapCall, SkewBound, join_orders_sql, judge_gap, skew_bound
from cutover.ledger import LedgerError, iter_events, open_ledger, register_instance, start_run
from tests.ledger.scenarios import insert, random_events, rich_events


def _both_joins(engine, run_id):
    python_tally, sql_tally = EvidenceTally(), EvidenceTally()
    python_orders = list(join_orders(iter_events(engine, run_id), python_tally))
    sql_orders = list(join_orders_sql(engine, run_id, sql_tally))
    return python_orders, python_tally, sql_orders, sql_tally


def test_sql_join_matches_python_join_on_rich_run(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "test", {})
    insert(engine, rich_events("run-1"))

    python_orders, python_tally, sql_orders, sql_tally = _both_joins(engine, "run-1")

    assert [order.order_key for order in sql_orders] == [order.order_key for order in python_orders]
    for python_order, sql_order in zip(python_orders, sql_orders, strict=True):
        assert sql_order == python_order, python_order.order_key
    assert sql_tally == python_tally


def test_rich_run_exercises_the_hard_cases(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "test", {})
    insert(engine, rich_events("run-1"))
    tally = EvidenceTally()
    orders = {order.order_key: order for order in join_orders_sql(engine, "run-1", tally)}

    assert orders["#1002"].candidate.acks == 2
    assert orders["#1002"].candidate.confirmation_snapshot is None
    assert orders["#1002"].mirrored_body_mismatches() == 1
    assert orders["#1003"].candidate.snapshot_before_ack != orders["#1003"].candidate.last_snapshot
    assert orders["#1004"].legacy.rejected_ns == 60_000_000
    assert orders["#1007"].candidate.snapshot_before_ack is not None
    assert orders["#1007"].candidate.confirmation_snapshot == '{"first": true}'
    assert orders["#1008"].wall_clock
    assert orders["#1009"].wall_clock
    assert tally.wall_clock_orders == 2
    assert tally.unknown_flow == 1
    assert tally.unknown_kind["erp.teleported"] == 2
    assert sum(tally.uncorrelated.values()) == 3
    assert tally.mirror_losses["mirror.dropped"] == 1
    assert tally.mirror_losses["mirror.failed"] == 1
    assert "other-run" not in {order.order_key for order in orders.values()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sql_join_matches_python_join_on_random_run(ledger_url, seed):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-r", "test", {})
    insert(engine, random_events("run-r", seed))

    python_orders, python_tally, sql_orders, sql_tally = _both_joins(engine, "run-r")

    assert len(sql_orders) == len(python_orders)
    for python_order, sql_order in zip(python_orders, sql_orders, strict=True):
        assert sql_order == python_order, python_order.order_key
    assert sql_tally == python_tally


def test_sql_join_of_empty_run_yields_nothing(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "test", {})
    tally = EvidenceTally()

    assert list(join_orders_sql(engine, "run-1", tally)) == []
    assert tally == EvidenceTally()


def test_sql_join_reports_unreadable_ledger(tmp_path):
    engine = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE events")

    with pytest.raises(LedgerError, match="Can't join the events of run 'run-1'"):
        list(join_orders_sql(engine, "run-1", EvidenceTally()))


def test_skew_bound_sums_two_largest_terms(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "test", {})
    insert(engine, rich_events("run-1"))
    for instance in ("proxy-a", "proxy-b", "proxy-c"):
        register_instance(engine, "run-1", instance)

    bound = skew_bound(engine, "run-1")

    assert bound.instances == 3
    assert bound.unmeasured == ()
    assert bound.known
    assert bound.bound_ms >= 0
    if engine.dialect.name == "postgresql":
        # Each term is at least the 1 µs resolution of the server clock.
        assert bound.bound_ms > 0


def test_skew_bound_unknown_without_registration(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "test", {})
    insert(engine, rich_events("run-1"))
    register_instance(engine, "run-1", "proxy-a")

    bound = skew_bound(engine, "run-1")

    assert bound.bound_ms is None
    assert bound.unmeasured == ("proxy-b", "proxy-c")


@pytest.mark.parametrize(
    ("gap_ms", "wall_clock", "bound_ms", "expected"),
    [
        pytest.param(-0.5, False, 5.0, GapCall.OPEN, id="monotonic-small-negative"),
        pytest.param(0.0, False, None, GapCall.CLOSED, id="monotonic-tie-closed"),
        pytest.param(-4.0, True, 5.0, GapCall.WITHIN_SKEW, id="wall-inside-bound"),
        pytest.param(5.0, True, 5.0, GapCall.WITHIN_SKEW, id="wall-on-bound"),
        pytest.param(-6.0, True, 5.0, GapCall.OPEN, id="wall-beyond-bound-open"),
        pytest.param(6.0, True, 5.0, GapCall.CLOSED, id="wall-beyond-bound-closed"),
        pytest.param(-600.0, True, None, GapCall.WITHIN_SKEW, id="wall-unknown-bound"),
    ],
)
def test_judge_gap(gap_ms, wall_clock, bound_ms, expected):
    assert judge_gap(gap_ms, wall_clock, SkewBound(bound_ms, 2, ())) == expected


def test_sql_join_matches_python_join_with_one_instance(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "test", {})
    events = rich_events("run-1")
    for event in events:
        event.instance_id = "proxy-a"
    insert(engine, events)

    python_orders, python_tally, sql_orders, sql_tally = _both_joins(engine, "run-1")

    assert sql_orders == python_orders
    assert sql_tally == python_tally
    assert sql_tally.wall_clock_orders == 0


def test_sql_join_reads_one_snapshot_while_proxies_write(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "test", {})
    insert(engine, rich_events("run-1"))
    python_tally = EvidenceTally()
    python_orders = list(join_orders(iter_events(engine, "run-1"), python_tally))

    sql_tally = EvidenceTally()
    sql_orders = join_orders_sql(engine, "run-1", sql_tally)
    first = next(sql_orders)
    late = rich_events("run-1")
    for event in late:
        event.instance_id = "proxy-late"
    insert(engine, late)
    joined = [first, *sql_orders]

    assert joined == python_orders
    assert sql_tally == python_tally
