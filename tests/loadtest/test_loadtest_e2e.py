"""`cutover loadtest` end to end: Locust, the shadow proxy and the sandbox on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
import typer
from typer.testing import CliRunner

from cutover.commands.loadtest import loadtest
from cutover.ledger import open_ledger
from cutover.processes import start_sandbox
from cutover.topology import Topology, free_ports
from loadtest.phases import analyze_phases, read_order_logs, read_timeline
from loadtest.run import LOCUSTFILE, locust_executable
from loadtest.shapes import Profile
from sandbox.settings import SandboxSettings

app = typer.Typer()
app.command()(loadtest)


def _figures_from_ledger(run_folder, report_folder):
    report = json.loads((report_folder / "loadtest.json").read_text(encoding="utf-8"))
    timeline = read_timeline(run_folder / "locust" / "timeline.jsonl")
    engine = open_ledger(f"sqlite:///{run_folder / 'ledger.sqlite'}", create=False)
    start_wall = timeline[0]["at"] - timeline[0]["elapsed_s"]
    profile = Profile.from_dict(report["profile"])
    return analyze_phases(engine, run_folder.name, profile, start_wall,
                          read_order_logs(run_folder / "locust")), report


@pytest.mark.slow
def test_bfcm_on_sandbox_keeps_gated_flow_closed(tmp_path):
    runs, reports = tmp_path / "runs", tmp_path / "reports"

    result = CliRunner().invoke(app, [
        "--sandbox", "--profile", "bfcm", "--peak-rate", "40", "--duration", "24s", "--run-id", "load-e2e",
        "--settle-timeout", "40", "--runs-dir", str(runs), "--reports-dir", str(reports),
    ])

    assert result.exit_code in (0, 1), result.output
    assert "locust" not in sys.modules
    figures, report = _figures_from_ledger(runs / "load-e2e", reports / "load-e2e")
    phases = {phase.name: phase for phase in figures.phases}
    assert list(phases) == ["baseline", "ramp", "peak", "decay"]

    baseline, peak = phases["baseline"], phases["peak"]
    assert baseline.orders > 0
    assert peak.legacy.open_gaps > baseline.legacy.open_gaps
    assert peak.legacy.gap.min_ms < baseline.legacy.gap.min_ms
    for phase in figures.phases:
        assert phase.candidate.orders > 0, phase.name
        assert phase.candidate.open_gaps == 0, phase.name
    assert peak.candidate.pending_notices > 0

    accounting = figures.accounting
    assert accounting.sent > 0
    assert accounting.unaccounted == 0
    assert accounting.in_ledger + accounting.no_response == accounting.sent
    assert report["accounting"]["unaccounted"] == 0
    assert ET.parse(reports / "load-e2e" / "loadtest.svg").getroot().tag.endswith("svg")
    assert "## Phase `peak`" in (reports / "load-e2e" / "loadtest.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_config_mode_drives_a_running_stack(tmp_path):
    """Without --sandbox, the command starts the configured proxy; two local workers send through it."""
    folder = tmp_path / "stack"
    folder.mkdir()
    topology = Topology.on_free_ports(SandboxSettings())
    settings_path = folder / "sandbox.json"
    settings_path.write_text(replace(topology.sandbox_settings(), seed=3).to_json(), encoding="utf-8")
    ledger_url = f"sqlite:///{tmp_path / 'staging.sqlite'}"
    config_path = folder / "shadow.json"
    config_path.write_text(json.dumps(topology.shadow_config(run_id="ignored", ledger_url=ledger_url)),
                           encoding="utf-8")
    runs, reports = tmp_path / "runs", tmp_path / "reports"

    sandbox = start_sandbox(settings_path, topology.sandbox_ports, folder / "sandbox.log")
    try:
        result = CliRunner().invoke(app, [
            "--config", str(config_path), "--profile", "steady", "--peak-rate", "10", "--duration", "6s",
            "--run-id", "load-staging", "--settle-timeout", "30", "--min-orders", "10", "--workers", "2",
            "--runs-dir", str(runs), "--reports-dir", str(reports),
        ], env={"CUTOVER_WEBHOOK_SECRET": SandboxSettings().webhook_secret})
    finally:
        sandbox.stop()

    assert result.exit_code in (0, 1), result.output
    report = json.loads((reports / "load-staging" / "loadtest.json").read_text(encoding="utf-8"))
    assert report["run"]["sandbox"] == "no"
    assert report["run"]["locust_workers"] == 2
    accounting = report["accounting"]
    assert accounting["sent"] > 0
    assert accounting["in_ledger"] == accounting["sent"]
    assert accounting["unaccounted"] == 0
    assert report["phases"][0]["candidate"]["open_gaps"] == 0
    assert report["phases"][0]["legacy"]["open_gaps"] == accounting["sent"]


def test_real_target_requires_explicit_limits(tmp_path):
    result = CliRunner().invoke(app, ["--target", "http://127.0.0.1:9/webhooks/orders/create",
                                      "--ledger", f"sqlite:///{tmp_path / 'l.sqlite'}"])

    assert result.exit_code == 2
    assert "give --peak-rate and --duration" in result.output


def test_real_target_requires_the_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("CUTOVER_WEBHOOK_SECRET", raising=False)

    result = CliRunner().invoke(app, ["--target", "http://127.0.0.1:9/webhooks/orders/create",
                                      "--ledger", f"sqlite:///{tmp_path / 'l.sqlite'}",
                                      "--peak-rate", "5", "--duration", "10s"])

    assert result.exit_code == 2
    assert "set CUTOVER_WEBHOOK_SECRET" in result.output


def test_invalid_duration_names_the_value(tmp_path):
    result = CliRunner().invoke(app, ["--sandbox", "--duration", "3 minutes"])

    assert result.exit_code == 2
    assert "Invalid duration '3 minutes'" in result.output


@pytest.mark.slow
def test_remote_worker_gets_settings_from_master(tmp_path):
    """A worker started without --cutover-* options takes host and settings from the master."""
    port = free_ports(1)[0]
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    worker = subprocess.Popen(
        [locust_executable(), "-f", str(LOCUSTFILE), "--worker", "--master-host", "127.0.0.1",
         "--master-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        result = CliRunner().invoke(app, [
            "--sandbox", "--profile", "steady", "--peak-rate", "10", "--duration", "5s", "--run-id", "load-remote",
            "--remote-workers", "1", "--master-bind", f"127.0.0.1:{port}", "--settle-timeout", "30",
            "--min-orders", "10", "--runs-dir", str(runs), "--reports-dir", str(reports),
        ])
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)

    assert result.exit_code in (0, 1), result.output
    report = json.loads((reports / "load-remote" / "loadtest.json").read_text(encoding="utf-8"))
    accounting = report["accounting"]
    assert accounting["sent"] >= 25
    assert accounting["in_ledger"] == accounting["sent"]
    assert accounting["unaccounted"] == 0
    assert report["run"]["remote_locust_workers"] == 1
