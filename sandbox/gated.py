"""The gated flow: the candidate that confirms only after the ERP acknowledged.

`POST {WEBHOOK_PATH}` verifies the Shopify HMAC, drops deliveries it has
already seen (by event id, and by order id), puts the order in the outbox
and responds with 200 without waiting for the ERP. Workers submit outbox
orders with `PUT .../salesOrder/eid:{order id}`, an upsert, so a retry
never creates a second record. 429, 5xx and connection errors are retried with
exponential backoff and jitter, at most `gated_max_attempts` times.

The customer gets the confirmation email only after a 2xx from the ERP.
When no acknowledgement arrived `gated_pending_sla_s` after the webhook,
the customer first gets one pending-status email. A rejection (a 4xx other
than 429), or running out of attempts, moves the order to the exception
list without a confirmation.

Faults break these rules on purpose so tests can check that the harness
notices. Each applies to every Nth accepted order, or to every failed one:

- `gated_confirm_early_every` confirms before submitting;
- `gated_drop_every` never submits nor confirms;
- `gated_submit_twice_every` submits again after the acknowledgement;
- `gated_round_price_every` rounds the line prices to whole units;
- `gated_confirm_on_failure` confirms orders the ERP rejected or that
  failed after the last attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.customer_email import (
    CONFIRMATION,
    PENDING,
    EmailSendError,
    compose_order_email,
    send_email,
)
from sandbox.erp import SALES_ORDER_PATH, first_error_detail
from sandbox.settings import WEBHOOK_PATH, SandboxSettings
from sandbox.webhook_auth import (
    BodyDecodeError,
    decode_body,
    event_id_of,
    hmac_matches,
    shopify_header,
)

__all__ = ["GatedFlow", "GatedStats", "build_gated_sales_order"]

log = logging.getLogger(__name__)

ERP_TIMEOUT_S = 30.0
MAX_BACKOFF_S = 30.0


@dataclass
class GatedStats:
    """Counters of the gated flow, as `GET /_sim/stats` returns them."""

    received: int = 0
    duplicates_ignored: int = 0
    hmac_failures: int = 0
    invalid_bodies: int = 0
    outbox_size: int = 0
    erp_retries: int = 0
    acked: int = 0
    confirmed: int = 0
    pending_notices: int = 0
    email_failures: int = 0
    exceptions: int = 0
    # Order ids confirmed before submission by the gated_confirm_early_every fault.
    early_confirmations: list[str] = field(default_factory=list)
    # Order ids touched by the other faults, in the order they happened;
    # price_rounded lists only orders whose prices the rounding changed.
    dropped: list[str] = field(default_factory=list)
    submitted_twice: list[str] = field(default_factory=list)
    price_rounded: list[str] = field(default_factory=list)
    confirmed_after_failure: list[str] = field(default_factory=list)


@dataclass
class OutboxEntry:
    order_id: str
    order: dict[str, Any]
    # 1-based position in arrival order among accepted orders.
    sequence: int
    acked: bool = False
    closed: bool = False
    confirmed: bool = False
    pending_sent: bool = False
    pending_timer: asyncio.TimerHandle | None = None
    pending_task: asyncio.Task[bool] | None = None


@dataclass
class Submission:
    """Result of submitting one order: "acked", "rejected" or "gave up"."""

    outcome: str
    attempts: int
    status: int | None = None
    error: Any = None


def build_gated_sales_order(order: dict[str, Any]) -> dict[str, Any]:
    """Map a Shopify order to a NetSuite sales order, money as numbers.

    Lines are listed last to first. The legacy flow's mapping lists them in
    Shopify's order with money as strings; the comparator must see both as
    the same sales order.
    """
    customer = order.get("customer") or {}
    shipping = order.get("shipping_address") or {}
    lines = []
    for line in reversed(order["line_items"]):
        price = Decimal(line["price"])
        lines.append({
            "item": {"externalId": line["sku"]},
            "quantity": line["quantity"],
            "rate": float(price),
            "amount": float(price * line["quantity"]),
        })
    address = "\n".join([
        shipping.get("name", ""),
        shipping.get("address1", ""),
        f"{shipping.get('zip', '')} {shipping.get('city', '')}",
        shipping.get("country_code", ""),
    ])
    return {
        "externalId": str(order["id"]),
        "tranId": order["name"],
        "entity": {"externalId": customer.get("email") or order["email"]},
        "tranDate": datetime.fromisoformat(order["created_at"]).date().isoformat(),
        "currency": {"refName": order["currency"]},
        "memo": order.get("note") or "",
        "item": {"items": lines},
        "shipAddress": address,
        "email": order["email"],
        "custbody_synced_at": datetime.now(UTC).isoformat(),
    }


class GatedFlow:
    """The gated order flow app with its outbox, workers and pending timers."""

    def __init__(self, settings: SandboxSettings) -> None:
        resolved = settings.resolved()
        self.stats = GatedStats()
        self.exceptions: list[dict[str, Any]] = []
        self._settings = resolved
        self._erp_url = resolved.gated_erp_url + SALES_ORDER_PATH
        self._email_url = resolved.gated_email_url
        self._jitter = random.Random(f"{resolved.seed}:gated-backoff")
        self._seen_event_ids: set[str] = set()
        self._known_order_ids: set[str] = set()
        self._outbox: dict[str, OutboxEntry] = {}
        self._queue: asyncio.Queue[OutboxEntry] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None

    def make_app(self) -> web.Application:
        # The HMAC is checked over the body as sent, so aiohttp must not
        # decompress it before the handler reads it.
        app = web.Application(handler_args={"auto_decompress": False})
        app.router.add_get("/health", _health)
        app.router.add_post(WEBHOOK_PATH, self._receive_webhook)
        app.router.add_get("/_sim/stats", self._stats)
        app.router.add_get("/_sim/exceptions", self._list_exceptions)
        app.cleanup_ctx.append(self._run_background)
        return app

    async def _run_background(self, app: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ERP_TIMEOUT_S))
        workers = [
            asyncio.create_task(self._work(), name=f"gated-worker-{number}")
            for number in range(self._settings.gated_workers)
        ]
        log.info("Gated flow started: ERP %s, %s workers", self._erp_url, len(workers))
        yield

        for entry in self._outbox.values():
            if entry.pending_timer is not None:
                entry.pending_timer.cancel()
        pending = [*workers, *self._tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._session.close()
        log.info("Gated flow stopped with %s orders in the outbox", len(self._outbox))

    async def _receive_webhook(self, request: web.Request) -> web.Response:
        self.stats.received += 1
        raw = await request.read()
        try:
            body = decode_body(raw, request.headers.get("Content-Encoding"))
        except BodyDecodeError as exc:
            self.stats.invalid_bodies += 1
            log.warning("Rejected a webhook body: %s", exc)
            return web.json_response({"error": str(exc)}, status=exc.status)

        signature = shopify_header(request.headers, "Shopify-Hmac-Sha256")
        if not hmac_matches(body, signature, self._settings.webhook_secret):
            self.stats.hmac_failures += 1
            log.warning("Rejected a webhook with a missing or wrong HMAC signature")
            return web.json_response({"error": "HMAC signature does not match the body"}, status=401)

        event_id = event_id_of(request.headers)
        if event_id is not None and event_id in self._seen_event_ids:
            self.stats.duplicates_ignored += 1
            log.info("Ignored a repeated delivery of event %s", event_id)
            return web.Response(status=200)

        try:
            order = json.loads(body)
            order_id = str(order["id"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            self.stats.invalid_bodies += 1
            log.warning("Rejected a signed webhook without a readable order: %r", exc)
            return web.json_response({"error": "Invalid order JSON"}, status=400)

        if event_id is not None:
            self._seen_event_ids.add(event_id)
        # orders/create fires once per order; another event for a known
        # order would confirm the customer twice.
        if order_id in self._known_order_ids:
            self.stats.duplicates_ignored += 1
            log.info("Ignored another orders/create for known order %s (event %s)", order_id, event_id)
            return web.Response(status=200)

        self._accept(order_id, order)
        return web.Response(status=200)

    def _accept(self, order_id: str, order: dict[str, Any]) -> None:
        # NOTE: the outbox lives in memory, so a restart loses the orders in
        # it. A production candidate stores it before responding with 200.
        self._known_order_ids.add(order_id)
        entry = OutboxEntry(order_id=order_id, order=order, sequence=len(self._known_order_ids))
        self._outbox[order_id] = entry
        self.stats.outbox_size = len(self._outbox)
        entry.pending_timer = asyncio.get_running_loop().call_later(
            self._settings.gated_pending_sla_s, self._on_pending_deadline, entry
        )
        self._queue.put_nowait(entry)
        log.info("Order %s accepted into the outbox as number %s", order_id, entry.sequence)

    def _on_pending_deadline(self, entry: OutboxEntry) -> None:
        entry.pending_timer = None
        if entry.acked or entry.closed or entry.confirmed or entry.pending_sent:
            return
        entry.pending_sent = True
        log.info("No ERP acknowledgement for order %s within the SLA; sending the pending notice", entry.order_id)
        entry.pending_task = self._spawn(self._send_customer_email(entry, PENDING))

    async def _work(self) -> None:
        while True:
            entry = await self._queue.get()
            try:
                await self._process(entry)
            except Exception:  # pragma: no cover - keeps the worker alive on a bug
                log.exception("Processing order %s failed; it stays in the outbox", entry.order_id)

    async def _process(self, entry: OutboxEntry) -> None:
        settings = self._settings
        if _every(settings.gated_drop_every, entry.sequence):
            log.warning("Fault injection: dropping order %s without submitting it", entry.order_id)
            self.stats.dropped.append(entry.order_id)
            self._close_outbox_entry(entry)
            entry.closed = True
            return
        if _every(settings.gated_round_price_every, entry.sequence):
            rounded = _with_rounded_prices(entry.order)
            # Orders whose prices are all whole units come out unchanged.
            if rounded != entry.order:
                log.warning("Fault injection: rounding the prices of order %s", entry.order_id)
                self.stats.price_rounded.append(entry.order_id)
                entry.order = rounded
        if _every(settings.gated_confirm_early_every, entry.sequence):
            log.warning("Fault injection: confirming order %s before submitting it", entry.order_id)
            self.stats.early_confirmations.append(entry.order_id)
            entry.confirmed = True
            await self._send_customer_email(entry, CONFIRMATION)

        submission = await self._submit(entry)
        self._close_outbox_entry(entry)

        if submission.outcome != "acked":
            entry.closed = True
            self._record_exception(entry, submission)
            if settings.gated_confirm_on_failure and not entry.confirmed:
                log.warning("Fault injection: confirming order %s after the ERP %s",
                            entry.order_id, submission.outcome)
                self.stats.confirmed_after_failure.append(entry.order_id)
                entry.confirmed = True
                await self._send_customer_email(entry, CONFIRMATION)
            return
        entry.acked = True
        self.stats.acked += 1
        log.info("ERP acknowledged order %s after %s attempt(s)", entry.order_id, submission.attempts)
        if _every(settings.gated_submit_twice_every, entry.sequence):
            log.warning("Fault injection: submitting order %s to the ERP a second time", entry.order_id)
            self.stats.submitted_twice.append(entry.order_id)
            await self._submit(entry)
        if entry.confirmed:
            return
        entry.confirmed = True
        # The pending notice, when one is on its way, goes out first.
        if entry.pending_task is not None:
            await asyncio.wait([entry.pending_task])
        await self._send_customer_email(entry, CONFIRMATION)

    def _close_outbox_entry(self, entry: OutboxEntry) -> None:
        if entry.pending_timer is not None:
            entry.pending_timer.cancel()
            entry.pending_timer = None
        del self._outbox[entry.order_id]
        self.stats.outbox_size = len(self._outbox)

    async def _submit(self, entry: OutboxEntry) -> Submission:
        assert self._session is not None
        url = f"{self._erp_url}/eid:{entry.order_id}"
        max_attempts = self._settings.gated_max_attempts
        status: int | None = None
        error: Any = None

        for attempt in range(1, max_attempts + 1):
            try:
                async with self._session.put(url, json=build_gated_sales_order(entry.order)) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, error = None, repr(exc)
            else:
                if 200 <= status < 300:
                    return Submission("acked", attempt, status)
                error = first_error_detail(body)
                if status != 429 and status < 500:
                    return Submission("rejected", attempt, status, error)

            if attempt < max_attempts:
                delay = self._backoff_s(attempt)
                self.stats.erp_retries += 1
                log.info(
                    "ERP attempt %s for order %s failed (%s); retrying in %.2f s",
                    attempt, entry.order_id, status or error, delay,
                )
                await asyncio.sleep(delay)

        return Submission("gave up", max_attempts, status, error)

    def _backoff_s(self, attempt: int) -> float:
        """Return the delay before retry number `attempt`: doubling, with jitter in its upper half."""
        ceiling = min(MAX_BACKOFF_S, self._settings.gated_backoff_s * 2 ** (attempt - 1))
        return ceiling / 2 + self._jitter.uniform(0, ceiling / 2)

    def _record_exception(self, entry: OutboxEntry, submission: Submission) -> None:
        self.stats.exceptions += 1
        self.exceptions.append({
            "order_id": entry.order_id,
            "reason": submission.outcome,
            "status": submission.status,
            "attempts": submission.attempts,
            "error": submission.error,
            "recorded_at": time.time(),
        })
        log.warning(
            "Order %s moved to exceptions (%s, HTTP %s after %s attempt(s)); no confirmation sent",
            entry.order_id, submission.outcome, submission.status, submission.attempts,
        )

    async def _send_customer_email(self, entry: OutboxEntry, category: str) -> bool:
        """Send one customer email, retrying transient failures; return True once accepted.

        SendGrid has no idempotency key, so a retry after a timeout can
        deliver a second copy.
        """
        assert self._session is not None
        message = compose_order_email(entry.order, category)
        max_attempts = self._settings.gated_max_attempts
        for attempt in range(1, max_attempts + 1):
            try:
                await send_email(self._session, self._email_url, message)
            except EmailSendError as exc:
                if not exc.retryable or attempt == max_attempts:
                    self.stats.email_failures += 1
                    log.error("Giving up on the %s email for order %s: %s", category, entry.order_id, exc)
                    return False
                await asyncio.sleep(self._backoff_s(attempt))
                continue
            if category == CONFIRMATION:
                self.stats.confirmed += 1
            else:
                self.stats.pending_notices += 1
            return True
        return False  # pragma: no cover - the loop always returns

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))

    async def _list_exceptions(self, request: web.Request) -> web.Response:
        return web.json_response(self.exceptions)


def _every(period: int, sequence: int) -> bool:
    """Tell whether a fault set to every `period`th order applies to order number `sequence`."""
    return period > 0 and sequence % period == 0


def _with_rounded_prices(order: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a Shopify order with each line price rounded to whole units, half up."""
    lines = []
    for line in order["line_items"]:
        rounded = Decimal(line["price"]).quantize(Decimal("1"), rounding=ROUND_HALF_UP)
        lines.append(dict(line, price=f"{rounded}.00"))
    return dict(order, line_items=lines)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
