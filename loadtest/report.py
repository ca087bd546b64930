"""The load test's readiness report: one section per load phase, and the chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compare.timing import GapStats, LatencyStats
from loadtest.chart import render_svg
from loadtest.phases import SERIES_STEP_S, FlowPhase, LoadTestFigures

__all__ = ["render_markdown", "write_loadtest_report"]


def write_loadtest_report(figures: LoadTestFigures, folder: Path, run_facts: dict[str, Any]) -> list[Path]:
    """Write loadtest.md, loadtest.json and loadtest.svg into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    chart_path = folder / "loadtest.svg"
    phases = [(p.name, p.start_s, p.end_s) for p in figures.phases]
    chart_path.write_text(render_svg(figures.series, step_s=SERIES_STEP_S, phases=phases,
                                     title=f"Load test {figures.run_id}: rate and open gaps"),
                          encoding="utf-8")
    markdown_path = folder / "loadtest.md"
    markdown_path.write_text(render_markdown(figures, run_facts, chart_path.name), encoding="utf-8")
    json_path = folder / "loadtest.json"
    json_path.write_text(json.dumps({**figures.to_dict(), "run": run_facts}, indent=2), encoding="utf-8")
    return [markdown_path, json_path, chart_path]


def render_markdown(figures: LoadTestFigures, run_facts: dict[str, Any], chart_name: str) -> str:
    profile = figures.profile
    lines = [
        f"# Load test {figures.run_id}",
        "",
        (f"Profile `{profile.name}`: {profile.duration_s:g} s, peak {profile.peak_rate:g} webhooks/s, "
         f"{profile.planned_orders:,.0f} webhooks planned."),
        "",
    ]
    for name, value in run_facts.items():
        lines.append(f"- {name.replace('_', ' ')}: {value}")
    lines += [
        "",
        ("Open gaps count orders confirmed before the ERP acknowledged them, or without an "
         "acknowledgement. A gap is confirmation time minus acknowledgement time, so a negative gap is open."),
        "",
        f"![offered rate and open gaps over time]({chart_name})",
        "",
    ]
    lines += _accounting_lines(figures)

    for phase in figures.phases:
        lines += [
            f"## Phase `{phase.name}` ({phase.start_s:g} to {phase.end_s:g} s)",
            "",
            (f"Target {phase.target_rate:g} webhooks/s on average ({phase.planned_orders} webhooks). "
             f"Sent {phase.sent} ({phase.offered_rate:.1f}/s), of which {phase.sent_ok} were answered with 2xx. "
             f"Shortfall: {phase.shortfall}. Orders received by the proxy: {phase.orders}. "
             f"Mirror losses: {phase.mirror_losses}."),
            "",
            ("| flow | orders | open gaps | time to confirmation p50 | p99 | gap min | gap p50 "
             "| ERP throttles | pending notices |"),
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            _flow_row("legacy", phase.legacy),
            _flow_row("candidate", phase.candidate),
            "",
        ]
    return "\n".join(lines)


def _accounting_lines(figures: LoadTestFigures) -> list[str]:
    accounting = figures.accounting
    verdict = "every order is accounted for" if accounting.unaccounted == 0 else (
        f"**{accounting.unaccounted} orders are unaccounted for**")
    return [
        "## Accounting",
        "",
        (f"Sent {accounting.sent} webhooks. In the ledger: {accounting.in_ledger}. "
         f"No response and not in the ledger: {accounting.no_response}. "
         f"Answered but missing from the ledger: {accounting.answered_not_in_ledger} "
         f"(ledger.lost counter: {accounting.ledger_lost}). "
         f"Legacy webhooks without any candidate evidence: {accounting.candidate_without_evidence} "
         f"(mirror.dropped counter: {accounting.mirror_dropped_counter}). "
         f"Orders in the ledger but not in the order logs: {accounting.not_in_logs}. So {verdict}."),
        "",
        "Counters: " + (", ".join(f"{k} {v}" for k, v in sorted(figures.counters.items())) or "none"),
        "",
    ]


def _flow_row(name: str, flow: FlowPhase) -> str:
    stats = flow.time_to_confirmation
    return (f"| {name} | {flow.orders} | {flow.open_gaps} | {_ms(stats, 'p50_ms')} | {_ms(stats, 'p99_ms')} "
            f"| {_ms(flow.gap, 'min_ms')} | {_ms(flow.gap, 'p50_ms')} "
            f"| {flow.erp_throttles} | {flow.pending_notices} |")


def _ms(stats: LatencyStats | GapStats, field_name: str) -> str:
    value = getattr(stats, field_name)
    return "n/a" if value is None else f"{value:,.0f} ms"
