"""Schema migrations run by open_ledger, and proxy instance registration."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlmodel import Session, select

from cutover import migrations
from cutover.ledger import (
    Event,
    LedgerError,
    ProxyInstance,
    list_instances,
    open_ledger,
    register_instance,
    start_run,
)

INITIAL_SCHEMA = """
CREATE TABLE runs (id VARCHAR(64) NOT NULL PRIMARY KEY, kind VARCHAR(32) NOT NULL,
    started_at DATETIME NOT NULL, finished_at DATETIME, settings TEXT NOT NULL);
CREATE TABLE events (id INTEGER NOT NULL PRIMARY KEY, run_id VARCHAR(64) NOT NULL,
    order_key VARCHAR(128), flow VARCHAR(16) NOT NULL, kind VARCHAR(32) NOT NULL,
    wall_time DATETIME NOT NULL, mono_ns BIGINT NOT NULL, instance_id VARCHAR(64) NOT NULL,
    route VARCHAR(64), http_flow_id VARCHAR(64), status INTEGER, latency_ms FLOAT,
    snapshot TEXT, digest VARCHAR(64), detail TEXT);
CREATE INDEX ix_events_run_order_flow ON events (run_id, order_key, flow, mono_ns);
CREATE INDEX ix_events_run_kind ON events (run_id, kind);
CREATE TABLE run_counters (run_id VARCHAR(64) NOT NULL, instance_id VARCHAR(64) NOT NULL,
    name VARCHAR(64) NOT NULL, value BIGINT NOT NULL, PRIMARY KEY (run_id, instance_id, name));
INSERT INTO runs VALUES ('old-run', 'shadow', '2026-11-27 09:00:00.000000', NULL, '{}');
INSERT INTO events (run_id, order_key, flow, kind, wall_time, mono_ns, instance_id)
    VALUES ('old-run', '#1', 'legacy', 'webhook.received', '2026-11-27 09:00:00.000000', 1, 'p');
"""


def _revision(engine) -> str | None:
    with engine.connect() as connection:
        return migrations.current_revision(connection)


def test_new_ledger_is_at_head(ledger_url):
    engine = open_ledger(ledger_url)

    assert _revision(engine) == migrations.head()
    assert "proxy_instances" in inspect(engine).get_table_names()


def test_ledger_without_version_table_is_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    raw = create_engine(f"sqlite:///{path}")
    with raw.begin() as connection:
        for statement in INITIAL_SCHEMA.split(";"):
            if statement.strip():
                connection.exec_driver_sql(statement)
    raw.dispose()

    engine = open_ledger(f"sqlite:///{path}")

    assert _revision(engine) == migrations.head()
    assert "proxy_instances" in inspect(engine).get_table_names()
    with Session(engine) as session:
        kept = session.exec(select(Event)).all()
    assert [(event.run_id, event.order_key) for event in kept] == [("old-run", "#1")]


def test_ledger_from_newer_cutover_is_rejected(ledger_url):
    engine = open_ledger(ledger_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(LedgerError, match=r"schema revision '9999'.*newer cutover\. Upgrade cutover"):
        open_ledger(ledger_url)


def test_open_without_create_leaves_empty_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"

    engine = open_ledger(url, create=False)

    assert inspect(engine).get_table_names() == []


@pytest.mark.postgres
def test_concurrent_opens_create_schema_once(postgres_url):
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_ledger(postgres_url).dispose()
        except BaseException as exc:  # collected for the assert below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert _revision(open_ledger(postgres_url)) == migrations.head()


@pytest.mark.postgres
def test_register_instance_measures_offset_against_server(postgres_url):
    engine = open_ledger(postgres_url)
    start_run(engine, "run-1", "shadow", {})

    instance = register_instance(engine, "run-1", "proxy-a")

    assert instance.clock_reference == "postgresql clock_timestamp()"
    assert instance.clock_uncertainty_ms > 0
    # Server and proxy share this host's clock, so the offset is within the round trip
    # plus the time between reading the two clocks.
    assert abs(instance.clock_offset_ms) <= instance.clock_uncertainty_ms + 5


def test_register_instance_on_sqlite_uses_local_clock(sqlite_url):
    engine = open_ledger(sqlite_url)

    instance = register_instance(engine, "run-1", "proxy-a")

    assert instance.clock_offset_ms == 0.0
    assert instance.clock_uncertainty_ms == 0.0
    assert instance.started_at.replace(tzinfo=UTC) <= datetime.now(UTC)


def test_register_instance_again_replaces_row(ledger_url):
    engine = open_ledger(ledger_url)
    register_instance(engine, "run-1", "proxy-a", measure_clock=False)
    register_instance(engine, "run-1", "proxy-b")
    register_instance(engine, "run-1", "proxy-a")

    instances = list_instances(engine, "run-1")

    assert [instance.instance_id for instance in instances] == ["proxy-a", "proxy-b"]
    assert instances[0].clock_offset_ms is not None
    assert isinstance(instances[0], ProxyInstance)
