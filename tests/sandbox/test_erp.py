"""The NetSuite-like ERP simulator: create, upsert, limits and faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from sandbox.erp import SALES_ORDER_PATH, ErpSimulator
from sandbox.settings import SandboxSettings
from sandbox.stack import serve_app
from tests.sandbox.helpers import fast_settings, get_json, wait_for


@asynccontextmanager
async def running_erp(settings: SandboxSettings, name: str = "erp") -> AsyncIterator[str]:
    """Serve one ERP simulator on a free port and yield its base URL."""
    runner, port = await serve_app(ErpSimulator(settings, name=name).make_app(), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def sales_order(external_id: str) -> dict[str, Any]:
    return {"externalId": external_id, "item": {"items": [{"item": {"externalId": "SKU-1"}, "quantity": 1}]}}


def error_code(body: bytes) -> str:
    return json.loads(body)["o:errorDetails"][0]["o:errorCode"]


def test_erp_post_responds_204_with_location() -> None:
    async def scenario() -> Any:
        async with (
            running_erp(fast_settings()) as base_url,
            aiohttp.ClientSession() as session,
            session.post(base_url + SALES_ORDER_PATH, json=sales_order("1001")) as response,
        ):
            return base_url, response.status, response.headers.get("Location"), await response.read()

    base_url, status, location, body = asyncio.run(scenario())

    assert status == 204
    assert body == b""
    assert location is not None
    assert location.startswith(base_url + SALES_ORDER_PATH + "/")
    assert location.rsplit("/", 1)[1].isdigit()


def test_erp_post_duplicate_is_dup_rcrd() -> None:
    async def scenario() -> Any:
        async with running_erp(fast_settings()) as base_url, aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(2):
                async with session.post(base_url + SALES_ORDER_PATH, json=sales_order("1001")) as response:
                    statuses.append(response.status)
                    body = await response.read()
            orders = await get_json(session, base_url + "/_sim/orders")
            return statuses, body, orders

    statuses, body, orders = asyncio.run(scenario())

    assert statuses == [204, 400]
    error = json.loads(body)
    assert error["status"] == 400
    assert error["title"] == "Bad Request"
    assert error["o:errorDetails"][0]["o:errorCode"] == "DUP_RCRD"
    assert orders["1001"]["created"] == 1
    assert orders["1001"]["duplicate_posts"] == 1


def test_erp_put_is_idempotent() -> None:
    async def scenario() -> Any:
        async with running_erp(fast_settings()) as base_url, aiohttp.ClientSession() as session:
            url = base_url + SALES_ORDER_PATH + "/eid:1001"
            responses = []
            for _ in range(2):
                async with session.put(url, json=sales_order("1001")) as response:
                    responses.append((response.status, response.headers.get("Location"), await response.read()))
            orders = await get_json(session, base_url + "/_sim/orders")
            return responses, orders

    responses, orders = asyncio.run(scenario())

    assert [status for status, _, _ in responses] == [204, 204]
    assert responses[0][1] == responses[1][1]
    assert responses[0][2] == b""
    assert list(orders) == ["1001"]
    assert orders["1001"]["created"] == 1
    assert orders["1001"]["updated"] == 1


def test_erp_get_returns_record_or_404() -> None:
    async def scenario() -> Any:
        async with running_erp(fast_settings()) as base_url, aiohttp.ClientSession() as session:
            url = base_url + SALES_ORDER_PATH + "/eid:"
            async with session.get(url + "1001") as response:
                missing = (response.status, await response.read())
            async with session.put(url + "1001", json=sales_order("1001")):
                pass
            async with session.get(url + "1001") as response:
                found = (response.status, await response.json(content_type=None))
            return missing, found

    missing, found = asyncio.run(scenario())

    assert missing[0] == 404
    assert error_code(missing[1]) == "NONEXISTENT_ID"
    assert found[0] == 200
    assert found[1]["externalId"] == "1001"
    assert found[1]["id"].isdigit()


def test_erp_malformed_json_is_400() -> None:
    async def scenario() -> Any:
        async with (
            running_erp(fast_settings()) as base_url,
            aiohttp.ClientSession() as session,
            session.post(base_url + SALES_ORDER_PATH, data=b"{not json") as response,
        ):
            return response.status, await response.read()

    status, body = asyncio.run(scenario())

    assert status == 400
    assert error_code(body) == "USER_ERROR"


def test_erp_responds_429_above_concurrency_limit() -> None:
    # The latency keeps the first two requests in flight while the third
    # arrives; the test waits until the simulator counts both in flight.
    settings = fast_settings(erp_concurrency_limit=2, erp_base_latency_ms=1000.0)

    async def scenario() -> Any:
        async with running_erp(settings) as base_url, aiohttp.ClientSession() as session:

            async def put(external_id: str) -> int:
                url = base_url + SALES_ORDER_PATH + f"/eid:{external_id}"
                async with session.put(url, json=sales_order(external_id)) as response:
                    await response.read()
                    return response.status

            first = [asyncio.create_task(put(external_id)) for external_id in ("1", "2")]

            async def both_in_flight() -> bool:
                stats = await get_json(session, base_url + "/_sim/stats")
                return stats["in_flight"] == 2

            await wait_for(both_in_flight, "two requests in flight")
            url = base_url + SALES_ORDER_PATH + "/eid:3"
            async with session.put(url, json=sales_order("3")) as response:
                throttled = (response.status, await response.read())
            first_statuses = await asyncio.gather(*first)
            stats = await get_json(session, base_url + "/_sim/stats")
            return throttled, first_statuses, stats

    throttled, first_statuses, stats = asyncio.run(scenario())

    assert throttled[0] == 429
    assert error_code(throttled[1]) == "CONCURRENCY_LIMIT_EXCEEDED"
    assert first_statuses == [204, 204]
    assert stats["throttled"] == 1
    assert stats["max_in_flight"] == 2


def test_erp_rejections_match_across_accounts() -> None:
    settings = fast_settings(erp_reject_rate=0.5)
    external_ids = [str(number) for number in range(20)]

    async def statuses_of(name: str) -> list[int]:
        async with running_erp(settings, name=name) as base_url, aiohttp.ClientSession() as session:
            statuses = []
            for external_id in external_ids:
                url = base_url + SALES_ORDER_PATH + f"/eid:{external_id}"
                async with session.put(url, json=sales_order(external_id)) as response:
                    body = await response.read()
                    statuses.append(response.status)
                    if response.status == 400:
                        assert error_code(body) == "USER_ERROR"
            return statuses

    legacy_statuses = asyncio.run(statuses_of("erp"))
    candidate_statuses = asyncio.run(statuses_of("erp_candidate"))

    assert legacy_statuses == candidate_statuses
    assert 400 in legacy_statuses
    assert 204 in legacy_statuses


def test_erp_error_rate_gives_5xx() -> None:
    settings = fast_settings(erp_error_rate=1.0)

    async def scenario() -> Any:
        async with running_erp(settings) as base_url, aiohttp.ClientSession() as session:
            statuses = set()
            for external_id in ("1", "2", "3", "4", "5", "6"):
                async with session.post(base_url + SALES_ORDER_PATH, json=sales_order(external_id)) as response:
                    await response.read()
                    statuses.add(response.status)
            orders = await get_json(session, base_url + "/_sim/orders")
            stats = await get_json(session, base_url + "/_sim/stats")
            return statuses, orders, stats

    statuses, orders, stats = asyncio.run(scenario())

    assert statuses <= {500, 503}
    assert orders == {}
    assert stats["server_errors"] == 6
    assert stats["requests"] == 6
