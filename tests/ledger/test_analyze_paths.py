"""analyze() reaches the same verdict and figures through every join and any number of workers."""

from __future__ import annotations

from itertools import pairwise

import pytest

from compare import partitions
from compare.analysis import analyze
from cutover.events import Flow
from cutover.ledger import open_ledger, start_run
from tests.compare.factories import LedgerRun
from tests.ledger.scenarios import insert, random_events, rich_events


def _run_with_every_class(engine) -> None:
    run = LedgerRun(engine, "run-1")
    run.good_orders(30)
    run.order("open-1", Flow.CANDIDATE, received=1, submitted=10, acked=40, confirmed=20)
    run.order("open-1", Flow.LEGACY, received=0, submitted=10, acked=40, confirmed=45)
    run.order("missing-1", Flow.LEGACY, received=0, submitted=10, acked=40, confirmed=45)
    run.order("missing-1", Flow.CANDIDATE, received=1)
    run.commit()
    insert(engine, rich_events("run-1") + random_events("run-1", seed=5))


def test_analyze_same_through_sql_and_python(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "shadow", {})
    _run_with_every_class(engine)

    through_python = analyze(engine, "run-1", join="python")
    through_sql = analyze(engine, "run-1", join="sql")

    assert through_sql.verdict == through_python.verdict
    assert through_sql.criteria_results == through_python.criteria_results
    assert through_sql.legacy == through_python.legacy
    assert through_sql.candidate == through_python.candidate
    assert through_sql.evidence == through_python.evidence
    assert through_sql.notable_orders == through_python.notable_orders
    assert through_sql == through_python


def test_analyze_same_split_over_workers(ledger_url, monkeypatch):
    """Key ranges tallied by three worker processes merge into the one-process analysis."""
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "shadow", {})
    _run_with_every_class(engine)
    storefront = ["open-1", "missing-1", "never-seen-1", "#1001", "#1008"]
    in_one = analyze(engine, "run-1", workers=1, storefront_orders=storefront)

    monkeypatch.setattr(partitions, "MIN_EVENTS_PER_WORKER", 1)
    ranges = partitions.key_ranges(engine, "run-1", 3)
    in_three = analyze(engine, "run-1", workers=3, storefront_orders=storefront)

    assert len(ranges) == 3
    assert in_three.orders == in_one.orders > 30
    assert in_three.reconciliation == in_one.reconciliation
    assert in_three.charts == in_one.charts
    assert in_three == in_one


def test_key_ranges_cover_every_key_once(sqlite_url):
    engine = open_ledger(sqlite_url)
    start_run(engine, "run-1", "shadow", {})
    _run_with_every_class(engine)

    assert partitions.key_ranges(engine, "run-1", 4) == [(None, None)]
    ranges = partitions.key_ranges(engine, "run-1", 4, min_events=1)
    assert len(ranges) == 4
    assert ranges[0][0] is None
    assert ranges[-1][1] is None
    for (_, high), (low, _) in pairwise(ranges):
        assert high == low


def test_worker_that_dies_gives_ledger_error(sqlite_url, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    import compare.analysis
    from cutover.ledger import LedgerError

    engine = open_ledger(sqlite_url)
    start_run(engine, "run-1", "shadow", {})
    _run_with_every_class(engine)
    monkeypatch.setattr(partitions, "MIN_EVENTS_PER_WORKER", 1)

    class DyingPool:
        def __init__(self, *args, **kwargs):
            raise BrokenProcessPool("A child process terminated abruptly")

    monkeypatch.setattr(compare.analysis, "ProcessPoolExecutor", DyingPool)
    with pytest.raises(LedgerError, match="--workers 1"):
        analyze(engine, "run-1", workers=2)
