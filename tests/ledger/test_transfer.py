"""`cutover ledger export` / `import`: a run moves between ledgers without change."""

from __future__ import annotations

import json
import sys

import pytest
import typer
from sqlmodel import Session, select
from typer.testing import CliRunner

from compare.join import EvidenceTally, join_orders
from compare.sql_join import join_orders_sql
from cutover.commands.ledger import ExportError, export_run, import_run, ledger_app
from cutover.ledger import (
    LedgerWriter,
    ProxyInstance,
    Run,
    iter_events,
    list_instances,
    load_counters,
    open_ledger,
    register_instance,
    start_run,
)
from tests.ledger.scenarios import insert, rich_events

RUN_EVENTS = sum(event.run_id == "run-1" for event in rich_events("run-1"))


@pytest.fixture
def source_url(tmp_path):
    """A SQLite ledger with the rich run, two registered instances and counters."""
    url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    engine = open_ledger(url)
    start_run(engine, "run-1", "shadow", {"routes": ["ingress"]})
    insert(engine, rich_events("run-1"))
    register_instance(engine, "run-1", "proxy-a")
    register_instance(engine, "run-1", "proxy-b")
    writer = LedgerWriter(engine, run_id="run-1", instance_id="proxy-b")
    writer.start()
    writer.count("mirror.dropped", 4)
    writer.count("ledger.lost", 1)
    writer.close()
    engine.dispose()
    return url


def _join(url):
    engine = open_ledger(url)
    tally = EvidenceTally()
    orders = list(join_orders(iter_events(engine, "run-1"), tally))
    return orders, tally


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_run_survives_export_and_import(source_url, ledger_url, tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow", reason="Parquet export needs pyarrow")
    path = tmp_path / f"run-1{suffix}"

    exported = export_run(source_url, "run-1", path)
    imported = import_run(ledger_url, path)

    assert exported == imported
    assert imported.events == RUN_EVENTS
    target = open_ledger(ledger_url)
    assert _join(ledger_url) == _join(source_url)
    assert list(join_orders_sql(target, "run-1", EvidenceTally())) == _join(source_url)[0]
    assert load_counters(target, "run-1") == {"mirror.dropped": 4, "ledger.lost": 1}
    assert [row.instance_id for row in list_instances(target, "run-1")] == ["proxy-a", "proxy-b"]
    with Session(target) as session:
        run = session.get(Run, "run-1")
    assert run.kind == "shadow"
    assert json.loads(run.settings) == {"routes": ["ingress"]}


def test_import_rejects_existing_run(source_url, tmp_path):
    path = tmp_path / "run-1.jsonl"
    export_run(source_url, "run-1", path)

    with pytest.raises(ExportError, match="Run 'run-1' already exists in the ledger"):
        import_run(source_url, path)


def test_import_rejects_foreign_file(tmp_path, sqlite_url):
    path = tmp_path / "other.jsonl"
    path.write_text('{"hello": "world"}\n')

    with pytest.raises(ExportError, match="is not a cutover ledger export"):
        import_run(sqlite_url, path)


def test_export_names_missing_run(source_url, tmp_path):
    with pytest.raises(ExportError, match="Run 'nope' not found"):
        export_run(source_url, "nope", tmp_path / "nope.jsonl")


def test_parquet_without_pyarrow_names_install(source_url, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)

    with pytest.raises(ExportError, match=r"pip install pyarrow"):
        export_run(source_url, "run-1", tmp_path / "run-1.parquet")


def test_cli_export_then_import(source_url, tmp_path):
    app = typer.Typer()
    app.add_typer(ledger_app, name="ledger")
    runner = CliRunner()
    path = tmp_path / "run-1.jsonl"
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"

    exported = runner.invoke(app, ["ledger", "export", "run-1", "--ledger", source_url, "--out", str(path)])
    imported = runner.invoke(app, ["ledger", "import", str(path), "--ledger", target])
    again = runner.invoke(app, ["ledger", "import", str(path), "--ledger", target])

    assert exported.exit_code == 0, exported.output
    assert f"{RUN_EVENTS} events, 2 proxy instances, 2 counters" in exported.output
    assert imported.exit_code == 0, imported.output
    assert "Imported run run-1" in imported.output
    assert again.exit_code == 2
    assert "already exists" in again.output
    with Session(open_ledger(target)) as session:
        assert len(session.exec(select(ProxyInstance)).all()) == 2


def test_cli_help_documents_every_option():
    app = typer.Typer()
    app.add_typer(ledger_app, name="ledger")
    runner = CliRunner()

    for command in ("export", "import"):
        result = runner.invoke(app, ["ledger", command, "--help"])
        assert result.exit_code == 0
        assert "--ledger" in result.output
        assert "URL of the ledger" in result.output
