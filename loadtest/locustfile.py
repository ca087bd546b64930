"""Locust load test: signed Shopify `orders/create` webhooks at a paced arrival rate.

Run it with Locust's own command line, for example against the ingress of a
running shadow proxy::

    CUTOVER_WEBHOOK_SECRET=... locust -f loadtest/locustfile.py --headless \\
        --host http://127.0.0.1:8080 --cutover-profile bfcm \\
        --cutover-peak-rate 200 --cutover-duration 3m --run-time 4m

`cutover loadtest` starts it the same way, in its own process. The shape
(`ArrivalRateShape`) states the load in webhooks per second. Locust is a
closed model, so the shape sets the user count to `rate * user period`
and every user sends one order per `users / rate` seconds. When the system
under test responds more slowly than that interval, the users fall behind
and the offered rate drops below the target. The order log records what
was really sent, and the report shows the shortfall.

The shape runs on the master, or on the only process. It sends the pacing
interval to every worker as the `cutover_pace` message, so the same file
works with `--master` and `--worker`.

Files written to `--cutover-out` by the master (or the only process):
`orders-<node>.jsonl`, one line per webhook (order key, send time, HTTP
status), and `timeline.jsonl`, one line per shape tick (stage, target rate,
users). Workers send their order lines to the master with their regular
stats reports, so a worker on another machine needs no shared folder.

The signing secret comes from the environment variable
CUTOVER_WEBHOOK_SECRET, never from the command line; without it the
sandbox shop's secret is used.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import math
import os
import random
import socket
import time
from pathlib import Path
from typing import Any, ClassVar

from locust import FastHttpUser, LoadTestShape, events, task

from loadtest.shapes import Profile, build_profile, load_stages, parse_duration
from sandbox.orders import MAX_ID, MIN_ID, encode_order, make_orders
from sandbox.settings import DEMO_WEBHOOK_SECRET, WEBHOOK_PATH
from sandbox.storefront import webhook_headers

log = logging.getLogger(__name__)

SECRET_ENV = "CUTOVER_WEBHOOK_SECRET"
PACE_MESSAGE = "cutover_pace"
# Key of the order lines in a worker's stats report to the master.
REPORT_KEY = "cutover_orders"
# Order numbers of one Locust process start at 1001 + worker index * this,
# so that workers never send the same order.
WORKER_NUMBER_STRIDE = 100_000_000


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("cutover", "Order webhooks at a paced arrival rate")
    group.add_argument("--cutover-profile", default="bfcm", env_var="CUTOVER_LOADTEST_PROFILE",
                       help="Load profile: steady, bfcm or flash-sale (ignored with --cutover-stages).")
    group.add_argument("--cutover-peak-rate", type=float, default=20.0, env_var="CUTOVER_LOADTEST_PEAK_RATE",
                       help="Peak arrival rate in webhooks per second.")
    group.add_argument("--cutover-duration", default="60s", env_var="CUTOVER_LOADTEST_DURATION",
                       help="Length of the profile, such as 90s or 3m.")
    group.add_argument("--cutover-stages", default="", env_var="CUTOVER_LOADTEST_STAGES",
                       help="TOML file with [[stage]] tables (name, duration, rate, start_rate) instead of a profile.")
    group.add_argument("--cutover-user-period", type=float, default=1.0, env_var="CUTOVER_LOADTEST_USER_PERIOD",
                       help="Seconds between two orders of one user at the target rate; users = rate * this.")
    group.add_argument("--cutover-seed", type=int, default=7, env_var="CUTOVER_LOADTEST_SEED",
                       help="Seed of the order generator; use a new one per run against a real ERP.")
    group.add_argument("--cutover-bodies", default="", env_var="CUTOVER_LOADTEST_BODIES",
                       help="JSON-lines file of captured orders (an order object, or {\"body\": \"...\"} a line) "
                            "to send instead of generated ones; each send gets a fresh order id.")
    group.add_argument("--cutover-webhook-path", default=WEBHOOK_PATH, env_var="CUTOVER_LOADTEST_WEBHOOK_PATH",
                       help="Path of the order webhook on --host.")
    group.add_argument("--cutover-out", default="", env_var="CUTOVER_LOADTEST_OUT",
                       help="Folder for the order logs and the timeline; empty writes none.")


class _Pace:
    """Seconds between two orders of one user, as the shape last set it."""

    interval_s: float | None = 1.0


class _OrderSource:
    """Hands out orders with keys that no other user or worker sends."""

    def __init__(self, seed: int, worker_index: int, bodies_path: str) -> None:
        self._seed = seed
        self._numbers = itertools.count(1001 + worker_index * WORKER_NUMBER_STRIDE)
        self._templates = _read_bodies(Path(bodies_path)) if bodies_path else []
        self._random = random.Random(f"{seed}:{worker_index}")

    def next_order(self) -> dict[str, Any]:
        number = next(self._numbers)
        if not self._templates:
            return make_orders(self._seed, 1, start_number=number)[0]

        # A captured order gets its own id, so that the flows and the ERP
        # treat every send as a new order.
        order = dict(self._templates[number % len(self._templates)])
        order_id = self._random.randint(MIN_ID, MAX_ID)
        order.update(id=order_id, order_number=number, name=f"#{number}",
                     admin_graphql_api_id=f"gid://shopify/Order/{order_id}")
        return order


# TODO: read mitmproxy dumps, HAR and GoReplay files through the replay
# package's readers once they can be imported under gevent.
def _read_bodies(path: Path) -> list[dict[str, Any]]:
    """Read orders from JSON lines: a webhook record (`body`, or `body_base64`) or a bare order object."""
    orders = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                order = _order_of(json.loads(line))
            except (json.JSONDecodeError, binascii.Error, UnicodeDecodeError, TypeError) as exc:
                raise ValueError(f"Invalid order in {path} line {number}: {exc}. "
                                 "Write one order object, or {\"body\": \"<webhook body>\"}, a line.") from exc
            if not isinstance(order, dict) or "id" not in order:
                raise ValueError(f"Invalid order in {path} line {number}: no 'id' field.")
            orders.append(order)
    if not orders:
        raise ValueError(f"No orders in {path}; it needs at least one JSON line.")
    return orders


def _order_of(record: Any) -> Any:
    if not isinstance(record, dict):
        raise TypeError(f"expected a JSON object, got {type(record).__name__}")
    if "body_base64" in record:
        return json.loads(base64.b64decode(record["body_base64"], validate=True))
    body = record.get("body", record)
    return json.loads(body) if isinstance(body, str) else body


class _JsonLines:
    """An append-only JSON-lines file, flushed at every line.

    It stays open until the process exits, because the workers' last
    reports reach the master after Locust's quitting event.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")


class _State:
    source: _OrderSource | None = None
    # Local and master runners write order lines to files; a worker keeps
    # them in `pending` until its next report to the master.
    order_logs: ClassVar[dict[str, _JsonLines]] = {}
    out: Path | None = None
    is_worker: bool = False
    pending: ClassVar[list[dict[str, Any]]] = []
    timeline: _JsonLines | None = None
    secret: str = DEMO_WEBHOOK_SECRET


def _record_order(line: dict[str, Any]) -> None:
    if _State.is_worker:
        _State.pending.append(line)
    else:
        _write_orders(f"{socket.gethostname()}-{os.getpid()}", [line])


def _write_orders(node: str, lines: list[dict[str, Any]]) -> None:
    if _State.out is None:
        return
    output = _State.order_logs.get(node)
    if output is None:
        safe = "".join(char if char.isalnum() or char in "-_." else "_" for char in node)
        output = _State.order_logs[node] = _JsonLines(_State.out / f"orders-{safe}.jsonl")
    for line in lines:
        output.write(line)


@events.init.add_listener
def on_init(environment: Any, **_kwargs: Any) -> None:
    secret = os.environ.get(SECRET_ENV)
    if secret is None:
        log.warning("%s is not set; signing with the sandbox shop's secret", SECRET_ENV)
    _State.secret = secret or DEMO_WEBHOOK_SECRET
    runner = environment.runner
    if runner is not None:
        runner.register_message(PACE_MESSAGE, _on_pace)
        _State.is_worker = type(runner).__name__ == "WorkerRunner"


@events.report_to_master.add_listener
def on_report_to_master(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    data[REPORT_KEY] = _State.pending
    _State.pending = []


@events.worker_report.add_listener
def on_worker_report(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    lines = data.get(REPORT_KEY)
    if lines:
        _write_orders(client_id, lines)


def _on_pace(environment: Any, msg: Any, **_kwargs: Any) -> None:
    _Pace.interval_s = msg.data["interval_s"]


@events.test_start.add_listener
def on_test_start(environment: Any, **_kwargs: Any) -> None:
    options = environment.parsed_options
    runner = environment.runner
    if runner is not None and type(runner).__name__ != "MasterRunner":
        _State.source = _OrderSource(options.cutover_seed, runner.worker_index, options.cutover_bodies)
    if _State.is_worker or not options.cutover_out:
        return
    _State.out = Path(options.cutover_out)
    if environment.shape_class is not None and _State.timeline is None:
        _State.timeline = _JsonLines(_State.out / "timeline.jsonl")


class ArrivalRateShape(LoadTestShape):
    """Sets users and their pacing each second so that the offered rate follows the profile."""

    def __init__(self) -> None:
        super().__init__()
        self._profile: Profile | None = None
        self._stage_name: str | None = None

    def tick(self) -> tuple[int, float] | None:
        profile = self._load_profile()
        elapsed = self.get_run_time()
        if profile.point_at(elapsed) is None:
            return None
        # Locust calls tick() about once a second, so the rate set now holds
        # for the next second: aim at its middle.
        stage, rate = profile.point_at(elapsed + 0.5) or profile.point_at(elapsed)

        period = self.runner.environment.parsed_options.cutover_user_period
        users = math.ceil(rate * period) if rate > 0 else 0
        interval = users / rate if rate > 0 else None
        self.runner.send_message(PACE_MESSAGE, {"interval_s": interval})
        if stage.name != self._stage_name:
            log.info("Load phase %s: %.1f webhooks/s, %d users", stage.name, rate, users)
            self._stage_name = stage.name
        if _State.timeline is not None:
            _State.timeline.write({"at": time.time(), "elapsed_s": round(elapsed, 3), "stage": stage.name,
                                   "rate": round(rate, 3), "users": users})

        # Reach the new user count within about a quarter of a tick.
        spawn_rate = max(4.0, 4.0 * abs(users - self.get_current_user_count()))
        return users, spawn_rate

    def _load_profile(self) -> Profile:
        if self._profile is None:
            options = self.runner.environment.parsed_options
            if options.cutover_stages:
                self._profile = load_stages(Path(options.cutover_stages))
            else:
                self._profile = build_profile(options.cutover_profile, options.cutover_peak_rate,
                                              parse_duration(options.cutover_duration))
        return self._profile


class WebhookUser(FastHttpUser):
    """Posts one signed order webhook per pacing interval, each order with its own key."""

    # Shopify waits 1 s to connect and 5 s for the response.
    connection_timeout = 1.0
    network_timeout = 5.0

    def on_start(self) -> None:
        # Spread the users over one interval so that a spawn is not a burst.
        interval = _Pace.interval_s or 1.0
        self._next_at = time.monotonic() + random.uniform(0, interval)
        time.sleep(max(0.0, self._next_at - time.monotonic()))

    def wait_time(self) -> float:
        interval = _Pace.interval_s
        if interval is None:
            return 1.0
        now = time.monotonic()
        self._next_at += interval
        # A user that fell behind starts afresh instead of bursting to catch
        # up: the missed sends are the shortfall of a closed model.
        if self._next_at < now:
            self._next_at = now
        return self._next_at - now

    @task
    def post_order(self) -> None:
        order = _State.source.next_order()
        body = encode_order(order)
        headers = webhook_headers(order, body, _State.secret)
        sent_at = time.time()
        path = self.environment.parsed_options.cutover_webhook_path

        with self.client.post(path, data=body, headers=headers, name="orders/create",
                              catch_response=True) as response:
            # Locust stores a connection error or a 4xx/5xx here and
            # reports it as a failure when the block ends.
            exception = response.request_meta.get("exception")
            status = response.status_code or 0
            error = None
            if exception is not None:
                error = str(exception)
            elif not 200 <= status < 300:
                # Shopify counts only 2xx as delivered, so a 3xx fails too.
                error = f"HTTP {status}"
                response.failure(error)

        _record_order({"key": str(order["id"]), "at": round(sent_at, 6), "status": status,
                       "error": error, "ms": round((time.time() - sent_at) * 1000, 3)})
