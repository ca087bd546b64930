"""The customer emails both flows send, in SendGrid's mail send shape.

The shadow proxy keys an email by `custom_args.order_id` and reads its kind
from `categories[0]`, so both fields keep exactly this form.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from sandbox.email import MAIL_SEND_PATH

__all__ = [
    "CONFIRMATION",
    "PENDING",
    "EmailSendError",
    "compose_order_email",
    "send_email",
]

log = logging.getLogger(__name__)

CONFIRMATION = "order_confirmation"
PENDING = "order_pending"
SENDER = "orders@cutover-sandbox.example"

SUBJECTS = {
    CONFIRMATION: "Your order {name} is confirmed",
    PENDING: "We received your order {name}: confirmation follows shortly",
}


class EmailSendError(Exception):
    """The email service did not accept a message."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        # True for 429, 5xx and connection errors: a later attempt may work.
        self.retryable = retryable


def compose_order_email(order: dict[str, Any], category: str) -> dict[str, Any]:
    """Build the mail send body of a confirmation or pending notice for `order`."""
    if category not in SUBJECTS:
        raise ValueError(f"category must be {CONFIRMATION!r} or {PENDING!r}, but got {category!r}")

    customer = order.get("customer") or {}
    recipient_name = f"{customer.get('first_name', '')} {customer.get('last_name', '')}".strip()
    items = [
        {
            "sku": item.get("sku"),
            "title": item.get("title"),
            "quantity": item.get("quantity"),
            "price": item.get("price"),
        }
        for item in order.get("line_items", [])
    ]
    subject = SUBJECTS[category].format(name=order.get("name", order["id"]))
    lines = [f"{item['quantity']} x {item['title']} at {item['price']}" for item in items]
    text = "\n".join([subject, "", *lines, "", f"Total: {order.get('total_price')} {order.get('currency')}"])

    return {
        "personalizations": [{"to": [{"email": order["email"], "name": recipient_name}]}],
        "from": {"email": SENDER},
        "subject": subject,
        "categories": [category],
        "custom_args": {"order_id": str(order["id"])},
        "dynamic_template_data": {
            "order_name": order.get("name"),
            "items": items,
            "total": order.get("total_price"),
            "currency": order.get("currency"),
        },
        "content": [{"type": "text/plain", "value": text}],
    }


async def send_email(
    session: aiohttp.ClientSession, base_url: str, message: dict[str, Any]
) -> str:
    """Send one message and return its X-Message-Id.

    Raises EmailSendError when the service does not respond with 202.
    """
    order_id = message["custom_args"]["order_id"]
    try:
        async with session.post(base_url + MAIL_SEND_PATH, json=message) as response:
            await response.read()
            status = response.status
            message_id = response.headers.get("X-Message-Id", "")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise EmailSendError(f"Email for order {order_id} failed: {exc!r}", retryable=True) from exc

    if status != 202:
        retryable = status == 429 or status >= 500
        raise EmailSendError(f"Email for order {order_id} got HTTP {status}", retryable=retryable)
    log.debug("Email %s for order %s accepted as %s", message["categories"][0], order_id, message_id)
    return message_id
