"""The comparator: per-order join, payload parity, timings and the readiness verdict.

`analyze` streams a run's events from the ledger and joins them per order
and flow. It classifies each flow's handling of each order by the rules in
`compare.classes` and compares the ERP payloads of both flows
(`compare.parity`). Then it measures latencies and gaps (`compare.timing`)
and checks the readiness criteria (`compare.verdict`)::

    analysis = analyze(engine, "run-2024-11-29")
    write_reports(analysis, Path("reports"), formats=("md", "json", "html", "junit"))
    raise SystemExit(analysis.exit_code)   # 0 GO, 1 NO-GO, 2 insufficient evidence

Criteria and normalisation rules can come from a TOML file
(`compare.config`), a storefront export reconciles the run
(`compare.completeness`), and an A/A run calibrates noise (`compare.noise`).

`order_timeline` and `inspect_order` show one order's events and findings.
"""

from compare.analysis import Analysis, ChartData, FlowFigures, ParityExample, analyze, analyze_orders
from compare.assess import OrderRow, Severity
from compare.classes import OrderClass
from compare.completeness import OrderExportError, load_order_export
from compare.config import CompareConfig, CompareConfigError, load_compare_config
from compare.html_report import render_html
from compare.json_report import render_json
from compare.junit_report import render_junit
from compare.noise import NoiseCalibration, calibrate_noise
from compare.parity import (
    DEFAULT_IGNORE_PATHS,
    Normalisation,
    PayloadComparison,
    compare_payloads,
)
from compare.render import REPORT_FORMATS, render_markdown, write_reports
from compare.runs import RunNotFoundError, inspect_order, order_timeline
from compare.significance import RankComparison, compare_distributions
from compare.timing import GapStats, LatencyStats
from compare.verdict import Criteria, CriterionResult, Status, Verdict

__all__ = [
    "DEFAULT_IGNORE_PATHS",
    "REPORT_FORMATS",
    "Analysis",
    "ChartData",
    "CompareConfig",
    "CompareConfigError",
    "Criteria",
    "CriterionResult",
    "FlowFigures",
    "GapStats",
    "LatencyStats",
    "NoiseCalibration",
    "Normalisation",
    "OrderClass",
    "OrderExportError",
    "OrderRow",
    "ParityExample",
    "PayloadComparison",
    "RankComparison",
    "RunNotFoundError",
    "Severity",
    "Status",
    "Verdict",
    "analyze",
    "analyze_orders",
    "calibrate_noise",
    "compare_distributions",
    "compare_payloads",
    "inspect_order",
    "load_compare_config",
    "load_order_export",
    "order_timeline",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "write_reports",
]
