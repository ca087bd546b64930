"""Seeded orders, Shopify's body encoding, signing and webhook delivery."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.settings import WEBHOOK_PATH
from sandbox.stack import serve_app
from sandbox.storefront import (
    encode_order,
    make_orders,
    send_webhooks,
    sign,
    webhook_headers,
)
from tests.sandbox.helpers import fast_settings, get_json, running_stack

SECRET = "test-secret"


def test_make_orders_is_reproducible() -> None:
    assert make_orders(3, 5) == make_orders(3, 5)
    assert make_orders(3, 5) != make_orders(4, 5)


def test_make_orders_continues_numbering() -> None:
    first_batch = make_orders(3, 4)
    second_batch = make_orders(3, 2, start_number=1005)
    assert make_orders(3, 6) == first_batch + second_batch
    assert [order["name"] for order in second_batch] == ["#1005", "#1006"]


def test_make_orders_ids_exceed_2_53() -> None:
    for order in make_orders(7, 20):
        assert isinstance(order["id"], int)
        assert order["id"] > 2**53
        assert order["admin_graphql_api_id"] == f"gid://shopify/Order/{order['id']}"
        assert all(line["id"] > 2**53 for line in order["line_items"])


def test_make_orders_totals_add_up() -> None:
    for order in make_orders(7, 20):
        subtotal = sum(Decimal(line["price"]) * line["quantity"] for line in order["line_items"])
        assert Decimal(order["subtotal_price"]) == subtotal
        assert Decimal(order["total_price"]) == subtotal + Decimal(order["total_tax"])
        for amount in ("subtotal_price", "total_tax", "total_price"):
            assert len(order[amount].split(".")[1]) == 2, order[amount]


def test_make_orders_has_required_fields() -> None:
    order = make_orders(7, 1)[0]
    assert order["order_number"] == 1001
    assert order["name"] == "#1001"
    assert order["created_at"].endswith("-05:00")
    assert set(order["customer"]) >= {"first_name", "last_name", "email", "phone"}
    for address in ("billing_address", "shipping_address"):
        assert set(order[address]) >= {"name", "address1", "city", "zip", "country_code", "phone"}
    assert len(order["line_items"]) >= 2
    assert "/" in order["note"]
    assert "&" in order["note"]


def test_encode_order_escapes_like_shopify() -> None:
    order = {"id": 2**62, "note": "a/b & <c>", "title": "Café 日本"}
    body = encode_order(order)
    assert body == '{"id":4611686018427387904,"note":"a\\/b \\u0026 \\u003cc\\u003e","title":"Café 日本"}'.encode()


def test_encode_order_round_trips_large_ids() -> None:
    for order in make_orders(11, 10):
        decoded = json.loads(encode_order(order))
        assert decoded == order
        assert decoded["id"] == order["id"]
        assert type(decoded["id"]) is int


def test_encode_order_keeps_non_ascii_as_utf8() -> None:
    order = {"title": "Tee 'Ünïcödé' 日本"}
    body = encode_order(order)
    assert "Ünïcödé".encode() in body
    assert b"\\u00dc" not in body


def test_encode_order_escapes_backslash_before_slash() -> None:
    order = {"path": "C:\\/tmp"}
    assert json.loads(encode_order(order)) == order


def test_sign_is_base64_hmac_sha256() -> None:
    body = b'{"id":1}'
    expected = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    assert sign(body, SECRET) == expected


def test_webhook_headers_have_shopify_set() -> None:
    order = make_orders(7, 1)[0]
    body = encode_order(order)
    headers = webhook_headers(order, body, SECRET)
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Shopify-Topic"] == "orders/create"
    assert headers["X-Shopify-Hmac-Sha256"] == sign(body, SECRET)
    assert headers["X-Shopify-Shop-Domain"] == "cutover-sandbox.myshopify.com"
    assert headers["X-Shopify-API-Version"] == "2025-10"
    assert headers["X-Shopify-Triggered-At"].endswith("Z")


def test_webhook_headers_event_id_stable_webhook_id_new() -> None:
    order = make_orders(7, 1)[0]
    body = encode_order(order)
    first = webhook_headers(order, body, SECRET)
    second = webhook_headers(order, body, SECRET)
    assert first["X-Shopify-Event-Id"] == second["X-Shopify-Event-Id"]
    assert first["X-Shopify-Webhook-Id"] != second["X-Shopify-Webhook-Id"]


def test_send_webhooks_sends_exact_bytes_and_headers() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def capture(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    async def scenario() -> Any:
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, capture)
        runner, port = await serve_app(app, "127.0.0.1", 0)
        try:
            orders = make_orders(7, 3)
            summary = await send_webhooks(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", orders, SECRET)
        finally:
            await runner.cleanup()
        return orders, summary

    orders, summary = asyncio.run(scenario())

    assert summary.sent == 3
    assert summary.ok == 3
    assert not summary.failed
    assert summary.statuses == {str(order["id"]): 200 for order in orders}
    bodies = {body for _, body in received}
    assert bodies == {encode_order(order) for order in orders}
    for headers, body in received:
        assert headers["X-Shopify-Hmac-Sha256"] == sign(body, SECRET)
        assert headers["Content-Type"] == "application/json"
        assert "User-Agent" not in headers
        assert "Accept-Encoding" not in headers
        assert "Accept" not in headers


def test_send_webhooks_counts_failures_by_reason() -> None:
    async def fail(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503)

    async def scenario() -> Any:
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, fail)
        runner, port = await serve_app(app, "127.0.0.1", 0)
        try:
            orders = make_orders(7, 4)
            return await send_webhooks(
                f"http://127.0.0.1:{port}{WEBHOOK_PATH}", orders, SECRET, rate_per_s=200.0, burst=2
            )
        finally:
            await runner.cleanup()

    summary = asyncio.run(scenario())

    assert summary.sent == 4
    assert summary.ok == 0
    assert summary.failed == {"HTTP 503": 4}
    assert set(summary.statuses.values()) == {503}


def test_send_webhooks_records_connection_errors() -> None:
    async def scenario() -> Any:
        # Bind and release a port, so that nothing listens on it.
        app = web.Application()
        runner, port = await serve_app(app, "127.0.0.1", 0)
        await runner.cleanup()
        return await send_webhooks(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", make_orders(7, 2), SECRET)

    summary = asyncio.run(scenario())

    assert summary.ok == 0
    assert summary.failed == {"connection error": 2}


def test_storefront_emits_and_lists_orders() -> None:
    async def scenario() -> Any:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            async with session.post(stack.url("storefront") + "/_sim/emit", json={"count": 3}) as response:
                assert response.status == 200
                summary = await response.json()
            async with session.get(stack.url("storefront") + "/admin/api/orders.json") as response:
                listed_text = await response.text()
            legacy_stats = await get_json(session, stack.url("legacy") + "/_sim/stats")
        return summary, listed_text, legacy_stats

    summary, listed_text, legacy_stats = asyncio.run(scenario())

    assert summary["ok"] == 3
    listed = json.loads(listed_text)["orders"]
    assert listed == make_orders(7, 3)
    assert str(listed[0]["id"]) in listed_text
    assert legacy_stats["received"] == 3


def test_storefront_emit_rejects_bad_request() -> None:
    async def scenario() -> Any:
        async with (
            running_stack(fast_settings()) as stack,
            aiohttp.ClientSession() as session,
            session.post(stack.url("storefront") + "/_sim/emit", json={"rate_per_s": 1}) as response,
        ):
            return response.status, await response.json()

    status, body = asyncio.run(scenario())

    assert status == 400
    assert "the count field is missing" in body["error"]


def test_storefront_emit_rejects_burst_above_count() -> None:
    async def scenario() -> Any:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            emit_url = stack.url("storefront") + "/_sim/emit"
            async with session.post(emit_url, json={"count": 2, "burst": 3}) as response:
                status, body = response.status, await response.json()
            listed = await get_json(session, stack.url("storefront") + "/admin/api/orders.json")
            return status, body, listed

    status, body, listed = asyncio.run(scenario())

    assert status == 400
    assert "burst must be between 0 and the 2 orders, but got 3" in body["error"]
    assert listed == {"orders": []}
