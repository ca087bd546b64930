"""The `cutover report` options for configuration, reconciliation, formats and A/A runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compare import analyze, write_reports
from cutover.commands.report_options import (
    ReportOptionError,
    build_analysis_inputs,
    parse_formats,
    write_aa_calibration,
)
from tests.compare.factories import LedgerRun


def test_parse_formats_keeps_order_and_drops_repeats() -> None:
    assert parse_formats("html, md,html,JUNIT") == ("html", "md", "junit")


@pytest.mark.parametrize("text", ["pdf", "md,pdf", " , "])
def test_parse_formats_rejects_unknown(text: str) -> None:
    with pytest.raises(ReportOptionError, match="Use a comma-separated list of: md, json, html, junit"):
        parse_formats(text)


def test_inputs_from_config_and_export(tmp_path: Path) -> None:
    config = tmp_path / "compare.toml"
    config.write_text("[compare.criteria]\nmin_orders = 5\nmin_parity = 0.99\n", encoding="utf-8")
    export = tmp_path / "orders.csv"
    export.write_text("id\n1\n2\n", encoding="utf-8")

    inputs = build_analysis_inputs(config, export)

    assert inputs.config.criteria.min_orders == 5
    assert inputs.config.criteria.min_parity == 0.99
    assert inputs.storefront_orders == {"1", "2"}


def test_command_line_thresholds_override_file(tmp_path: Path) -> None:
    config = tmp_path / "compare.toml"
    config.write_text("[compare.criteria]\nmin_orders = 5\n", encoding="utf-8")

    inputs = build_analysis_inputs(config, None, min_orders=50)

    assert inputs.config.criteria.min_orders == 50
    assert inputs.storefront_orders is None


@pytest.mark.parametrize(
    ("config_text", "export_text", "message"),
    [
        pytest.param("[compare.criteria]\nmin_parity = 99.9\n", None, "min_parity", id="config"),
        pytest.param(None, "number\n1\n", "--orders-export-key", id="export"),
    ],
)
def test_invalid_inputs_raise_option_error(tmp_path: Path, config_text, export_text,
                                           message: str) -> None:
    config = export = None
    if config_text is not None:
        config = tmp_path / "compare.toml"
        config.write_text(config_text, encoding="utf-8")
    if export_text is not None:
        export = tmp_path / "orders.csv"
        export.write_text(export_text, encoding="utf-8")

    with pytest.raises(ReportOptionError, match=message):
        build_analysis_inputs(config, export)


def test_report_with_inputs_writes_reconciled_reports(ledger: LedgerRun, tmp_path: Path) -> None:
    keys = ledger.good_orders(10)
    ledger.commit()
    config = tmp_path / "compare.toml"
    config.write_text("[compare.criteria]\nmin_orders = 10\n", encoding="utf-8")
    export = tmp_path / "orders.json"
    export.write_text(json.dumps([*keys, "missing-1"]), encoding="utf-8")
    inputs = build_analysis_inputs(config, export)

    analysis = analyze(ledger.engine, ledger.run_id, inputs.config.criteria,
                       inputs.config.normalisation, storefront_orders=inputs.storefront_orders)
    paths = write_reports(analysis, tmp_path / "out", parse_formats("json,junit"))

    report = json.loads(paths[0].read_text(encoding="utf-8"))
    assert report["verdict"] == "INSUFFICIENT EVIDENCE"
    assert report["reconciliation"]["examples"]["neither"] == ["missing-1"]
    assert 'name="storefront_reconciled"' in paths[1].read_text(encoding="utf-8")


def test_aa_calibration_files(ledger: LedgerRun, tmp_path: Path) -> None:
    ledger.good_orders(3)
    ledger.commit()
    inputs = build_analysis_inputs(None, None)

    paths = write_aa_calibration(ledger.engine, ledger.run_id, inputs, tmp_path / "aa")

    assert [path.name for path in paths] == ["noise.md", "noise.json", "noise.toml"]
    assert json.loads(paths[1].read_text(encoding="utf-8"))["pairs"] == 3
    assert "(no field differed)" in paths[0].read_text(encoding="utf-8")
