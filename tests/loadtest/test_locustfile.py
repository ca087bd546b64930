"""The locustfile in a real Locust process, against a real aiohttp sink on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Self

import pytest
from aiohttp import web

from cutover.topology import free_ports
from loadtest.run import LOCUSTFILE, locust_executable
from sandbox.settings import WEBHOOK_PATH
from sandbox.storefront import sign

SECRET = "load-test-secret"


class Sink:
    """An order webhook endpoint that checks the HMAC and keeps every order id."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.bad_signatures = 0
        self.port = free_ports(1)[0]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("X-Shopify-Hmac-Sha256") != sign(body, SECRET):
            self.bad_signatures += 1
        order = json.loads(body)
        self.keys[str(order["id"])] += 1
        self.notes[order.get("note")] += 1
        return web.Response(status=200)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _locust_args(port: int, out: Path, stages: Path) -> list[str]:
    return [locust_executable(), "-f", str(LOCUSTFILE), "--headless", "--host", f"http://127.0.0.1:{port}",
            "--cutover-stages", str(stages), "--cutover-out", str(out), "--cutover-seed", "11",
            "--stop-timeout", "5", "--loglevel", "WARNING"]


def _stages(tmp_path: Path, rate: float, seconds: float) -> Path:
    path = tmp_path / "stages.toml"
    path.write_text(f'[[stage]]\nname = "flat"\nduration = {seconds}\nrate = {rate}\n', encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, CUTOVER_WEBHOOK_SECRET=SECRET)


def _log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for path in out.glob("orders-*.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_locustfile_paces_signed_unique_orders(tmp_path):
    out = tmp_path / "out"
    with Sink() as sink:
        completed = subprocess.run(
            [*_locust_args(sink.port, out, _stages(tmp_path, 20, 6)), "--run-time", "30s"],
            env=_env(), capture_output=True, text=True, timeout=90,
        )

    assert completed.returncode == 0, completed.stderr[-2000:]
    received = sum(sink.keys.values())
    # 20 webhooks/s for 6 s; the bounds leave room for a slow start on a busy machine.
    assert 90 <= received <= 130
    assert max(sink.keys.values()) == 1
    assert sink.bad_signatures == 0
    logged = _log_lines(out)
    assert sorted(line["key"] for line in logged) == sorted(sink.keys)
    assert all(line["status"] == 200 for line in logged)
    timeline = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    assert {tick["stage"] for tick in timeline} == {"flat"}
    assert {tick["users"] for tick in timeline} == {20}


@pytest.mark.slow
def test_locustfile_workers_send_disjoint_orders(tmp_path):
    out = tmp_path / "out"
    port = free_ports(1)[0]
    with Sink() as sink:
        args = _locust_args(sink.port, out, _stages(tmp_path, 20, 6))
        master = subprocess.Popen(
            [*args, "--run-time", "30s", "--master", "--master-bind-host", "127.0.0.1",
             "--master-bind-port", str(port), "--expect-workers", "2"],
            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        workers = [subprocess.Popen([*args, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                                    env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(2)]
        try:
            _, master_err = master.communicate(timeout=90)
            for worker in workers:
                worker.wait(30)
        finally:
            for process in [master, *workers]:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)

    assert master.returncode == 0, master_err[-2000:]
    # Both workers' order lines reach the master, one file per worker.
    assert len(list(out.glob("orders-*.jsonl"))) == 2
    assert sorted(line["key"] for line in _log_lines(out)) == sorted(sink.keys)
    received = sum(sink.keys.values())
    assert 90 <= received <= 130
    assert max(sink.keys.values()) == 1
    assert sink.bad_signatures == 0


@pytest.mark.slow
def test_locustfile_sends_captured_bodies_with_fresh_ids(tmp_path):
    bodies = tmp_path / "captured.jsonl"
    bodies.write_text(
        json.dumps({"body": json.dumps({"id": 1, "note": "first capture", "line_items": []})}) + "\n"
        + json.dumps({"id": 2, "note": "second capture", "line_items": []}) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    with Sink() as sink:
        completed = subprocess.run(
            [*_locust_args(sink.port, out, _stages(tmp_path, 10, 3)),
             "--run-time", "20s", "--cutover-bodies", str(bodies)],
            env=_env(), capture_output=True, text=True, timeout=60,
        )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert sum(sink.keys.values()) >= 10
    assert max(sink.keys.values()) == 1
    assert not {"1", "2"} & set(sink.keys)
    assert set(sink.notes) == {"first capture", "second capture"}
    assert sink.bad_signatures == 0


@pytest.mark.slow
def test_locustfile_logs_orders_without_response(tmp_path):
    out = tmp_path / "out"
    closed_port = free_ports(1)[0]
    args = _locust_args(closed_port, out, _stages(tmp_path, 5, 2))

    completed = subprocess.run([*args, "--run-time", "20s"], env=_env(), capture_output=True, text=True,
                               timeout=60)

    assert completed.returncode == 1, completed.stderr[-2000:]
    logged = _log_lines(out)
    assert len(logged) >= 5
    assert {line["status"] for line in logged} == {0}
    assert all(line["error"] for line in logged)
