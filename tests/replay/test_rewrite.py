"""Fresh order keys and re-signed HMACs."""

from __future__ import annotations

import gzip
import json

import pytest

from replay import CapturedRequest, IdRewriter, RewriteError, compile_key_rule
from sandbox.webhook_auth import hmac_matches
from tests.replay.helpers import SECRET, signed_webhooks

KEY_RULE = compile_key_rule("id")


def captured(body: bytes, headers: dict[str, str]) -> CapturedRequest:
    return CapturedRequest("POST", "/webhooks/orders/create", tuple(headers.items()), body, 1.0, "test", 1)


def test_rewrite_new_key_and_signature():
    order, body, headers = signed_webhooks(1)[0]
    rewriter = IdRewriter(SECRET, prefix="77", key_rule=KEY_RULE)

    request, old_key, new_key = rewriter.rewrite(captured(body, headers))

    document = json.loads(request.body)
    assert old_key == str(order["id"])
    assert new_key == "77000001"
    assert document["id"] == 77000001
    assert document["admin_graphql_api_id"] == "gid://shopify/Order/77000001"
    assert str(order["id"]).encode() not in request.body
    assert hmac_matches(request.body, request.header("X-Shopify-Hmac-Sha256"), SECRET)


def test_rewrite_keeps_shopify_escapes():
    _, body, headers = signed_webhooks(1)[0]
    rewriter = IdRewriter(SECRET, prefix="77", key_rule=KEY_RULE)

    request, _, _ = rewriter.rewrite(captured(body, headers))

    assert b"\\/" in body
    assert request.body.count(b"\\/") == body.count(b"\\/")
    assert request.body.count(b"\\u0026") == body.count(b"\\u0026")


def test_rewrite_repeated_order_keeps_key():
    _, body, headers = signed_webhooks(1)[0]
    rewriter = IdRewriter(SECRET, prefix="77", key_rule=KEY_RULE)

    first, _, first_key = rewriter.rewrite(captured(body, headers))
    again, _, again_key = rewriter.rewrite(captured(body, headers))

    assert first_key == again_key
    assert first.header("X-Shopify-Event-Id") == again.header("X-Shopify-Event-Id")
    assert first.header("X-Shopify-Event-Id") != headers["X-Shopify-Event-Id"]


def test_rewrite_next_pass_gives_fresh_keys():
    _, body, headers = signed_webhooks(1)[0]
    rewriter = IdRewriter(SECRET, prefix="77", key_rule=KEY_RULE)

    first, _, first_key = rewriter.rewrite(captured(body, headers))
    rewriter.next_pass()
    second, _, second_key = rewriter.rewrite(captured(body, headers))

    assert first_key != second_key
    assert first.header("X-Shopify-Event-Id") != second.header("X-Shopify-Event-Id")


def test_rewrite_gzip_body_is_compressed_again():
    _, body, headers = signed_webhooks(1)[0]
    request = captured(gzip.compress(body), {**headers, "Content-Encoding": "gzip"})
    rewriter = IdRewriter(SECRET, prefix="77", key_rule=KEY_RULE)

    rewritten, _, new_key = rewriter.rewrite(request)

    plain = gzip.decompress(rewritten.body)
    assert json.loads(plain)["id"] == int(new_key)
    assert hmac_matches(plain, rewritten.header("X-Shopify-Hmac-Sha256"), SECRET)


def test_rewrite_unprefixed_headers_are_signed_in_place():
    _, body, headers = signed_webhooks(1)[0]
    plain_headers = {name.removeprefix("X-"): value for name, value in headers.items()}
    rewriter = IdRewriter(SECRET, prefix="77", key_rule=KEY_RULE)

    request, _, _ = rewriter.rewrite(captured(body, plain_headers))

    assert request.header("X-Shopify-Hmac-Sha256") is None
    assert hmac_matches(request.body, request.header("Shopify-Hmac-Sha256"), SECRET)


def test_rewrite_numeric_key_needs_digit_prefix():
    _, body, headers = signed_webhooks(1)[0]
    rewriter = IdRewriter(SECRET, prefix="replay-", key_rule=KEY_RULE)

    with pytest.raises(RewriteError, match="use an id prefix made of digits"):
        rewriter.rewrite(captured(body, headers))


def test_rewrite_string_key_takes_any_prefix():
    rewriter = IdRewriter(SECRET, prefix="replay-", key_rule=KEY_RULE)

    request, _, new_key = rewriter.rewrite(captured(b'{"id":"A-17","ref":"A-17x"}', {}))

    assert new_key == "replay-000001"
    assert request.body == b'{"id":"replay-000001","ref":"A-17x"}'


def test_rewriter_never_shows_secret():
    rewriter = IdRewriter("top-secret-value", prefix="77", key_rule=KEY_RULE)

    with pytest.raises(RewriteError) as caught:
        rewriter.rewrite(captured(b"not json", {}))

    assert "top-secret-value" not in repr(rewriter)
    assert "top-secret-value" not in str(caught.value)
