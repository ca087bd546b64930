"""The legacy flow: confirm at once, sync to the ERP later.

This is the unsafe pattern the harness measures. `POST {WEBHOOK_PATH}`
responds with 200 at once, starts the confirmation email right away and queues
the order. A poller runs every `legacy_poll_interval_s` and creates the
queued orders in the ERP with `POST .../salesOrder`. A 429, a 5xx or a
connection error leaves the order queued for the next run; any other 4xx
moves it to the exception list. So every order is confirmed before the ERP
has it, and the gap widens with the poll interval and the ERP's load.

Like much code of its kind, it does not verify the webhook HMAC and does
not deduplicate deliveries: a repeated delivery sends a second email and
ends as a `DUP_RCRD` exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.customer_email import (
    CONFIRMATION,
    EmailSendError,
    compose_order_email,
    send_email,
)
from sandbox.erp import SALES_ORDER_PATH, first_error_detail
from sandbox.settings import WEBHOOK_PATH, SandboxSettings

__all__ = ["LegacyFlow", "LegacyStats", "build_legacy_sales_order"]

log = logging.getLogger(__name__)

# Orders the poller submits at the same time; each poll run works through
# its batch with this many requests open.
SYNC_CONCURRENCY = 4
ERP_TIMEOUT_S = 30.0
CENT = Decimal("0.01")


@dataclass
class LegacyStats:
    """Counters of the legacy flow, as `GET /_sim/stats` returns them."""

    received: int = 0
    invalid_bodies: int = 0
    # Orders neither synced nor moved to the exceptions yet, including those
    # the current poll run is submitting.
    queued: int = 0
    synced: int = 0
    requeued: int = 0
    confirmed: int = 0
    email_failures: int = 0
    exceptions: int = 0


def build_legacy_sales_order(order: dict[str, Any]) -> dict[str, Any]:
    """Map a Shopify order to a NetSuite sales order, money as strings."""
    shipping = order.get("shipping_address") or {}
    items = []
    for line in order["line_items"]:
        rate = Decimal(line["price"])
        items.append({
            "item": {"externalId": line["sku"]},
            "quantity": line["quantity"],
            "rate": str(rate.quantize(CENT)),
            "amount": str((rate * line["quantity"]).quantize(CENT)),
        })
    ship_lines = [
        shipping.get("name", ""),
        shipping.get("address1", ""),
        f"{shipping.get('zip', '')} {shipping.get('city', '')}",
        shipping.get("country_code", ""),
    ]
    return {
        "externalId": str(order["id"]),
        "tranId": order["name"],
        "entity": {"externalId": order["customer"]["email"]},
        # The date part of created_at, in the shop's time zone.
        "tranDate": order["created_at"][:10],
        "currency": {"refName": order["currency"]},
        "memo": order.get("note") or "",
        "item": {"items": items},
        "shipAddress": "\n".join(ship_lines),
        "email": order["email"],
        "custbody_synced_at": datetime.now(UTC).isoformat(),
    }


class LegacyFlow:
    """The legacy order flow app with its email tasks and ERP poller."""

    def __init__(self, settings: SandboxSettings) -> None:
        resolved = settings.resolved()
        self.stats = LegacyStats()
        self.exceptions: list[dict[str, Any]] = []
        self._erp_url = resolved.legacy_erp_url + SALES_ORDER_PATH
        self._email_url = resolved.legacy_email_url
        self._poll_interval_s = resolved.legacy_poll_interval_s
        self._queue: list[dict[str, Any]] = []
        self._syncing = 0
        self._email_tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", _health)
        app.router.add_post(WEBHOOK_PATH, self._receive_webhook)
        app.router.add_get("/_sim/stats", self._stats)
        app.router.add_get("/_sim/exceptions", self._list_exceptions)
        app.cleanup_ctx.append(self._run_background)
        return app

    async def _run_background(self, app: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ERP_TIMEOUT_S))
        poller = asyncio.create_task(self._poll_forever(), name="legacy-poller")
        log.info("Legacy flow started: ERP %s, poll interval %s s", self._erp_url, self._poll_interval_s)
        yield

        poller.cancel()
        for task in list(self._email_tasks):
            task.cancel()
        await asyncio.gather(poller, *self._email_tasks, return_exceptions=True)
        await self._session.close()
        log.info("Legacy flow stopped with %s orders still queued", len(self._queue))

    async def _receive_webhook(self, request: web.Request) -> web.Response:
        self.stats.received += 1
        try:
            order = json.loads(await request.read())
            order_id = str(order["id"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            self.stats.invalid_bodies += 1
            log.warning("Rejected a webhook without a readable order: %r", exc)
            return web.json_response({"error": "Invalid order JSON"}, status=400)

        # The unsafe step under test: the customer is confirmed before the
        # ERP has seen the order.
        task = asyncio.create_task(self._confirm(order), name=f"legacy-confirm-{order_id}")
        self._email_tasks.add(task)
        task.add_done_callback(self._email_tasks.discard)
        self._queue.append(order)
        log.info("Order %s received, confirmation started, queued for the next poll", order_id)
        return web.Response(status=200)

    async def _confirm(self, order: dict[str, Any]) -> None:
        assert self._session is not None
        message = compose_order_email(order, CONFIRMATION)
        try:
            await send_email(self._session, self._email_url, message)
        except EmailSendError as exc:
            self.stats.email_failures += 1
            log.warning("Confirmation for order %s not sent: %s", order["id"], exc)
            return
        self.stats.confirmed += 1

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self._sync_queued()
            except Exception:  # pragma: no cover - keeps the poller alive on a bug
                log.exception("Legacy poll run failed; retrying on the next poll")

    async def _sync_queued(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        slots = asyncio.Semaphore(SYNC_CONCURRENCY)
        self._syncing = len(batch)
        try:
            done = await asyncio.gather(*(self._sync_order(order, slots) for order in batch))
        finally:
            self._syncing = 0

        retry = [order for order, order_done in zip(batch, done, strict=True) if not order_done]
        self._queue = retry + self._queue
        self.stats.requeued += len(retry)
        log.info("Poll run: %s orders submitted, %s left queued", len(batch), len(retry))

    async def _sync_order(self, order: dict[str, Any], slots: asyncio.Semaphore) -> bool:
        """Submit one order; return True when it leaves the queue (synced or rejected)."""
        assert self._session is not None
        order_id = str(order["id"])
        async with slots:
            try:
                async with self._session.post(self._erp_url, json=build_legacy_sales_order(order)) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("ERP request for order %s failed, stays queued: %r", order_id, exc)
                return False

        if 200 <= status < 300:
            self.stats.synced += 1
            log.info("Order %s synced to the ERP", order_id)
            return True
        if status == 429 or status >= 500:
            log.info("ERP responded with HTTP %s to order %s; the order stays queued", status, order_id)
            return False

        self.stats.exceptions += 1
        self.exceptions.append({"order_id": order_id, "status": status, "error": first_error_detail(body)})
        log.warning("ERP rejected order %s with HTTP %s; moved to exceptions", order_id, status)
        return True

    async def _stats(self, request: web.Request) -> web.Response:
        self.stats.queued = len(self._queue) + self._syncing
        return web.json_response(asdict(self.stats))

    async def _list_exceptions(self, request: web.Request) -> web.Response:
        return web.json_response(self.exceptions)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
