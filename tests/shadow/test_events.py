"""Turning proxy observations into ledger rows."""

from __future__ import annotations

import gzip
import json

import pytest

from cutover.privacy import Redactor
from shadow.config import parse_config
from shadow.events import EventBuilder, Observation, ObservationKind, parse_time

CONFIG = parse_config({"route": [
    {"name": "ingress", "role": "ingress", "listen": 1001, "upstream": "http://127.0.0.1:1",
     "mirror_to": "http://127.0.0.1:2"},
    {"name": "erp", "role": "erp", "flow": "candidate", "listen": 1002, "upstream": "http://127.0.0.1:3"},
    {"name": "email", "role": "email", "flow": "candidate", "listen": 1003,
     "upstream": "http://127.0.0.1:4", "quarantine": True},
]})
INGRESS, ERP, EMAIL = CONFIG.routes
ORDER_ID = 2**62 + 3


def _observe(kind, route, flow_id="f1", **fields):
    return Observation(kind=kind, route=route, http_flow_id=flow_id, mono_ns=10, wall_s=1.7e9, **fields)


def test_webhook_key_survives_gzip_and_big_ids():
    builder = EventBuilder(Redactor(b"k" * 32))
    body = gzip.compress(json.dumps({"id": ORDER_ID}).encode())
    headers = ((b"Content-Encoding", b"gzip"), (b"x-shopify-topic", b"orders/create"),
               (b"Shopify-Event-Id", b"e-1"))
    row = builder(_observe(ObservationKind.WEBHOOK, INGRESS, body=body, headers=headers))
    assert row["order_key"] == str(ORDER_ID)
    assert row["kind"] == "webhook.received"
    assert json.loads(row["detail"])["event_id"] == "e-1"
    assert json.loads(row["detail"])["topic"] == "orders/create"


def test_webhook_that_is_not_json_is_uncorrelated():
    row = EventBuilder()(_observe(ObservationKind.WEBHOOK, INGRESS, body=b"\xff\xfe not json"))
    assert row["kind"] == "uncorrelated"
    assert row["order_key"] is None
    assert "not JSON" in json.loads(row["detail"])["reason"]


def test_mirror_result_takes_the_webhook_key():
    builder = EventBuilder()
    builder(_observe(ObservationKind.WEBHOOK, INGRESS, body=b'{"id": 5}'))
    row = builder(_observe(ObservationKind.MIRROR_DROPPED, INGRESS, reason="mirror queue full"))
    assert (row["order_key"], row["flow"], row["kind"]) == ("5", "candidate", "mirror.dropped")


def test_erp_put_takes_key_from_path():
    builder = EventBuilder()
    row = builder(_observe(ObservationKind.ERP_REQUEST, ERP, method="PUT",
                           path=f"/services/rest/record/v1/salesOrder/eid:{ORDER_ID}",
                           body=b'{"memo": "x", "email": "a@example.com"}'))
    assert row["order_key"] == str(ORDER_ID)
    assert row["kind"] == "erp.submitted"
    assert "a@example.com" not in row["snapshot"]


def test_erp_get_is_not_a_submission():
    builder = EventBuilder()
    assert builder(_observe(ObservationKind.ERP_REQUEST, ERP, method="GET", path="/x/eid:1")) is None
    assert builder(_observe(ObservationKind.ERP_RESPONSE, ERP, status=200)) is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        pytest.param(204, None, "erp.acked", id="204"),
        pytest.param(429, None, "erp.throttled", id="429"),
        pytest.param(400, b'{"o:errorDetails":[{"o:errorCode":"SSS_REQUEST_LIMIT_EXCEEDED"}]}',
                     "erp.throttled", id="restlet-limit"),
        pytest.param(400, b'{"o:errorDetails":[{"o:errorCode":"USER_ERROR"}]}', "erp.rejected",
                     id="user-error"),
        pytest.param(503, None, "erp.failed", id="503"),
    ],
)
def test_erp_answer_classification(status, body, kind):
    builder = EventBuilder()
    builder(_observe(ObservationKind.ERP_REQUEST, ERP, method="POST", path="/salesOrder",
                     body=b'{"externalId": "9"}'))
    row = builder(_observe(ObservationKind.ERP_RESPONSE, ERP, status=status, body=body))
    assert row["kind"] == kind
    assert row["order_key"] == "9"


@pytest.mark.parametrize(
    ("category", "kind"),
    [("order_confirmation", "confirmation.quarantined"),
     ("order_pending", "pending_notice.quarantined"),
     ("newsletter", "email.other")],
)
def test_email_kind_from_category(category, kind):
    body = json.dumps({"categories": [category], "custom_args": {"order_id": "9"},
                       "personalizations": [{"to": [{"email": "j@example.com"}]}],
                       "content": [{"type": "text/plain", "value": "Hello Jane"}]}).encode()
    row = EventBuilder()(_observe(ObservationKind.EMAIL, EMAIL, body=body, quarantined=True))
    assert row["kind"] == kind
    assert "Jane" not in row["snapshot"]
    assert "j@example.com" not in row["snapshot"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("2024-05-01T10:00:00.250000000Z", 1714557600.25, id="shopify-nanoseconds"),
        pytest.param("2024-05-01T06:00:00-04:00", 1714557600.0, id="offset"),
        pytest.param("2024-05-01 10:00:00", 1714557600.0, id="no-offset-is-utc"),
        pytest.param("1714557600", 1714557600.0, id="unix-text"),
        pytest.param(1714557600, 1714557600.0, id="unix-int"),
        pytest.param("yesterday", None, id="not-a-time"),
    ],
)
def test_parse_time_formats(text, seconds):
    assert parse_time(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_attempt_counter_forgets_oldest_events():
    builder = EventBuilder()
    builder._attempts.limit = 2
    for event_id in ("e-1", "e-2", "e-3", "e-1"):
        row = builder(_observe(ObservationKind.WEBHOOK, INGRESS, body=b'{"id": 5}',
                               headers=((b"X-Shopify-Event-Id", event_id.encode()),)))
    assert len(builder._attempts) == 2
    assert json.loads(row["detail"])["attempt"] == 1


def test_email_error_status_is_recorded():
    builder = EventBuilder()
    body = json.dumps({"categories": ["order_confirmation"], "custom_args": {"order_id": "9"}}).encode()
    builder(_observe(ObservationKind.EMAIL, EMAIL, body=body))
    row = builder(_observe(ObservationKind.EMAIL_RESPONSE, EMAIL, status=400,
                           body=b'{"errors":[{"message":"Invalid from email address"}]}'))
    assert row["kind"] == "email.failed"
    assert json.loads(row["detail"])["status"] == 400


def test_webhook_without_preset_ignores_other_platforms_headers():
    row = EventBuilder()(_observe(ObservationKind.WEBHOOK, INGRESS, body=b'{"id": 5}',
                                  headers=((b"X-WC-Webhook-Delivery-ID", b"378"),
                                           (b"X-WC-Webhook-Signature", b"c2VjcmV0"))))
    detail = json.loads(row["detail"])
    assert detail["delivery_id"] is None
    assert "c2VjcmV0" not in row["detail"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"[" * 10_000 + b"]" * 10_000, "nested too deeply", id="deep-array"),
        pytest.param(b'{"id": 1, "a": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_001,
                     "nested too deeply", id="deep-object"),
        pytest.param(json.dumps({"id": "k" * 300}).encode(), "longer than 128", id="long-key"),
    ],
)
def test_hostile_webhook_is_uncorrelated_with_reason(body, reason):
    row = EventBuilder()(_observe(ObservationKind.WEBHOOK, INGRESS, body=body))
    assert row["kind"] == "uncorrelated"
    assert reason in json.loads(row["detail"])["reason"]
