"""Terminal rendering of an analysis and of one order's timeline (rich)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from compare import Analysis, Severity, Verdict
from cutover.ledger import Event

__all__ = ["render_analysis", "render_timeline"]

VERDICT_STYLE = {
    Verdict.GO: "bold green",
    Verdict.NO_GO: "bold red",
    Verdict.INSUFFICIENT_EVIDENCE: "bold yellow",
}


# Detail fields short enough for a terminal row; the ledger keeps the rest.
TIMELINE_DETAIL = ("topic", "category", "reason", "error_code")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _share(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.0%})" if whole else str(part)


def render_analysis(console: Console, analysis: Analysis, *, order_limit: int = 10) -> None:
    flows = Table(title=f"Run {analysis.run_id}: {analysis.orders} orders", title_justify="left")
    flows.add_column("flow")
    for header in ("handled", "open gaps", "closed", "confirmed w/o ERP", "pending notices",
                   "ERP throttles", "webhook→ack p50/p99 ms", "webhook→confirmation p50/p99 ms"):
        flows.add_column(header, justify="right")
    for figures in analysis.flows:
        open_style = "red" if figures.open_gaps else "green"
        flows.add_row(
            figures.flow.value,
            str(figures.handled),
            f"[{open_style}]{_share(figures.open_gaps, figures.handled)}[/]",
            str(figures.classes.get("closed", 0)),
            str(figures.classes.get("confirmed_without_erp", 0)),
            str(figures.pending_notices),
            str(figures.throttles),
            f"{_ms(figures.webhook_to_ack.p50_ms)} / {_ms(figures.webhook_to_ack.p99_ms)}",
            f"{_ms(figures.webhook_to_confirmation.p50_ms)} / "
            f"{_ms(figures.webhook_to_confirmation.p99_ms)}",
        )
    console.print(flows)

    criteria = Table(title="Criteria", title_justify="left")
    for header in ("criterion", "status", "figure", "threshold", "examples"):
        criteria.add_column(header)
    for result in analysis.criteria_results:
        style = {"PASS": "green", "MARGINAL": "yellow"}.get(str(result.status), "red")
        examples = escape(", ".join(result.examples[:3])) + (" …" if len(result.examples) > 3 else "")
        criteria.add_row(
            result.name + (" (critical)" if result.critical else ""),
            f"[{style}]{result.status}[/]",
            _figure(result.figure, result.unit),
            f"{result.comparison} {_figure(result.threshold, result.unit)}",
            examples,
        )
    console.print(criteria)

    # Rows come sorted by severity, so the candidate's findings come first;
    # the legacy flow's own open gaps are the expected finding and stay in
    # the report files.
    rows = [row for row in analysis.order_rows(order_limit)
            if row.severity is not None and row.severity < Severity.LEGACY_ONLY]
    if not rows:
        console.print("No candidate order has a finding; report.md lists the legacy flow's.")
    else:
        orders = Table(title="Candidate orders with findings, the most severe first",
                       title_justify="left")
        for header in ("order key", "legacy", "gap ms", "candidate", "gap ms", "findings"):
            orders.add_column(header)
        for row in rows:
            orders.add_row(escape(row.order_key), str(row.legacy), _ms(row.legacy_gap_ms),
                           str(row.candidate), _ms(row.candidate_gap_ms),
                           escape("; ".join(row.issues)))
        console.print(orders)

    losses = {name: value for name, value in {**analysis.counters, **analysis.evidence}.items()
              if value and any(word in name for word in ("dropped", "failed", "lost", "uncorrelated"))}
    if losses:
        console.print("Evidence loss: " + ", ".join(f"{k} {v}" for k, v in sorted(losses.items())))
    style = VERDICT_STYLE.get(analysis.verdict, "bold")
    console.print(f"Verdict: [{style}]{analysis.verdict.value}[/]")


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "share":
        return f"{value:.2%}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def render_timeline(console: Console, events: Sequence[Event], order_key: str) -> None:
    if not events:
        console.print(f"No events for order {order_key}.", markup=False, highlight=False)
        return
    start = min(event.mono_ns for event in events)
    table = Table(title=f"Order {escape(order_key)} (times from its first event)",
                  title_justify="left")
    table.add_column("+ms", justify="right", no_wrap=True)
    table.add_column("flow", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("took ms", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for event in sorted(events, key=lambda e: (e.mono_ns, e.id or 0)):
        detail = json.loads(event.detail) if event.detail else {}
        shown = {k: v for k, v in detail.items() if v is not None and k in TIMELINE_DETAIL}
        table.add_row(
            f"{(event.mono_ns - start) / 1e6:,.1f}", event.flow, event.kind,
            str(event.status or ""), _ms(event.latency_ms) if event.latency_ms else "",
            escape(", ".join(f"{k}={v}" for k, v in shown.items())),
        )
    console.print(table)
