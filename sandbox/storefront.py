"""The sandbox storefront: signs and sends Shopify `orders/create` webhooks.

`send_webhooks` delivers orders the way Shopify does: the exact body bytes,
the Shopify header set, a 1 s connect timeout and a 5 s response timeout.
`Storefront` wraps it in an aiohttp app that lists what it emitted
(`GET /admin/api/orders.json`) and emits new batches on request
(`POST /_sim/emit`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.orders import SHOP_DOMAIN, encode_order, make_orders
from sandbox.settings import SandboxSettings

__all__ = [
    "API_VERSION",
    "SendSummary",
    "Storefront",
    "check_send_options",
    "encode_order",
    "make_orders",
    "send_webhooks",
    "sign",
    "webhook_headers",
]

log = logging.getLogger(__name__)

TOPIC = "orders/create"
API_VERSION = "2025-10"
# Shopify waits 1 s for the connection and 5 s for the response.
CONNECT_TIMEOUT_S = 1.0
RESPONSE_TIMEOUT_S = 5.0
# Headers aiohttp adds on its own that are not part of Shopify's set.
SKIPPED_CLIENT_HEADERS = ("User-Agent", "Accept", "Accept-Encoding")
# Namespace of the reproducible X-Shopify-Event-Id: one event per order.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d2c1e-5b7a-4c1e-9a55-0c2b3e4d5f60")


def sign(body: bytes, secret: str) -> str:
    """Return the base64 HMAC-SHA256 of the body, as in X-Shopify-Hmac-Sha256."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def webhook_headers(
    order: dict[str, Any],
    body: bytes,
    secret: str,
    *,
    event_id: str | None = None,
    webhook_id: str | None = None,
) -> dict[str, str]:
    """Build Shopify's header set for one delivery of `body`.

    The event id defaults to a UUID derived from the order id, so every
    delivery of the same order carries the same event id. The webhook id
    defaults to a new UUID for each call.
    """
    if event_id is None:
        event_id = str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{TOPIC}:{order['id']}"))
    if webhook_id is None:
        webhook_id = str(uuid.uuid4())
    triggered_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": TOPIC,
        "X-Shopify-Hmac-Sha256": sign(body, secret),
        "X-Shopify-Shop-Domain": SHOP_DOMAIN,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": triggered_at,
        "X-Shopify-API-Version": API_VERSION,
    }


@dataclass
class SendSummary:
    """Outcome of one `send_webhooks` call."""

    sent: int = 0
    ok: int = 0
    # Failure reason ("HTTP 500", "timeout", "connection error") -> count.
    failed: Counter[str] = field(default_factory=Counter)
    # Order id as a string -> HTTP status, or the failure reason when no
    # response arrived.
    statuses: dict[str, int | str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": dict(self.failed),
            "statuses": self.statuses,
        }


async def send_webhooks(
    target_url: str,
    orders: Iterable[dict[str, Any]],
    secret: str,
    *,
    rate_per_s: float | None = None,
    burst: int = 0,
    concurrency: int = 32,
    timeout_s: float = RESPONSE_TIMEOUT_S,
) -> SendSummary:
    """Post each order as a signed `orders/create` webhook to `target_url`.

    Orders start at `rate_per_s` (all at once when None). The last `burst`
    orders start together after the paced ones. At most `concurrency`
    deliveries are open at a time. A delivery counts as ok on any 2xx, as
    Shopify counts it.
    """
    orders = list(orders)
    check_send_options(len(orders), rate_per_s=rate_per_s, burst=burst, concurrency=concurrency)

    summary = SendSummary()
    slots = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=CONNECT_TIMEOUT_S)
    paced = orders[: len(orders) - burst]
    bursting = orders[len(orders) - burst :]

    async with aiohttp.ClientSession(
        timeout=timeout, skip_auto_headers=SKIPPED_CLIENT_HEADERS
    ) as session:
        tasks = []
        started = time.monotonic()
        for index, order in enumerate(paced):
            if rate_per_s is not None:
                await asyncio.sleep(max(0.0, started + index / rate_per_s - time.monotonic()))
            tasks.append(asyncio.create_task(_deliver(session, slots, target_url, order, secret, summary)))
        for order in bursting:
            tasks.append(asyncio.create_task(_deliver(session, slots, target_url, order, secret, summary)))
        await asyncio.gather(*tasks)

    log.info(
        "Sent %s webhooks to %s: %s ok, failures %s",
        summary.sent, target_url, summary.ok, dict(summary.failed),
    )
    return summary


def check_send_options(count: int, *, rate_per_s: float | None, burst: int, concurrency: int) -> None:
    """Raise ValueError when the options of a send of `count` orders are out of range."""
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be above 0 or None, but got {rate_per_s!r}")
    if not 0 <= burst <= count:
        raise ValueError(f"burst must be between 0 and the {count} orders, but got {burst!r}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be 1 or more, but got {concurrency!r}")


async def _deliver(
    session: aiohttp.ClientSession,
    slots: asyncio.Semaphore,
    target_url: str,
    order: dict[str, Any],
    secret: str,
    summary: SendSummary,
) -> None:
    order_key = str(order["id"])
    body = encode_order(order)
    headers = webhook_headers(order, body, secret)

    async with slots:
        summary.sent += 1
        try:
            async with session.post(target_url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            _record_failure(summary, order_key, "timeout")
            return
        except aiohttp.ClientError as exc:
            log.warning("Webhook for order %s to %s failed: %s", order_key, target_url, exc)
            _record_failure(summary, order_key, "connection error")
            return

    summary.statuses[order_key] = status
    if 200 <= status < 300:
        summary.ok += 1
    else:
        summary.failed[f"HTTP {status}"] += 1
        log.warning("Webhook for order %s got HTTP %s", order_key, status)


def _record_failure(summary: SendSummary, order_key: str, reason: str) -> None:
    summary.statuses[order_key] = reason
    summary.failed[reason] += 1


class Storefront:
    """The storefront app: emits seeded orders and lists the ones it emitted."""

    def __init__(self, settings: SandboxSettings, default_target_url: str) -> None:
        self._settings = settings
        self._default_target_url = default_target_url
        self._next_number = 1001
        self._emitted: list[dict[str, Any]] = []
        self._emit_lock = asyncio.Lock()

    @property
    def emitted(self) -> list[dict[str, Any]]:
        return list(self._emitted)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", _health)
        app.router.add_get("/admin/api/orders.json", self._list_orders)
        app.router.add_post("/_sim/emit", self._emit_handler)
        return app

    async def emit(
        self,
        count: int,
        *,
        target_url: str | None = None,
        rate_per_s: float | None = None,
        burst: int = 0,
        concurrency: int = 32,
    ) -> SendSummary:
        """Make the next `count` orders and send them as webhooks.

        The target defaults to the legacy flow's webhook URL. Batches are
        numbered on from the previous one, one batch at a time.
        """
        check_send_options(count, rate_per_s=rate_per_s, burst=burst, concurrency=concurrency)
        async with self._emit_lock:
            orders = make_orders(self._settings.seed, count, start_number=self._next_number)
            self._next_number += count
            self._emitted.extend(orders)
            return await send_webhooks(
                target_url or self._default_target_url,
                orders,
                self._settings.webhook_secret,
                rate_per_s=rate_per_s,
                burst=burst,
                concurrency=concurrency,
            )

    async def _list_orders(self, request: web.Request) -> web.Response:
        # json.dumps writes Python ints exactly, so ids above 2^53 survive.
        return web.json_response({"orders": self._emitted})

    async def _emit_handler(self, request: web.Request) -> web.Response:
        try:
            options = await request.json()
            if not isinstance(options, dict) or "count" not in options:
                raise ValueError("the count field is missing")
            count = int(options["count"])
            rate_per_s = None if options.get("rate_per_s") is None else float(options["rate_per_s"])
            burst = int(options.get("burst", 0))
            concurrency = int(options.get("concurrency", 32))
            check_send_options(count, rate_per_s=rate_per_s, burst=burst, concurrency=concurrency)
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            log.info("Rejected an emit request: %s", exc)
            message = (
                f"Invalid emit request: {exc}. Send JSON such as "
                '{"count": 10, "rate_per_s": 5, "burst": 0, "target_url": "http://..."}.'
            )
            return web.json_response({"error": message}, status=400)

        summary = await self.emit(
            count,
            target_url=options.get("target_url"),
            rate_per_s=rate_per_s,
            burst=burst,
            concurrency=concurrency,
        )
        return web.json_response(summary.to_dict())


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})

