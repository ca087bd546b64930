"""The gated flow: HMAC, deduplication, ERP-first confirmation and faults."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import aiohttp

from sandbox.settings import DEMO_WEBHOOK_SECRET, SandboxSettings
from sandbox.stack import Stack
from sandbox.storefront import encode_order, make_orders, send_webhooks, webhook_headers
from tests.sandbox.helpers import (
    fast_settings,
    get_json,
    messages_for,
    running_stack,
    wait_for,
)


async def post_webhook(
    session: aiohttp.ClientSession, stack: Stack, body: bytes, headers: dict[str, str]
) -> int:
    async with session.post(stack.webhook_url("gated"), data=body, headers=headers) as response:
        await response.read()
        return response.status


async def gated_stats(session: aiohttp.ClientSession, stack: Stack) -> dict[str, Any]:
    return await get_json(session, stack.url("gated") + "/_sim/stats")


async def run_orders(
    settings: SandboxSettings, count: int, *, until: tuple[str, ...], concurrency: int = 32,
    sent: int | None = None,
) -> dict[str, Any]:
    """Send `sent` orders (default `count`) to the gated flow and collect the simulators' state.

    Waits until each of the gated flow's stats counters in `until` reaches `count`.
    """
    orders = make_orders(settings.seed, count if sent is None else sent)
    async with running_stack(settings) as stack, aiohttp.ClientSession() as session:
        summary = await send_webhooks(
            stack.webhook_url("gated"), orders, settings.webhook_secret, concurrency=concurrency
        )

        async def reached() -> dict[str, Any] | None:
            stats = await gated_stats(session, stack)
            return stats if all(stats[name] >= count for name in until) else None

        stats = await wait_for(reached, f"gated stats {', '.join(until)} to reach {count}")
        return {
            "orders": orders,
            "summary": summary,
            "stats": stats,
            "erp": await get_json(session, stack.url("erp_candidate") + "/_sim/orders"),
            "legacy_erp": await get_json(session, stack.url("erp") + "/_sim/orders"),
            "messages": await get_json(session, stack.url("email") + "/_sim/messages"),
            "exceptions": await get_json(session, stack.url("gated") + "/_sim/exceptions"),
        }


def test_gated_accepts_signed_webhook() -> None:
    order = make_orders(7, 1)[0]
    body = encode_order(order)

    async def scenario() -> Any:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            status = await post_webhook(session, stack, body, webhook_headers(order, body, DEMO_WEBHOOK_SECRET))
            return status, await gated_stats(session, stack)

    status, stats = asyncio.run(scenario())

    assert status == 200
    assert stats["received"] == 1
    assert stats["hmac_failures"] == 0


def test_gated_rejects_tampered_body_with_401() -> None:
    order = make_orders(7, 1)[0]
    body = encode_order(order)
    headers = webhook_headers(order, body, DEMO_WEBHOOK_SECRET)
    tampered = body.replace(b'"total_price":"', b'"total_price":"1')

    async def scenario() -> Any:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            status = await post_webhook(session, stack, tampered, headers)
            return status, await gated_stats(session, stack)

    status, stats = asyncio.run(scenario())

    assert status == 401
    assert stats["hmac_failures"] == 1
    assert stats["outbox_size"] == 0


def test_gated_rejects_missing_signature_with_401() -> None:
    order = make_orders(7, 1)[0]
    body = encode_order(order)
    headers = webhook_headers(order, body, DEMO_WEBHOOK_SECRET)
    del headers["X-Shopify-Hmac-Sha256"]

    async def scenario() -> int:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            return await post_webhook(session, stack, body, headers)

    assert asyncio.run(scenario()) == 401


def test_gated_accepts_unprefixed_lowercase_headers() -> None:
    order = make_orders(7, 1)[0]
    body = encode_order(order)
    headers = {
        key.removeprefix("X-").lower(): value
        for key, value in webhook_headers(order, body, DEMO_WEBHOOK_SECRET).items()
    }

    async def scenario() -> int:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            return await post_webhook(session, stack, body, headers)

    assert "shopify-hmac-sha256" in headers
    assert asyncio.run(scenario()) == 200


def test_gated_verifies_gzip_and_deflate_bodies() -> None:
    first, second, third = make_orders(7, 3)
    cases = [
        (first, "gzip", gzip.compress),
        (second, "deflate", zlib.compress),
        (third, "deflate", lambda data: zlib.compress(data)[2:-4]),  # a raw deflate stream
    ]

    async def scenario() -> Any:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            statuses = []
            for order, encoding, compress in cases:
                body = encode_order(order)
                # Shopify signs the uncompressed body.
                headers = webhook_headers(order, body, DEMO_WEBHOOK_SECRET)
                headers["Content-Encoding"] = encoding
                statuses.append(await post_webhook(session, stack, compress(body), headers))

            async def all_stored() -> Any:
                orders = await get_json(session, stack.url("erp_candidate") + "/_sim/orders")
                return orders if len(orders) == 3 else None

            return statuses, await wait_for(all_stored, "three orders in the candidate ERP")

    statuses, erp_orders = asyncio.run(scenario())

    assert statuses == [200, 200, 200]
    assert set(erp_orders) == {str(first["id"]), str(second["id"]), str(third["id"])}


def test_gated_rejects_unknown_content_encoding() -> None:
    order = make_orders(7, 1)[0]
    body = encode_order(order)
    headers = webhook_headers(order, body, DEMO_WEBHOOK_SECRET)
    headers["Content-Encoding"] = "compress"

    async def scenario() -> int:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            return await post_webhook(session, stack, body, headers)

    assert asyncio.run(scenario()) == 415


def test_gated_ignores_duplicate_event_id() -> None:
    order = make_orders(7, 1)[0]
    order_id = str(order["id"])
    body = encode_order(order)
    headers = webhook_headers(order, body, DEMO_WEBHOOK_SECRET)

    async def scenario() -> Any:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            first = await post_webhook(session, stack, body, headers)
            second = await post_webhook(session, stack, body, headers)

            async def confirmed() -> Any:
                stats = await gated_stats(session, stack)
                return stats if stats["confirmed"] >= 1 else None

            stats = await wait_for(confirmed, "the confirmation")
            erp_orders = await get_json(session, stack.url("erp_candidate") + "/_sim/orders")
            messages = await get_json(session, stack.url("email") + "/_sim/messages")
            return first, second, stats, erp_orders, messages

    first, second, stats, erp_orders, messages = asyncio.run(scenario())

    assert (first, second) == (200, 200)
    assert stats["received"] == 2
    assert stats["duplicates_ignored"] == 1
    assert erp_orders[order_id]["created"] == 1
    assert erp_orders[order_id]["updated"] == 0
    assert len(messages_for(messages, order_id)) == 1


def test_gated_ignores_same_order_with_new_event_id() -> None:
    order = make_orders(7, 1)[0]
    body = encode_order(order)

    async def scenario() -> Any:
        async with running_stack(fast_settings()) as stack, aiohttp.ClientSession() as session:
            for event_id in ("event-a", "event-b"):
                headers = webhook_headers(order, body, DEMO_WEBHOOK_SECRET, event_id=event_id)
                assert await post_webhook(session, stack, body, headers) == 200
            return await gated_stats(session, stack)

    stats = asyncio.run(scenario())

    assert stats["duplicates_ignored"] == 1


def test_gated_confirms_only_after_erp_ack() -> None:
    result = asyncio.run(run_orders(fast_settings(), 5, until=("confirmed",)))

    assert result["summary"].ok == 5
    assert result["stats"]["acked"] == 5
    assert result["stats"]["early_confirmations"] == []
    assert result["legacy_erp"] == {}
    for order in result["orders"]:
        order_id = str(order["id"])
        messages = messages_for(result["messages"], order_id)
        assert [message["category"] for message in messages] == ["order_confirmation"]
        assert messages[0]["received_at"] >= result["erp"][order_id]["first_stored_at"]


def test_gated_sales_order_shape() -> None:
    result = asyncio.run(run_orders(fast_settings(), 1, until=("acked",)))

    order = result["orders"][0]
    record = result["erp"][str(order["id"])]["record"]
    assert record["externalId"] == str(order["id"])
    assert record["entity"] == {"externalId": order["customer"]["email"]}
    assert record["tranDate"] == order["created_at"][:10]
    assert record["currency"] == {"refName": "USD"}
    skus = [line["item"]["externalId"] for line in record["item"]["items"]]
    assert skus == [line["sku"] for line in reversed(order["line_items"])]
    assert all(isinstance(line["rate"], float) for line in record["item"]["items"])
    assert "custbody_synced_at" in record


def test_gated_sends_pending_notice_when_erp_slow() -> None:
    settings = fast_settings(erp_base_latency_ms=800.0, gated_pending_sla_s=0.1)

    result = asyncio.run(run_orders(settings, 2, until=("confirmed",)))

    assert result["stats"]["pending_notices"] == 2
    for order in result["orders"]:
        order_id = str(order["id"])
        messages = messages_for(result["messages"], order_id)
        stored_at = result["erp"][order_id]["first_stored_at"]
        assert [message["category"] for message in messages] == ["order_pending", "order_confirmation"]
        assert messages[0]["received_at"] < stored_at
        assert messages[1]["received_at"] >= stored_at


def test_gated_rejected_orders_get_no_confirmation() -> None:
    settings = fast_settings(erp_reject_rate=1.0)

    result = asyncio.run(run_orders(settings, 3, until=("exceptions",)))

    assert result["stats"]["acked"] == 0
    assert result["stats"]["confirmed"] == 0
    assert result["messages"] == []
    assert result["erp"] == {}
    assert len(result["exceptions"]) == 3
    for exception in result["exceptions"]:
        assert exception["reason"] == "rejected"
        assert exception["status"] == 400
        assert exception["error"]["o:errorCode"] == "USER_ERROR"


def test_gated_retries_server_errors() -> None:
    settings = fast_settings(erp_error_rate=0.5, gated_max_attempts=20)

    result = asyncio.run(run_orders(settings, 5, until=("confirmed",)))

    assert result["stats"]["acked"] == 5
    assert result["stats"]["erp_retries"] > 0
    assert result["stats"]["exceptions"] == 0


def test_gated_gives_up_after_max_attempts() -> None:
    settings = fast_settings(erp_error_rate=1.0, gated_max_attempts=3)

    result = asyncio.run(run_orders(settings, 1, until=("exceptions",)))

    exception = result["exceptions"][0]
    assert exception["reason"] == "gave up"
    assert exception["attempts"] == 3
    assert result["stats"]["erp_retries"] == 2
    assert result["messages"] == []


def test_gated_retries_after_throttling() -> None:
    # One slot in the candidate ERP and eight workers, so first attempts
    # that overlap get 429 and must be retried.
    settings = fast_settings(erp_concurrency_limit=1, erp_base_latency_ms=20.0, gated_max_attempts=30)

    result = asyncio.run(run_orders(settings, 8, until=("confirmed",)))

    assert result["stats"]["acked"] == 8
    assert result["stats"]["erp_retries"] > 0
    assert len(result["erp"]) == 8


def test_gated_confirm_early_fault_confirms_every_nth() -> None:
    settings = fast_settings(gated_confirm_early_every=2)

    # One delivery at a time, so arrival order is the order list's order.
    result = asyncio.run(run_orders(settings, 4, until=("acked", "confirmed"), concurrency=1))

    orders = result["orders"]
    expected_early = [str(orders[1]["id"]), str(orders[3]["id"])]
    assert result["stats"]["early_confirmations"] == expected_early
    for order in orders:
        order_id = str(order["id"])
        messages = messages_for(result["messages"], order_id)
        assert [message["category"] for message in messages] == ["order_confirmation"]
        stored_at = result["erp"][order_id]["first_stored_at"]
        if order_id in expected_early:
            assert messages[0]["received_at"] < stored_at
        else:
            assert messages[0]["received_at"] >= stored_at


def test_gated_drop_fault_never_submits_nor_confirms() -> None:
    settings = fast_settings(gated_drop_every=2)

    # Of four orders, two are dropped, so two acknowledgements end the wait.
    result = asyncio.run(run_orders(settings, 2, until=("acked", "confirmed"), concurrency=1,
                                    sent=4))

    orders = [str(order["id"]) for order in result["orders"]]
    assert result["stats"]["dropped"] == [orders[1], orders[3]]
    assert sorted(result["erp"]) == sorted([orders[0], orders[2]])
    for order_id in (orders[1], orders[3]):
        assert messages_for(result["messages"], order_id) == []


def test_gated_submit_twice_fault_writes_erp_twice() -> None:
    settings = fast_settings(gated_submit_twice_every=2)

    result = asyncio.run(run_orders(settings, 4, until=("acked", "confirmed"), concurrency=1))

    orders = [str(order["id"]) for order in result["orders"]]
    assert result["stats"]["submitted_twice"] == [orders[1], orders[3]]
    for order_id in orders:
        # PUT on eid:{id} is an upsert, so the second write updates the record.
        expected_updates = 1 if order_id in (orders[1], orders[3]) else 0
        assert result["erp"][order_id]["updated"] == expected_updates, order_id
        assert len(messages_for(result["messages"], order_id)) == 1


def test_gated_round_price_fault_changes_erp_rate_and_email() -> None:
    settings = fast_settings(gated_round_price_every=1)

    result = asyncio.run(run_orders(settings, 6, until=("acked", "confirmed"), concurrency=1))

    rounded = result["stats"]["price_rounded"]
    assert rounded, "no order had a price with cents"
    for order in result["orders"]:
        order_id = str(order["id"])
        rates = [line["rate"] for line in result["erp"][order_id]["record"]["item"]["items"]]
        if order_id in rounded:
            assert all(rate == int(rate) for rate in rates), rates
        else:
            assert all(float(line["price"]) == int(float(line["price"]))
                       for line in order["line_items"])


def test_gated_confirm_on_failure_fault_confirms_rejected() -> None:
    settings = fast_settings(erp_reject_rate=1.0, gated_confirm_on_failure=True)

    result = asyncio.run(run_orders(settings, 3, until=("exceptions", "confirmed")))

    assert result["stats"]["acked"] == 0
    assert result["erp"] == {}
    assert sorted(result["stats"]["confirmed_after_failure"]) == sorted(
        str(order["id"]) for order in result["orders"])
    for order in result["orders"]:
        categories = [message["category"]
                      for message in messages_for(result["messages"], str(order["id"]))]
        assert categories == ["order_confirmation"]


def test_gated_confirm_on_failure_fault_after_giving_up() -> None:
    settings = fast_settings(erp_error_rate=1.0, gated_max_attempts=2,
                             gated_confirm_on_failure=True)

    result = asyncio.run(run_orders(settings, 1, until=("exceptions", "confirmed")))

    assert result["exceptions"][0]["reason"] == "gave up"
    assert result["stats"]["confirmed_after_failure"] == [str(result["orders"][0]["id"])]
