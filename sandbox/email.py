"""Email service simulator modelled on SendGrid's v3 Mail Send API.

`POST /v3/mail/send` checks the parts of the body SendGrid requires
(personalizations with recipients, a sender, a subject or a template),
responds with 202, an empty body and an `X-Message-Id` header, and records
the message. Invalid bodies get 400 with SendGrid's `errors` list. Like
SendGrid, it has no idempotency key: every accepted request is a new
message.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

__all__ = ["MAIL_SEND_PATH", "EmailSimulator", "ReceivedMessage"]

log = logging.getLogger(__name__)

MAIL_SEND_PATH = "/v3/mail/send"


@dataclass
class ReceivedMessage:
    """One accepted message, as `GET /_sim/messages` lists it."""

    message_id: str
    # Wall-clock seconds, comparable with the ERP simulator's stored times.
    received_at: float
    # From `custom_args.order_id` and `categories[0]`; None when absent.
    order_id: str | None
    category: str | None
    to: list[str]
    subject: str | None
    body: dict[str, Any]


class EmailSimulator:
    """Accepts and records SendGrid-style mail send requests."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMessage] = []

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", _health)
        app.router.add_post(MAIL_SEND_PATH, self._send)
        app.router.add_get("/_sim/messages", self._list_messages)
        return app

    async def _send(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _mail_error(f"Invalid JSON in the request body: {exc}", None)
        problem = validate_mail(body)
        if problem is not None:
            message, field_name = problem
            return _mail_error(message, field_name)

        message = ReceivedMessage(
            message_id=secrets.token_urlsafe(16),
            received_at=time.time(),
            order_id=_order_id_of(body),
            category=_category_of(body),
            to=[recipient["email"] for p in body["personalizations"] for recipient in p["to"]],
            subject=body.get("subject"),
            body=body,
        )
        self.messages.append(message)
        log.info(
            "Accepted %s email %s for order %s",
            message.category, message.message_id, message.order_id,
        )
        return web.Response(status=202, headers={"X-Message-Id": message.message_id})

    async def _list_messages(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(message) for message in self.messages])


def validate_mail(body: Any) -> tuple[str, str | None] | None:
    """Return (message, field) for the first problem in a mail body, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object.", None

    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return "The personalizations field is required and must have at least one item.", "personalizations"
    for index, personalization in enumerate(personalizations):
        recipients = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(recipients, list) or not recipients:
            return "Each personalization needs a non-empty to list.", f"personalizations.{index}.to"
        if not all(isinstance(r, dict) and isinstance(r.get("email"), str) and "@" in r["email"] for r in recipients):
            return "Each recipient needs a valid email address.", f"personalizations.{index}.to"

    sender = body.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str) or "@" not in sender["email"]:
        return "The from object must have a valid email address.", "from.email"

    if not body.get("subject") and not body.get("template_id"):
        return "A subject or a template_id is required.", "subject"
    return None


def _order_id_of(body: dict[str, Any]) -> str | None:
    custom_args = body.get("custom_args")
    if not isinstance(custom_args, dict):
        return None
    order_id = custom_args.get("order_id")
    return None if order_id is None else str(order_id)


def _category_of(body: dict[str, Any]) -> str | None:
    categories = body.get("categories")
    if isinstance(categories, list) and categories and isinstance(categories[0], str):
        return categories[0]
    return None


def _mail_error(message: str, field_name: str | None) -> web.Response:
    log.info("Rejected mail send request: %s", message)
    body = {"errors": [{"message": message, "field": field_name, "help": None}]}
    return web.json_response(body, status=400)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
