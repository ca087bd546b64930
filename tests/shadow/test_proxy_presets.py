"""Presets, sampling and storefront-sent confirmations through the real proxy."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from shadow.sampling import in_sample
from tests.shadow.harness import ProxyUnderTest, RecordingSink, SinkServer


async def _post_all(url: str, bodies: list[bytes], headers: dict[str, str] | None = None) -> list:
    answers = []
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            async with session.post(url, data=body, headers={
                    "Content-Type": "application/json", **(headers or {})}) as answer:
                answers.append((answer.status, dict(answer.headers), await answer.read()))
    return answers


def _wait_until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_sample_mirrors_and_records_only_sampled_orders(tmp_path):
    keys = [str(10**18 + number) for number in range(200)]
    expected = {key for key in keys if in_sample(key, 0.25)}
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        route = {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
                 "mirror_to": f"http://127.0.0.1:{candidate.port}"}
        with ProxyUnderTest(tmp_path, [route], mirror={"sample": "25%"}) as proxy:
            answers = asyncio.run(_post_all(proxy.url("ingress", "/hook"),
                                            [json.dumps({"id": int(key)}).encode() for key in keys]))
            _wait_until(lambda: len(candidate.received) >= len(expected))

    assert [status for status, _, _ in answers] == [200] * 200
    assert len(legacy.received) == 200
    mirrored = {str(json.loads(item.body)["id"]) for item in candidate.received}
    assert mirrored == expected
    recorded = {event.order_key for event in proxy.events()}
    assert recorded == expected
    assert 20 < len(expected) < 80


def test_postmark_quarantine_answers_like_postmark(tmp_path):
    legacy, candidate, postmark = RecordingSink(), RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate, postmark):
        routes = [
            {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
             "mirror_to": f"http://127.0.0.1:{candidate.port}"},
            {"name": "candidate-email", "role": "email", "flow": "candidate", "preset": "postmark",
             "quarantine": True, "upstream": f"http://127.0.0.1:{postmark.port}"},
        ]
        email = {"From": "orders@shop.example", "To": "jane@example.com", "Subject": "Order #1001",
                 "Tag": "order_confirmation", "Metadata": {"order_id": "4242"}, "TextBody": "Hi Jane"}
        with ProxyUnderTest(tmp_path, routes) as proxy:
            (status, _, body), = asyncio.run(_post_all(proxy.url("candidate-email", "/email"),
                                                       [json.dumps(email).encode()]))

    assert status == 200
    assert json.loads(body)["ErrorCode"] == 0
    assert postmark.received == []
    events = [event for event in proxy.events() if event.order_key == "4242"]
    assert [event.kind for event in events] == ["confirmation.quarantined"]
    assert "jane@example.com" not in (events[0].snapshot or "")


def test_storefront_confirmation_from_triggered_at(tmp_path):
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        route = {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
                 "mirror_to": f"http://127.0.0.1:{candidate.port}",
                 "legacy_confirmation_from": "triggered_at"}
        with ProxyUnderTest(tmp_path, [route]) as proxy:
            triggered = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 2)) + ".000Z"
            asyncio.run(_post_all(proxy.url("ingress", "/hook"), [b'{"id": 77}'], {
                "X-Shopify-Topic": "orders/create", "X-Shopify-Triggered-At": triggered}))

    events = {event.kind: event for event in proxy.events() if event.order_key == "77"}
    confirmation = events["confirmation.sent"]
    assert confirmation.flow == "legacy"
    assert confirmation.mono_ns < events["webhook.received"].mono_ns
    assert json.loads(confirmation.detail)["confirmation_from"] == "triggered_at"


def test_sap_acknowledgement_reads_success_body(tmp_path):
    sap = RecordingSink(status=201)
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate, sap):
        routes = [
            {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
             "mirror_to": f"http://127.0.0.1:{candidate.port}"},
            {"name": "erp", "role": "erp", "flow": "candidate", "preset": "sap_s4hana",
             "upstream": f"http://127.0.0.1:{sap.port}"},
        ]
        order = {"SalesOrderType": "OR", "PurchaseOrderByCustomer": "5150",
                 "to_Item": [{"Material": "TG11", "RequestedQuantity": "2"}]}
        with ProxyUnderTest(tmp_path, routes) as proxy:
            url = proxy.url("erp", "/sap/opu/odata/sap/API_SALES_ORDER_SRV/A_SalesOrder")
            asyncio.run(_post_all(url, [json.dumps(order).encode()]))

    kinds = [event.kind for event in proxy.events() if event.order_key == "5150"]
    assert kinds == ["erp.submitted", "erp.acked"]


def test_report_states_storefront_confirmation_source(tmp_path):
    from compare import Criteria, analyze, render_json, render_markdown
    from cutover.ledger import open_ledger

    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        route = {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
                 "mirror_to": f"http://127.0.0.1:{candidate.port}",
                 "legacy_confirmation_from": "triggered_at"}
        with ProxyUnderTest(tmp_path, [route]) as proxy:
            triggered = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z"
            asyncio.run(_post_all(proxy.url("ingress", "/hook"), [b'{"id": 78}'], {
                "X-Shopify-Topic": "orders/create", "X-Shopify-Triggered-At": triggered}))

    analysis = analyze(open_ledger(proxy.ledger_url), proxy.run_id, criteria=Criteria(min_orders=1))
    assert "X-Shopify-Triggered-At" in analysis.legacy_confirmation_source
    assert "The storefront sends the legacy flow's confirmations itself" in render_markdown(analysis)
    assert json.loads(render_json(analysis))["run"]["legacy_confirmation_source"]
