"""LedgerWriter: COPY on PostgreSQL, everything put is stored, losses are counted and logged."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from cutover.ledger import Event, LedgerWriter, iter_events, load_counters, open_ledger, start_run


def _row(index: int) -> dict:
    return {"order_key": f"order-{index // 4}", "flow": "legacy", "kind": "webhook.received",
            "wall_time": datetime(2026, 11, 27, 9, 0, tzinfo=UTC), "mono_ns": index,
            "snapshot": '{"a": "tab\\there, newline\\n, backslash \\\\"}' if index % 3 == 0 else None}


def _stored(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Event)).one()


def test_close_stores_everything_put(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "test", {})
    writer = LedgerWriter(engine, run_id="run-1", instance_id="proxy-a", batch_size=100)
    writer.start()

    for index in range(5000):
        writer.put(_row(index))
    writer.close()

    assert writer.written == 5000
    assert _stored(engine) == 5000
    assert "ledger.lost" not in writer.counters()


def test_copy_keeps_text_with_control_characters(ledger_url):
    engine = open_ledger(ledger_url)
    start_run(engine, "run-1", "test", {})
    writer = LedgerWriter(engine, run_id="run-1", instance_id="proxy-a")
    writer.start()
    writer.put(_row(0))
    writer.close()

    with Session(engine) as session:
        stored = session.exec(select(Event)).one()
    assert stored.snapshot == _row(0)["snapshot"]
    assert stored.instance_id == "proxy-a"


def test_buffer_overflow_is_counted_and_logged(tmp_path, caplog):
    engine = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    start_run(engine, "run-1", "test", {})
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events RENAME TO events_away")
    writer = LedgerWriter(engine, run_id="run-1", instance_id="proxy-a", flush_interval_s=0.05,
                          buffer_rows=10)
    caplog.set_level(logging.ERROR, logger="cutover.ledger")
    writer.start()
    writer.put(_row(0))
    time.sleep(0.3)  # the first flush fails, so the writer marks the ledger as away

    for index in range(1, 30):
        writer.put(_row(index))
    time.sleep(0.3)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events_away RENAME TO events")
    writer.close()

    assert writer.counters()["ledger.lost"] == 20
    assert writer.written == 10
    assert load_counters(engine, "run-1")["ledger.lost"] == 20
    overflow_logs = [record for record in caplog.records if "Ledger buffer full" in record.message]
    assert len(overflow_logs) == 1


@pytest.mark.postgres
def test_writer_rejects_bad_row_and_keeps_the_rest(postgres_url):
    """A key too long for its column (PostgreSQL enforces it) must not block the batch."""
    engine = open_ledger(postgres_url)
    start_run(engine, "run-bad", "test", {})
    writer = LedgerWriter(engine, run_id="run-bad", batch_size=50)
    writer.start()
    for index in range(20):
        key = "k" * 300 if index == 7 else f"order-{index}"
        writer.put({"order_key": key, "flow": "legacy", "kind": "webhook.received",
                    "wall_time": datetime(2026, 11, 27, tzinfo=UTC), "mono_ns": index})
    writer.close()

    assert writer.written == 19
    assert writer.counters()["ledger.rejected"] == 1
    stored = {event.order_key for event in iter_events(engine, "run-bad")}
    assert len(stored) == 19
