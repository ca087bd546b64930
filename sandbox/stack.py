"""Start and stop the whole sandbox in one event loop.

`start_stack` serves six aiohttp apps on `settings.host`, each on its own
port: the storefront, the legacy flow, the gated flow, the legacy flow's
ERP account, the candidate's ERP account and the email service. A port of
0 binds a free port; `Stack.settings` carries the ports actually bound and
the upstream URLs the flows use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field

from aiohttp import web

from sandbox.email import EmailSimulator
from sandbox.erp import ErpSimulator
from sandbox.gated import GatedFlow
from sandbox.legacy import LegacyFlow
from sandbox.settings import WEBHOOK_PATH, SandboxSettings
from sandbox.storefront import Storefront

__all__ = ["APP_NAMES", "Stack", "StackError", "check_settings", "serve_app", "start_stack"]

log = logging.getLogger(__name__)

# The apps in the order of their port fields in SandboxSettings.
APP_NAMES = ("storefront", "legacy", "gated", "erp", "erp_candidate", "email")
# Seconds a stopping app waits for requests still being handled. The
# simulators' state is thrown away on stop, so there is nothing to drain.
SHUTDOWN_TIMEOUT_S = 0.5


class StackError(Exception):
    """The sandbox could not be started."""


@dataclass
class Stack:
    """The running sandbox: its apps, its settings and how to stop it."""

    settings: SandboxSettings
    storefront: Storefront
    legacy: LegacyFlow
    gated: GatedFlow
    erp: ErpSimulator
    erp_candidate: ErpSimulator
    email: EmailSimulator
    # Runners of the apps that call others (storefront, flows) and of the
    # simulators they call; close() stops the callers first.
    _caller_runners: list[web.AppRunner] = field(default_factory=list, repr=False)
    _simulator_runners: list[web.AppRunner] = field(default_factory=list, repr=False)

    @property
    def ports(self) -> dict[str, int]:
        return {name: getattr(self.settings, f"{name}_port") for name in APP_NAMES}

    def url(self, name: str) -> str:
        """Return the base URL of app `name` (one of APP_NAMES)."""
        if name not in APP_NAMES:
            raise ValueError(f"Unknown sandbox app {name!r}; expected one of {', '.join(APP_NAMES)}")
        return self.settings.base_url(self.ports[name])

    def webhook_url(self, flow: str) -> str:
        """Return the order webhook URL of flow "legacy" or "gated"."""
        if flow not in ("legacy", "gated"):
            raise ValueError(f"flow must be 'legacy' or 'gated', but got {flow!r}")
        return self.url(flow) + WEBHOOK_PATH

    async def close(self) -> None:
        """Stop every app, the flows' workers and poller before the simulators they call."""
        callers, self._caller_runners = self._caller_runners, []
        simulators, self._simulator_runners = self._simulator_runners, []
        await asyncio.gather(*(runner.cleanup() for runner in callers))
        await asyncio.gather(*(runner.cleanup() for runner in simulators))
        log.info("Sandbox stopped")


def check_settings(settings: SandboxSettings) -> None:
    """Raise ValueError naming every setting that is out of range."""
    problems = []
    for name in APP_NAMES:
        port = getattr(settings, f"{name}_port")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            problems.append(f"{name}_port must be between 0 and 65535, but got {port!r}")
    minimums = {
        "gated_workers": 1,
        "gated_max_attempts": 1,
        "erp_concurrency_limit": 1,
        "gated_confirm_early_every": 0,
        "gated_pending_sla_s": 0,
        "gated_backoff_s": 0,
        "erp_base_latency_ms": 0,
        "erp_latency_per_inflight_ms": 0,
    }
    for name, minimum in minimums.items():
        value = getattr(settings, name)
        if not isinstance(value, int | float) or value < minimum:
            problems.append(f"{name} must be {minimum} or more, but got {value!r}")
    interval = settings.legacy_poll_interval_s
    if not isinstance(interval, int | float) or interval <= 0:
        problems.append(f"legacy_poll_interval_s must be above 0, but got {interval!r}")
    for name in ("erp_error_rate", "erp_reject_rate"):
        value = getattr(settings, name)
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            problems.append(f"{name} must be between 0 and 1, but got {value!r}")
    if problems:
        raise ValueError("Invalid sandbox settings: " + "; ".join(problems))


async def serve_app(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port and return its runner and the port bound."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise StackError(
            f"Can't listen on {host}:{port}: {exc.strerror or exc}. "
            "Pick free ports (or 0 for any free port) in the sandbox settings."
        ) from exc
    return runner, runner.addresses[0][1]


async def start_stack(settings: SandboxSettings) -> Stack:
    """Start all six apps; raise StackError when one can't listen."""
    check_settings(settings)
    bound = dataclasses.replace(settings)
    simulator_runners: list[web.AppRunner] = []
    caller_runners: list[web.AppRunner] = []

    async def serve(app: web.Application, name: str, runners: list[web.AppRunner]) -> None:
        runner, port = await serve_app(app, bound.host, getattr(bound, f"{name}_port"))
        runners.append(runner)
        setattr(bound, f"{name}_port", port)

    try:
        # The simulators start first, so that the flows' default upstream
        # URLs can name the ports they actually bound.
        erp = ErpSimulator(bound, name="erp")
        await serve(erp.make_app(), "erp", simulator_runners)
        erp_candidate = ErpSimulator(bound, name="erp_candidate")
        await serve(erp_candidate.make_app(), "erp_candidate", simulator_runners)
        email = EmailSimulator()
        await serve(email.make_app(), "email", simulator_runners)

        legacy = LegacyFlow(bound)
        await serve(legacy.make_app(), "legacy", caller_runners)
        gated = GatedFlow(bound)
        await serve(gated.make_app(), "gated", caller_runners)
        storefront = Storefront(bound, default_target_url=bound.base_url(bound.legacy_port) + WEBHOOK_PATH)
        await serve(storefront.make_app(), "storefront", caller_runners)
    except BaseException:
        for runner in [*reversed(caller_runners), *reversed(simulator_runners)]:
            await runner.cleanup()
        raise

    stack = Stack(
        settings=bound.resolved(),
        storefront=storefront,
        legacy=legacy,
        gated=gated,
        erp=erp,
        erp_candidate=erp_candidate,
        email=email,
        _caller_runners=caller_runners,
        _simulator_runners=simulator_runners,
    )
    log.info("Sandbox started on %s: %s", bound.host, stack.ports)
    return stack
