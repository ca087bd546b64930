"""ERP payload parity: normalisation, digests and reported differences."""

from __future__ import annotations

import json

import pytest

from compare import Criteria, Normalisation, analyze, compare_payloads
from cutover.events import Flow
from tests.compare.factories import LedgerRun, sales_order

SMALL_RUN = Criteria(min_orders=1)


def both_flows(ledger: LedgerRun, key: str, legacy_snapshot: str, candidate_snapshot: str) -> None:
    ledger.order(key, Flow.LEGACY, received=0, submitted=10, acked=50, confirmed=5,
                 snapshot=legacy_snapshot)
    ledger.order(key, Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=55,
                 snapshot=candidate_snapshot)


def test_money_order_and_timestamps_are_equal(ledger: LedgerRun) -> None:
    legacy = sales_order("P", [("7", 2, "19.90"), ("8", 1, 5)],
                         tranDate="2024-11-29", custbody_synced_at="2024-11-29T12:00:00Z",
                         memo="legacy poller")
    candidate = sales_order("P", [("8", 1, 5.0), ("7", 2, 19.9)],
                            tranDate="2024-11-30", custbody_synced_at="2024-11-29T12:00:03Z",
                            memo="gated flow")
    both_flows(ledger, "P", legacy, candidate)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, SMALL_RUN)

    assert analysis.parity_pairs == 1
    assert analysis.parity == 1.0
    assert analysis.parity_examples == []


def test_changed_quantity_is_reported_with_order_key(ledger: LedgerRun) -> None:
    both_flows(ledger, "Q", sales_order("Q", [("7", 2, 19.9)]), sales_order("Q", [("7", 3, 19.9)]))
    both_flows(ledger, "S", sales_order("S"), sales_order("S"))
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, SMALL_RUN)
    example = analysis.parity_examples[0]

    assert analysis.parity == 0.5
    assert analysis.parity_differences == 1
    assert example.order_key == "Q"
    assert "['quantity'] changed from 2 to 3" in example.difference
    parity = next(r for r in analysis.criteria_results if r.name == "erp_parity")
    assert parity.examples == ("Q",)


def test_top_level_id_ignored_but_item_id_compared() -> None:
    legacy = json.dumps({"id": "101", "item": {"items": [{"item": {"id": "7"}}]}})
    candidate = json.dumps({"id": "202", "item": {"items": [{"item": {"id": "9"}}]}})

    comparison = compare_payloads(legacy, candidate, Normalisation())

    assert not comparison.equal
    assert "root['item']['items'][0]['item']['id']" in comparison.difference
    assert "root['id']" not in comparison.difference


def test_line_sent_twice_differs() -> None:
    once = sales_order("T", [("7", 1, 5)])
    twice = sales_order("T", [("7", 1, 5), ("7", 1, 5)])

    comparison = compare_payloads(once, twice, Normalisation())

    assert not comparison.equal
    assert "1 times in legacy and 2 times in candidate" in comparison.difference


def test_code_with_leading_zero_stays_text() -> None:
    comparison = compare_payloads('{"sku": "007"}', '{"sku": "7"}', Normalisation())

    assert not comparison.equal


def test_decimal_numbers_off_keeps_types() -> None:
    strict = Normalisation(decimal_numbers=False)

    assert not compare_payloads('{"rate": "19.90"}', '{"rate": 19.9}', strict).equal
    assert compare_payloads('{"rate": "19.90"}', '{"rate": 19.9}', Normalisation()).equal


def test_ordered_lists_when_ignore_order_off() -> None:
    ordered = Normalisation(ignore_order=False)

    assert not compare_payloads("[1, 2]", "[2, 1]", ordered).equal
    assert compare_payloads("[1, 2]", "[2, 1]", Normalisation()).equal


def test_custom_ignore_path() -> None:
    normalisation = Normalisation(ignore_paths=(r"\['custbody_flow'\]",))

    comparison = compare_payloads('{"custbody_flow": "legacy", "memo": "a"}',
                                  '{"custbody_flow": "gated", "memo": "b"}', normalisation)

    assert not comparison.equal
    assert "memo" in comparison.difference


def test_invalid_snapshot_differs_with_reason() -> None:
    comparison = compare_payloads("{}", "{not json", Normalisation())

    assert not comparison.equal
    assert comparison.difference.startswith("The candidate snapshot is not valid JSON")


def test_invalid_ignore_path_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"Invalid ignore path '\['"):
        Normalisation(ignore_paths=("[",))


def test_missing_snapshot_is_unpaired(ledger: LedgerRun) -> None:
    ledger.order("U", Flow.LEGACY, received=0, acked=50, confirmed=60)
    ledger.order("U", Flow.CANDIDATE, received=1, submitted=10, acked=50, confirmed=60)
    ledger.commit()

    analysis = analyze(ledger.engine, ledger.run_id, SMALL_RUN)

    assert analysis.parity_pairs == 0
    assert analysis.parity_unpaired == 1
    assert analysis.parity is None


def test_ignore_paths_as_one_string_is_rejected() -> None:
    with pytest.raises(TypeError, match="ignore_paths must be a sequence"):
        Normalisation(ignore_paths=r"\['memo'\]")


def test_ignore_paths_list_becomes_tuple() -> None:
    assert Normalisation(ignore_paths=[r"\['memo'\]"]).ignore_paths == (r"\['memo'\]",)


def test_field_map_moves_candidate_lines() -> None:
    legacy = json.dumps({"item": {"items": [{"item": {"externalId": "A"}, "rate": "5.00"}]}})
    candidate = json.dumps({"lines": [{"sku": "A", "rate": 5}]})
    normalisation = Normalisation(field_map=(("lines", "item.items"),
                                             ("item.items[].sku", "item.items[].item.externalId")))

    assert compare_payloads(legacy, candidate, normalisation).equal
    assert not compare_payloads(legacy, candidate, Normalisation()).equal


def test_field_map_keeps_real_difference() -> None:
    legacy = json.dumps({"item": {"items": [{"item": {"externalId": "A"}, "rate": "5.00"}]}})
    candidate = json.dumps({"lines": [{"sku": "B", "rate": 5}]})
    normalisation = Normalisation(field_map=(("lines", "item.items"),
                                             ("item.items[].sku", "item.items[].item.externalId")))

    result = compare_payloads(legacy, candidate, normalisation)

    assert not result.equal
    assert "externalId" in result.difference


@pytest.mark.parametrize(
    ("legacy_rate", "candidate_rate", "equal"),
    [
        pytest.param("19.90", 19.899, True, id="within"),
        pytest.param("19.905", 19.896, True, id="within-across-grid"),
        pytest.param("19.90", 19.92, False, id="beyond"),
        pytest.param("19.90", 20, False, id="rounded-to-units"),
    ],
)
def test_decimal_tolerance(legacy_rate, candidate_rate, equal) -> None:
    legacy = json.dumps({"item": {"items": [{"rate": "5"}, {"rate": legacy_rate}]}})
    candidate = json.dumps({"item": {"items": [{"rate": candidate_rate}, {"rate": 5}]}})

    result = compare_payloads(legacy, candidate, Normalisation(decimal_tolerance="0.01"))

    assert result.equal is equal


def test_noise_only_difference_is_equal_and_flagged() -> None:
    legacy = sales_order("A", request_id="one")
    candidate = sales_order("A", request_id="two")
    normalisation = Normalisation(noise_paths=(r"\['request_id'\]",))

    result = compare_payloads(legacy, candidate, normalisation)

    assert result.equal
    assert result.noise
    assert result.paths == ("root['request_id']",)
