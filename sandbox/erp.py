"""ERP simulator modelled on NetSuite's REST record service for sales orders.

What it reproduces, because the flows under test depend on it:

- `POST /services/rest/record/v1/salesOrder` creates a record and responds
  with 204 and no body; the new internal id is only in `Location`. A second
  POST with the same `externalId` is rejected with `DUP_RCRD`.
- `PUT .../salesOrder/eid:{externalId}` creates or updates (an upsert), so
  retries are safe. `GET` on the same path returns the record or 404.
- An account-wide concurrency limit: a request that arrives while
  `erp_concurrency_limit` requests are in flight gets 429
  `CONCURRENCY_LIMIT_EXCEEDED` at once. With `erp_throttle_all_s`, every
  request gets that response for so many seconds from the first one.
- Latency grows with the load: `erp_base_latency_ms +
  erp_latency_per_inflight_ms * in_flight`, where `in_flight` counts this
  request too.
- Injected faults on writes. Transient 500/503 responses come from a seeded
  RNG, one draw per write. Rejections (400 `USER_ERROR`) are decided per
  externalId from the seed, so both ERP accounts reject the same orders,
  the way invalid data would be rejected by both.

Errors use NetSuite's error body: `type`, `title`, `status` and
`o:errorDetails` with `detail` and `o:errorCode`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from sandbox.settings import SandboxSettings

__all__ = ["SALES_ORDER_PATH", "ErpSimulator", "ErpStats", "first_error_detail", "netsuite_error"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RECORD_PREFIX = "/services/rest/record/v1/"
SALES_ORDER_PATH = RECORD_PREFIX + "salesOrder"
FIRST_INTERNAL_ID = 10001

ERROR_CONTENT_TYPE = "application/vnd.oracle.resource+json; type=error"
RECORD_CONTENT_TYPE = "application/vnd.oracle.resource+json; type=singular-resource"
ERROR_TYPES = {
    400: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1", "Bad Request"),
    404: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.5", "Not Found"),
    429: ("https://www.rfc-editor.org/rfc/rfc6585.html#section-4", "Too Many Requests"),
    500: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.1", "Internal Server Error"),
    503: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.4", "Service Unavailable"),
}


def netsuite_error(status: int, error_code: str, detail: str) -> web.Response:
    """Build an error response with NetSuite's REST error body."""
    type_url, title = ERROR_TYPES[status]
    body = {
        "type": type_url,
        "title": title,
        "status": status,
        "o:errorDetails": [{"detail": detail, "o:errorCode": error_code}],
    }
    return web.Response(
        status=status,
        body=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": ERROR_CONTENT_TYPE},
    )


def first_error_detail(body: bytes) -> dict[str, Any] | str:
    """Return the first entry of a NetSuite error body's o:errorDetails, or the body as text."""
    try:
        return json.loads(body)["o:errorDetails"][0]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
        return body.decode("utf-8", errors="replace")


@dataclass
class ErpStats:
    """Counters of one ERP simulator, as `GET /_sim/stats` returns them."""

    requests: int = 0
    throttled: int = 0
    server_errors: int = 0
    rejections: int = 0
    duplicates: int = 0
    created: int = 0
    updated: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


@dataclass
class StoredOrder:
    internal_id: int
    record: dict[str, Any]
    # Wall-clock seconds, so that the stored time can be compared with the
    # email simulator's receive time.
    first_stored_at: float
    last_stored_at: float
    created: int = 1
    updated: int = 0
    # POSTs with this externalId rejected with DUP_RCRD after the first.
    duplicate_posts: int = 0


class ErpSimulator:
    """One ERP account: its stored sales orders, its limit and its faults."""

    def __init__(self, settings: SandboxSettings, *, name: str = "erp") -> None:
        self.name = name
        self.stats = ErpStats()
        self.orders: dict[str, StoredOrder] = {}
        self._settings = settings
        self._fault_rng = random.Random(f"{settings.seed}:{name}:faults")
        self._internal_ids = itertools.count(FIRST_INTERNAL_ID)
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        # Monotonic time of the first request to the record service.
        self._first_request_at: float | None = None

    def make_app(self) -> web.Application:
        @web.middleware
        async def limit_concurrency(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._limit_concurrency(request, handler)

        app = web.Application(middlewares=[limit_concurrency])
        app.on_shutdown.append(self._cancel_in_flight)
        app.router.add_get("/health", _health)
        app.router.add_post(SALES_ORDER_PATH, self._create)
        app.router.add_put(SALES_ORDER_PATH + "/eid:{external_id}", self._upsert)
        app.router.add_get(SALES_ORDER_PATH + "/eid:{external_id}", self._get)
        app.router.add_get("/_sim/orders", self._list_orders)
        app.router.add_get("/_sim/stats", self._stats)
        return app

    async def _limit_concurrency(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(RECORD_PREFIX):
            return await handler(request)

        self.stats.requests += 1
        if self._throttling_all():
            self.stats.throttled += 1
            return netsuite_error(
                429,
                "CONCURRENCY_LIMIT_EXCEEDED",
                "The account's request limit is used up. Retry the request later "
                "(throttle injected by erp_throttle_all_s).",
            )
        limit = self._settings.erp_concurrency_limit
        if self.stats.in_flight >= limit:
            self.stats.throttled += 1
            log.debug("%s: %s %s throttled with %s in flight", self.name, request.method, request.path, limit)
            return netsuite_error(
                429,
                "CONCURRENCY_LIMIT_EXCEEDED",
                f"Concurrent request limit of {limit} exceeded. Retry the request later.",
            )

        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        task = asyncio.current_task()
        if task is not None:
            self._handler_tasks.add(task)
        try:
            # The body is read on arrival; aiohttp keeps it for the handler.
            await request.read()
            await asyncio.sleep(self._latency_s())
            return await handler(request)
        finally:
            self.stats.in_flight -= 1
            self._handler_tasks.discard(task)

    def _throttling_all(self) -> bool:
        window_s = self._settings.erp_throttle_all_s
        if window_s <= 0:
            return False
        now = time.monotonic()
        if self._first_request_at is None:
            self._first_request_at = now
            log.info("%s: throttling every request for %g s", self.name, window_s)
        return now - self._first_request_at < window_s

    async def _cancel_in_flight(self, app: web.Application) -> None:
        # A request still waiting out its simulated latency would hold up the
        # shutdown until the latency ends, so it is cancelled instead.
        for task in list(self._handler_tasks):
            task.cancel()

    def _latency_s(self) -> float:
        latency_ms = (
            self._settings.erp_base_latency_ms
            + self._settings.erp_latency_per_inflight_ms * self.stats.in_flight
        )
        return latency_ms / 1000

    async def _create(self, request: web.Request) -> web.StreamResponse:
        record = await _read_record(request)
        if isinstance(record, web.Response):
            return record
        external_id = record.get("externalId")
        if not isinstance(external_id, str) or not external_id:
            log.info("%s: rejected a POST without a string externalId", self.name)
            return netsuite_error(
                400, "USER_ERROR", "This simulator needs a non-empty string externalId on every sales order."
            )
        fault = self._inject_fault(external_id)
        if fault is not None:
            return fault

        if external_id in self.orders:
            self.stats.duplicates += 1
            self.orders[external_id].duplicate_posts += 1
            log.info("%s: duplicate POST for order %s rejected", self.name, external_id)
            return netsuite_error(
                400,
                "DUP_RCRD",
                f"A sales order with externalId {external_id} already exists. "
                "Use PUT on salesOrder/eid:{externalId} to update it.",
            )
        stored = self._store_new(external_id, record)
        return self._acknowledge(request, stored)

    async def _upsert(self, request: web.Request) -> web.StreamResponse:
        external_id = request.match_info["external_id"]
        record = await _read_record(request)
        if isinstance(record, web.Response):
            return record
        fault = self._inject_fault(external_id)
        if fault is not None:
            return fault

        # The externalId in the path identifies the record; it wins over the body's.
        record["externalId"] = external_id
        stored = self.orders.get(external_id)
        if stored is None:
            stored = self._store_new(external_id, record)
        else:
            stored.record = record
            stored.updated += 1
            stored.last_stored_at = time.time()
            self.stats.updated += 1
            log.info("%s: order %s updated (internal id %s)", self.name, external_id, stored.internal_id)
        return self._acknowledge(request, stored)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        external_id = request.match_info["external_id"]
        stored = self.orders.get(external_id)
        if stored is None:
            return netsuite_error(
                404, "NONEXISTENT_ID", f"No sales order with externalId {external_id} exists."
            )
        body = dict(stored.record, id=str(stored.internal_id))
        return web.Response(
            body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": RECORD_CONTENT_TYPE},
        )

    def _inject_fault(self, external_id: str) -> web.Response | None:
        if self._rejects(external_id):
            self.stats.rejections += 1
            log.info("%s: order %s rejected by the injected reject rate", self.name, external_id)
            return netsuite_error(
                400,
                "USER_ERROR",
                f"Invalid field value for order {external_id}: the item is not available "
                "in this subsidiary (rejection injected by erp_reject_rate).",
            )
        if self._fault_rng.random() < self._settings.erp_error_rate:
            self.stats.server_errors += 1
            status = self._fault_rng.choice([500, 503])
            log.info("%s: injected HTTP %s for order %s", self.name, status, external_id)
            return netsuite_error(status, "UNEXPECTED_ERROR", "An unexpected error occurred (injected).")
        return None

    def _rejects(self, external_id: str) -> bool:
        rate = self._settings.erp_reject_rate
        if rate <= 0:
            return False
        # Seeded by the externalId alone, not by the account, so both ERP
        # simulators reject the same orders.
        return random.Random(f"{self._settings.seed}:reject:{external_id}").random() < rate

    def _store_new(self, external_id: str, record: dict[str, Any]) -> StoredOrder:
        now = time.time()
        stored = StoredOrder(
            internal_id=next(self._internal_ids), record=record, first_stored_at=now, last_stored_at=now
        )
        self.orders[external_id] = stored
        self.stats.created += 1
        log.info("%s: order %s created (internal id %s)", self.name, external_id, stored.internal_id)
        return stored

    def _acknowledge(self, request: web.Request, stored: StoredOrder) -> web.Response:
        location = f"{request.url.origin()}{SALES_ORDER_PATH}/{stored.internal_id}"
        return web.Response(status=204, headers={"Location": location})

    async def _list_orders(self, request: web.Request) -> web.Response:
        orders = {
            external_id: {
                "internal_id": stored.internal_id,
                "created": stored.created,
                "updated": stored.updated,
                "duplicate_posts": stored.duplicate_posts,
                "first_stored_at": stored.first_stored_at,
                "last_stored_at": stored.last_stored_at,
                "record": stored.record,
            }
            for external_id, stored in self.orders.items()
        }
        return web.json_response(orders)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))


async def _read_record(request: web.Request) -> dict[str, Any] | web.Response:
    """Parse the request body as a JSON object, or return the 400 response."""
    body = await request.read()
    try:
        record = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.info("Rejected %s %s: invalid JSON body (%s)", request.method, request.path, exc)
        return netsuite_error(400, "USER_ERROR", f"Invalid JSON in the request body: {exc}.")
    if not isinstance(record, dict):
        log.info("Rejected %s %s: the body is not a JSON object", request.method, request.path)
        return netsuite_error(400, "USER_ERROR", "The request body must be a JSON object.")
    return record


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
