"""Markdown and JSON reports, written files, evidence loss and one order's timeline."""

from __future__ import annotations

import json
from pathlib import Path

from compare import Criteria, analyze, order_timeline, render_json, render_markdown, write_reports
from cutover.events import EventKind, Flow
from tests.compare.factories import LedgerRun, sales_order


def run_with_findings(ledger: LedgerRun) -> None:
    ledger.good_orders(120)
    ledger.order("early", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.order("early", Flow.CANDIDATE, received=1, submitted=10, confirmed=20, acked=50)
    ledger.order("qty", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=60,
                 snapshot=sales_order("qty", [("7", 2, 19.9)]))
    ledger.order("qty", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=60,
                 snapshot=sales_order("qty", [("7", 3, 19.9)]))
    ledger.event(None, Flow.LEGACY, EventKind.UNCORRELATED, 0)
    ledger.event(None, Flow.CANDIDATE, EventKind.UNCORRELATED, 1)
    ledger.counter("ledger.lost", 3)
    ledger.commit()


def test_markdown_contains_verdict_and_reasons(ledger: LedgerRun) -> None:
    run_with_findings(ledger)

    markdown = render_markdown(analyze(ledger.engine, ledger.run_id))

    assert markdown.startswith("# Cutover readiness: run `run-1`")
    assert "**Verdict: NO-GO** (exit code 1)" in markdown
    assert "| **FAIL** |" in markdown
    assert "`early`" in markdown
    assert "`qty`" in markdown
    assert "The legacy flow confirmed 121 of 122 orders (99.18 %)" in markdown
    assert "Events lost by the ledger: 3." in markdown
    assert "Events without an order key: 2 (uncorrelated 2)." in markdown


def test_json_contains_verdict_and_figures(ledger: LedgerRun) -> None:
    run_with_findings(ledger)

    report = json.loads(render_json(analyze(ledger.engine, ledger.run_id)))
    criteria = {criterion["name"]: criterion for criterion in report["criteria"]}

    assert report["verdict"] == "NO-GO"
    assert report["exit_code"] == 1
    assert criteria["no_open_gap"]["status"] == "FAIL"
    assert criteria["no_open_gap"]["examples"] == ["early"]
    assert report["flows"]["candidate"]["classes"]["open"] == 1
    assert report["flows"]["legacy"]["open_gaps"] == 121
    assert report["parity"]["examples"][0]["order_key"] == "qty"
    assert report["counters"]["ledger.lost"] == 3
    assert report["evidence"]["uncorrelated_events"] == 2
    assert report["notable_orders"]["rows"][0]["order_key"] == "early"


def test_go_report_says_every_criterion_passed(ledger: LedgerRun) -> None:
    ledger.good_orders(100)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id)
    markdown = render_markdown(analysis)

    assert "**Verdict: GO** (exit code 0)" in markdown
    assert "The candidate passed every criterion on 100 compared orders." in markdown
    assert json.loads(render_json(analysis))["verdict"] == "GO"


def test_insufficient_evidence_report(ledger: LedgerRun) -> None:
    ledger.good_orders(2)
    ledger.commit()

    markdown = render_markdown(analyze(ledger.engine, ledger.run_id))

    assert "**Verdict: INSUFFICIENT EVIDENCE** (exit code 2)" in markdown
    assert "Not enough evidence for a GO." in markdown


def test_write_reports_creates_both_files(ledger: LedgerRun, tmp_path: Path) -> None:
    ledger.good_orders(2)
    ledger.commit()

    paths = write_reports(analyze(ledger.engine, ledger.run_id), tmp_path / "reports")

    assert [path.name for path in paths] == ["report.md", "report.json"]
    assert "INSUFFICIENT EVIDENCE" in paths[0].read_text(encoding="utf-8")
    assert json.loads(paths[1].read_text(encoding="utf-8"))["exit_code"] == 2


def test_order_timeline_interleaves_flows(ledger: LedgerRun) -> None:
    ledger.good_order("T")
    ledger.commit()

    events = order_timeline(ledger.engine, ledger.run_id, "T")

    assert [(event.flow, event.kind) for event in events] == [
        ("legacy", "webhook.received"),
        ("candidate", "mirror.sent"),
        ("legacy", "confirmation.sent"),
        ("candidate", "erp.submitted"),
        ("legacy", "erp.submitted"),
        ("candidate", "erp.acked"),
        ("candidate", "confirmation.quarantined"),
        ("legacy", "erp.acked"),
    ]


def test_markdown_shows_new_sections(ledger: LedgerRun) -> None:
    run_with_findings(ledger)

    markdown = render_markdown(analyze(ledger.engine, ledger.run_id))

    assert "## Confirmation content parity" in markdown
    assert "### Candidate against legacy" in markdown
    assert "| webhook → ERP acknowledged |" in markdown
    assert "No storefront order export was given." in markdown
    assert "| `no_duplicate_erp_order`: Candidate orders acknowledged by the ERP more than once (critical) | **PASS**" in markdown


def test_marginal_go_is_named_in_reason(ledger: LedgerRun) -> None:
    ledger.good_orders(99)
    ledger.order("R", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.order("R", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=60,
                 snapshot=sales_order("R", [("7", 2, 20)]))
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(min_parity=0.99))
    markdown = render_markdown(analysis)
    report = json.loads(render_json(analysis))

    assert "marginal, near the threshold: erp_parity." in markdown
    assert "**MARGINAL**" in markdown
    parity = next(item for item in report["criteria"] if item["name"] == "erp_parity")
    assert parity["status"] == "MARGINAL"
    assert parity["marginal_threshold"] == 1.0
