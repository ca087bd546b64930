"""A real mitmdump with the addon between recording aiohttp sinks, for proxy tests.

`RecordingSink` keeps every request exactly as it arrived (raw body bytes,
header list); `ProxyUnderTest` writes a shadow configuration, starts mitmdump
as a child process and stops it again, so tests read the ledger afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from cutover.ledger import iter_events, ledger_url_for, open_ledger
from cutover.processes import ChildProcess, mitmdump_command, wait_for_ports
from cutover.topology import free_ports


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class RecordingSink:
    """An aiohttp server that records raw requests and answers `status`."""

    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def make_app(self) -> web.Application:
        app = web.Application(handler_args={"auto_decompress": False}, client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        self.received.append(Received(request.method, request.path_qs, headers, body))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=self.status, headers=self.headers)


class SinkServer:
    """Run sinks in a background event loop thread."""

    def __init__(self, *sinks: RecordingSink) -> None:
        self.sinks = sinks
        self._loop = asyncio.new_event_loop()
        self._runners: list[web.AppRunner] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        for sink in self.sinks:
            runner = web.AppRunner(sink.make_app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", sink.port)
            await site.start()
            sink.port = runner.addresses[0][1]
            self._runners.append(runner)

    async def _stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


class ProxyUnderTest:
    """mitmdump with the addon: one ingress route plus optional taps."""

    def __init__(self, folder: Path, routes: list[dict[str, Any]], *, extra: list[str] = (),
                 mirror: dict[str, Any] | None = None, run_id: str = "proxy-test") -> None:
        self.folder = folder
        self.run_id = run_id
        self.ledger_url = ledger_url_for(folder)
        ports = free_ports(len(routes))
        self.routes = [{**route, "listen": f"127.0.0.1:{port}"} for route, port in zip(routes, ports, strict=True)]
        self.ports = {route["name"]: port for route, port in zip(routes, ports, strict=True)}
        config = {"ledger": {"url": self.ledger_url, "run_id": run_id},
                  "mirror": mirror or {}, "route": self.routes}
        self.config_path = folder / "shadow.json"
        self.config_path.write_text(json.dumps(config), encoding="utf-8")
        modes = [f"reverse:{r['upstream']}@{r['listen']}" for r in self.routes]
        self.command = mitmdump_command(self.config_path, modes, extra=list(extra))
        self.child: ChildProcess | None = None

    def url(self, name: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def __enter__(self) -> Self:
        self.child = ChildProcess("mitmdump", self.command, self.folder / "proxy.log")
        wait_for_ports(list(self.ports.values()), process=self.child, timeout_s=30)
        # The listeners accept before the addon's sidecar is up; tests that
        # time their steps against the proxy's state wait for it.
        deadline = time.monotonic() + 30
        while "cutover shadow started" not in self.log_text() and time.monotonic() < deadline:
            self.child.check_alive()
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> int | None:
        if self.child is None:
            return None
        code = self.child.stop()
        self.child = None
        return code

    def log_text(self) -> str:
        return (self.folder / "proxy.log").read_text(encoding="utf-8", errors="replace")

    def events(self) -> list:
        engine = open_ledger(self.ledger_url)
        try:
            return list(iter_events(engine, self.run_id))
        finally:
            engine.dispose()
