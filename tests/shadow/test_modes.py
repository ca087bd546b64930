"""Switching which flow answers the storefront while webhooks keep arriving."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp
import pytest

from shadow.config import ConfigError, parse_config
from shadow.modes import plan_for
from tests.shadow.harness import ProxyUnderTest, RecordingSink, SinkServer

INGRESS = parse_config({"route": [{
    "name": "ingress", "role": "ingress", "listen": 1,
    "upstream": "http://127.0.0.1:8081", "mirror_to": "http://127.0.0.1:8082",
}]}).routes[0]


def test_plan_swapped_turns_roles_around():
    plan = plan_for("swapped", INGRESS)
    assert plan.route.flow == "candidate"
    assert plan.primary_url == "http://127.0.0.1:8082"
    assert plan.mirror_url == "http://127.0.0.1:8081"
    assert plan.primary_address == ("http", "127.0.0.1", 8082)


def test_plan_monitor_has_no_mirror():
    plan = plan_for("monitor", INGRESS)
    assert plan.primary_url == "http://127.0.0.1:8082"
    assert plan.mirror_url is None


def test_plan_rejects_unknown_mode():
    with pytest.raises(ConfigError, match="mode must be one of shadow, swapped, monitor"):
        plan_for("cutover", INGRESS)


async def _send_load(url: str, count: int, on_half) -> list[int]:
    """Send `count` webhooks, 8 at a time, calling `on_half` once halfway."""
    statuses: list[int] = []
    index = iter(range(count))

    async with aiohttp.ClientSession() as session:
        async def worker():
            for number in index:
                if number == count // 2:
                    on_half()
                body = json.dumps({"id": 10**18 + number}).encode()
                async with session.post(url, data=body,
                                        headers={"Content-Type": "application/json"}) as answer:
                    await answer.read()
                    statuses.append(answer.status)
                await asyncio.sleep(0.005)

        await asyncio.gather(*(worker() for _ in range(8)))
    return statuses


def test_mode_switch_under_load_answers_and_records_every_webhook(tmp_path):
    legacy, candidate = RecordingSink(status=200), RecordingSink(status=201)
    sent = 400
    with SinkServer(legacy, candidate):
        route = {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
                 "mirror_to": f"http://127.0.0.1:{candidate.port}"}
        proxy = ProxyUnderTest(tmp_path, [route])
        with proxy:
            def switch():
                config = json.loads(proxy.config_path.read_text())
                proxy.config_path.write_text(json.dumps({**config, "mode": "swapped"}))
                proxy.child.process.send_signal(signal.SIGHUP)

            statuses = asyncio.run(_send_load(proxy.url("ingress", "/hook"), sent, switch))
            deadline = time.monotonic() + 20
            while len(legacy.received) + len(candidate.received) < 2 * sent and time.monotonic() < deadline:
                time.sleep(0.05)

    # Every webhook was answered, first by the legacy flow, then by the candidate.
    assert len(statuses) == sent
    assert set(statuses) == {200, 201}
    assert len(legacy.received) == sent
    assert len(candidate.received) == sent

    events = proxy.events()
    received = [event for event in events if event.kind == "webhook.received"]
    mirrored = [event for event in events if event.kind == "mirror.sent"]
    assert len({event.order_key for event in received}) == sent
    assert {event.order_key for event in mirrored} == {event.order_key for event in received}
    legacy_primary = sum(1 for event in received if event.flow == "legacy")
    candidate_primary = sum(1 for event in received if event.flow == "candidate")
    assert legacy_primary == statuses.count(200)
    assert candidate_primary == statuses.count(201)
    assert "cutover mode shadow -> swapped" in proxy.log_text()
