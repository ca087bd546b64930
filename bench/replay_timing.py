"""Schedule lag and maximum send rate of `replay.send`, against a loopback sink.

Two measurements in one run, against the same aiohttp sink that runs in its
own process on 127.0.0.1:

- schedule lag: signed Shopify-shaped webhooks (about 1.2 KiB) replayed at a
  fixed rate (default 500 per second); lag is the time from a delivery's
  due time to the start of its request (goal: p99 at most 2 ms);
- maximum send rate: the same webhooks replayed with no pauses, against a
  plain aiohttp loop that posts the same bodies with the same concurrency.
  Both run `--rounds` times, alternating; the medians are compared;
- read rate of each capture format: the same webhooks written as a
  mitmproxy dump, HAR, GoReplay file and JSON lines, read with `load_source`.

    .venv/bin/python bench/replay_timing.py [--lag-requests 5000] [--rate 500]
        [--max-requests 5000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import replay  # noqa: E402
from replay import CapturedRequest  # noqa: E402
from sandbox.orders import encode_order, make_orders  # noqa: E402
from sandbox.settings import DEMO_WEBHOOK_SECRET, WEBHOOK_PATH  # noqa: E402
from sandbox.storefront import webhook_headers  # noqa: E402

SINK = """
import socket, sys
from aiohttp import web
async def answer(request):
    await request.read()
    return web.Response(status=200)
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
web.run_app(app, sock=sock, print=None, access_log=None)
"""


def make_requests(count: int) -> list[CapturedRequest]:
    requests = []
    for index, order in enumerate(make_orders(7, count)):
        body = encode_order(order)
        headers = tuple(webhook_headers(order, body, DEMO_WEBHOOK_SECRET).items())
        requests.append(CapturedRequest("POST", WEBHOOK_PATH, headers, body, None, "bench", index + 1))
    return requests


async def plain_loop(url: str, requests: list[CapturedRequest], concurrency: int) -> float:
    """Post every request as fast as `concurrency` allows; return requests per second."""
    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def post(request: CapturedRequest) -> None:
            async with slots:
                async with session.post(url, data=request.body, headers=dict(request.headers)) as response:
                    await response.read()
                    assert response.status == 200, response.status
        started = time.monotonic()
        await asyncio.gather(*(post(request) for request in requests))
        return len(requests) / (time.monotonic() - started)


async def measure(port: int, args: argparse.Namespace) -> None:
    target = f"http://127.0.0.1:{port}"
    load_at_start = os.getloadavg()[0]
    lag_requests = make_requests(args.lag_requests)
    lag = await replay.send(lag_requests, target, rate=args.rate, concurrency=args.concurrency)
    assert lag.failed_total == 0, lag.failed

    max_requests = make_requests(args.max_requests)
    replay_rates, plain_rates = [], []
    for _ in range(args.rounds):
        summary = await replay.send(max_requests, target, max_pause_s=0, concurrency=args.concurrency)
        assert summary.failed_total == 0, summary.failed
        replay_rates.append(summary.rate_per_s)
        plain_rates.append(await plain_loop(target + WEBHOOK_PATH, max_requests, args.concurrency))

    replay_rate = statistics.median(replay_rates)
    plain_rate = statistics.median(plain_rates)
    print(f"Machine: {platform.machine()}, {_cores()} cores, Python {platform.python_version()}, "
          f"aiohttp {aiohttp.__version__}. Load average (1 min) at start {load_at_start:.2f}, "
          f"at end {os.getloadavg()[0]:.2f}.")
    print()
    print("| measurement | figure |")
    print("| --- | --- |")
    print(f"| schedule lag at {args.rate:g}/s, {args.lag_requests} webhooks: p50 / p99 / max | "
          f"{lag.lag_p50_ms:.3f} / {lag.lag_p99_ms:.3f} / {lag.lag_max_ms:.3f} ms |")
    print(f"| achieved rate at {args.rate:g}/s target | {lag.rate_per_s:.1f}/s |")
    print(f"| max send rate, replay.send, c={args.concurrency} (median of {args.rounds}) | {replay_rate:.0f}/s |")
    print(f"| max send rate, plain aiohttp loop, c={args.concurrency} (median of {args.rounds}) | {plain_rate:.0f}/s |")
    print(f"| replay.send vs plain aiohttp loop | {replay_rate / plain_rate:.2f} |")
    for name, rate in read_rates(max_requests).items():
        print(f"| read rate, {name} | {rate:.0f} records/s |")
    print()
    print(f"Rounds, replay.send: {[round(rate) for rate in replay_rates]}; "
          f"plain loop: {[round(rate) for rate in plain_rates]}.")


def read_rates(requests: list[CapturedRequest]) -> dict[str, float]:
    """Write the requests in every capture format and time reading each file back."""
    import json
    import tempfile

    from mitmproxy import http
    from mitmproxy import io as mitm_io
    from mitmproxy.test import tflow

    from replay.goreplay import write_goreplay_record

    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder) / name for name in ("capture.mitm", "capture.har", "capture.gor", "capture.jsonl")}
        flows = []
        for index, request in enumerate(requests):
            flow = tflow.tflow(resp=True)
            flow.request = http.Request.make("POST", f"http://shop.example{request.path}", request.body,
                                             dict(request.headers))
            flow.request.timestamp_start = 1_700_000_000 + index / 1000
            flows.append(flow)
        with paths["capture.mitm"].open("wb") as file:
            writer = mitm_io.FlowWriter(file)
            for flow in flows:
                writer.add(flow)
        from mitmproxy.addons.savehar import SaveHar
        paths["capture.har"].write_text(json.dumps(SaveHar().make_har(flows)), encoding="utf-8")
        with paths["capture.gor"].open("wb") as file:
            for index, request in enumerate(requests):
                head = "".join(f"{name}: {value}\r\n" for name, value in request.headers)
                payload = (f"POST {request.path} HTTP/1.1\r\nHost: shop.example\r\n{head}"
                           f"Content-Length: {len(request.body)}\r\n\r\n").encode() + request.body
                write_goreplay_record(file, f"{index:024x}", 1_700_000_000_000_000_000 + index, payload)
        with paths["capture.jsonl"].open("w", encoding="utf-8") as file:
            for request in requests:
                file.write(json.dumps({"body": request.body.decode(), "headers": dict(request.headers)},
                                      ensure_ascii=False) + "\n")
        for name, path in paths.items():
            started = time.monotonic()
            count = sum(1 for _ in replay.load_source(path))
            assert count == len(requests), (name, count)
            rates[name.split(".")[1]] = count / (time.monotonic() - started)
    return rates


def _cores() -> int:
    return os.cpu_count() or 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lag-requests", type=int, default=5000, help="Webhooks in the lag measurement.")
    parser.add_argument("--rate", type=float, default=500.0, help="Webhooks per second in the lag measurement.")
    parser.add_argument("--max-requests", type=int, default=5000, help="Webhooks per round of the rate measurement.")
    parser.add_argument("--concurrency", type=int, default=32, help="Requests open at once.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of the rate measurement.")
    args = parser.parse_args()

    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())
        asyncio.run(measure(port, args))
    finally:
        sink.terminate()
        sink.wait(timeout=10)


if __name__ == "__main__":
    main()
