"""The SendGrid-like email simulator."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from sandbox.customer_email import CONFIRMATION, PENDING, compose_order_email
from sandbox.email import MAIL_SEND_PATH, EmailSimulator
from sandbox.stack import serve_app
from sandbox.storefront import make_orders
from tests.sandbox.helpers import get_json


async def post_mail(bodies: list[Any]) -> tuple[list[tuple[int, dict[str, str], bytes]], Any]:
    """Post each body to a fresh simulator; return the responses and its message list."""
    runner, port = await serve_app(EmailSimulator().make_app(), "127.0.0.1", 0)
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            responses = []
            for body in bodies:
                async with session.post(base_url + MAIL_SEND_PATH, json=body) as response:
                    responses.append((response.status, dict(response.headers), await response.read()))
            messages = await get_json(session, base_url + "/_sim/messages")
    finally:
        await runner.cleanup()
    return responses, messages


def test_email_send_responds_202_with_message_id() -> None:
    order = make_orders(7, 1)[0]
    message = compose_order_email(order, CONFIRMATION)

    responses, messages = asyncio.run(post_mail([message]))

    status, headers, body = responses[0]
    assert status == 202
    assert body == b""
    assert headers["X-Message-Id"]
    assert messages[0]["message_id"] == headers["X-Message-Id"]


def test_email_records_order_id_and_category() -> None:
    order = make_orders(7, 1)[0]
    bodies = [compose_order_email(order, PENDING), compose_order_email(order, CONFIRMATION)]

    _, messages = asyncio.run(post_mail(bodies))

    assert [message["category"] for message in messages] == ["order_pending", "order_confirmation"]
    assert {message["order_id"] for message in messages} == {str(order["id"])}
    assert messages[0]["to"] == [order["email"]]
    assert messages[0]["body"]["custom_args"] == {"order_id": str(order["id"])}


def test_email_has_no_idempotency() -> None:
    message = compose_order_email(make_orders(7, 1)[0], CONFIRMATION)

    responses, messages = asyncio.run(post_mail([message, message]))

    assert [status for status, _, _ in responses] == [202, 202]
    assert len(messages) == 2
    assert messages[0]["message_id"] != messages[1]["message_id"]


def test_email_rejects_invalid_bodies() -> None:
    valid = compose_order_email(make_orders(7, 1)[0], CONFIRMATION)
    no_recipients = dict(valid, personalizations=[{"to": []}])
    no_sender = {key: value for key, value in valid.items() if key != "from"}
    no_subject = {key: value for key, value in valid.items() if key != "subject"}
    with_template = dict(no_subject, template_id="d-123")

    responses, messages = asyncio.run(post_mail([no_recipients, no_sender, no_subject, with_template, [1]]))

    statuses = [status for status, _, _ in responses]
    assert statuses == [400, 400, 400, 202, 400]
    assert b"personalizations.0.to" in responses[0][2]
    assert b"from.email" in responses[1][2]
    assert len(messages) == 1
