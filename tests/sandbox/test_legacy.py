"""The legacy flow: confirmation at once, ERP sync by a poller."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from sandbox.settings import SandboxSettings
from sandbox.storefront import make_orders, send_webhooks
from tests.sandbox.helpers import (
    fast_settings,
    get_json,
    messages_for,
    running_stack,
    wait_for,
)


async def run_orders(settings: SandboxSettings, count: int, *, until: str) -> dict[str, Any]:
    """Send `count` orders to the legacy flow; wait until stats `until` reaches `count`."""
    orders = make_orders(settings.seed, count)
    async with running_stack(settings) as stack, aiohttp.ClientSession() as session:
        summary = await send_webhooks(stack.webhook_url("legacy"), orders, settings.webhook_secret)

        async def reached() -> dict[str, Any] | None:
            stats = await get_json(session, stack.url("legacy") + "/_sim/stats")
            return stats if stats[until] >= count else None

        stats = await wait_for(reached, f"legacy stats {until} to reach {count}")

        async def all_confirmed() -> list[Any] | None:
            messages = await get_json(session, stack.url("email") + "/_sim/messages")
            return messages if len(messages) >= count else None

        return {
            "orders": orders,
            "summary": summary,
            "stats": stats,
            "erp": await get_json(session, stack.url("erp") + "/_sim/orders"),
            "candidate_erp": await get_json(session, stack.url("erp_candidate") + "/_sim/orders"),
            "messages": await wait_for(all_confirmed, "legacy confirmations"),
            "exceptions": await get_json(session, stack.url("legacy") + "/_sim/exceptions"),
        }


def test_legacy_confirms_before_poller_synced() -> None:
    settings = fast_settings(legacy_poll_interval_s=0.3)

    result = asyncio.run(run_orders(settings, 3, until="synced"))

    assert result["summary"].ok == 3
    assert result["candidate_erp"] == {}
    for order in result["orders"]:
        order_id = str(order["id"])
        messages = messages_for(result["messages"], order_id)
        assert [message["category"] for message in messages] == ["order_confirmation"]
        assert messages[0]["received_at"] < result["erp"][order_id]["first_stored_at"]


def test_legacy_sales_order_writes_money_as_strings() -> None:
    result = asyncio.run(run_orders(fast_settings(), 1, until="synced"))

    order = result["orders"][0]
    record = result["erp"][str(order["id"])]["record"]
    lines = record["item"]["items"]
    assert [line["item"]["externalId"] for line in lines] == [line["sku"] for line in order["line_items"]]
    assert lines[0]["rate"] == order["line_items"][0]["price"]
    assert isinstance(lines[0]["amount"], str)
    assert record["tranDate"] == order["created_at"][:10]


def test_legacy_keeps_failed_orders_queued() -> None:
    settings = fast_settings(erp_error_rate=0.5)

    result = asyncio.run(run_orders(settings, 4, until="synced"))

    assert result["stats"]["requeued"] > 0
    assert result["stats"]["exceptions"] == 0
    assert len(result["erp"]) == 4


def test_legacy_rejection_goes_to_exceptions() -> None:
    settings = fast_settings(erp_reject_rate=1.0)

    result = asyncio.run(run_orders(settings, 2, until="exceptions"))

    assert result["erp"] == {}
    assert [message["category"] for message in result["messages"]] == ["order_confirmation"] * 2
    assert [exception["status"] for exception in result["exceptions"]] == [400, 400]
    assert result["exceptions"][0]["error"]["o:errorCode"] == "USER_ERROR"
