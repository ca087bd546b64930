"""The comparator: per-order join, payload parity, timings and the readiness verdict.

`analyze` streams a run's events from the ledger and joins them per order
and flow. It classifies each flow's handling of each order by the rules in
`compare.classes` and compares the ERP payloads of both flows
(`compare.parity`). Then it measures latencies and gaps (`compare.timing`)
and checks the readiness criteria (`compare.verdict`)::

    analysis = analyze(engine, "run-2024-11-29")
    write_reports(analysis, Path("reports"))
    raise SystemExit(analysis.exit_code)   # 0 GO, 1 NO-GO, 2 insufficient evidence

`order_timeline` and `inspect_order` show one order's events and findings.
"""

from compare.analysis import Analysis, FlowFigures, ParityExample, analyze
from compare.assess import OrderRow, Severity
from compare.classes import OrderClass
from compare.json_report import render_json
from compare.parity import (
    DEFAULT_IGNORE_PATHS,
    Normalisation,
    PayloadComparison,
    compare_payloads,
)
from compare.render import render_markdown, write_reports
from compare.runs import RunNotFoundError, inspect_order, order_timeline
from compare.timing import GapStats, LatencyStats
from compare.verdict import Criteria, CriterionResult, Status, Verdict

__all__ = [
    "DEFAULT_IGNORE_PATHS",
    "Analysis",
    "Criteria",
    "CriterionResult",
    "FlowFigures",
    "GapStats",
    "LatencyStats",
    "Normalisation",
    "OrderClass",
    "OrderRow",
    "ParityExample",
    "PayloadComparison",
    "RunNotFoundError",
    "Severity",
    "Status",
    "Verdict",
    "analyze",
    "compare_payloads",
    "inspect_order",
    "order_timeline",
    "render_json",
    "render_markdown",
    "write_reports",
]
