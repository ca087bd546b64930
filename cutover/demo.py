"""The demo: a whole parallel run on the built-in sandbox.

Starts the sandbox and the shadow proxy on free loopback ports and sends
seeded Shopify-shaped order webhooks through the proxy's ingress: a steady
stream, then a burst. When both flows have settled, it stops both processes
and leaves the ledger under `runs/<run id>/` for the comparator.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import distinct, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from cutover.events import EventKind, Flow
from cutover.ledger import Event, finish_run, ledger_url_for, open_ledger, start_run
from cutover.processes import start_proxy, start_sandbox, write_sandbox_settings
from cutover.topology import Topology
from sandbox.orders import make_orders
from sandbox.settings import SandboxSettings
from sandbox.storefront import send_webhooks

__all__ = ["DemoOptions", "DemoRun", "run_parallel", "wait_until_settled"]

log = logging.getLogger(__name__)

OUTCOME_KINDS = (EventKind.ERP_ACKED.value, EventKind.ERP_REJECTED.value)


@dataclass(frozen=True)
class DemoOptions:
    run_id: str
    runs_dir: Path = Path("runs")
    orders: int = 300
    # Orders sent at the end all at once (bounded by the sender's concurrency).
    burst: int = 100
    rate_per_s: float = 40.0
    seed: int = 7
    settle_timeout_s: float = 90.0
    # Seconds without a new event before the flows count as settled.
    quiet_s: float = 1.5
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)


@dataclass
class DemoRun:
    run_id: str
    folder: Path
    ledger_url: str
    engine: Engine
    sent: int
    send_failures: dict[str, int]
    settled: bool


def run_parallel(
    options: DemoOptions,
    *,
    on_progress: Callable[[str], None] = lambda _message: None,
    on_settled: Callable[[Topology], None] | None = None,
) -> DemoRun:
    """Run the sandbox and the proxy, send the orders, wait, and stop everything.

    `on_settled` is called with the live topology after the wait and before
    the processes stop, so a caller can look at the simulators' state.
    """
    folder = options.runs_dir / options.run_id
    folder.mkdir(parents=True, exist_ok=True)
    ledger_url = ledger_url_for(folder)
    engine = open_ledger(ledger_url)

    topology = Topology.on_free_ports(options.sandbox)
    settings = replace(topology.sandbox_settings(), seed=options.seed)
    settings_path = folder / "sandbox.json"
    webhook_secret = write_sandbox_settings(settings, settings_path)
    shadow_path = folder / "shadow.json"
    shadow = topology.shadow_config(run_id=options.run_id, ledger_url=ledger_url)
    shadow_path.write_text(json.dumps(shadow, indent=2), encoding="utf-8")
    start_run(engine, options.run_id, "demo", {
        "orders": options.orders, "burst": options.burst, "rate_per_s": options.rate_per_s,
        "seed": options.seed, "legacy_poll_interval_s": settings.legacy_poll_interval_s,
        "gated_pending_sla_s": settings.gated_pending_sla_s,
        "gated_confirm_early_every": settings.gated_confirm_early_every,
    })

    mode_specs = [_mode_spec(route) for route in shadow["route"]]
    sandbox = proxy = None
    try:
        on_progress("starting the sandbox")
        sandbox = start_sandbox(settings_path, topology.sandbox_ports, folder / "sandbox.log",
                                webhook_secret=webhook_secret)
        on_progress("starting the shadow proxy")
        proxy = start_proxy(shadow_path, mode_specs, topology.proxy_ports, folder / "proxy.log")

        orders = make_orders(options.seed, options.orders)
        burst = min(options.burst, len(orders))
        on_progress(f"sending {len(orders) - burst} orders at {options.rate_per_s:g}/s, "
                    f"then a burst of {burst}")
        summary = asyncio.run(send_webhooks(
            topology.ingress_url, orders, settings.webhook_secret,
            rate_per_s=options.rate_per_s, burst=burst,
        ))

        on_progress("waiting for both flows to settle")
        settled = wait_until_settled(
            engine, options.run_id, expected=summary.ok, timeout_s=options.settle_timeout_s,
            quiet_s=options.quiet_s, check_alive=lambda: (sandbox.check_alive(), proxy.check_alive()),
            on_progress=on_progress,
        )
        if on_settled is not None:
            on_settled(topology)
    finally:
        on_progress("stopping the proxy and the sandbox")
        if proxy is not None:
            proxy.stop()
        if sandbox is not None:
            sandbox.stop()
    finish_run(engine, options.run_id)
    return DemoRun(options.run_id, folder, ledger_url, engine, summary.ok,
                   dict(summary.failed), settled)


def _mode_spec(route: dict) -> str:
    return f"reverse:{route['upstream']}@{route['listen']}"


def wait_until_settled(
    engine: Engine, run_id: str, *, expected: int, timeout_s: float, quiet_s: float,
    check_alive: Callable[[], object] = lambda: None,
    on_progress: Callable[[str], None] = lambda _message: None,
) -> bool:
    """Wait until each flow has an ERP outcome for `expected` orders and the ledger is quiet.

    Returns False when `timeout_s` passed first; the report then shows the
    orders still pending.
    """
    deadline = time.monotonic() + timeout_s
    last_count = -1
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        check_alive()
        outcomes, mirrored, total = _progress(engine, run_id)
        if total != last_count:
            last_count = total
            quiet_since = time.monotonic()
        # A copy the mirror lost can never reach the candidate's ERP, so the
        # candidate is waited for only on the copies it accepted.
        targets = {Flow.LEGACY.value: expected, Flow.CANDIDATE.value: mirrored}
        done = all(outcomes.get(flow, 0) >= target for flow, target in targets.items())
        on_progress(f"ERP outcomes: legacy {outcomes.get('legacy', 0)}/{expected}, "
                    f"candidate {outcomes.get('candidate', 0)}/{mirrored}; {total} events")
        if done and time.monotonic() - quiet_since >= quiet_s:
            return True
        time.sleep(0.25)
    log.warning("Run %s did not settle within %.0f s", run_id, timeout_s)
    return False


def _progress(engine: Engine, run_id: str) -> tuple[dict[str, int], int, int]:
    """Return (orders with an ERP outcome per flow, orders mirrored with 2xx, events)."""
    with Session(engine) as session:
        rows = session.exec(
            select(Event.flow, func.count(distinct(Event.order_key)))
            .where(Event.run_id == run_id, Event.kind.in_(OUTCOME_KINDS))
            .group_by(Event.flow)
        ).all()
        mirrored = session.exec(
            select(func.count(distinct(Event.order_key))).where(
                Event.run_id == run_id, Event.kind == EventKind.MIRROR_SENT.value,
                Event.status >= 200, Event.status < 300,
            )
        ).one()
        total = session.exec(select(func.count(Event.id)).where(Event.run_id == run_id)).one()
    return {flow: count for flow, count in rows}, int(mirrored), int(total)
