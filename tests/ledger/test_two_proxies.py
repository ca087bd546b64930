"""Two real mitmdump proxies record one run into one PostgreSQL ledger under load."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from cutover.ledger import iter_events, load_counters, open_ledger
from cutover.processes import ChildProcess, mitmdump_command, wait_for_ports
from cutover.topology import free_ports
from tests.shadow.harness import RecordingSink, SinkServer

RUN_ID = "two-proxies"
WEBHOOKS_PER_PROXY = 400
CONCURRENCY = 16


def _start_proxy(folder: Path, instance: str, ledger_url: str, legacy: RecordingSink,
                 candidate: RecordingSink) -> tuple[ChildProcess, int]:
    port = free_ports(1)[0]
    route = {"name": "ingress", "role": "ingress", "listen": f"127.0.0.1:{port}",
             "upstream": f"http://127.0.0.1:{legacy.port}",
             "mirror_to": f"http://127.0.0.1:{candidate.port}", "key": "id"}
    config = {"ledger": {"url": ledger_url, "run_id": RUN_ID}, "mirror": {}, "route": [route]}
    config_path = folder / f"shadow-{instance}.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    command = mitmdump_command(config_path, [f"reverse:{route['upstream']}@{route['listen']}"],
                               extra=["--set", f"cutover_instance={instance}"])
    child = ChildProcess(f"mitmdump-{instance}", command, folder / f"proxy-{instance}.log")
    wait_for_ports([port], process=child, timeout_s=30)
    return child, port


async def _send(port: int, order_ids: range) -> Counter[int]:
    statuses: Counter[int] = Counter()
    pending = iter(order_ids)
    url = f"http://127.0.0.1:{port}/webhooks/orders/create"

    async def worker(session: aiohttp.ClientSession) -> None:
        for order_id in pending:
            body = json.dumps({"id": order_id, "total_price": "19.90"}).encode()
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/json"}) as answer:
                await answer.read()
                statuses[answer.status] += 1

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return statuses


def _wait_for(sink: RecordingSink, count: int, timeout_s: float = 30.0) -> None:
    """Wait until the mirror delivered `count` copies, or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while len(sink.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)


async def _send_to_both(ports: list[int], batches: list[range]) -> list[Counter[int]]:
    return await asyncio.gather(*(_send(port, batch) for port, batch in zip(ports, batches, strict=True)))


@pytest.mark.slow
@pytest.mark.postgres
def test_two_proxies_lose_no_event(tmp_path, postgres_url):
    legacy, candidate = RecordingSink(), RecordingSink()
    batches = [range(10**15, 10**15 + WEBHOOKS_PER_PROXY),
               range(2 * 10**15, 2 * 10**15 + WEBHOOKS_PER_PROXY)]
    instances = ["proxy-a", "proxy-b"]

    with SinkServer(legacy, candidate):
        proxies = []
        try:
            for instance in instances:
                proxies.append(_start_proxy(tmp_path, instance, postgres_url, legacy, candidate))
            statuses = asyncio.run(_send_to_both([port for _, port in proxies], batches))
            _wait_for(candidate, 2 * WEBHOOKS_PER_PROXY)
        finally:
            exit_codes = [child.stop() for child, _ in proxies]

    engine = open_ledger(postgres_url)
    events = list(iter_events(engine, RUN_ID))
    by_instance_kind = Counter((event.instance_id, event.kind) for event in events)

    assert exit_codes == [0, 0], [(tmp_path / f"proxy-{i}.log").read_text() for i in instances]
    assert statuses == [Counter({200: WEBHOOKS_PER_PROXY})] * 2
    assert len(legacy.received) == 2 * WEBHOOKS_PER_PROXY
    assert len(candidate.received) == 2 * WEBHOOKS_PER_PROXY
    for instance, batch in zip(instances, batches, strict=True):
        keys = {event.order_key for event in events
                if event.instance_id == instance and event.kind == "webhook.received"}
        assert keys == {str(order_id) for order_id in batch}, instance
        assert by_instance_kind[(instance, "webhook.received")] == WEBHOOKS_PER_PROXY, instance
        assert by_instance_kind[(instance, "webhook.responded")] == WEBHOOKS_PER_PROXY, instance
        assert by_instance_kind[(instance, "mirror.sent")] == WEBHOOKS_PER_PROXY, instance
    assert {event.instance_id for event in events} == set(instances)
    assert load_counters(engine, RUN_ID).get("ledger.lost", 0) == 0
