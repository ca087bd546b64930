"""Property-based tests: key extraction, payload normalisation and the capture readers.

Examples come from hypothesis with the fixed profile in conftest.py.
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from decimal import Decimal

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from compare.parity import Normalisation, compare_normalised
from replay import CaptureError, OnError, ReadProblems, load_source
from shadow.config import parse_config
from shadow.events import MAX_KEY_LENGTH, EventBuilder, Observation, ObservationKind
from tests.replay.writers import http_request, mitm_flow, write_goreplay, write_har_with_mitmproxy, write_mitm

INGRESS = parse_config({"route": [{"name": "ingress", "role": "ingress", "listen": 1001,
                                   "upstream": "http://127.0.0.1:1",
                                   "mirror_to": "http://127.0.0.1:2"}]}).routes[0]

# JSON values as json.loads returns them, with integers far beyond 2^64.
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-10**60, max_value=10**60)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def _key(body: bytes, encoding: bytes | None = None) -> str | None:
    headers = ((b"Content-Encoding", encoding),) if encoding else ()
    observation = Observation(kind=ObservationKind.WEBHOOK, route=INGRESS, http_flow_id="f",
                              mono_ns=1, wall_s=1.0, body=body, headers=headers)
    return EventBuilder().order_key(observation)


# Key extraction

@given(json_values)
def test_key_of_any_json_is_stable(document):
    body = json.dumps(document).encode()
    first = _key(body)
    assert first == _key(body)
    assert first is None or 0 < len(first) <= MAX_KEY_LENGTH


@given(st.binary(max_size=2048), st.sampled_from([None, b"gzip", b"deflate", b"br", b"zstd"]))
@example(b"\x1f\x8b\x08\x00\x00\x00\x00\x00", b"gzip")
@example(b"\xff\xfe{}", None)
def test_key_of_any_bytes_never_raises(body, encoding):
    assert _key(body, encoding) == _key(body, encoding)


@given(st.integers(min_value=-10**40, max_value=10**40))
@example(2**53 + 1)
@example(9007199254740993)
@example(2**64 + 1)
def test_integer_id_keeps_every_digit(order_id):
    assert _key(b'{"id": %d}' % order_id) == str(order_id)


@given(st.integers(min_value=0, max_value=10**40), st.sampled_from(["{}.0", "{}.000", "{}e0", "{}.0e0", "{}E+0"]))
@example(9007199254740993, "{}.0")
def test_integral_float_id_keeps_every_digit(order_id, spelling):
    assert _key(b'{"id": %s}' % spelling.format(order_id).encode()) == str(order_id)


@given(st.integers(min_value=0, max_value=10**40))
def test_string_and_number_ids_are_one_order(order_id):
    assert _key(b'{"id": "%d"}' % order_id) == _key(b'{"id": %d}' % order_id) == str(order_id)


@given(st.integers(min_value=1, max_value=10**30), st.sampled_from([b"gzip", b"deflate", b"br"]))
def test_key_survives_each_content_encoding(order_id, encoding):
    import brotli  # shipped with mitmproxy

    plain = b'{"id": %d, "note": "caf\\u00e9"}' % order_id
    compress = {b"gzip": gzip.compress, b"deflate": zlib.compress, b"br": brotli.compress}[encoding]
    assert _key(compress(plain), encoding) == str(order_id)


# Normalisation, through its public API only

numbers = (st.integers(min_value=-10**12, max_value=10**12)
           | st.decimals(min_value=-10**6, max_value=10**6, places=3, allow_nan=False, allow_infinity=False)
           .map(lambda value: str(value))
           | st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False))
payload_scalars = st.none() | st.booleans() | numbers | st.sampled_from(["A-1", "007", "x", ""])
payloads = st.recursive(
    payload_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["id", "sku", "rate", "qty", "memo", "item", "items", "ship_at"]),
                      children, max_size=4),
    max_leaves=20,
)


def _same(left, right, ignore_order: bool) -> bool:
    """Compare normalised payloads by hand: Decimals by value, lists as multisets with ignore_order."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k], ignore_order) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return False
        if not ignore_order:
            return all(_same(a, b, ignore_order) for a, b in zip(left, right, strict=True))
        unmatched = list(right)
        for item in left:
            match = next((index for index, other in enumerate(unmatched) if _same(item, other, ignore_order)), None)
            if match is None:
                return False
            unmatched.pop(match)
        return True
    if type(left) is not type(right):
        return False
    return left == right


def _shuffled(value, rng: random.Random):
    if isinstance(value, dict):
        return {key: _shuffled(item, rng) for key, item in value.items()}
    if isinstance(value, list):
        items = [_shuffled(item, rng) for item in value]
        rng.shuffle(items)
        return items
    return value


@given(payloads)
def test_normalisation_is_idempotent(payload):
    rules = Normalisation()
    once = rules.apply(payload)
    assert rules.apply(once) == once
    assert rules.digest(rules.apply(once)) == rules.digest(once)


@given(payloads, st.integers(min_value=0, max_value=1000))
def test_ignore_order_ignores_list_order(payload, seed):
    rules = Normalisation(ignore_order=True)
    shuffled = _shuffled(payload, random.Random(seed))
    assert rules.digest(rules.apply(shuffled)) == rules.digest(rules.apply(payload))
    assert compare_normalised(rules.apply(payload), rules.apply(shuffled), rules).equal


@given(payloads, payloads, st.booleans())
def test_digest_equal_iff_normalised_equal(left, right, ignore_order):
    rules = Normalisation(ignore_order=ignore_order)
    normal_left, normal_right = rules.apply(left), rules.apply(right)
    same_digest = rules.digest(normal_left) == rules.digest(normal_right)
    assert same_digest == _same(normal_left, normal_right, ignore_order)


@given(payloads)
def test_digest_equal_for_reencoded_payload(payload):
    rules = Normalisation()
    reencoded = json.loads(json.dumps(payload), parse_float=Decimal)
    assert rules.digest(rules.apply(reencoded)) == rules.digest(rules.apply(payload))


@given(st.decimals(min_value=-1000, max_value=1000, places=4, allow_nan=False, allow_infinity=False),
       st.decimals(min_value=-1000, max_value=1000, places=4, allow_nan=False, allow_infinity=False),
       st.sampled_from(["0.01", "0.5", "1"]))
def test_decimal_tolerance_is_symmetric(left, right, tolerance):
    rules = Normalisation(decimal_tolerance=tolerance)
    legacy = rules.apply({"rate": str(left), "lines": [str(left), 1]})
    candidate = rules.apply({"rate": str(right), "lines": [1, str(right)]})
    forward = compare_normalised(legacy, candidate, rules).equal
    assert forward == compare_normalised(candidate, legacy, rules).equal
    if abs(left - right) < Decimal(tolerance):
        assert forward


# Readers: round trips through the tools' own writers, and arbitrary bytes

header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(lambda name: "X-" + name)
header_values = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
header_maps = st.dictionaries(header_names, header_values, max_size=4)
SEPARATOR = "\n🐵🙈🙉\n".encode()


@given(st.binary(max_size=4096), header_maps, st.floats(min_value=1e9, max_value=2e9))
def test_mitmproxy_dump_round_trip(tmp_path_factory, body, headers, timestamp):
    path = write_mitm(tmp_path_factory.mktemp("mitm") / "capture.mitm",
                      [mitm_flow(body, headers, timestamp=timestamp)])
    requests = list(load_source(path))
    assert [request.body for request in requests] == [body]
    assert requests[0].timestamp == timestamp
    assert all(requests[0].header(name) == value for name, value in headers.items())


@given(json_values, header_maps)
def test_har_round_trip(tmp_path_factory, document, headers):
    body = json.dumps(document, ensure_ascii=False).encode()
    flow = mitm_flow(body, {"Content-Type": "application/json", **headers}, timestamp=1.7e9)
    path = write_har_with_mitmproxy(tmp_path_factory.mktemp("har") / "capture.har", [flow])
    requests = list(load_source(path))
    assert [request.body for request in requests] == [body]
    assert all(requests[0].header(name) == value for name, value in headers.items())


@given(st.lists(st.binary(max_size=2048), min_size=1, max_size=4), header_maps, st.booleans(), st.booleans())
def test_goreplay_round_trip(tmp_path_factory, bodies, headers, chunked, compress):
    assume(all(SEPARATOR[1:] not in body for body in bodies))
    payloads = [http_request(body, headers, chunked=chunked) for body in bodies]
    path = write_goreplay(tmp_path_factory.mktemp("gor") / ("capture.gor.gz" if compress else "capture.gor"),
                          payloads, compress=compress)
    requests = list(load_source(path))
    assert [request.body for request in requests] == bodies
    assert all(request.header(name) == value for request in requests for name, value in headers.items())


@given(st.binary(max_size=4096), st.sampled_from(["mitm", "har", "gor", "gor.gz", "jsonl"]))
@example(b"12:" + b"[" * 5000, "mitm")
@example(b"99999999999:", "mitm")
@example(b"5:hello,", "mitm")
@example(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "gor.gz")
@example(b'{"log": {"entries": [' + b"[" * 5000, "har")
@example(b'{"body": ' + b"[" * 5000 + b"\n", "jsonl")
def test_reader_of_any_bytes_raises_only_capture_error(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("any") / f"capture.{suffix}"
    path.write_bytes(data)
    try:
        list(load_source(path))
    except CaptureError as exc:
        assert str(path) in str(exc)
    problems = ReadProblems(on_error=OnError.SKIP, logged=False)
    list(load_source(path, problems=problems))


@pytest.mark.parametrize("suffix", ["mitm", "har", "gor", "jsonl"])
def test_reader_of_truncated_capture_keeps_whole_records(tmp_path, suffix):
    bodies = [b'{"id": %d}' % number for number in range(1, 4)]
    folder = tmp_path / suffix
    folder.mkdir()
    if suffix == "mitm":
        whole = write_mitm(folder / "c.mitm", [mitm_flow(body, {}, timestamp=1.7e9) for body in bodies])
    elif suffix == "har":
        whole = write_har_with_mitmproxy(folder / "c.har", [mitm_flow(body, {}, timestamp=1.7e9) for body in bodies])
    elif suffix == "gor":
        whole = write_goreplay(folder / "c.gor", [http_request(body, {}) for body in bodies])
    else:
        whole = folder / "c.jsonl"
        whole.write_text("".join(json.dumps({"body": body.decode()}) + "\n" for body in bodies))
    data = whole.read_bytes()
    for cut in range(0, len(data), max(1, len(data) // 40)):
        whole.write_bytes(data[:cut])
        problems = ReadProblems(on_error=OnError.SKIP, logged=False)
        read = [request.body for request in load_source(whole, problems=problems)]
        assert read == bodies[:len(read)]


@given(st.lists(st.decimals(min_value=-1, max_value=1, places=3, allow_nan=False, allow_infinity=False),
                min_size=1, max_size=4),
       st.data())
@example([Decimal("-0.075"), Decimal("-0.024")], None)
def test_tolerance_matches_reordered_close_numbers(legacy_numbers, data):
    tolerance = Decimal("0.05")
    if data is None:  # the explicit example: each candidate number is within 0.0011 of a legacy one
        candidate_numbers = [Decimal("-0.0251"), Decimal("-0.0750")]
    else:
        shifts = [data.draw(st.decimals(min_value=-tolerance / 2, max_value=tolerance / 2, places=4,
                                        allow_nan=False, allow_infinity=False)) for _ in legacy_numbers]
        candidate_numbers = [number + shift for number, shift in zip(reversed(legacy_numbers), reversed(shifts),
                                                                     strict=True)]
    rules = Normalisation(decimal_tolerance=tolerance, ignore_order=True)
    legacy = rules.apply({"lines": [str(number) for number in legacy_numbers]})
    candidate = rules.apply({"lines": [str(number) for number in candidate_numbers]})
    assert compare_normalised(legacy, candidate, rules).equal
