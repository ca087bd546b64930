"""Render an `Analysis` as the JSON readiness report, for tools and dashboards."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from compare.analysis import Analysis, FlowFigures
from compare.assess import OrderRow
from compare.verdict import CriterionResult

__all__ = ["iso_utc", "render_json"]


def render_json(analysis: Analysis) -> str:
    """Return the report as JSON; order keys are strings, times ISO 8601."""
    report = {
        "run": {
            "id": analysis.run_id,
            "kind": analysis.run_kind,
            "started_at": iso_utc(analysis.started_at),
            "finished_at": iso_utc(analysis.finished_at),
            "ledger": analysis.ledger_url,
            "legacy_confirmation_source": analysis.legacy_confirmation_source,
        },
        "verdict": str(analysis.verdict),
        "exit_code": analysis.exit_code,
        "criteria": [_criterion_json(result) for result in analysis.criteria_results],
        "thresholds": asdict(analysis.criteria),
        "orders": {
            "total": analysis.orders,
            "compared": analysis.compared_orders,
            "missing_in_candidate": analysis.missing_in_candidate,
            "extra_in_candidate": analysis.extra_in_candidate,
        },
        "flows": {str(figures.flow): _flow_json(figures) for figures in analysis.flows},
        "parity": {
            "rate": analysis.parity,
            "pairs": analysis.parity_pairs,
            "differences": analysis.parity_differences,
            "unpaired": analysis.parity_unpaired,
            "examples": [asdict(example) for example in analysis.parity_examples],
            "normalisation": {
                "ignore_paths": list(analysis.normalisation.ignore_paths),
                "ignore_order": analysis.normalisation.ignore_order,
                "decimal_numbers": analysis.normalisation.decimal_numbers,
                "decimal_tolerance": (None if analysis.normalisation.decimal_tolerance is None
                                      else str(analysis.normalisation.decimal_tolerance)),
                "field_map": [list(pair) for pair in analysis.normalisation.field_map],
            },
        },
        "confirmation_parity": {
            "rate": analysis.confirmation_parity,
            "pairs": analysis.confirmation_pairs,
            "differences": analysis.confirmation_differences,
            "examples": [asdict(example) for example in analysis.confirmation_examples],
        },
        "noise": {
            "orders": analysis.noise_orders,
            "fields": analysis.noise_fields,
            "noise_paths": list(analysis.normalisation.noise_paths),
        },
        "difference_fields": analysis.difference_fields,
        "timing_comparisons": {
            stage: None if comparison is None else {
                **asdict(comparison),
                "magnitude": comparison.magnitude,
                "direction": comparison.direction,
            }
            for stage, comparison in analysis.timing_comparisons.items()
        },
        "coverage": {
            "hours": analysis.hours_covered,
            "peak_orders_per_min": analysis.peak_orders_per_min,
        },
        "reconciliation": analysis.reconciliation,
        "counters": analysis.counters,
        "evidence": analysis.evidence,
        "uncorrelated_by_kind": analysis.uncorrelated_by_kind,
        "notable_orders": {
            "total": analysis.notable_total,
            "rows": [_row_json(row) for row in analysis.notable_orders],
        },
    }
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def _criterion_json(result: CriterionResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "description": result.description,
        "status": str(result.status),
        "figure": result.figure,
        "comparison": result.comparison,
        "threshold": result.threshold,
        "marginal_threshold": result.marginal_threshold,
        "unit": result.unit,
        "critical": result.critical,
        "evidence": result.evidence,
        "examples": [str(key) for key in result.examples],
    }


def _flow_json(figures: FlowFigures) -> dict[str, Any]:
    data = asdict(figures)
    data["flow"] = str(figures.flow)
    data["open_gap_share"] = figures.open_gap_share
    return data


def _row_json(row: OrderRow) -> dict[str, Any]:
    return {
        "order_key": str(row.order_key),
        "legacy": str(row.legacy),
        "candidate": str(row.candidate),
        "legacy_gap_ms": row.legacy_gap_ms,
        "candidate_gap_ms": row.candidate_gap_ms,
        "issues": list(row.issues),
    }


def iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # SQLite returns the stored UTC time without its zone.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()
