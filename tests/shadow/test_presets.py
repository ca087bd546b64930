"""Each platform preset against a realistic request and response.

Observations are built the way the addon builds them: raw header fields as
(bytes, bytes) pairs, the raw body bytes, and for responses the status and
response header fields.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from cutover.privacy import Redactor
from shadow.config import parse_config
from shadow.events import EventBuilder, Observation, ObservationKind, parse_time
from shadow.presets import quarantine_response

FIXTURES = Path("/work/shared/fixtures/real")
SECRET = b"whsec_c2hhcmVkLXNlY3JldA=="
BIG_ID = 2**62 + 7


def _routes(ingress="shopify", erp="netsuite", email="sendgrid", **ingress_extra):
    config = parse_config({"route": [
        {"name": "ingress", "role": "ingress", "listen": 1001, "upstream": "http://127.0.0.1:1",
         "mirror_to": "http://127.0.0.1:2", "preset": ingress, **ingress_extra},
        {"name": "erp", "role": "erp", "listen": 1002, "upstream": "http://127.0.0.1:3",
         "preset": erp},
        {"name": "email", "role": "email", "listen": 1003, "upstream": "http://127.0.0.1:4",
         "preset": email},
    ]})
    return config.routes


def _obs(kind, route, flow_id, *, mono_ns=5_000_000_000, wall_s=1_714_557_600.0, **fields):
    return Observation(kind=kind, route=route, http_flow_id=flow_id, mono_ns=mono_ns,
                       wall_s=wall_s, **fields)


def _headers(**pairs):
    return tuple((name.replace("_", "-").encode(), value.encode()) for name, value in pairs.items())


def _detail(row):
    return json.loads(row["detail"]) if row["detail"] else {}


def _shopify_body(order_id=BIG_ID):
    order = json.loads((FIXTURES / "shopify/gadget-exemplar-2024-01-orders-1-anonymized.json")
                       .read_text(encoding="utf-8"))
    order["id"] = 0
    order["admin_graphql_api_id"] = f"gid://shopify/Order/{order_id}"
    order["created_at"] = "2024-05-01T06:00:00-04:00"
    # Shopify's compact JSON with escaped slashes; the id is patched in as
    # text so that it stays exact above 2^53.
    text = json.dumps(order, separators=(",", ":")).replace("/", "\\/")
    return text.replace('"id":0,', f'"id":{order_id},', 1).encode()


# Storefronts -----------------------------------------------------------------

def test_shopify_unprefixed_headers_and_retries():
    ingress, _, _ = _routes()
    builder = EventBuilder(Redactor(b"k" * 32))
    body = _shopify_body()
    headers = (
        (b"shopify-topic", b"orders/create"),
        (b"Shopify-Event-Id", b"98880550-7158-44d4-b7cd-2c97c8a091b5"),
        (b"SHOPIFY-WEBHOOK-ID", b"b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
        (b"Shopify-Hmac-Sha256", base64.b64encode(SECRET)),
        (b"Shopify-Triggered-At", b"2024-05-01T10:00:00.123456789Z"),
    )
    first = builder(_obs(ObservationKind.WEBHOOK, ingress, "f1", method="POST",
                         path="/webhooks/orders", body=body, headers=headers))
    retry = builder(_obs(ObservationKind.WEBHOOK, ingress, "f2", method="POST",
                         path="/webhooks/orders", body=body, headers=headers))

    assert first["order_key"] == str(BIG_ID)
    assert first["kind"] == "webhook.received"
    detail = _detail(first)
    assert detail["topic"] == "orders/create"
    assert detail["event_id"] == "98880550-7158-44d4-b7cd-2c97c8a091b5"
    assert detail["webhook_id"] == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert detail["attempt"] == 1
    assert detail["attempt_source"] == "counted"
    assert detail["alternate_id"] == str(BIG_ID)
    assert _detail(retry)["attempt"] == 2
    assert base64.b64encode(SECRET).decode() not in first["detail"]


def test_shopify_fan_out_counts_each_subscription():
    ingress, _, _ = _routes()
    builder = EventBuilder()
    body = _shopify_body()
    rows = [
        builder(_obs(ObservationKind.WEBHOOK, ingress, f"f{index}", method="POST",
                     path="/webhooks/orders", body=body,
                     headers=_headers(X_Shopify_Topic="orders/create", X_Shopify_Event_Id="e-1",
                                      X_Shopify_Webhook_Id=webhook_id)))
        for index, webhook_id in enumerate(["sub-a", "sub-b", "sub-a"])
    ]
    assert [_detail(row)["attempt"] for row in rows] == [1, 1, 2]
    assert {_detail(row)["event_id"] for row in rows} == {"e-1"}


def test_shopify_key_from_graphql_id_only():
    ingress, _, _ = _routes()
    body = json.dumps({"admin_graphql_api_id": f"gid://shopify/Order/{BIG_ID}",
                       "name": "#1001"}).encode()
    row = EventBuilder()(_obs(ObservationKind.WEBHOOK, ingress, "f1", body=body,
                              headers=_headers(X_Shopify_Topic="orders/create")))
    assert row["order_key"] == str(BIG_ID)


def test_updated_and_cancelled_before_create_are_recorded():
    ingress, _, _ = _routes()
    builder = EventBuilder()
    body = _shopify_body()
    topics = ["orders/updated", "orders/cancelled", "orders/create"]
    rows = [
        builder(_obs(ObservationKind.WEBHOOK, ingress, topic, mono_ns=index, body=body,
                     headers=_headers(X_Shopify_Topic=topic, X_Shopify_Event_Id=f"e-{index}")))
        for index, topic in enumerate(topics)
    ]
    assert [row["kind"] for row in rows] == ["webhook.received"] * 3
    assert [_detail(row)["topic"] for row in rows] == topics
    assert [_detail(row)["creates_order"] for row in rows] == [False, False, True]
    assert {row["order_key"] for row in rows} == {str(BIG_ID)}


def test_shopify_confirmation_timed_from_triggered_at():
    ingress, _, _ = _routes(legacy_confirmation_from="triggered_at")
    builder = EventBuilder()
    triggered = "2024-05-01T10:00:00.250000000Z"
    headers = _headers(X_Shopify_Topic="orders/create", X_Shopify_Event_Id="e-1",
                       X_Shopify_Triggered_At=triggered)
    observed_wall = parse_time(triggered) + 2.5
    obs = _obs(ObservationKind.WEBHOOK_CONFIRMATION, ingress, "f1", mono_ns=9_000_000_000,
               wall_s=observed_wall, body=_shopify_body(), headers=headers)

    row = builder(obs)
    retry = builder(obs)

    assert row["kind"] == "confirmation.sent"
    assert row["flow"] == "legacy"
    assert row["order_key"] == str(BIG_ID)
    assert row["mono_ns"] == 9_000_000_000 - 2_500_000_000
    assert row["wall_time"].timestamp() == pytest.approx(parse_time(triggered))
    assert _detail(row)["confirmation_from"] == "triggered_at"
    assert _detail(row)["source"] == "X-Shopify-Triggered-At header"
    assert retry is None


def test_shopify_confirmation_from_created_at_skips_updates():
    ingress, _, _ = _routes(legacy_confirmation_from="created_at")
    builder = EventBuilder()
    body = _shopify_body()
    created = parse_time("2024-05-01T06:00:00-04:00")
    update = builder(_obs(ObservationKind.WEBHOOK_CONFIRMATION, ingress, "f1", body=body,
                          wall_s=created + 1, headers=_headers(X_Shopify_Topic="orders/updated")))
    create = builder(_obs(ObservationKind.WEBHOOK_CONFIRMATION, ingress, "f2", body=body,
                          wall_s=created + 1, mono_ns=3_000_000_000,
                          headers=_headers(X_Shopify_Topic="orders/create")))
    assert update is None
    assert create["mono_ns"] == 2_000_000_000
    assert _detail(create)["source"] == "body created_at"


def test_bigcommerce_thin_payload_and_duplicate_hash():
    ingress, _, _ = _routes(ingress="bigcommerce")
    builder = EventBuilder()
    body = (b'{"created_at":1714557600,"store_id":"1025646","producer":"stores/abc123",'
            b'"scope":"store/order/created","hash":"3f9ea420af83450d7ef9f78b08c8af25b2213637",'
            b'"data":{"type":"order","id":173331}}')
    signed = _headers(webhook_id="msg_2fVHb0aHpzQeX1TwSMbOLb8Vn4r", webhook_timestamp="1714557601",
                      webhook_signature="v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=")

    with_header = builder(_obs(ObservationKind.WEBHOOK, ingress, "f1", body=body, headers=signed))
    first = builder(_obs(ObservationKind.WEBHOOK, ingress, "f2", body=body, headers=()))
    duplicate = builder(_obs(ObservationKind.WEBHOOK, ingress, "f3", body=body, headers=()))

    assert with_header["order_key"] == "173331"
    assert _detail(with_header)["topic"] == "store/order/created"
    assert _detail(with_header)["event_id"] == "msg_2fVHb0aHpzQeX1TwSMbOLb8Vn4r"
    assert _detail(with_header)["creates_order"] is True
    assert "K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN" not in with_header["detail"]
    assert _detail(first)["event_id"] == "3f9ea420af83450d7ef9f78b08c8af25b2213637"
    assert _detail(first)["event_id_source"] == "body"
    assert _detail(duplicate)["attempt"] == 2


def _woocommerce_order():
    return json.dumps({
        "id": 727, "parent_id": 0, "status": "processing", "currency": "USD",
        "date_created_gmt": "2024-05-01T10:00:00", "total": "29.35",
        "order_key": "wc_order_58d2d042d1d",
        "billing": {"first_name": "John", "last_name": "Doe", "address_1": "969 Market",
                    "city": "San Francisco", "postcode": "94103", "country": "US",
                    "email": "john.doe@example.com", "phone": "(555) 555-5555"},
        "shipping": {"first_name": "John", "last_name": "Doe", "address_1": "969 Market",
                     "city": "San Francisco", "postcode": "94103", "country": "US"},
        "line_items": [{"id": 315, "name": "Woo Single #1", "product_id": 93, "quantity": 2}],
    }).encode()


def test_woocommerce_delivery_id_changes_per_attempt():
    ingress, _, _ = _routes(ingress="woocommerce")
    builder = EventBuilder()
    body = _woocommerce_order()
    rows = [
        builder(_obs(ObservationKind.WEBHOOK, ingress, f"f{delivery}", body=body,
                     headers=_headers(X_WC_Webhook_Source="https://shop.example.com/",
                                      X_WC_Webhook_Topic="order.created",
                                      X_WC_Webhook_Resource="order", X_WC_Webhook_Event="created",
                                      X_WC_Webhook_Signature="geC1akFhCtsO7fbXz5XiGUsMsRa4Mt0IJsZ96nTaHjI=",
                                      X_WC_Webhook_ID="535", X_WC_Webhook_Delivery_ID=str(delivery))))
        for delivery in (378, 379)
    ]
    first, retry = (_detail(row) for row in rows)
    assert rows[0]["order_key"] == "727"
    assert (first["delivery_id"], retry["delivery_id"]) == ("378", "379")
    assert first["webhook_id"] == "535"
    assert first["event_id"] == retry["event_id"]
    assert first["event_id_source"] == "body digest"
    assert (first["attempt"], retry["attempt"]) == (1, 2)
    assert first["alternate_id"] == "wc_order_58d2d042d1d"
    assert "geC1akFhCtsO7fbXz5XiGUsMsRa4Mt0IJsZ96nTaHjI" not in rows[0]["detail"]


def test_woocommerce_ping_on_creation():
    ingress, _, _ = _routes(ingress="woocommerce")
    builder = EventBuilder()
    headers = _headers(Content_Type="application/x-www-form-urlencoded")
    row = builder(_obs(ObservationKind.WEBHOOK, ingress, "f1", body=b"webhook_id=535", headers=headers))
    mirrored = builder(_obs(ObservationKind.MIRROR_SENT, ingress, "f1", body=b"webhook_id=535",
                            headers=headers, status=200))
    assert row["kind"] == "webhook.ping"
    assert row["order_key"] is None
    assert _detail(row)["webhook_id"] == "535"
    assert mirrored is None


def test_adobe_commerce_increment_id_is_the_key():
    ingress, _, _ = _routes(ingress="adobe_commerce")
    body = json.dumps({
        "specversion": "1.0", "id": "c1b2a3d4-0000-4000-8000-000000000042",
        "type": "com.adobe.commerce.observer.sales_order_place_after",
        "source": "urn:uuid:2d3e4f50-1111-4222-8333-444455556666",
        "data": {"value": {"entity_id": "42", "increment_id": "000000042",
                           "created_at": "2024-05-01 10:00:00",
                           "customer_email": "roni_cost@example.com",
                           "customer_firstname": "Veronica", "customer_lastname": "Costello"}},
    }).encode()
    row = EventBuilder()(_obs(ObservationKind.WEBHOOK, ingress, "f1", body=body,
                              headers=_headers(x_adobe_event_id="evt-42")))
    detail = _detail(row)
    assert row["order_key"] == "000000042"
    assert detail["alternate_id"] == "42"
    assert detail["event_id"] == "evt-42"
    assert detail["creates_order"] is True
    assert "Veronica" not in row["detail"]


# ERPs ------------------------------------------------------------------------

NETSUITE_ORDER = json.dumps({
    "externalId": "SHOP-1001", "entity": {"id": "1234"}, "memo": "web order",
    "shipAddress": "Jane Doe\n1 Main St\nSpringfield",
    "item": {"items": [{"item": {"id": "55"}, "quantity": 2}]},
}).encode()


def test_netsuite_post_204_with_location():
    _, erp, _ = _routes()
    builder = EventBuilder()
    submitted = builder(_obs(ObservationKind.ERP_REQUEST, erp, "f1", method="POST",
                             path="/services/rest/record/v1/salesOrder", body=NETSUITE_ORDER))
    acked = builder(_obs(ObservationKind.ERP_RESPONSE, erp, "f1", status=204,
                         response_headers=_headers(Location="https://123.suitetalk.api.netsuite.com"
                                                   "/services/rest/record/v1/salesOrder/8812")))
    assert submitted["kind"] == "erp.submitted"
    assert submitted["order_key"] == "SHOP-1001"
    assert "1 Main St" not in submitted["snapshot"]
    assert acked["kind"] == "erp.acked"
    assert _detail(acked)["location"].endswith("/salesOrder/8812")


def test_netsuite_put_by_external_id():
    _, erp, _ = _routes()
    row = EventBuilder()(_obs(ObservationKind.ERP_REQUEST, erp, "f1", method="PUT",
                              path="/services/rest/record/v1/salesOrder/eid:SHOP-1001",
                              body=b'{"memo": "web order"}'))
    assert row["order_key"] == "SHOP-1001"


def test_netsuite_async_job_is_queued_then_polled():
    _, erp, _ = _routes()
    builder = EventBuilder()
    builder(_obs(ObservationKind.ERP_REQUEST, erp, "f1", method="POST",
                 path="/services/rest/record/v1/salesOrder", body=NETSUITE_ORDER,
                 headers=_headers(Prefer="respond-async")))
    queued = builder(_obs(ObservationKind.ERP_RESPONSE, erp, "f1", status=202,
                          response_headers=_headers(Location="/services/rest/async/v1/job/77",
                                                    Preference_Applied="respond-async")))
    polls = []
    for flow_id, path, body in [
        ("p1", "/services/rest/async/v1/job/77", b'{"completed": false, "id": "77", "progress": "pending"}'),
        ("p2", "/services/rest/async/v1/job/77/task/1",
         b'{"completed": true, "id": "1", "progress": "succeeded"}'),
        ("p3", "/services/rest/async/v1/job/77", b'{"completed": true, "id": "77", "progress": "succeeded"}'),
    ]:
        assert builder(_obs(ObservationKind.ERP_REQUEST, erp, flow_id, method="GET", path=path)) is None
        polls.append(builder(_obs(ObservationKind.ERP_RESPONSE, erp, flow_id, status=200, body=body)))

    assert queued["kind"] == "erp.queued"
    assert _detail(queued)["location"] == "/services/rest/async/v1/job/77"
    assert polls[0] is None
    assert polls[1]["kind"] == "erp.acked"
    assert polls[1]["order_key"] == "SHOP-1001"
    assert polls[2] is None


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        pytest.param(429, b'{"type":"https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.20",'
                          b'"title":"Too Many Requests","status":429}', "erp.throttled", None, id="429"),
        pytest.param(400, b'{"type":"https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",'
                          b'"title":"Bad Request","status":400,"o:errorDetails":[{"detail":"Request '
                          b'limit exceeded.","o:errorCode":"SSS_REQUEST_LIMIT_EXCEEDED"}]}',
                     "erp.throttled", "SSS_REQUEST_LIMIT_EXCEEDED", id="restlet-limit"),
        pytest.param(400, b'{"title":"Bad Request","status":400,"o:errorDetails":[{"detail":'
                          b'"Invalid value for the field entity.","o:errorPath":"entity",'
                          b'"o:errorCode":"USER_ERROR"}]}', "erp.rejected", "USER_ERROR",
                     id="user-error"),
    ],
)
def test_netsuite_error_answers(status, body, kind, code):
    _, erp, _ = _routes()
    builder = EventBuilder()
    builder(_obs(ObservationKind.ERP_REQUEST, erp, "f1", method="POST",
                 path="/services/rest/record/v1/salesOrder", body=NETSUITE_ORDER))
    row = builder(_obs(ObservationKind.ERP_RESPONSE, erp, "f1", status=status, body=body))
    assert row["kind"] == kind
    assert _detail(row).get("error_code") == code


SAP_PATH = "/sap/opu/odata/sap/API_SALES_ORDER_SRV/A_SalesOrder"
SAP_ORDER = json.dumps({
    "SalesOrderType": "OR", "SalesOrganization": "1010", "DistributionChannel": "10",
    "OrganizationDivision": "00", "SoldToParty": "10100001",
    "PurchaseOrderByCustomer": "SHOP-1001",
    "to_Item": [{"Material": "TG11", "RequestedQuantity": "2"}],
    "to_Partner": [{"PartnerFunction": "WE", "Customer": "10100001"}],
}).encode()


def test_sap_csrf_fetch_is_not_a_submission():
    _, erp, _ = _routes(erp="sap_s4hana")
    builder = EventBuilder()
    fetch = builder(_obs(ObservationKind.ERP_REQUEST, erp, "f1", method="GET", path=SAP_PATH,
                         headers=_headers(X_CSRF_Token="Fetch")))
    answer = builder(_obs(ObservationKind.ERP_RESPONSE, erp, "f1", status=200,
                          response_headers=_headers(X_CSRF_Token="b9M1eYgq2o8xuDYLz0Unmw==")))
    head = builder(_obs(ObservationKind.ERP_REQUEST, erp, "f2", method="POST", path=SAP_PATH,
                        body=SAP_ORDER, headers=_headers(x_csrf_token="fetch")))
    assert fetch is None
    assert answer is None
    assert head is None


def test_sap_deep_insert_201_with_sales_order():
    _, erp, _ = _routes(erp="sap_s4hana")
    builder = EventBuilder()
    submitted = builder(_obs(ObservationKind.ERP_REQUEST, erp, "f1", method="POST", path=SAP_PATH,
                             body=SAP_ORDER, headers=_headers(X_CSRF_Token="b9M1eYgq2o8xuDYLz0Unmw==")))
    acked = builder(_obs(ObservationKind.ERP_RESPONSE, erp, "f1", status=201,
                         body=b'{"d":{"__metadata":{"type":"API_SALES_ORDER_SRV.A_SalesOrderType"},'
                              b'"SalesOrder":"4711","PurchaseOrderByCustomer":"SHOP-1001"}}',
                         response_headers=_headers(Location="https://s4.example.com" + SAP_PATH
                                                   + "('4711')")))
    item = builder(_obs(ObservationKind.ERP_REQUEST, erp, "f2", method="POST",
                        path="/sap/opu/odata/sap/API_SALES_ORDER_SRV/A_SalesOrderItem", body=SAP_ORDER))
    assert submitted["order_key"] == "SHOP-1001"
    assert acked["kind"] == "erp.acked"
    assert _detail(acked)["erp_id"] == "4711"
    assert item is None


def test_sap_error_body_is_a_rejection():
    _, erp, _ = _routes(erp="sap_s4hana")
    builder = EventBuilder()
    builder(_obs(ObservationKind.ERP_REQUEST, erp, "f1", method="POST", path=SAP_PATH, body=SAP_ORDER))
    row = builder(_obs(ObservationKind.ERP_RESPONSE, erp, "f1", status=400,
                       body=b'{"error":{"code":"V1/302","message":{"lang":"en",'
                            b'"value":"Material TG11 does not exist"}}}'))
    assert row["kind"] == "erp.rejected"
    assert _detail(row)["error_code"] == "V1/302"


def test_business_central_external_document_number():
    _, erp, _ = _routes(erp="business_central")
    builder = EventBuilder()
    path = "/v2.0/production/api/v2.0/companies(6a2b3c4d-0000-0000-0000-000000000001)/salesOrders"
    body = json.dumps({"externalDocumentNumber": "SHOP-1001", "customerNumber": "10000",
                       "shipToName": "Jane Doe", "shipToAddressLine1": "1 Main St",
                       "salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "1896-S",
                                            "quantity": 2}]}).encode()
    submitted = builder(_obs(ObservationKind.ERP_REQUEST, erp, "f1", method="POST", path=path, body=body))
    acked = builder(_obs(ObservationKind.ERP_RESPONSE, erp, "f1", status=201,
                         body=b'{"id":"f0c1d2e3-0000-0000-0000-000000000009","number":"S-ORD101009",'
                              b'"externalDocumentNumber":"SHOP-1001"}'))
    builder(_obs(ObservationKind.ERP_REQUEST, erp, "f2", method="POST", path=path, body=body))
    throttled = builder(_obs(ObservationKind.ERP_RESPONSE, erp, "f2", status=429,
                             body=b'{"error":{"code":"Application_TooManyRequests",'
                                  b'"message":"Too many requests reached."}}'))
    assert submitted["order_key"] == "SHOP-1001"
    assert "Jane Doe" not in submitted["snapshot"]
    assert "1 Main St" not in submitted["snapshot"]
    assert acked["kind"] == "erp.acked"
    assert _detail(acked)["erp_id"] == "S-ORD101009"
    assert throttled["kind"] == "erp.throttled"


# Email -----------------------------------------------------------------------

def _sendgrid_body():
    spec = json.loads((FIXTURES / "email/sendgrid-oai-mail_send.json").read_text(encoding="utf-8"))
    body = spec["mail_send"]["post"]["requestBody"]["content"]["application/json"]["schema"]["example"]
    body.pop("custom_args", None)
    body["categories"] = ["order_confirmation"]
    body["personalizations"][0]["dynamic_template_data"] = {"order_id": "SHOP-1001",
                                                            "first_name": "John"}
    return json.dumps(body).encode()


def test_sendgrid_dynamic_template_data_key_and_202():
    _, _, email = _routes()
    builder = EventBuilder()
    sent = builder(_obs(ObservationKind.EMAIL, email, "f1", method="POST", path="/v3/mail/send",
                        body=_sendgrid_body()))
    accepted = builder(_obs(ObservationKind.EMAIL_RESPONSE, email, "f1", status=202,
                            response_headers=_headers(X_Message_Id="W86EgYT6SQKk0lRflfLRsA")))
    assert sent["order_key"] == "SHOP-1001"
    assert sent["kind"] == "confirmation.sent"
    assert "john_doe@example.com" not in sent["snapshot"]
    assert accepted is None


def test_sendgrid_quarantine_answer():
    status, headers, body = quarantine_response("sendgrid")
    assert status == 202
    assert headers["X-Message-Id"].startswith("quarantined-")
    assert body == b""


def _postmark_call(index=0):
    cassette = json.loads((FIXTURES / "email/postmarker-cassette-emails.json").read_text(encoding="utf-8"))
    call = cassette["http_interactions"][index]
    request = json.loads(base64.b64decode(call["request"]["body"]["base64_string"]))
    request.update({"Tag": "order_confirmation", "Metadata": {"order_id": "SHOP-1001"}})
    answer = base64.b64decode(call["response"]["body"]["base64_string"])
    return json.dumps(request).encode(), answer, call["response"]["headers"]


def test_postmark_metadata_key_and_error_code():
    _, _, email = _routes(email="postmark")
    builder = EventBuilder()
    request, answer, answer_headers = _postmark_call()
    sent = builder(_obs(ObservationKind.EMAIL, email, "f1", method="POST", path="/email", body=request))
    accepted = builder(_obs(ObservationKind.EMAIL_RESPONSE, email, "f1", status=200, body=answer,
                            response_headers=_headers(Content_Encoding=answer_headers["Content-Encoding"][0])))

    refused_answer = json.loads(gzip.decompress(answer))
    refused_answer.update({"ErrorCode": 406, "Message": "You tried to send to a recipient "
                                                        "that has been marked as inactive."})
    builder(_obs(ObservationKind.EMAIL, email, "f2", method="POST", path="/email", body=request))
    refused = builder(_obs(ObservationKind.EMAIL_RESPONSE, email, "f2", status=200,
                           body=json.dumps(refused_answer).encode()))

    assert sent["order_key"] == "SHOP-1001"
    assert sent["kind"] == "confirmation.sent"
    assert "receiver@example.com" not in sent["snapshot"]
    assert accepted is None
    assert refused["kind"] == "email.failed"
    assert _detail(refused)["error_code"] == 406


def test_postmark_quarantine_answer_looks_sent():
    status, headers, body = quarantine_response("postmark")
    answer = json.loads(body)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert answer["ErrorCode"] == 0
    assert answer["MessageID"].startswith("quarantined-")


def test_klaviyo_event_unique_id_and_metric():
    _, _, email = _routes(email="klaviyo")
    body = json.dumps({"data": {"type": "event", "attributes": {
        "properties": {"OrderId": "SHOP-1001", "ItemNames": ["Winnie the Pooh"]},
        "time": "2024-05-01T10:00:00Z", "value": 29.98, "value_currency": "USD",
        "unique_id": "SHOP-1001",
        "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
        "profile": {"data": {"type": "profile", "attributes": {
            "email": "sarah.mason@klaviyo-demo.com", "phone_number": "+15005550006",
            "first_name": "Sarah", "last_name": "Mason"}}},
    }}}).encode()
    builder = EventBuilder()
    sent = builder(_obs(ObservationKind.EMAIL, email, "f1", method="POST", path="/api/events",
                        body=body, quarantined=True))
    assert sent["order_key"] == "SHOP-1001"
    assert sent["kind"] == "confirmation.quarantined"
    assert "Sarah" not in sent["snapshot"]
    assert "+15005550006" not in sent["snapshot"]
    assert "Winnie the Pooh" in sent["snapshot"]
