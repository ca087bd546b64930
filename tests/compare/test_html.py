"""The HTML report, rendered in headless Chromium, and the JUnit report."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest

from compare import Criteria, analyze, render_html, render_junit, write_reports
from cutover.events import Flow
from tests.compare.factories import LedgerRun

CHROMIUM = "/usr/bin/chromium"
INSTALL_LINE = "apt-get update && apt-get install -y chromium"
CHART_IDS = ("chart-gaps-legacy", "chart-gaps-candidate", "chart-time-to-confirmation",
             "chart-open-gaps-over-time")


def _no_go_run(ledger: LedgerRun) -> None:
    ledger.good_orders(120)
    ledger.order("early-1", Flow.LEGACY, received=0, confirmed=5, submitted=30, acked=80)
    ledger.order("early-1", Flow.CANDIDATE, received=1, submitted=10, acked=40, confirmed=39)
    ledger.commit()


def _dump_dom(page: Path, profile: Path) -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found; install Debian's chromium with: {INSTALL_LINE}")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", "--virtual-time-budget=2000", "--dump-dom",
        page.as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def test_html_report_visible_in_chromium(ledger: LedgerRun, tmp_path: Path) -> None:
    _no_go_run(ledger)
    analysis = analyze(ledger.engine, ledger.run_id)
    page = write_reports(analysis, tmp_path / "report", formats=("html",))[0]

    dom = _dump_dom(page, tmp_path / "profile")

    verdict = re.search(r'<div id="verdict"[^>]*>([^<]*)</div>', dom)
    assert verdict is not None, dom[:2000]
    assert "NO-GO" in verdict.group(1)
    assert 'data-rendered-visible="yes"' in verdict.group(0)
    for chart_id in CHART_IDS:
        tag = re.search(rf'<svg data-check="" id="{chart_id}"[^>]*>', dom)
        assert tag is not None, f"chart {chart_id} missing"
        assert 'data-rendered-visible="yes"' in tag.group(0), tag.group(0)
        size = re.search(r'data-rendered-size="(\d+)x(\d+)"', tag.group(0))
        assert size is not None, tag.group(0)
        assert int(size.group(1)) > 100, size.group(0)
        assert int(size.group(2)) > 100, size.group(0)


def test_html_report_has_no_external_resources(ledger: LedgerRun) -> None:
    _no_go_run(ledger)
    html = render_html(analyze(ledger.engine, ledger.run_id))

    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "@import" not in html
    assert "<link" not in html
    # The open gap's drill-down entry and its criterion example are in the page.
    assert "<code>early-1</code>" in html
    assert html.count("<svg ") == len(CHART_IDS)


def test_html_bars_match_gap_counts(ledger: LedgerRun) -> None:
    _no_go_run(ledger)
    html = render_html(analyze(ledger.engine, ledger.run_id))
    candidate_chart = re.search(r'<svg data-check id="chart-gaps-candidate".*?</svg>', html).group(0)

    # 120 candidate gaps of +5 ms and one of -1 ms, in separate bins.
    bar_counts = [int(count) for count in re.findall(r": (\d+) orders</title></rect>", candidate_chart)]
    assert sorted(bar_counts) == [1, 120]


def test_junit_has_one_case_per_criterion(ledger: LedgerRun) -> None:
    _no_go_run(ledger)
    analysis = analyze(ledger.engine, ledger.run_id)
    root = ElementTree.fromstring(render_junit(analysis))
    suite = root.find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}

    assert set(cases) == {result.name for result in analysis.criteria_results}
    failure = cases["no_open_gap"].find("failure")
    assert failure is not None
    assert failure.get("type") == "critical"
    assert "early-1" in failure.text
    assert cases["erp_parity"].find("failure") is None
    assert suite.get("failures") == "1"
    properties = {item.get("name"): item.get("value") for item in suite.iter("property")}
    assert properties["verdict"] == "NO-GO"


def test_write_reports_all_formats(ledger: LedgerRun, tmp_path: Path) -> None:
    ledger.good_orders(3)
    ledger.commit()
    analysis = analyze(ledger.engine, ledger.run_id, Criteria(min_orders=1))

    paths = write_reports(analysis, tmp_path, formats=("md", "json", "html", "junit"))

    assert [path.name for path in paths] == ["report.md", "report.json", "report.html",
                                             "report.junit.xml"]
    with pytest.raises(ValueError, match="Unknown report format"):
        write_reports(analysis, tmp_path, formats=("pdf",))



def test_drill_down_shows_order_timeline(ledger: LedgerRun) -> None:
    _no_go_run(ledger)
    analysis = analyze(ledger.engine, ledger.run_id)
    html = render_html(analysis)

    timeline = analysis.timelines["early-1"]
    assert [(entry.at_ms, entry.flow, entry.kind) for entry in timeline] == [
        (0.0, "legacy", "webhook.received"),
        (1.0, "candidate", "mirror.sent"),
        (5.0, "legacy", "confirmation.sent"),
        (10.0, "candidate", "erp.submitted"),
        (30.0, "legacy", "erp.submitted"),
        (39.0, "candidate", "confirmation.quarantined"),
        (40.0, "candidate", "erp.acked"),
        (80.0, "legacy", "erp.acked"),
    ]
    details = re.search(r"<details><summary><code>early-1</code>.*?</details>", html).group(0)
    assert "<td>39.000</td><td>candidate</td><td>confirmation.quarantined</td>" in details
