"""The one-pass payload digest agrees with normalising first and digesting after."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compare import Normalisation, compare_payloads, parity

# Keys chosen so that the default ignore rules and the test's own rules
# (memo, any key ending in _at, the second element of a list) match some.
KEYS = st.sampled_from(["id", "memo", "sku", "rate", "created_at", "items", "x", "0", "it's", "é"])
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.sampled_from(["19.90", "19.9", "007", "-0", "0.0", "1e3", "abc", "", "\u2028", "\"quoted\""]),
    st.text(max_size=6),
)
PAYLOADS = st.recursive(
    LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=20,
)
NORMALISATIONS = [
    Normalisation(),
    Normalisation(ignore_order=False),
    Normalisation(decimal_numbers=False),
    Normalisation(decimal_tolerance=Decimal("0.01")),
    Normalisation(ignore_paths=(r"\[1\]$", r"\['memo'\]")),
]


def _reference(normalisation: Normalisation, payload: object) -> str:
    return normalisation.digest(normalisation.quantized(normalisation.apply(payload)))


@pytest.mark.parametrize("normalisation", NORMALISATIONS, ids=lambda n: repr(n)[:60])
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(payload=PAYLOADS)
def test_payload_digest_equals_normalise_then_digest(normalisation, payload) -> None:
    assert normalisation.payload_digest(payload) == _reference(normalisation, payload)
    # The second pass reads the remembered ignore decisions.
    assert normalisation.payload_digest(payload) == _reference(normalisation, payload)


def test_path_cache_full_still_digests_correctly(monkeypatch) -> None:
    monkeypatch.setattr(parity, "_MAX_PATH_NODES", 3)
    normalisation = Normalisation()
    payload = {"id": 1, "memo": "a", "lines": [{"sku": "A", "quantity": 2}, {"sku": "B"}],
               "tranDate": "2026-12-04"}
    assert normalisation.payload_digest(payload) == _reference(normalisation, payload)
    assert normalisation.payload_digest(payload) == _reference(normalisation, payload)


def test_long_integer_ids_keep_every_digit() -> None:
    legacy = json.dumps({"externalId": 10**30 + 1})
    candidate = json.dumps({"externalId": 10**30})
    comparison = compare_payloads(legacy, candidate, Normalisation())
    assert not comparison.equal
    assert "externalId" in comparison.difference


def test_ignored_field_difference_is_equal_through_digest() -> None:
    legacy = json.dumps({"memo": "legacy sync", "item": {"items": [{"rate": "19.90"}]}})
    candidate = json.dumps({"memo": "candidate sync", "item": {"items": [{"rate": 19.9}]}})
    assert compare_payloads(legacy, candidate, Normalisation()).equal


DOCUMENTS = st.dictionaries(KEYS, PAYLOADS, max_size=5)


@pytest.mark.parametrize("normalisation", NORMALISATIONS[:4], ids=lambda n: repr(n)[:60])
@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(legacy=DOCUMENTS, candidate=DOCUMENTS)
def test_pruned_difference_equals_whole_difference(normalisation, legacy, candidate) -> None:
    """deepdiff on the differing members alone describes what it finds on the whole payloads."""
    legacy, candidate = normalisation.apply(legacy), normalisation.apply(candidate)
    whole = parity._describe_difference(legacy, candidate, normalisation)
    assert parity.compare_normalised(legacy, candidate, normalisation) == whole
    # A second time, from the cache.
    assert parity.compare_normalised(legacy, candidate, normalisation) == whole


def test_same_difference_in_other_orders_is_cached() -> None:
    normalisation = Normalisation()
    for number in range(3):
        legacy = json.dumps({"externalId": f"#{number}", "lines": [{"sku": "A", "quantity": 2}]})
        candidate = json.dumps({"externalId": f"#{number}", "lines": [{"sku": "A", "quantity": 3}]})
        comparison = compare_payloads(legacy, candidate, normalisation)
        assert not comparison.equal
        assert comparison.paths == ("root['lines'][0]['quantity']",)
    assert len(normalisation._tree.differences) == 1


def test_tolerance_pairs_reordered_lines_within_tolerance() -> None:
    normalisation = Normalisation(decimal_tolerance=Decimal("0.05"))
    legacy = json.dumps({"lines": [{"sku": "A", "rate": "-0.075"}, {"sku": "B", "rate": "-0.024"}]})
    candidate = json.dumps({"lines": [{"sku": "B", "rate": "-0.0251"}, {"sku": "A", "rate": "-0.0750"}]})
    assert compare_payloads(legacy, candidate, normalisation).equal


def test_tolerance_reports_line_outside_tolerance() -> None:
    normalisation = Normalisation(decimal_tolerance=Decimal("0.05"))
    legacy = json.dumps({"lines": [{"sku": "A", "rate": "10.00"}, {"sku": "B", "rate": "5.00"}]})
    candidate = json.dumps({"lines": [{"sku": "B", "rate": "5.00"}, {"sku": "A", "rate": "10.20"}]})
    comparison = compare_payloads(legacy, candidate, normalisation)
    assert not comparison.equal
    assert comparison.paths == ("root['lines'][0]['rate']",)


def test_huge_exponent_keeps_short_text() -> None:
    normalisation = Normalisation()
    text = normalisation.payload_digest({"amount": Decimal("1E+999999999")})
    assert len(text) == 64
    assert not compare_payloads('{"amount": 1e999999999}', '{"amount": 1e999999998}', normalisation).equal
