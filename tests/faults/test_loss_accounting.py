"""How a run accounts for a proxy that stopped without a clean stop, and the ERP's throttle window.

Fast tests of the pieces the end-to-end fault tests rely on: the ledger
writer's heartbeat and clean stop, `unclean_stops` and the counter it
adds, the report's note, and the sandbox ERP's `erp_throttle_all_s`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta

import aiohttp
import pytest

from cutover.ledger import (
    STALE_AFTER_S,
    LedgerWriter,
    list_instances,
    load_counters,
    open_ledger,
    register_instance,
    start_run,
    unclean_stops,
    utc_now,
)
from sandbox.erp import SALES_ORDER_PATH, ErpSimulator
from sandbox.settings import SandboxSettings
from sandbox.stack import serve_app
from tests.faults.harness import wait_until

LATER = timedelta(seconds=STALE_AFTER_S + 1)


def _row(number: int) -> dict:
    return {"order_key": str(number), "flow": "legacy", "kind": "webhook.received",
            "wall_time": utc_now(), "mono_ns": number}


def _ledger(url: str):
    engine = open_ledger(url)
    start_run(engine, "run-1", "shadow", {})
    register_instance(engine, "run-1", "proxy-a", measure_clock=False)
    return engine


def _crash(writer: LedgerWriter) -> None:
    """Stop the writer's thread without its final flush, as a SIGKILL would."""
    writer._flush = lambda final=False: None
    writer._stop.set()
    writer._thread.join(10)


def test_clean_stop_reports_nothing_missing(ledger_url):
    engine = _ledger(ledger_url)
    writer = LedgerWriter(engine, run_id="run-1", instance_id="proxy-a")
    writer.start()
    for number in range(50):
        writer.put(_row(number))
    writer.close()

    instance = list_instances(engine, "run-1")[0]
    assert instance.stopped_unix_s is not None
    assert instance.heartbeat_unix_s is not None
    assert unclean_stops(engine, "run-1", now=utc_now() + LATER) == []
    assert "ledger.may_be_missing" not in load_counters(engine, "run-1", now=utc_now() + LATER)


def test_killed_writer_reported_once_heartbeat_is_stale(sqlite_url):
    engine = _ledger(sqlite_url)
    writer = LedgerWriter(engine, run_id="run-1", instance_id="proxy-a")
    writer.start()
    for number in range(50):
        writer.put(_row(number))
    wait_until(lambda: writer.written == 50, 10, "the rows to be written")
    wait_until(lambda: list_instances(engine, "run-1")[0].max_unwritten_events > 0, 10,
               "the heartbeat with the peak of unwritten rows")
    _crash(writer)
    peak = list_instances(engine, "run-1")[0].max_unwritten_events

    # Within STALE_AFTER_S of its heartbeat, an instance may still be running.
    assert unclean_stops(engine, "run-1") == []
    stops = unclean_stops(engine, "run-1", now=utc_now() + LATER)
    assert [stop.instance_id for stop in stops] == ["proxy-a"]
    assert stops[0].may_be_missing == peak
    assert stops[0].last_heartbeat is not None
    assert load_counters(engine, "run-1", now=utc_now() + LATER)["ledger.may_be_missing"] == peak


def test_instance_without_heartbeat_is_not_counted(sqlite_url):
    """Instances registered by a cutover without heartbeats have no figure to report."""
    engine = _ledger(sqlite_url)

    assert unclean_stops(engine, "run-1", now=utc_now() + LATER) == []


def test_restart_keeps_earlier_missing_events(sqlite_url):
    engine = _ledger(sqlite_url)
    writer = LedgerWriter(engine, run_id="run-1", instance_id="proxy-a")
    writer.start()
    writer.count("mirror.dropped", 3)
    writer.put(_row(1))
    wait_until(lambda: list_instances(engine, "run-1")[0].max_unwritten_events > 0, 10,
               "the first heartbeat")
    _crash(writer)

    register_instance(engine, "run-1", "proxy-a", measure_clock=False)
    again = LedgerWriter(engine, run_id="run-1", instance_id="proxy-a")
    again.start()
    again.count("mirror.dropped", 2)
    again.close()

    instance = list_instances(engine, "run-1")[0]
    counters = load_counters(engine, "run-1")
    assert instance.stopped_unix_s is not None
    assert instance.missing_before_restart >= 1
    assert counters["ledger.may_be_missing"] == instance.missing_before_restart
    # The restarted writer adds to the counts of the earlier one.
    assert counters["mirror.dropped"] == 5


def test_report_notes_may_be_missing(sqlite_url):
    from compare import Criteria, analyze, render_markdown
    from tests.ledger.scenarios import insert, rich_events

    engine = _ledger(sqlite_url)
    insert(engine, rich_events("run-1"))
    writer = LedgerWriter(engine, run_id="run-1", instance_id="proxy-a")
    writer.start()
    writer.put(_row(10**6))
    wait_until(lambda: list_instances(engine, "run-1")[0].max_unwritten_events > 0, 10,
               "the first heartbeat")
    _crash(writer)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE proxy_instances SET heartbeat_unix_s = heartbeat_unix_s - 60")

    analysis = analyze(engine, "run-1", criteria=Criteria(min_orders=1))
    report = " ".join(render_markdown(analysis).split())

    assert analysis.counters["ledger.may_be_missing"] >= 1
    assert "stopped without a clean stop" in report
    assert f"about {analysis.counters['ledger.may_be_missing']}," in report
    # Events that may be missing make the evidence incomplete, so no GO.
    loss = next(r for r in analysis.criteria_results if r.name == "no_recording_loss")
    assert str(loss.status) != "PASS"
    assert loss.figure == analysis.counters["ledger.may_be_missing"]
    assert str(analysis.verdict) != "GO"


def test_erp_throttles_every_request_within_window():
    settings = replace(SandboxSettings(), erp_throttle_all_s=0.5, erp_base_latency_ms=0.0,
                       erp_latency_per_inflight_ms=0.0)
    order = {"externalId": "1001", "item": {"items": []}}

    async def scenario() -> tuple[list[int], int]:
        runner, port = await serve_app(ErpSimulator(settings).make_app(), "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}{SALES_ORDER_PATH}"
        statuses = []
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with session.post(url, json=order) as response:
                        statuses.append(response.status)
                started = time.monotonic()
                await asyncio.sleep(max(0.0, 0.6 - (time.monotonic() - started)))
                async with session.post(url, json=order) as response:
                    statuses.append(response.status)
        finally:
            await runner.cleanup()
        return statuses

    statuses = asyncio.run(scenario())

    assert statuses[:3] == [429, 429, 429]
    assert statuses[3] == 204


def test_erp_throttle_setting_rejects_negative():
    with pytest.raises(ValueError, match=r"erp_throttle_all_s must be 0 or more seconds, but got -1"):
        SandboxSettings(erp_throttle_all_s=-1)
