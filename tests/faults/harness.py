"""What every fault test needs: servers on loopback, a storefront, and the two invariants.

The servers run in one background event loop. `LegacySink` responds to each
webhook with a body derived from it, so a test can tell the legacy flow's
response from anything the proxy made up. `CandidateSink` responds late or
with an error, and `MalformedServer` writes broken HTTP. `send_orders` plays the
storefront and keeps every answer. `LedgerView` reads a run back, and the
`assert_*` functions check the invariants:

- every webhook the storefront sent got the legacy flow's answer;
- every order sent is in the ledger, or the run's loss counters cover it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp
from aiohttp import web

from cutover.ledger import iter_events, ledger_url_for, load_counters, open_ledger
from cutover.processes import ChildProcess, start_proxy, start_sandbox
from cutover.topology import Topology
from sandbox.orders import encode_order, make_orders
from sandbox.settings import DEMO_WEBHOOK_SECRET, SandboxSettings
from sandbox.storefront import webhook_headers

# Counters of events the proxy observed and could not store, and the
# estimate for instances stopped without a clean stop.
LOSS_COUNTERS = ("ledger.lost", "ledger.rejected", "events.transform_failed",
                 "ledger.may_be_missing")
# Seconds the storefront waits for one response. Shopify waits 5 s, but a
# test must fail on a wrong response only, not on a busy machine.
ANSWER_TIMEOUT_S = 30.0
SEED = 11


@dataclass
class Answer:
    """What the storefront got for one webhook: status and body, or the error."""

    key: str
    body_sent: bytes
    status: int | None = None
    body: bytes = b""
    error: str = ""


def legacy_answer_for(body: bytes) -> bytes:
    """Return the body `LegacySink` sends back for a webhook body."""
    return b"legacy received " + hashlib.sha256(body).hexdigest()[:16].encode()


LEGACY_STATUS = 201


@dataclass
class LegacySink:
    """The legacy flow: responds 201 with a body derived from each webhook."""

    received: list[bytes] = field(default_factory=list)
    port: int = 0

    def make_app(self) -> web.Application:
        app = web.Application(handler_args={"auto_decompress": False})
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(body)
        return web.Response(status=LEGACY_STATUS, body=legacy_answer_for(body),
                            content_type="text/plain")


@dataclass
class CandidateSink:
    """The candidate flow: responds with `status` after `delay_s` seconds."""

    status: int = 200
    delay_s: float = 0.0
    received: list[bytes] = field(default_factory=list)
    port: int = 0

    def make_app(self) -> web.Application:
        app = web.Application(handler_args={"auto_decompress": False})
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.read())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=self.status, text="candidate")


# What MalformedServer writes after reading a request, by mode.
MALFORMED_ANSWERS = {
    # Not HTTP at all.
    "garbage": b"\x00\x13\x7fthis is not an HTTP response\r\n\r\n",
    # A status line whose code is not a number.
    "bad-status-line": b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
    # A body shorter than its Content-Length, then the connection closes.
    "truncated-body": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten..",
}


@dataclass
class MalformedServer:
    """A raw TCP server that reads one HTTP request and writes a broken response."""

    mode: str
    requests: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            self.requests += 1
            writer.write(MALFORMED_ANSWERS[self.mode])
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


class Servers:
    """Run aiohttp sinks and raw servers on 127.0.0.1 in a background event loop."""

    def __init__(self, *servers: Any) -> None:
        self.servers = servers
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []
        self._raw: list[asyncio.Server] = []

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        for server in self.servers:
            if isinstance(server, MalformedServer):
                raw = await asyncio.start_server(server.handle, "127.0.0.1", 0)
                server.port = raw.sockets[0].getsockname()[1]
                self._raw.append(raw)
                continue
            runner = web.AppRunner(server.make_app(), access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            server.port = runner.addresses[0][1]
            self._runners.append(runner)

    async def _stop(self) -> None:
        for raw in self._raw:
            raw.close()
        for runner in self._runners:
            await runner.cleanup()


def url_of(server: Any) -> str:
    return f"http://127.0.0.1:{server.port}"


def ingress_route(legacy_url: str, candidate_url: str) -> dict[str, Any]:
    return {"name": "ingress", "role": "ingress", "upstream": legacy_url,
            "mirror_to": candidate_url, "key": "id"}


def orders(count: int, first: int = 1) -> list[dict[str, Any]]:
    """Return `count` seeded Shopify-shaped orders, numbered from `first`."""
    return make_orders(SEED, count, start_number=first)


def send_orders(url: str, batch: Iterable[dict[str, Any]], *, concurrency: int = 8) -> list[Answer]:
    """Send one signed webhook per order to `url`, `concurrency` at a time."""
    return asyncio.run(_send_all(url, list(batch), concurrency))


async def _send_all(url: str, batch: list[dict[str, Any]], concurrency: int) -> list[Answer]:
    limit = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=ANSWER_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def deliver(order: dict[str, Any]) -> Answer:
            body = encode_order(order)
            answer = Answer(key=str(order["id"]), body_sent=body)
            headers = webhook_headers(order, body, DEMO_WEBHOOK_SECRET)
            async with limit:
                try:
                    async with session.post(url, data=body, headers=headers,
                                            skip_auto_headers=("User-Agent",)) as response:
                        answer.body = await response.read()
                        answer.status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    answer.error = f"{exc.__class__.__name__}: {exc}"
            return answer

        return list(await asyncio.gather(*(deliver(order) for order in batch)))


@dataclass
class LedgerView:
    """One run read back from the ledger: events per order and the counters."""

    kinds: dict[str, dict[str, list[Any]]]
    counters: dict[str, int]
    uncorrelated: list[Any]

    @classmethod
    def read(cls, url: str, run_id: str, **counter_options: Any) -> LedgerView:
        engine = open_ledger(url)
        try:
            kinds: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
            uncorrelated = []
            for event in iter_events(engine, run_id):
                if event.order_key is None:
                    uncorrelated.append(event)
                    continue
                kinds[event.order_key][event.kind].append(event)
            counters = load_counters(engine, run_id, **counter_options)
        finally:
            engine.dispose()
        return cls(kinds, counters, uncorrelated)

    def keys_with(self, kind: str) -> set[str]:
        return {key for key, events in self.kinds.items() if events.get(kind)}

    def details(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(event.detail or "{}") for events in self.kinds.values()
                for event in events.get(kind, [])]

    @property
    def losses(self) -> int:
        return sum(self.counters.get(name, 0) for name in LOSS_COUNTERS)


def assert_legacy_answers(answers: list[Answer], expected: Callable[[Answer], tuple[int, bytes]]) -> None:
    """Assert that every webhook got its expected answer, naming the first that did not."""
    wrong = [(answer.key, answer.status, answer.body[:80], answer.error) for answer in answers
             if (answer.status, answer.body) != expected(answer)]
    assert wrong == [], f"{len(wrong)} of {len(answers)} webhooks got another answer"


def sink_answer(answer: Answer) -> tuple[int, bytes]:
    """The answer `LegacySink` gives to the webhook of `answer`."""
    return LEGACY_STATUS, legacy_answer_for(answer.body_sent)


def assert_orders_accounted(view: LedgerView, keys: Iterable[str]) -> set[str]:
    """Assert every order has webhook.received, or the loss counters cover it; return those without."""
    keys = set(keys)
    missing = keys - view.keys_with("webhook.received")
    assert len(missing) <= view.losses, (
        f"{len(missing)} orders are neither in the ledger nor counted as lost "
        f"(counters {view.counters}); first: {sorted(missing)[:5]}")
    return missing


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `predicate` every 0.1 s; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.1)


# The sandbox with short timings, so that flows settle within seconds.
FAST_SANDBOX = SandboxSettings(legacy_poll_interval_s=1.0, gated_pending_sla_s=2.0,
                               erp_base_latency_ms=5.0, erp_latency_per_inflight_ms=2.0)
# The legacy flow's answer to a valid order webhook.
SANDBOX_LEGACY_ANSWER = (200, b"")


class SandboxUnderTest:
    """The sandbox and the proxy wired as `cutover demo` wires them.

    `edit_config` may change the shadow configuration (a mapping with the
    routes) before the proxy starts.
    """

    def __init__(self, folder: Path, settings: SandboxSettings = FAST_SANDBOX, *,
                 edit_config: Callable[[dict[str, Any]], None] | None = None,
                 run_id: str = "faults") -> None:
        self.folder = folder
        self.run_id = run_id
        self.ledger_url = ledger_url_for(folder)
        self.topology = Topology.on_free_ports(settings)
        self.settings = self.topology.sandbox_settings()
        self.config = self.topology.shadow_config(run_id=run_id, ledger_url=self.ledger_url)
        if edit_config is not None:
            edit_config(self.config)
        self.sandbox: ChildProcess | None = None
        self.proxy: ChildProcess | None = None

    def route(self, name: str) -> dict[str, Any]:
        return next(route for route in self.config["route"] if route["name"] == name)

    def __enter__(self) -> Self:
        settings_path = self.folder / "sandbox.json"
        settings_path.write_text(self.settings.to_json(), encoding="utf-8")
        shadow_path = self.folder / "shadow.json"
        shadow_path.write_text(json.dumps(self.config), encoding="utf-8")
        modes = [f"reverse:{route['upstream']}@{route['listen']}" for route in self.config["route"]]
        self.sandbox = start_sandbox(settings_path, self.topology.sandbox_ports,
                                     self.folder / "sandbox.log")
        try:
            self.proxy = start_proxy(shadow_path, modes, self.topology.proxy_ports,
                                     self.folder / "proxy.log")
            wait_until(lambda: "cutover shadow started" in self.proxy_log(), 30, "the proxy to start")
        except BaseException:
            self.sandbox.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_proxy()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None

    def stop_proxy(self) -> int | None:
        if self.proxy is None:
            return None
        code = self.proxy.stop()
        self.proxy = None
        return code

    @property
    def ingress_url(self) -> str:
        return self.topology.ingress_url

    def simulator(self, app: str, path: str) -> Any:
        """Return the JSON of a sandbox app's `/_sim/...` endpoint."""
        url = self.settings.base_url(getattr(self.settings, f"{app}_port")) + path
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.load(answer)

    def proxy_log(self) -> str:
        return (self.folder / "proxy.log").read_text(encoding="utf-8", errors="replace")

    def view(self) -> LedgerView:
        return LedgerView.read(self.ledger_url, self.run_id)


def sandbox_answer(_answer: Answer) -> tuple[int, bytes]:
    return SANDBOX_LEGACY_ANSWER
