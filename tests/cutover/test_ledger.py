"""The ledger on real SQLite files and on this machine's PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from cutover.ledger import (
    Event,
    LedgerError,
    LedgerWriter,
    iter_events,
    load_counters,
    open_ledger,
    start_run,
)


def _row(key: str, kind: str, mono_ns: int, flow: str = "legacy") -> dict:
    return {
        "order_key": key,
        "flow": flow,
        "kind": kind,
        "wall_time": datetime(2026, 11, 27, 9, 0, 0, 123456, tzinfo=UTC),
        "mono_ns": mono_ns,
    }


def _write(url: str, rows: list[dict], run_id: str = "run-1") -> None:
    engine = open_ledger(url)
    start_run(engine, run_id, "test", {"purpose": "test"})
    writer = LedgerWriter(engine, run_id=run_id, instance_id="proxy-a", batch_size=7)
    writer.start()
    for row in rows:
        writer.put(row)
    writer.count("mirror.dropped", 3)
    writer.close()
    assert writer.written == len(rows)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_ledger_round_trip(backend, request):
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    big_key = str(2**62 + 1)
    rows = [_row(big_key, "erp.acked", 2_000_000_000_000_000_002),
            _row(big_key, "webhook.received", 2_000_000_000_000_000_001)]
    rows += [_row(f"order-{i}", "webhook.received", i) for i in range(30)]
    _write(url, rows)

    engine = open_ledger(url)
    events = list(iter_events(engine, "run-1"))
    assert len(events) == 32
    mine = [event for event in events if event.order_key == big_key]
    assert [event.kind for event in mine] == ["webhook.received", "erp.acked"]
    assert mine[1].mono_ns == 2_000_000_000_000_000_002
    assert mine[0].wall_time.microsecond == 123456
    assert mine[0].instance_id == "proxy-a"
    assert load_counters(engine, "run-1") == {"mirror.dropped": 3}


def test_sqlite_ledger_uses_wal(sqlite_url):
    engine = open_ledger(sqlite_url)
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"


def test_writer_keeps_rows_while_ledger_is_away(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = open_ledger(url)
    start_run(engine, "run-1", "test", {})
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events RENAME TO events_away")
    writer = LedgerWriter(engine, run_id="run-1", flush_interval_s=0.05)
    writer.start()
    writer.put(_row("a", "webhook.received", 1))
    deadline = time.monotonic() + 10
    while writer.backlog() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert writer.written == 0

    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events_away RENAME TO events")
    writer.close()
    assert writer.written == 1
    assert "ledger.lost" not in writer.counters()


def test_writer_counts_rows_beyond_its_buffer(tmp_path):
    engine = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    start_run(engine, "run-1", "test", {})
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events RENAME TO events_away")
    writer = LedgerWriter(engine, run_id="run-1", flush_interval_s=0.05, buffer_rows=5)
    writer.start()
    for index in range(5):
        writer.put(_row("a", "webhook.received", index))
    time.sleep(0.3)  # the first flush fails, so the writer marks the ledger as away
    for index in range(5, 12):
        writer.put(_row("a", "webhook.received", index))
    writer.close()
    assert writer.counters()["ledger.lost"] == 12


def test_open_ledger_names_a_missing_driver():
    with pytest.raises(LedgerError, match="Can't open the ledger at mysql"):
        open_ledger("mysql://user:secret@127.0.0.1/none")


def test_open_ledger_hides_password():
    with pytest.raises(LedgerError) as caught:
        open_ledger("postgresql://user:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(caught.value)


def test_start_run_is_idempotent(sqlite_url):
    engine = open_ledger(sqlite_url)
    start_run(engine, "run-1", "demo", {"orders": 3})
    again = start_run(engine, "run-1", "shadow", {})
    assert again.kind == "demo"
    with Session(engine) as session:
        assert len(session.exec(select(Event)).all()) == 0
