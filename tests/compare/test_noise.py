"""Noise calibration from an A/A run and its use in an A/B run."""

from __future__ import annotations

import json
import tomllib

from compare import Criteria, Normalisation, analyze, calibrate_noise
from cutover.events import Flow
from tests.compare.factories import LedgerRun, sales_order


def insert_aa_run(ledger: LedgerRun, orders: int) -> None:
    """Both sides send the same order, but a request id differs on every one and a line id on every fifth."""
    for index in range(orders):
        key = f"aa-{index:03d}"
        for flow, offset in ((Flow.LEGACY, 0), (Flow.CANDIDATE, 1)):
            lines = (("7", 2, 19.9), (f"line-{index % 5 == 0 and flow}", 1, 5))
            snapshot = sales_order(key, lines, custbody_request_id=f"{flow}-{index}")
            ledger.order(key, flow, received=index * 1000 + offset, submitted=index * 1000 + 10,
                         acked=index * 1000 + 40, confirmed=index * 1000 + 45, snapshot=snapshot)


def test_aa_run_suggests_rules_with_counts(ledger: LedgerRun) -> None:
    insert_aa_run(ledger, 20)
    ledger.commit()

    calibration = calibrate_noise(ledger.engine, ledger.run_id)
    fields = {item.pattern: item for item in calibration.fields}

    assert calibration.pairs == 20
    assert calibration.differing_orders == 20
    request_id = fields[r"^root\['custbody_request_id'\]$"]
    assert request_id.orders == 20
    assert request_id.share == 1.0
    line_fields = [item for pattern, item in fields.items() if "items" in pattern]
    assert [item.orders for item in line_fields] == [4]


def test_suggested_toml_is_valid_and_applies(ledger: LedgerRun) -> None:
    insert_aa_run(ledger, 20)
    ledger.commit()
    calibration = calibrate_noise(ledger.engine, ledger.run_id)

    table = tomllib.loads(calibration.toml())["compare"]["normalisation"]
    assert r"^root\['custbody_request_id'\]$" in table["noise_paths"]
    assert json.loads(calibration.to_json())["pairs"] == 20
    assert "| `^root\\['custbody_request_id'\\]$` | 20 | 100.00 % |" in calibration.markdown()


def test_ab_run_separates_noise_from_real_difference(ledger: LedgerRun) -> None:
    for index in range(120):
        key = f"ab-{index:03d}"
        legacy_rate, candidate_rate = (19.9, 20) if index == 7 else (19.9, 19.9)
        for flow, rate in ((Flow.LEGACY, legacy_rate), (Flow.CANDIDATE, candidate_rate)):
            snapshot = sales_order(key, (("7", 2, rate),), custbody_request_id=f"{flow}-{index}")
            ledger.order(key, flow, received=index * 1000, submitted=index * 1000 + 10,
                         acked=index * 1000 + 40, confirmed=index * 1000 + 45, snapshot=snapshot)
    ledger.commit()
    noise = Normalisation(noise_paths=(r"^root\['custbody_request_id'\]$",))

    analysis = analyze(ledger.engine, ledger.run_id, Criteria(), noise)

    assert analysis.parity_differences == 1
    assert analysis.parity_examples[0].order_key == "ab-007"
    assert analysis.noise_orders == 119
    assert analysis.noise_fields == {r"^root\['custbody_request_id'\]$": 119}
    assert analysis.difference_fields[r"^root\['custbody_request_id'\]$"] == 120
