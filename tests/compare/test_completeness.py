"""Reconciliation against the storefront's own order export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compare import Criteria, OrderExportError, Status, Verdict, analyze, load_order_export
from cutover.events import EventKind, Flow
from tests.compare.factories import LedgerRun


def test_csv_export_with_repeated_rows(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("Name,Id,Lineitem sku\n#1001,5001,A\n#1001,5001,B\n#1002,5002,C\n",
                    encoding="utf-8")

    assert load_order_export(path) == {"5001", "5002"}
    assert load_order_export(path, "Name") == {"#1001", "#1002"}


@pytest.mark.parametrize(
    "document",
    [
        pytest.param([{"id": 5001}, {"id": 5002}], id="list-of-orders"),
        pytest.param({"orders": [{"id": 5001}, {"id": 5002}]}, id="admin-api-shape"),
        pytest.param([5001, "5002"], id="plain-ids"),
    ],
)
def test_json_export_shapes(tmp_path: Path, document) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    assert load_order_export(path) == {"5001", "5002"}


def test_csv_without_key_column_names_columns(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("number,total\n1,2\n", encoding="utf-8")

    with pytest.raises(OrderExportError, match=r"its columns are number, total\..*--orders-export-key"):
        load_order_export(path)


def test_reconciliation_finds_orders_per_flow(ledger: LedgerRun) -> None:
    keys = ledger.good_orders(120)
    ledger.order("legacy-only", Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5)
    ledger.event("legacy-only", Flow.CANDIDATE, EventKind.MIRROR_DROPPED, 0)
    ledger.order("candidate-only", Flow.CANDIDATE, received=1, submitted=10, acked=40,
                 confirmed=45)
    ledger.commit()
    expected = [*keys, "legacy-only", "candidate-only", "never-seen"]

    analysis = analyze(ledger.engine, ledger.run_id, storefront_orders=expected)
    reconciled = next(r for r in analysis.criteria_results if r.name == "storefront_reconciled")

    assert analysis.reconciliation["expected"] == 123
    assert analysis.reconciliation["both"] == 120
    assert analysis.reconciliation["only_legacy"] == 1
    assert analysis.reconciliation["only_candidate"] == 1
    assert analysis.reconciliation["neither"] == 1
    assert reconciled.status == Status.FAIL
    assert reconciled.evidence
    assert set(reconciled.examples) == {"legacy-only", "candidate-only", "never-seen"}


def test_never_seen_order_is_insufficient_evidence(ledger: LedgerRun) -> None:
    keys = ledger.good_orders(120)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, storefront_orders=[*keys, "lost-upstream"])

    assert analysis.verdict == Verdict.INSUFFICIENT_EVIDENCE
    assert analysis.reconciliation["examples"]["neither"] == ["lost-upstream"]


def test_complete_export_passes(ledger: LedgerRun) -> None:
    keys = ledger.good_orders(120)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(), storefront_orders=keys)

    assert analysis.verdict == Verdict.GO
    assert analysis.reconciliation["both"] == 120


def test_without_export_no_reconciliation_criterion(ledger: LedgerRun) -> None:
    ledger.good_orders(3)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(min_orders=1))

    assert analysis.reconciliation is None
    assert "storefront_reconciled" not in {r.name for r in analysis.criteria_results}
