"""The `cutover` command line, on real SQLite ledgers."""

from __future__ import annotations

import json

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from cutover.cli import app
from cutover.events import Flow
from cutover.ledger import ledger_url_for, open_ledger, start_run
from tests.compare.factories import LedgerRun

runner = CliRunner()


@pytest.fixture
def runs_dir(tmp_path):
    """A runs folder with run-1: 120 good orders and one the candidate confirmed early."""
    folder = tmp_path / "runs" / "run-1"
    folder.mkdir(parents=True)
    engine = open_ledger(ledger_url_for(folder))
    start_run(engine, "run-1", "shadow", {})
    run = LedgerRun(engine, "run-1")
    run.good_orders(120)
    run.order("early-1", Flow.LEGACY, received=0, confirmed=5, submitted=30, acked=80)
    run.order("early-1", Flow.CANDIDATE, received=1, submitted=10, acked=40, confirmed=39)
    run.commit()
    engine.dispose()
    return tmp_path / "runs"


def test_report_exit_code_is_no_go(runs_dir, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", "run-1", "--runs-dir", str(runs_dir), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "NO-GO" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "NO-GO"
    assert "early-1" in (out / "report.md").read_text()


def test_report_takes_newest_run_and_min_orders(runs_dir, tmp_path):
    result = runner.invoke(app, ["report", "--runs-dir", str(runs_dir), "--min-orders", "500",
                                 "--out", str(tmp_path / "out")])
    # An open gap in the candidate fails the run even with too few orders.
    assert result.exit_code == 1, result.output


def test_report_on_missing_run_is_an_error(runs_dir):
    result = runner.invoke(app, ["report", "run-404", "--runs-dir", str(runs_dir)])
    assert result.exit_code == 2
    assert "runs/run-404/ledger.sqlite not found" in result.output


def test_report_on_unknown_run_in_ledger_lists_runs(runs_dir):
    ledger = runs_dir / "run-1" / "ledger.sqlite"
    result = runner.invoke(app, ["report", "run-x", "--ledger", str(ledger)])
    assert result.exit_code == 2
    assert "run-1" in result.output


def test_compare_order_shows_timeline_and_finding(runs_dir):
    result = runner.invoke(app, ["compare", "run-1", "--runs-dir", str(runs_dir),
                                 "--order", "early-1"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "confirmation.quarantined" in result.output
    assert "candidate confirmed 1 ms before the ERP acknowledgement" in result.output


def test_shadow_print_command_lists_every_route(tmp_path):
    config = tmp_path / "cutover.toml"
    config.write_text(
        '[[route]]\nname = "ingress"\nrole = "ingress"\nlisten = 18300\n'
        'upstream = "http://127.0.0.1:18101"\nmirror_to = "http://127.0.0.1:18102"\n'
        '[[route]]\nname = "erp"\nrole = "erp"\nlisten = 18301\nupstream = "http://127.0.0.1:18103"\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["shadow", "--config", str(config), "--run-id", "r7",
                                 "--print-command"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "--mode reverse:http://127.0.0.1:18101@127.0.0.1:18300" in result.output
    assert "--mode reverse:http://127.0.0.1:18103@127.0.0.1:18301" in result.output
    assert "cutover_run_id=r7" in result.output


def test_shadow_rejects_bad_config(tmp_path):
    config = tmp_path / "cutover.toml"
    config.write_text('[[route]]\nname = "x"\nrole = "erp"\nlisten = 1\nupstream = "ftp://x"\n')
    result = runner.invoke(app, ["shadow", "--config", str(config)])
    assert result.exit_code == 2
    assert "upstream must be an http(s) URL" in result.output


def test_demo_rejects_burst_above_orders():
    result = runner.invoke(app, ["demo", "--orders", "10", "--burst", "20"])
    assert result.exit_code == 2
    assert "--burst 20 is more than --orders 10" in result.output


def test_every_option_has_help():
    group = get_command(app)
    assert set(group.commands) >= {"demo", "shadow", "compare", "report", "loadtest", "replay"}
    for name, command in group.commands.items():
        assert command.help, name
        for parameter in command.params:
            if parameter.param_type_name == "option":
                assert parameter.help, f"{name} {parameter.opts}"


def test_compare_unknown_order_is_an_error(runs_dir):
    result = runner.invoke(app, ["compare", "run-1", "--runs-dir", str(runs_dir), "--order", "nope"])
    assert result.exit_code == 2
    assert "No events for order 'nope' in run 'run-1'" in result.output


def test_report_rejects_non_utf8_export(runs_dir, tmp_path):
    export = tmp_path / "orders.csv"
    export.write_bytes(b"id\n\xff\xfe1\n")
    result = runner.invoke(app, ["report", "run-1", "--runs-dir", str(runs_dir),
                                 "--orders-export", str(export), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "Can't read the order export" in result.output
    assert "threshold" not in result.output


def test_report_keeps_brackets_in_error_messages(runs_dir, tmp_path):
    config = tmp_path / "compare.toml"
    config.write_text("[compare.criteria]\nmin_order = 5\n", encoding="utf-8")
    result = runner.invoke(app, ["report", "run-1", "--runs-dir", str(runs_dir),
                                 "--compare-config", str(config)])
    assert result.exit_code == 2
    assert "[compare.criteria]" in result.output
