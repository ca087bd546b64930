"""The real proxy mirrors webhook bodies byte for byte and never holds up the storefront."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import time

import aiohttp
import pytest

from cutover.topology import free_ports
from sandbox.orders import encode_order, make_orders
from tests.shadow.harness import ProxyUnderTest, RecordingSink, SinkServer

SECRET = "test-signing-secret"


def _signed_order(padding: int = 0) -> tuple[str, bytes, str]:
    order = make_orders(11, 1)[0]
    if padding:
        order["note"] = "x" * padding
    body = encode_order(order)
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return str(order["id"]), body, signature


def _ingress(legacy: RecordingSink, candidate_url: str) -> dict:
    return {"name": "ingress", "role": "ingress",
            "upstream": f"http://127.0.0.1:{legacy.port}", "mirror_to": candidate_url}


async def _post(url: str, data, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=data, headers=headers) as answer:
            await answer.read()
            return answer.status


def _verifies(body: bytes, headers: list[tuple[str, str]], signature: str) -> bool:
    """Check the signature the way a receiving flow does: over the decoded body."""
    encoding = dict((k.lower(), v) for k, v in headers).get("content-encoding", "")
    decoded = gzip.decompress(body) if encoding == "gzip" else body
    expected = base64.b64encode(hmac.new(SECRET.encode(), decoded, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature)


def _wait_for(sink: RecordingSink, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(sink.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("case", "padding", "encoding", "chunked"),
    [
        pytest.param("plain", 0, "", False, id="plain"),
        pytest.param("gzip", 0, "gzip", False, id="gzip"),
        pytest.param("chunked", 0, "", True, id="chunked"),
        pytest.param("streamed-3mb", 3 * 1024 * 1024, "", False, id="streamed-3mb"),
        pytest.param("streamed-chunked-3mb", 3 * 1024 * 1024, "", True, id="streamed-chunked-3mb"),
    ],
)
def test_mirror_preserves_body(tmp_path, case, padding, encoding, chunked):
    key, body, signature = _signed_order(padding)
    wire = gzip.compress(body) if encoding == "gzip" else body
    headers = {"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": signature,
               "X-Shopify-Topic": "orders/create"}
    if encoding:
        headers["Content-Encoding"] = encoding

    async def chunks():
        for start in range(0, len(wire), 65536):
            yield wire[start:start + 65536]

    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        route = _ingress(legacy, f"http://127.0.0.1:{candidate.port}")
        # Streaming starts above 1 MiB, so the 3 MiB bodies take the tee.
        proxy = ProxyUnderTest(tmp_path, [route], extra=["--set", "stream_large_bodies=1m"])
        with proxy:
            status = asyncio.run(_post(proxy.url("ingress", "/webhooks/orders/create"),
                                       chunks() if chunked else wire, headers))
            _wait_for(candidate, 1)

    assert status == 200
    assert legacy.received[0].body == wire
    assert candidate.received[0].body == wire
    assert _verifies(candidate.received[0].body, candidate.received[0].headers, signature)
    kinds = {(event.kind, event.order_key) for event in proxy.events()}
    assert ("webhook.received", key) in kinds
    assert ("mirror.sent", key) in kinds


def test_mirror_skips_body_over_limit(tmp_path):
    key, body, _ = _signed_order(padding=5000)
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        route = _ingress(legacy, f"http://127.0.0.1:{candidate.port}")
        with ProxyUnderTest(tmp_path, [route], mirror={"max_body_bytes": 1000}) as proxy:
            status = asyncio.run(_post(proxy.url("ingress", "/hook"), body,
                                       {"Content-Type": "application/json"}))

    assert status == 200
    assert legacy.received[0].body == body
    assert candidate.received == []
    skipped = [event for event in proxy.events() if event.kind == "mirror.skipped"]
    assert [event.order_key for event in skipped] == [key]
    assert "exceeds the mirror limit of 1000 bytes" in json.loads(skipped[0].detail)["reason"]


def test_candidate_down_storefront_gets_legacy_answer(tmp_path):
    key, body, _ = _signed_order()
    legacy = RecordingSink(status=202)
    with SinkServer(legacy):
        closed_port = free_ports(1)[0]  # free a moment ago, so nobody listens there
        route = _ingress(legacy, f"http://127.0.0.1:{closed_port}")
        with ProxyUnderTest(tmp_path, [route]) as proxy:
            statuses = [asyncio.run(_post(proxy.url("ingress", "/hook"), body,
                                          {"Content-Type": "application/json"}))
                        for _ in range(3)]

    assert statuses == [202, 202, 202]
    assert len(legacy.received) == 3
    failed = [event for event in proxy.events() if event.kind == "mirror.failed"]
    assert len(failed) == 3
    assert {event.order_key for event in failed} == {key}


def test_slow_candidate_does_not_delay_storefront(tmp_path):
    _, body, _ = _signed_order()
    legacy, candidate = RecordingSink(), RecordingSink(delay_s=3.0)
    with SinkServer(legacy, candidate):
        route = _ingress(legacy, f"http://127.0.0.1:{candidate.port}")
        with ProxyUnderTest(tmp_path, [route], mirror={"timeout_s": 1.0}) as proxy:
            status = asyncio.run(_post(proxy.url("ingress", "/hook"), body,
                                       {"Content-Type": "application/json"}))

    assert status == 200
    events = {event.kind: event for event in proxy.events()}
    failed = events["mirror.failed"]
    assert "no answer within 1 s" in json.loads(failed.detail)["reason"]
    # The storefront's answer was recorded before the candidate's copy gave up.
    gave_up_ns = failed.mono_ns + int(failed.latency_ms * 1e6)
    assert events["webhook.responded"].mono_ns < gave_up_ns


def test_capture_writes_ingress_flows_readable_by_mitmproxy(tmp_path):
    from mitmproxy.io import FlowReader

    _, small, _ = _signed_order()
    _, large, _ = _signed_order(padding=2 * 1024 * 1024)
    capture = tmp_path / "ingress.mitm"
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        route = _ingress(legacy, f"http://127.0.0.1:{candidate.port}")
        extra = ["--set", f"cutover_capture={capture}", "--set", "stream_large_bodies=1m"]
        with ProxyUnderTest(tmp_path, [route], extra=extra) as proxy:
            for body in (small, large):
                asyncio.run(_post(proxy.url("ingress", "/webhooks/orders/create"), body,
                                  {"Content-Type": "application/json"}))

    with capture.open("rb") as handle:
        flows = list(FlowReader(handle).stream())
    assert [flow.request.raw_content for flow in flows] == [small, large]
    assert [flow.response.status_code for flow in flows] == [200, 200]
    assert "capturing ingress traffic, unredacted" in proxy.log_text()


def test_host_headers_are_configurable(tmp_path):
    _, body, _ = _signed_order()
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        route = {**_ingress(legacy, f"http://127.0.0.1:{candidate.port}"),
                 "host_header": "legacy.internal", "mirror_host_header": "candidate.internal:8443"}
        with ProxyUnderTest(tmp_path, [route]) as proxy:
            asyncio.run(_post(proxy.url("ingress", "/hook"), body, {"Content-Type": "application/json"}))
            _wait_for(candidate, 1)

    assert dict(legacy.received[0].headers)["Host"] == "legacy.internal"
    assert dict(candidate.received[0].headers)["Host"] == "candidate.internal:8443"


def test_keep_alive_and_expect_continue(tmp_path):
    """Many webhooks on one connection, each with Expect: 100-continue, as curl sends them."""
    import subprocess

    _, body, _ = _signed_order(padding=4096)
    legacy, candidate = RecordingSink(), RecordingSink()
    body_file = tmp_path / "body.json"
    body_file.write_bytes(body)
    with SinkServer(legacy, candidate):
        with ProxyUnderTest(tmp_path, [_ingress(legacy, f"http://127.0.0.1:{candidate.port}")]) as proxy:
            url = proxy.url("ingress", "/hook")
            # One curl process reuses its connection for every request it is
            # given; options after --next start afresh for the next request.
            request = ["--http1.1", "-H", "Expect: 100-continue",
                       "-H", "Content-Type: application/json",
                       "-w", "%{http_code} %{num_connects}\\n", "-o", "/dev/null",
                       "--data-binary", f"@{body_file}", url]
            command = ["curl", "--silent", "--show-error", *request]
            for _ in range(4):
                command += ["--next", *request]
            output = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                    check=True).stdout
            _wait_for(candidate, 5)

    lines = output.split()
    assert lines[0::2] == ["200"] * 5
    # Only the first request opened a connection.
    assert lines[1::2] == ["1", "0", "0", "0", "0"]
    assert [item.body for item in legacy.received] == [body] * 5
    assert [item.body for item in candidate.received] == [body] * 5


def test_http2_client_gets_legacy_answer_and_mirror(tmp_path):
    """A storefront speaking HTTP/2 over TLS to the proxy; the flows get HTTP/1.1."""
    import subprocess

    key, body, _ = _signed_order()
    legacy, candidate = RecordingSink(status=200), RecordingSink()
    body_file = tmp_path / "body.json"
    body_file.write_bytes(body)
    with SinkServer(legacy, candidate):
        with ProxyUnderTest(tmp_path, [_ingress(legacy, f"http://127.0.0.1:{candidate.port}")]) as proxy:
            url = proxy.url("ingress", "/hook").replace("http://", "https://")
            # --insecure: the proxy presents a certificate of mitmproxy's own CA.
            output = subprocess.run(
                ["curl", "--silent", "--show-error", "--insecure", "--http2",
                 "-H", "Content-Type: application/json", "--data-binary", f"@{body_file}",
                 "-w", "%{http_code} %{http_version}", "-o", "/dev/null", url],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout
            _wait_for(candidate, 1)

    assert output == "200 2"
    assert legacy.received[0].body == body
    assert candidate.received[0].body == body
    assert ("mirror.sent", key) in {(event.kind, event.order_key) for event in proxy.events()}
