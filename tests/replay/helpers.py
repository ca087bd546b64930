"""Shared pieces of the replay tests: the loopback sink, signed webhooks, fixture paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from sandbox.orders import encode_order, make_orders
from sandbox.settings import DEMO_WEBHOOK_SECRET
from sandbox.storefront import webhook_headers
from sandbox.webhook_auth import decode_body, hmac_matches, shopify_header

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "real"
SECRET = DEMO_WEBHOOK_SECRET


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    hmac_ok: bool


@dataclass
class Sink:
    """An aiohttp server on 127.0.0.1 in its own thread that stores what it receives."""

    received: list[Received] = field(default_factory=list)
    # HTTP status to respond with, by the order of arrival (1-based); 200 otherwise.
    statuses: dict[int, int] = field(default_factory=dict)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        signature = shopify_header(request.headers, "Shopify-Hmac-Sha256")
        body = decode_body(raw, request.headers.get("Content-Encoding"))
        self.received.append(Received(request.method, request.path_qs, dict(request.headers), raw,
                                      hmac_matches(body, signature, SECRET)))
        return web.Response(status=self.statuses.get(len(self.received), 200))


def signed_webhooks(count: int, *, seed: int = 7, start_number: int = 1001) -> list[tuple[dict, bytes, dict[str, str]]]:
    """Return (order, body, headers) of signed Shopify orders/create webhooks."""
    webhooks = []
    for order in make_orders(seed, count, start_number=start_number):
        body = encode_order(order)
        webhooks.append((order, body, webhook_headers(order, body, SECRET)))
    return webhooks

