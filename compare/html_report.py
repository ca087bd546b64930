"""Render an `Analysis` as one self-contained HTML page.

The page has no external resources: styles, inline SVG charts and a short
script are in the file. The script only records the rendered size of the
verdict and of each chart in `data-rendered-*` attributes, so a headless
browser can confirm that they are visible.
"""

from __future__ import annotations

from html import escape

from compare.analysis import STAGES, Analysis, TimelineEntry
from compare.assess import OrderRow
from compare.charts import FLOW_COLOURS, cdf_chart, histogram_chart, series_chart
from compare.json_report import iso_utc
from compare.render import (
    _figure,
    _legacy_versus_candidate,
    _ms,
    _percent,
    _threshold,
    _verdict_reason,
    stage_label,
)
from compare.verdict import Status, Verdict

__all__ = ["render_html"]

# Orders in the drill-down; the JSON report has all kept rows.
HTML_ORDER_ROWS = 200

_VERDICT_COLOURS = {
    Verdict.GO: "#1e8449",
    Verdict.NO_GO: "#b03a2e",
    Verdict.INSUFFICIENT_EVIDENCE: "#b7950b",
}
_STATUS_COLOURS = {Status.PASS: "#1e8449", Status.MARGINAL: "#b7950b", Status.FAIL: "#b03a2e"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
code { font-size: 0.9em; }
.verdict { color: #fff; padding: 1rem 1.5rem; font-size: 1.8rem; font-weight: bold; }
.status { font-weight: bold; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.chart { border: 1px solid #ddd; background: #fff; }
details { margin: 0.2rem 0; }
summary { cursor: pointer; }
"""

_SCRIPT = """
for (const element of document.querySelectorAll('[data-check]')) {
  const box = element.getBoundingClientRect();
  const style = getComputedStyle(element);
  const shown = box.width > 0 && box.height > 0 && style.visibility !== 'hidden'
    && style.display !== 'none';
  element.setAttribute('data-rendered-size', Math.round(box.width) + 'x' + Math.round(box.height));
  element.setAttribute('data-rendered-visible', shown ? 'yes' : 'no');
}
"""


def render_html(analysis: Analysis) -> str:
    """Return the readiness report as one HTML page."""
    sections = [
        _header(analysis),
        _criteria(analysis),
        _charts(analysis),
        _timing(analysis),
        _parity(analysis),
        _reconciliation(analysis),
        _evidence(analysis),
        _orders(analysis),
    ]
    title = f"Cutover readiness: {analysis.run_id}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        + "".join(sections)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )


def _header(analysis: Analysis) -> str:
    colour = _VERDICT_COLOURS[analysis.verdict]
    marginal = ", ".join(result.name for result in analysis.marginal_criteria)
    lines = [
        (f'<div id="verdict" class="verdict" data-check style="background:{colour}">'
         f"Verdict: {escape(str(analysis.verdict))} (exit code {analysis.exit_code})</div>"),
        f"<p>{escape(_verdict_reason(analysis))}</p>",
        f"<p>{escape(_legacy_versus_candidate(analysis))}</p>",
    ]
    if marginal:
        lines.append(f"<p>Marginal criteria, passing but near their threshold: "
                     f"{escape(marginal)}.</p>")
    lines.append(
        f"<p>Run kind {escape(analysis.run_kind)}, started {escape(str(iso_utc(analysis.started_at)))}, "
        f"finished {escape(str(iso_utc(analysis.finished_at) or 'not yet'))}. "
        f"Ledger: <code>{escape(analysis.ledger_url)}</code>.</p>"
    )
    return "".join(lines)


def _criteria(analysis: Analysis) -> str:
    rows = []
    for result in analysis.criteria_results:
        kind = ""
        if result.critical:
            kind = "critical"
        elif result.evidence:
            kind = "evidence"
        examples = ", ".join(f"<code>{escape(key)}</code>" for key in result.examples)
        rows.append([
            f"<code>{escape(result.name)}</code> {escape(result.description)}",
            escape(kind),
            (f'<span class="status" style="color:{_STATUS_COLOURS[result.status]}">'
             f"{escape(str(result.status))}</span>"),
            escape(_figure(result)),
            escape(_threshold(result)),
            examples,
        ])
    return "<h2>Criteria</h2>" + _table(
        ["Criterion", "Kind", "Status", "Figure", "Threshold", "Example orders"], rows)


def _charts(analysis: Analysis) -> str:
    charts = analysis.charts
    if charts is None:
        return ""
    svgs = [
        histogram_chart(f"chart-gaps-{flow}", f"Gap per order, {flow} flow", distribution,
                        FLOW_COLOURS[flow])
        for flow, distribution in charts.gaps.items()
    ]
    svgs.append(cdf_chart("chart-time-to-confirmation",
                          "Time to confirmation: share of orders confirmed", charts.to_confirmation))
    svgs.append(series_chart(
        "chart-open-gaps-over-time", "Orders and open gaps over time", charts.over_time,
        {"orders": "#7f8c8d", "legacy_open": FLOW_COLOURS["legacy"],
         "candidate_open": FLOW_COLOURS["candidate"]},
    ))
    marked = [svg.replace("<svg ", "<svg data-check ", 1) for svg in svgs]
    return ("<h2>Charts</h2><p>Gap: first confirmation minus first ERP acknowledgement; "
            "below 0 the customer was confirmed before the ERP had the order.</p>"
            f'<div class="charts">{"".join(marked)}</div>')


def _timing(analysis: Analysis) -> str:
    rows = []
    for figures in analysis.flows:
        for stage, stats in (("webhook_to_submission", figures.webhook_to_submission),
                             ("webhook_to_ack", figures.webhook_to_ack),
                             ("webhook_to_confirmation", figures.webhook_to_confirmation)):
            rows.append([escape(str(figures.flow)), escape(stage_label(stage)), str(stats.count),
                         _ms(stats.p50_ms), _ms(stats.p95_ms), _ms(stats.p99_ms),
                         _ms(stats.max_ms)])
    latency = _table(["Flow", "Stage", "Orders", "p50", "p95", "p99", "max"], rows)

    test_rows = []
    for stage in STAGES:
        comparison = analysis.timing_comparisons.get(stage)
        if comparison is None:
            test_rows.append([escape(stage_label(stage)), "not measured in both flows", "", "", ""])
            continue
        test_rows.append([
            escape(stage_label(stage)),
            f"{comparison.legacy_count} / {comparison.candidate_count}",
            f"{comparison.p_value:.3g}",
            f"{comparison.cliffs_delta:+.3f} ({comparison.magnitude})",
            escape(comparison.direction),
        ])
    tests = _table(["Stage", "Orders legacy / candidate", "Mann-Whitney p",
                    "Cliff's delta", "Direction"], test_rows)
    return ("<h2>Timing (ms)</h2>" + latency
            + "<h3>Candidate against legacy</h3>" + tests)


def _parity(analysis: Analysis) -> str:
    parts = [
        "<h2>Outcome parity</h2>",
        (f"<p>ERP payload parity {escape(_percent(analysis.parity))} over "
         f"{analysis.parity_pairs} orders acknowledged in both flows; confirmation content "
         f"parity {escape(_percent(analysis.confirmation_parity))} over "
         f"{analysis.confirmation_pairs} orders confirmed in both.</p>"),
    ]
    for label, examples in (("ERP payload", analysis.parity_examples),
                            ("Confirmation", analysis.confirmation_examples)):
        if examples:
            rows = [[f"<code>{escape(example.order_key)}</code>", escape(example.difference)]
                    for example in examples]
            parts.append(f"<h3>{label} differences</h3>"
                         + _table(["Order", "Difference (legacy, then candidate)"], rows))
    if analysis.noise_fields:
        rows = [[f"<code>{escape(pattern)}</code>", str(count)]
                for pattern, count in analysis.noise_fields.items()]
        parts.append(f"<h3>Noise</h3><p>{analysis.noise_orders} orders differed only in "
                     "fields known as noise; they count as equal.</p>"
                     + _table(["Field", "Orders"], rows))
    return "".join(parts)


def _reconciliation(analysis: Analysis) -> str:
    figures = analysis.reconciliation
    if figures is None:
        return ""
    rows = [[label, str(figures[name]),
             ", ".join(f"<code>{escape(key)}</code>" for key in figures["examples"].get(name, []))]
            for label, name in (("in both flows", "both"), ("only in the legacy flow", "only_legacy"),
                                ("only in the candidate", "only_candidate"),
                                ("in neither flow", "neither"))]
    return (f"<h2>Storefront reconciliation</h2><p>{figures['expected']} orders in the "
            "storefront's export.</p>" + _table(["Orders", "Count", "Examples"], rows))


def _evidence(analysis: Analysis) -> str:
    rows = [[f"<code>{escape(name)}</code>", str(value)]
            for name, value in sorted(analysis.counters.items())]
    rows += [[escape(name.replace("_", " ")), str(value)]
             for name, value in analysis.evidence.items()]
    return "<h2>Proxy counters and evidence loss</h2>" + _table(["Counter", "Count"], rows)


def _orders(analysis: Analysis) -> str:
    rows = analysis.order_rows(HTML_ORDER_ROWS)
    heading = (f"<h2>Orders to look at</h2><p>{len(rows)} of {analysis.notable_total} orders "
               "with a finding, the most severe first. <code>cutover compare --order KEY</code> "
               "prints an order's timeline.</p>")
    return heading + "".join(_order_details(row, analysis.timelines.get(row.order_key))
                             for row in rows)


def _order_details(row: OrderRow, timeline: list[TimelineEntry] | None) -> str:
    summary = f"<code>{escape(row.order_key)}</code>: {escape('; '.join(row.issues))}"
    facts = [
        ["Legacy", escape(str(row.legacy)), _ms(row.legacy_gap_ms)],
        ["Candidate", escape(str(row.candidate)), _ms(row.candidate_gap_ms)],
    ]
    detail = _table(["Flow", "Class", "Gap (ms)"], facts)
    for label, comparison in (("ERP payload", row.payload), ("Confirmation", row.confirmation)):
        if comparison is not None and comparison.difference:
            detail += f"<p>{label}: {escape(comparison.difference)}</p>"
    if timeline:
        events = [[f"{entry.at_ms:,.3f}", escape(entry.flow), escape(entry.kind),
                   "" if entry.status is None else str(entry.status)] for entry in timeline]
        detail += "<p>Timeline, ms from the order's first event:</p>" + _table(
            ["At (ms)", "Flow", "Event", "Status"], events)
    return f"<details><summary>{summary}</summary>{detail}</details>"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
