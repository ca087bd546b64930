"""Live figures and the Prometheus endpoint of the proxy."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import aiohttp

from cutover.topology import free_ports
from shadow.metrics import LiveFigures
from tests.shadow.harness import ProxyUnderTest, RecordingSink, SinkServer


def _row(kind: str, flow: str = "candidate", key: str | None = "9") -> dict:
    return {"kind": kind, "flow": flow, "order_key": key}


def test_live_figures_count_open_gap_only_before_ack():
    figures = LiveFigures(queue_depth=lambda: 0, ledger_lag=lambda: 0)
    figures.observe(_row("erp.acked", key="1"))
    figures.observe(_row("confirmation.quarantined", key="1"))
    figures.observe(_row("confirmation.quarantined", key="2"))
    figures.observe(_row("erp.acked", key="2"))
    figures.observe(_row("confirmation.sent", flow="legacy", key="1"))

    totals = figures.totals()
    assert totals["open_gaps.candidate"] == 1
    assert totals["open_gaps.legacy"] == 1
    assert "open gaps legacy 1 candidate 1" in figures.status_line(lag_rows=3, queued=2)


def test_live_figures_ignore_skipped_rows():
    figures = LiveFigures(queue_depth=lambda: 0, ledger_lag=lambda: 0)
    figures.observe(None)
    assert figures.totals() == {}


def _scrape(url: str, wanted: list[str], timeout_s: float = 15.0) -> str:
    """Scrape until every line in `wanted` is there (the figures follow the ledger writer)."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                text = answer.read().decode()
        except urllib.error.URLError:
            text = ""  # the metrics server starts with the sidecar, a moment after the proxy
        if all(line in text for line in wanted):
            return text
        time.sleep(0.1)
    return text


async def _post(url: str, body: bytes) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
            return answer.status


def test_proxy_serves_metrics_on_loopback(tmp_path):
    legacy, candidate, email = RecordingSink(), RecordingSink(), RecordingSink(status=202)
    metrics_port = free_ports(1)[0]
    with SinkServer(legacy, candidate, email):
        routes = [
            {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
             "mirror_to": f"http://127.0.0.1:{candidate.port}"},
            {"name": "candidate-email", "role": "email", "flow": "candidate", "quarantine": True,
             "upstream": f"http://127.0.0.1:{email.port}"},
        ]
        proxy = ProxyUnderTest(tmp_path, routes, extra=["--set", f"cutover_metrics={metrics_port}"])
        with proxy:
            asyncio.run(_post(proxy.url("ingress", "/hook"), b'{"id": 9007199254740993}'))
            confirmation = (b'{"categories":["order_confirmation"],'
                            b'"custom_args":{"order_id":"9007199254740993"}}')
            asyncio.run(_post(proxy.url("candidate-email", "/v3/mail/send"), confirmation))
            text = _scrape(f"http://127.0.0.1:{metrics_port}/metrics", [
                'cutover_open_gaps_total{flow="candidate"} 1.0',
                'cutover_mirror_total{result="sent"} 1.0',
                "cutover_webhooks_seen_total 1.0",
            ])

    assert "cutover_webhooks_seen_total 1.0" in text
    assert 'cutover_mirror_total{result="sent"} 1.0' in text
    assert 'cutover_open_gaps_total{flow="candidate"} 1.0' in text
    assert "cutover_ledger_lag_rows" in text
    assert email.received == []
    assert f"127.0.0.1:{metrics_port}" in proxy.log_text()
