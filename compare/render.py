"""Render an `Analysis` as the Markdown readiness report, and write the reports."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from compare.analysis import STAGES, Analysis
from compare.json_report import iso_utc, render_json
from compare.verdict import CriterionResult, Verdict

__all__ = ["REPORT_FORMATS", "render_markdown", "stage_label", "write_reports"]

# Report formats and their file names.
REPORT_FORMATS = {"md": "report.md", "json": "report.json", "html": "report.html",
                  "junit": "report.junit.xml"}
DEFAULT_FORMATS = ("md", "json")

_STAGE_LABELS = {
    "webhook_to_submission": "webhook → ERP submitted",
    "webhook_to_ack": "webhook → ERP acknowledged",
    "webhook_to_confirmation": "webhook → confirmation",
    "gap": "ERP acknowledged → confirmation (gap)",
}

# Order rows in the Markdown report; the JSON report has all kept rows.
MARKDOWN_ORDER_ROWS = 50

_COMPARISON_SIGNS = {">=": "≥", "<=": "≤"}


def write_reports(
    analysis: Analysis, folder: Path, formats: Iterable[str] = DEFAULT_FORMATS
) -> list[Path]:
    """Write the reports in `formats` (md, json, html, junit) into `folder`, creating it if needed."""
    from compare.html_report import render_html
    from compare.junit_report import render_junit

    renderers = {"md": render_markdown, "json": render_json, "html": render_html,
                 "junit": render_junit}
    chosen = list(dict.fromkeys(formats))
    unknown = [name for name in chosen if name not in renderers]
    if unknown:
        raise ValueError(f"Unknown report format(s) {', '.join(unknown)}; "
                         f"use some of: {', '.join(REPORT_FORMATS)}.")

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in chosen:
        path = folder / REPORT_FORMATS[name]
        path.write_text(renderers[name](analysis), encoding="utf-8")
        paths.append(path)
    return paths


def stage_label(stage: str) -> str:
    return _STAGE_LABELS.get(stage, stage)


def render_markdown(analysis: Analysis) -> str:
    """Return the readiness report as Markdown for people to read and sign."""
    sections = [
        _header(analysis),
        _criteria_section(analysis),
        _gap_comparison_section(analysis),
        _classes_section(analysis),
        _parity_section(analysis),
        _confirmation_section(analysis),
        _timing_section(analysis),
        _reconciliation_section(analysis),
        _evidence_section(analysis),
        _orders_section(analysis),
    ]
    return "\n\n".join(section.rstrip() for section in sections) + "\n"


def _header(analysis: Analysis) -> str:
    lines = [
        f"# Cutover readiness: run `{analysis.run_id}`",
        "",
        f"**Verdict: {analysis.verdict}** (exit code {analysis.exit_code})",
        "",
        _verdict_reason(analysis),
        "",
        _legacy_versus_candidate(analysis),
        "",
        (f"Run kind {analysis.run_kind}, started {iso_utc(analysis.started_at)}, "
         f"finished {iso_utc(analysis.finished_at) or 'not yet'}. Ledger: `{analysis.ledger_url}`."),
    ]
    if analysis.legacy_confirmation_source:
        lines += ["", ("The storefront sends the legacy flow's confirmations itself: their times "
                       f"come from the webhook ({analysis.legacy_confirmation_source}), "
                       "converted to the proxy's monotonic clock.")]
    if analysis.finished_at is None:
        lines += ["", ("The run has not finished, so orders still in flight are counted as "
                       "pending or unconfirmed.")]
    return "\n".join(lines)


def _verdict_reason(analysis: Analysis) -> str:
    failed = [result for result in analysis.criteria_results if not result.passed]
    if analysis.verdict == Verdict.GO:
        marginal = analysis.marginal_criteria
        if marginal:
            names = ", ".join(result.name for result in marginal)
            return (f"The candidate passed every criterion on {analysis.compared_orders} "
                    f"compared orders; marginal, near the threshold: {names}.")
        return (f"The candidate passed every criterion on {analysis.compared_orders} "
                f"compared orders.")

    reasons = "; ".join(
        f"{_lower_first(result.description)}: {_figure(result)} "
        f"(required {_threshold(result)})"
        for result in failed
    )
    if analysis.verdict == Verdict.INSUFFICIENT_EVIDENCE:
        return f"Not enough evidence for a GO. Failed: {reasons}."
    return f"Failed: {reasons}."


def _legacy_versus_candidate(analysis: Analysis) -> str:
    legacy, candidate = analysis.flows
    return (
        f"The legacy flow confirmed {legacy.open_gaps} of {legacy.handled} orders "
        f"({_percent(legacy.open_gap_share)}) before the ERP acknowledged them; "
        f"the candidate confirmed {candidate.open_gaps} of {candidate.handled} "
        f"({_percent(candidate.open_gap_share)})."
    )


def _criteria_section(analysis: Analysis) -> str:
    rows = []
    for result in analysis.criteria_results:
        label = result.description
        if result.critical:
            label += " (critical)"
        rows.append([
            f"`{result.name}`: {label}",
            f"**{result.status}**",
            _figure(result),
            _threshold(result),
            _keys(result.examples),
        ])
    return "## Criteria\n\n" + _table(["Criterion", "Status", "Figure", "Threshold", "Examples"], rows)


def _gap_comparison_section(analysis: Analysis) -> str:
    rows = [
        [
            str(figures.flow),
            str(figures.handled),
            str(figures.open_gaps),
            _percent(figures.open_gap_share),
            str(figures.gap.open),
            str(figures.gap.unbounded),
        ]
        for figures in analysis.flows
    ]
    headers = ["Flow", "Orders handled", "Confirmed before ERP", "Share",
               "of which before the ack", "of which without ack"]
    return "## Confirmations before the ERP acknowledgement\n\n" + _table(headers, rows)


def _classes_section(analysis: Analysis) -> str:
    legacy, candidate = analysis.flows
    rows = [
        [f"`{name}`", str(legacy.classes.get(name, "–")), str(count)]
        for name, count in candidate.classes.items()
    ]
    rows += [
        ["ERP submissions", str(legacy.submissions), str(candidate.submissions)],
        ["ERP rejections", str(legacy.rejections), str(candidate.rejections)],
        ["ERP throttled (429)", str(legacy.throttles), str(candidate.throttles)],
        ["ERP failed (5xx, no answer)", str(legacy.failures), str(candidate.failures)],
        ["Orders acknowledged more than once", str(legacy.duplicate_acks),
         str(candidate.duplicate_acks)],
        ["Orders confirmed more than once", str(legacy.duplicate_confirmations),
         str(candidate.duplicate_confirmations)],
        ["Pending notices", str(legacy.pending_notices), str(candidate.pending_notices)],
    ]
    summary = (
        f"{analysis.orders} orders in the run, {analysis.compared_orders} compared "
        f"(seen by the legacy flow and mirrored to the candidate). Missing in the "
        f"candidate: {analysis.missing_in_candidate}. Seen by the candidate only: "
        f"{analysis.extra_in_candidate}."
    )
    return "## Orders by class\n\n" + summary + "\n\n" + _table(["", "Legacy", "Candidate"], rows)


def _parity_section(analysis: Analysis) -> str:
    normalisation = analysis.normalisation
    lines = [
        "## ERP payload parity",
        "",
        (f"Parity {_percent(analysis.parity)}: {analysis.parity_pairs} orders were "
         f"acknowledged in both flows, and the payloads of {analysis.parity_differences} differ."),
        "",
        "Compared after normalisation: ignored paths "
        + ", ".join(f"`{path}`" for path in normalisation.ignore_paths)
        + f"; list order {'ignored' if normalisation.ignore_order else 'compared'}; "
        + f"numbers {'compared as decimals' if normalisation.decimal_numbers else 'as sent'}.",
    ]
    if analysis.parity_unpaired:
        lines += ["", (f"{analysis.parity_unpaired} orders were acknowledged in both flows, "
                       "but a submission snapshot is missing, so they were not compared.")]
    if analysis.parity_examples:
        rows = [[_code(example.order_key), _code(example.difference)]
                for example in analysis.parity_examples]
        lines += ["", _table(["Order", "Difference (legacy, then candidate)"], rows)]
    return "\n".join(lines)


def _confirmation_section(analysis: Analysis) -> str:
    lines = [
        "## Confirmation content parity",
        "",
        (f"Parity {_percent(analysis.confirmation_parity)}: {analysis.confirmation_pairs} "
         f"orders were confirmed in both flows with a recorded email, and the items, "
         f"quantities, prices, total or currency of {analysis.confirmation_differences} differ."),
    ]
    if analysis.confirmation_examples:
        rows = [[_code(example.order_key), _code(example.difference)]
                for example in analysis.confirmation_examples]
        lines += ["", _table(["Order", "Difference (legacy, then candidate)"], rows)]
    if analysis.noise_fields:
        rows = [[_code(pattern), str(count)] for pattern, count in analysis.noise_fields.items()]
        lines += ["", (f"ERP payloads of {analysis.noise_orders} orders differed only in "
                       "fields known as noise, so they count as equal:"), "",
                  _table(["Field", "Orders"], rows)]
    return "\n".join(lines)


def _reconciliation_section(analysis: Analysis) -> str:
    figures = analysis.reconciliation
    if figures is None:
        return "## Storefront reconciliation\n\nNo storefront order export was given."
    rows = []
    for label, name in (("in both flows", "both"), ("only in the legacy flow", "only_legacy"),
                        ("only in the candidate", "only_candidate"), ("in neither flow", "neither")):
        rows.append([label, str(figures[name]), _keys(tuple(figures["examples"].get(name, [])))])
    return (f"## Storefront reconciliation\n\n{figures['expected']} orders in the storefront's "
            "export.\n\n" + _table(["Orders", "Count", "Examples"], rows))


def _comparison_rows(analysis: Analysis) -> list[list[str]]:
    rows = []
    for stage in STAGES:
        comparison = analysis.timing_comparisons.get(stage)
        if comparison is None:
            rows.append([stage_label(stage), "–", "–", "–", "not measured in both flows"])
            continue
        rows.append([
            stage_label(stage),
            f"{comparison.legacy_count} / {comparison.candidate_count}",
            f"{comparison.p_value:.3g}",
            f"{comparison.cliffs_delta:+.3f} ({comparison.magnitude})",
            comparison.direction,
        ])
    return rows


def _timing_section(analysis: Analysis) -> str:
    rows = []
    for figures in analysis.flows:
        for label, stats in (("webhook → ERP submitted", figures.webhook_to_submission),
                             ("webhook → ERP ack", figures.webhook_to_ack),
                             ("webhook → confirmation", figures.webhook_to_confirmation)):
            rows.append([str(figures.flow), label, str(stats.count), _ms(stats.p50_ms),
                         _ms(stats.p95_ms), _ms(stats.p99_ms), _ms(stats.max_ms)])
    latency = _table(["Flow", "Latency", "Orders", "p50", "p95", "p99", "max"], rows)

    gap_rows = [
        [str(figures.flow), str(figures.gap.measured), _ms(figures.gap.min_ms),
         _ms(figures.gap.p50_ms), _ms(figures.gap.max_ms), str(figures.gap.open),
         str(figures.gap.unbounded)]
        for figures in analysis.flows
    ]
    gaps = _table(["Flow", "Measured", "min", "p50", "max", "Open (< 0)", "Without ack"],
                  gap_rows)
    return (
        "## Timing (ms)\n\n"
        "Webhook time is the legacy flow's webhook.received and the candidate's mirror.sent. "
        "Percentiles are upper bounds within 0.1 % of the exact value; max is exact.\n\n"
        + latency
        + "\n\n### Gap: first confirmation minus first ERP acknowledgement\n\n"
        + gaps
        + "\n\n### Candidate against legacy\n\n"
        "Two-sided Mann-Whitney U test; Cliff's delta is P(candidate slower) minus "
        "P(candidate faster).\n\n"
        + _table(["Stage", "Orders legacy / candidate", "p", "Cliff's delta", "Direction"],
                 _comparison_rows(analysis))
    )


def _evidence_section(analysis: Analysis) -> str:
    evidence = analysis.evidence
    rows = [[f"`{name}`", str(value)] for name, value in sorted(analysis.counters.items())]
    rows += [[name.replace("_", " "), str(value)] for name, value in evidence.items()]
    if analysis.hours_covered is not None:
        rows.append(["hours covered", f"{analysis.hours_covered:.3f}"])
    if analysis.peak_orders_per_min is not None:
        rows.append(["peak webhooks per minute", f"{analysis.peak_orders_per_min:g}"])
    lines = ["## Proxy counters and evidence loss", "", _table(["Counter", "Count"], rows)]

    notes = []
    if analysis.counters.get("ledger.lost"):
        notes.append(f"Events lost by the ledger: {analysis.counters['ledger.lost']}. Orders "
                     "with a lost event may be classified on incomplete evidence.")
    if analysis.counters.get("ledger.may_be_missing"):
        notes.append(f"Events that may be missing because a proxy instance stopped without a "
                     f"clean stop (killed, crashed, or cut off from the ledger): about "
                     f"{analysis.counters['ledger.may_be_missing']}, the maximum that instance "
                     "held unwritten at once. Its orders may be classified on incomplete "
                     "evidence.")
    if evidence["orders_not_mirrored"]:
        notes.append(f"Orders that never reached the candidate: {evidence['orders_not_mirrored']}. "
                     "They are excluded from the candidate's criteria.")
    if evidence["uncorrelated_events"]:
        kinds = ", ".join(f"{kind} {count}" for kind, count in analysis.uncorrelated_by_kind.items())
        notes.append(f"Events without an order key: {evidence['uncorrelated_events']} ({kinds}).")
    if evidence["mirrored_body_mismatches"]:
        notes.append(f"Mirrored webhook bodies that differ from every body the legacy flow "
                     f"received for the order: {evidence['mirrored_body_mismatches']}.")
    if evidence["orders_timed_by_wall_clock"]:
        skew = analysis.clock_skew
        bound = ("unknown: an instance has no measured clock offset" if skew is None
                 or skew.bound_ms is None else f"{skew.bound_ms:.3f} ms")
        notes.append(f"Orders recorded by more than one proxy and so timed by wall clock: "
                     f"{evidence['orders_timed_by_wall_clock']}. Clock skew bound between the "
                     f"proxies: {bound}; a gap no larger than it is called neither open nor "
                     f"closed ({evidence['gaps_within_clock_skew']} orders).")
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines)


def _orders_section(analysis: Analysis) -> str:
    rows = [
        [_code(row.order_key), f"`{row.legacy}`", _ms(row.legacy_gap_ms),
         f"`{row.candidate}`", _ms(row.candidate_gap_ms), "; ".join(row.issues)]
        for row in analysis.order_rows(MARKDOWN_ORDER_ROWS)
    ]
    heading = (f"## Orders to look at\n\n{len(rows)} of {analysis.notable_total} orders with a "
               "finding, the most severe first. Gap in ms.")
    if not rows:
        return heading
    headers = ["Order", "Legacy", "Gap", "Candidate", "Gap", "Findings"]
    return heading + "\n\n" + _table(headers, rows)


# Cells


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ")
                                        for cell in row) + " |")
    return "\n".join(lines)


def _figure(result: CriterionResult) -> str:
    if result.figure is None:
        return "n/a"
    if result.unit == "share":
        return _percent(result.figure)
    return str(result.figure)


def _threshold(result: CriterionResult) -> str:
    sign = _COMPARISON_SIGNS[result.comparison]
    if result.unit == "share":
        return f"{sign} {_percent(result.threshold)}"
    return f"{sign} {result.threshold}"


def _keys(keys: tuple[str, ...]) -> str:
    return ", ".join(_code(key) for key in keys)


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _percent(share: float | None) -> str:
    if share is None:
        return "n/a"
    return f"{share * 100:.2f} %"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    # Two decimals hide the 0.1 % rounding of the histograms on small values.
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
