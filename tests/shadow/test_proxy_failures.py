"""The storefront keeps getting the legacy answer when recording fails."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp

from cutover.ledger import iter_events, load_counters, open_ledger
from tests.shadow.harness import ProxyUnderTest, RecordingSink, SinkServer


async def _post_many(url: str, first: int, count: int) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as session:
        for number in range(first, first + count):
            body = json.dumps({"id": 10**18 + number}).encode()
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
                await answer.read()
                statuses.append(answer.status)
    return statuses


def _ingress(legacy: RecordingSink, candidate: RecordingSink, **extra) -> dict:
    return {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
            "mirror_to": f"http://127.0.0.1:{candidate.port}", **extra}


def test_ledger_away_mid_run_loses_nothing(tmp_path):
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        with ProxyUnderTest(tmp_path, [_ingress(legacy, candidate)]) as proxy:
            url = proxy.url("ingress", "/hook")
            before = asyncio.run(_post_many(url, 0, 20))
            time.sleep(0.5)  # the writer flushes every 0.2 s

            # Take the events table away, as a ledger that is unreachable looks
            # to the writer, then bring it back.
            database = sqlite3.connect(tmp_path / "ledger.sqlite")
            database.execute("ALTER TABLE events RENAME TO events_away")
            database.commit()
            during = asyncio.run(_post_many(url, 20, 30))
            time.sleep(1.0)
            database.execute("ALTER TABLE events_away RENAME TO events")
            database.commit()
            database.close()
            after = asyncio.run(_post_many(url, 50, 20))
        log = proxy.log_text()

    assert before + during + after == [200] * 70
    assert len(legacy.received) == 70
    received = {event.order_key for event in proxy.events() if event.kind == "webhook.received"}
    assert len(received) == 70
    assert "Can't write to the ledger" in log
    assert "Ledger reachable again" in log
    assert "ledger.lost" not in load_counters(open_ledger(proxy.ledger_url), proxy.run_id)


def test_key_rule_that_raises_records_uncorrelated(tmp_path):
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        # length() of a number raises a JMESPath type error on every webhook.
        route = _ingress(legacy, candidate, key="length(id)")
        with ProxyUnderTest(tmp_path, [route]) as proxy:
            statuses = asyncio.run(_post_many(proxy.url("ingress", "/hook"), 0, 5))

    assert statuses == [200] * 5
    assert len(legacy.received) == 5
    uncorrelated = [event for event in proxy.events() if event.kind == "uncorrelated"]
    reasons = {json.loads(event.detail)["reason"] for event in uncorrelated}
    assert len([e for e in uncorrelated if json.loads(e.detail).get("path") == "/hook"]) == 5
    assert any("key rule 'length(id)' failed" in reason for reason in reasons)


def test_ledger_unreachable_at_start_forwards_and_records_later(tmp_path):
    """The proxy starts on a ledger it can't open yet, forwards, and records once it can."""
    blocked = tmp_path / "ledger-folder"
    blocked.write_text("a file where the ledger's folder should be")
    url = f"sqlite:///{blocked / 'ledger.sqlite'}"
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        proxy = ProxyUnderTest(tmp_path, [_ingress(legacy, candidate)], extra=[
            "--set", f"cutover_ledger={url}"])
        with proxy:
            statuses = asyncio.run(_post_many(proxy.url("ingress", "/hook"), 0, 10))
            blocked.unlink()
            blocked.mkdir()
            deadline = time.monotonic() + 20
            while not (blocked / "ledger.sqlite").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            more = asyncio.run(_post_many(proxy.url("ingress", "/hook"), 10, 5))
        log = proxy.log_text()

    assert statuses + more == [200] * 15
    assert len(legacy.received) == 15
    assert "forwarding continues" in log
    engine = open_ledger(url)
    received = {e.order_key for e in iter_events(engine, proxy.run_id) if e.kind == "webhook.received"}
    assert len(received) == 15


def _sidecar_pid(proxy_pid: int) -> int:
    children = Path(f"/proc/{proxy_pid}/task/{proxy_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_sidecar_killed_storefront_still_answered(tmp_path):
    """A killed sidecar is started again, and what the proxy dropped meanwhile is counted in the ledger."""
    legacy, candidate = RecordingSink(), RecordingSink()
    with SinkServer(legacy, candidate):
        with ProxyUnderTest(tmp_path, [_ingress(legacy, candidate)]) as proxy:
            url = proxy.url("ingress", "/hook")
            before = asyncio.run(_post_many(url, 0, 10))
            first_sidecar = _sidecar_pid(proxy.child.process.pid)
            os.kill(first_sidecar, signal.SIGKILL)
            time.sleep(0.5)
            during = asyncio.run(_post_many(url, 10, 10))

            # The first message after the death starts a new sidecar.
            deadline = time.monotonic() + 30
            while "starting it again" not in proxy.log_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                children = Path(f"/proc/{proxy.child.process.pid}/task/{proxy.child.process.pid}"
                                "/children").read_text().split()
                if children and int(children[0]) != first_sidecar:
                    break
                time.sleep(0.1)
            time.sleep(2.0)  # the new sidecar opens the ledger
            after = asyncio.run(_post_many(url, 20, 10))
            still_running = proxy.child.process.poll() is None
        log = proxy.log_text()

    assert before + during + after == [200] * 30
    assert len(legacy.received) == 30
    assert still_running
    assert "dropping messages because the sidecar is not running" in log
    assert "starting it again" in log

    received = {event.order_key for event in proxy.events() if event.kind == "webhook.received"}
    counters = load_counters(open_ledger(proxy.ledger_url), proxy.run_id)
    after_keys = {str(10**18 + number) for number in range(20, 30)}
    # Recording resumed with the new sidecar.
    assert after_keys <= received
    # Every webhook the first sidecar lost, or that came while none ran, is
    # counted: dropped, or handed to the sidecar just before it died.
    missing = 30 - len(received)
    assert missing >= 1
    assert counters["sidecar.dropped"] >= 1
    assert counters["sidecar.dropped"] + counters["sidecar.may_be_missing"] >= missing
