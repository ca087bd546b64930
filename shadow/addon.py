"""The shadow proxy: a mitmproxy addon that mirrors webhooks and taps each flow.

Run it with the CLI (`cutover shadow`) or directly:

    mitmdump -s shadow/addon.py --set cutover_config=cutover.toml \\
        --mode reverse:http://127.0.0.1:8081@127.0.0.1:8080 ...

with one `--mode reverse:UPSTREAM@HOST:PORT` per route of the configuration
(`cutover shadow --print-command` prints the full line). Each listener's port
tells which route an http flow came in on.

The hooks stay cheap: they copy references and timestamps, hand them to the
sidecar process (`shadow.sidecar`) through a pipe, and return. The sidecar
extracts keys, redacts, writes the ledger and sends the mirror copies, so
that work does not share this interpreter with the primary path. A failure
there never changes what the storefront gets from the primary flow.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from cutover.ledger import ledger_url_for
from cutover.run_ids import new_run_id
from shadow.capture import CaptureWriter
from shadow.config import ConfigError, RouteSpec, ShadowConfig, load_config, parse_listen
from shadow.events import Observation, ObservationKind
from shadow.modes import IngressPlan, plan_for, read_mode
from shadow.presets import quarantine_response
from shadow.sidecar import SidecarLink, observation_message
from shadow.tee import BodyTee

log = logging.getLogger(__name__)

QUARANTINED = "cutover.quarantined"
TEE = "cutover.tee"
PLAN = "cutover.plan"
REFUSED = "cutover.refused"
# Seconds a stopping proxy waits for http flows under way to finish, so
# that what they observe still reaches the sidecar.
STOP_GRACE_S = 10.0

def _why_not_mirrored(body: bytes | None, tee: BodyTee | None, max_bytes: int) -> str:
    """Return why a webhook body can't be mirrored, or "" when it can."""
    if tee is not None and tee.overflowed:
        return f"body of {tee.size} bytes exceeds the mirror limit of {max_bytes} bytes"
    if body is None:
        return "body was streamed and not kept"
    if len(body) > max_bytes:
        return f"body of {len(body)} bytes exceeds the mirror limit of {max_bytes} bytes"
    return ""


def _elapsed_ms(flow: http.HTTPFlow) -> float | None:
    end = flow.response.timestamp_end if flow.response else None
    start = flow.request.timestamp_start
    if end is None or start is None:
        return None
    return (end - start) * 1000.0


class Shadow:
    def __init__(self) -> None:
        self.config: ShadowConfig | None = None
        self.run_id = ""
        self.link: SidecarLink | None = None
        self.plan: IngressPlan | None = None
        self.capture: CaptureWriter | None = None
        # Ids of the http flows on our routes between their request headers
        # and their response (or error).
        self._in_flight: set[str] = set()
        # Set once the proxy stops: new requests are cut off before they
        # reach a flow, so none passes after the recording closed.
        self._refusing = False

    def load(self, loader) -> None:
        loader.add_option(
            "cutover_config", str, "",
            "Path of the cutover shadow configuration (TOML or JSON) with the routes.",
        )
        loader.add_option(
            "cutover_ledger", str, "",
            "Ledger URL (sqlite:///path or postgresql://...). Overrides the configuration; "
            "the default is a SQLite file under runs/<run id>/.",
        )
        loader.add_option(
            "cutover_run_id", str, "",
            "Id of the run the events are recorded under. Overrides the configuration; "
            "a new id is made when both are empty.",
        )
        loader.add_option(
            "cutover_instance", str, "",
            "Id of this proxy instance, recorded with every event. Overrides the configuration.",
        )
        loader.add_option(
            "cutover_metrics", str, "",
            "Serve Prometheus metrics on this 'host:port' or port (host 127.0.0.1). "
            "Overrides the configuration's [metrics] listen; empty leaves it to the configuration.",
        )
        loader.add_option(
            "cutover_mode", str, "",
            "Starting mode: shadow (legacy answers, candidate mirrored), swapped (candidate "
            "answers, legacy mirrored) or monitor (candidate answers, no mirror). Empty takes "
            "the configuration's mode; SIGHUP re-reads the configuration's mode at run time.",
        )
        loader.add_option(
            "cutover_capture", str, "",
            "Append every ingress http flow to this mitmproxy dump file, for cutover replay. "
            "The file holds the webhooks unredacted; protect it like the storefront's data.",
        )
        loader.add_option(
            "cutover_status", bool, False,
            "Show a one-line live status on the terminal (rewritten every second on a "
            "terminal, logged every 30 seconds otherwise).",
        )

    def configure(self, updated: set[str]) -> None:
        if "cutover_metrics" in updated and ctx.options.cutover_metrics:
            try:
                parse_listen(ctx.options.cutover_metrics, "cutover_metrics")
            except ConfigError as exc:
                raise exceptions.OptionsError(str(exc)) from exc
        if not updated & {"cutover_config", "cutover_ledger", "cutover_run_id", "cutover_instance"}:
            return
        if not ctx.options.cutover_config:
            raise exceptions.OptionsError(
                "cutover_config is empty: set it to the shadow configuration file, "
                "for example --set cutover_config=cutover.toml"
            )
        if self.link is not None:
            raise exceptions.OptionsError("The cutover options can't change while the proxy runs.")
        try:
            config = load_config(Path(ctx.options.cutover_config))
        except ConfigError as exc:
            raise exceptions.OptionsError(str(exc)) from exc
        self.config = config
        self.run_id = ctx.options.cutover_run_id or config.run_id or new_run_id()
        if ctx.options.connection_strategy != "lazy":
            # mitmproxy's default, eager, connects upstream before it reads a
            # request, and closes the client's connection without any http
            # flow when that fails: an unreachable upstream would go
            # unrecorded. Lazy reads the request first, so the hooks see it
            # and the client gets a 502. It also keeps quarantined calls
            # from connecting to the real email service at all.
            ctx.options.connection_strategy = "lazy"
        try:
            mode = ctx.options.cutover_mode or read_mode(Path(ctx.options.cutover_config))
            self.plan = plan_for(mode, self._ingress())
        except ConfigError as exc:
            raise exceptions.OptionsError(str(exc)) from exc

    async def running(self) -> None:
        config = self._require_config()
        # First, so that a SIGHUP while the sidecar starts switches modes
        # instead of ending the proxy.
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload_mode)
        self._check_modes(config)
        url = ctx.options.cutover_ledger or config.ledger_url
        if not url:
            folder = Path("runs") / self.run_id
            folder.mkdir(parents=True, exist_ok=True)
            url = ledger_url_for(folder)
        instance_id = ctx.options.cutover_instance or config.instance_id

        if ctx.options.cutover_capture:
            self.capture = CaptureWriter(Path(ctx.options.cutover_capture))
            log.warning("cutover capturing ingress traffic, unredacted, into %s", self.capture.path)

        # Recording and mirroring run in a sidecar process, so their CPU work
        # does not share this interpreter (and its GIL) with the primary path.
        self.link = SidecarLink()
        arguments = ["--config", str(Path(ctx.options.cutover_config).resolve()),
                     "--run-id", self.run_id, "--instance", instance_id,
                     "--metrics", ctx.options.cutover_metrics or config.metrics_listen]
        if ctx.options.cutover_status:
            arguments.append("--status")
        # The URL may contain a password, so it goes through the environment:
        # a command line shows in every process listing.
        await self.link.start(arguments, ledger_url=url)
        log.warning("cutover shadow started: run %s, %d routes, mode %s",
                    self.run_id, len(config.routes), self.plan.mode)


    async def done(self) -> None:
        # mitmproxy keeps its listeners open while the done hooks run, and a
        # webhook forwarded after the sidecar's pipe closed would go
        # unrecorded. So: stop listening, cut off new requests on open
        # connections, and let the http flows under way finish.
        if self.link is not None:
            await self._stop_listening()
            self._refusing = True
            await self._wait_for_flows(STOP_GRACE_S)
        if self.capture is not None:
            self.capture.close()
            if self.capture.lost and self.link is not None:
                self.link.send(("count", "capture.lost", self.capture.lost))
        if self.link is not None:
            await self.link.close()

    async def _stop_listening(self) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is None:
            return
        try:
            await proxyserver.servers.update([])
        except Exception as exc:  # stopping must go on to flush the recording
            log.error("cutover: can't stop the listeners before flushing: %s", exc)

    async def _wait_for_flows(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._in_flight:
            log.warning("cutover stopping with %d http flows still under way; what they observe "
                        "after this is not recorded", len(self._in_flight))

    def reload_mode(self) -> None:
        """Apply the configuration file's mode; webhooks already under way keep theirs."""
        try:
            plan = plan_for(read_mode(Path(ctx.options.cutover_config)), self._ingress())
        except ConfigError as exc:
            log.error("Mode unchanged (%s): %s", self.plan.mode, exc)
            return
        if plan.mode != self.plan.mode:
            log.warning("cutover mode %s -> %s: %s answers the storefront, mirror to %s",
                        self.plan.mode, plan.mode, plan.route.flow.value, plan.mirror_url or "none")
        self.plan = plan

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        route = self._route(flow)
        if route is None or flow.is_replay or self.config is None:
            return
        if self._refusing:
            # The storefront gets a closed connection and delivers again
            # later, which Shopify does for any failed delivery.
            flow.metadata[REFUSED] = True
            flow.kill()
            return
        self._in_flight.add(flow.id)
        if route.role != "ingress":
            if route.host_header:
                flow.request.host_header = route.host_header
            return

        plan = self.plan
        flow.metadata[PLAN] = plan
        swapped = plan.primary_url != route.upstream
        if swapped:
            scheme, host, port = plan.primary_address
            flow.request.scheme, flow.request.host, flow.request.port = scheme, host, port
            if not ctx.options.keep_host_header:
                flow.request.host_header = f"{host}:{port}"
        # The legacy flow is `upstream` and the candidate `mirror_to`, whichever answers.
        configured = route.mirror_host_header if swapped else route.host_header
        if configured:
            flow.request.host_header = configured

        # mitmproxy has already chosen to stream a body above
        # stream_large_bodies when its length is known. A chunked body of
        # unknown length may switch to streaming halfway, after this hook,
        # so it is teed from the start whenever streaming is configured.
        unknown_length = "content-length" not in flow.request.headers
        if flow.request.stream or (ctx.options.stream_large_bodies and unknown_length):
            tee = BodyTee(self.config.mirror.max_body_bytes)
            flow.request.stream = tee
            flow.metadata[TEE] = tee

    def request(self, flow: http.HTTPFlow) -> None:
        route = self._route(flow)
        if route is None or flow.response is not None or flow.is_replay:
            return

        if route.role == "ingress":
            self._on_webhook(flow, self._plan_of(flow))
        elif route.role == "erp":
            self._observe(ObservationKind.ERP_REQUEST, flow, route, body=flow.request.raw_content)
        elif route.role == "email":
            if route.quarantine:
                self._quarantine(flow, route)
            self._observe(ObservationKind.EMAIL, flow, route, body=flow.request.raw_content,
                          quarantined=route.quarantine)

    def response(self, flow: http.HTTPFlow) -> None:
        self._in_flight.discard(flow.id)
        route = self._route(flow)
        if route is None or flow.metadata.get(QUARANTINED) or flow.response is None:
            return

        status = flow.response.status_code
        if route.role == "ingress":
            plan = self._plan_of(flow)
            # No headers: the answer's event needs none, and each one costs a pickle.
            self._observe(ObservationKind.WEBHOOK_RESPONSE, flow, plan.route, plan.mode, headers=(),
                          status=status,
                          latency_ms=_elapsed_ms(flow))
            self._capture(flow)
        elif route.role == "email":
            self._observe(ObservationKind.EMAIL_RESPONSE, flow, route, status=status,
                          latency_ms=_elapsed_ms(flow), body=flow.response.raw_content,
                          response_headers=flow.response.headers.fields)
        elif route.role == "erp":
            needs_body = status >= 400 or getattr(route.preset, "success_body", False)
            body = flow.response.raw_content if needs_body else None
            self._observe(ObservationKind.ERP_RESPONSE, flow, route, status=status,
                          latency_ms=_elapsed_ms(flow), body=body,
                          response_headers=flow.response.headers.fields)

    def error(self, flow: http.HTTPFlow) -> None:
        self._in_flight.discard(flow.id)
        route = self._route(flow)
        if route is None or flow.error is None or flow.metadata.get(REFUSED):
            return
        if route.role == "erp":
            self._observe(ObservationKind.ERP_ERROR, flow, route, reason=flow.error.msg)
        elif route.role == "email" and not flow.metadata.get(QUARANTINED):
            # The email service never responded, so the message never left:
            # recorded as email.failed, as a refused call is.
            self._observe(ObservationKind.EMAIL_RESPONSE, flow, route, reason=flow.error.msg)
        elif route.role == "ingress":
            plan = self._plan_of(flow)
            log.warning("The %s flow gave no answer on http flow %s: %s",
                        plan.route.flow.value, flow.id, flow.error.msg)
            self._observe(ObservationKind.WEBHOOK_RESPONSE, flow, plan.route, plan.mode,
                          reason=flow.error.msg)
            self._capture(flow)

    def _capture(self, flow: http.HTTPFlow) -> None:
        if self.capture is None:
            return
        tee: BodyTee | None = flow.metadata.get(TEE)
        self.capture.add(flow, body=tee.body if tee is not None else None)

    def _on_webhook(self, flow: http.HTTPFlow, plan: IngressPlan) -> None:
        assert self.link is not None and self.config is not None
        route = plan.route
        body = flow.request.raw_content
        tee: BodyTee | None = flow.metadata.get(TEE)
        if body is None and tee is not None:
            body = tee.body
        webhook = self._observation(ObservationKind.WEBHOOK, flow, route, body=body)

        copy = None
        reason = ""
        if plan.mirror_url is not None:
            ingress = self._ingress()
            legacy_gets_copy = plan.mirror_url == ingress.upstream
            mirror_host = ingress.host_header if legacy_gets_copy else ingress.mirror_host_header
            copy = (flow.id, plan.mirror_url, mirror_host, flow.request.method, flow.request.path,
                    flow.request.headers.fields, body if body is not None else b"")
            reason = _why_not_mirrored(body, tee, self.config.mirror.max_body_bytes)
        self.link.send(("webhook", observation_message(webhook, route.name, plan.mode), copy, reason))
        if route.legacy_confirmation_from:
            self._observe(ObservationKind.WEBHOOK_CONFIRMATION, flow, route, plan.mode, body=body)

    def _quarantine(self, flow: http.HTTPFlow, route: RouteSpec) -> None:
        """Answer a candidate's email call as its email service would, without sending it."""
        flow.metadata[QUARANTINED] = True
        status, headers, body = quarantine_response(route.preset)
        flow.response = http.Response.make(status, body, headers)

    def _observation(
        self, kind: str, flow: http.HTTPFlow, route: RouteSpec, **fields
    ) -> Observation:
        fields.setdefault("headers", flow.request.headers.fields)
        return Observation(
            kind=kind, route=route, http_flow_id=flow.id, mono_ns=time.monotonic_ns(),
            wall_s=time.time(), method=flow.request.method, path=flow.request.path, **fields,
        )

    def _observe(
        self, kind: str, flow: http.HTTPFlow, route: RouteSpec, mode: str = "shadow", **fields
    ) -> None:
        """Send an observation; `mode` is the ingress mode the http flow started under."""
        if self.link is None:
            return
        observation = self._observation(kind, flow, route, **fields)
        self.link.send(("obs", observation_message(observation, route.name, mode)))

    def _route(self, flow: http.HTTPFlow) -> RouteSpec | None:
        if self.config is None:
            return None
        return self.config.route_for_port(flow.client_conn.proxy_mode.custom_listen_port)

    def _ingress(self) -> RouteSpec:
        config = self._require_config()
        return next(route for route in config.routes if route.role == "ingress")

    def _plan_of(self, flow: http.HTTPFlow) -> IngressPlan:
        """Return the plan an ingress http flow started under."""
        return flow.metadata.get(PLAN) or self.plan

    def _require_config(self) -> ShadowConfig:
        if self.config is None:
            raise exceptions.OptionsError("cutover_config is not set.")
        return self.config

    def _check_modes(self, config: ShadowConfig) -> None:
        """Warn about routes that have no listener and listeners with no route."""
        modes = set(ctx.options.mode)
        for route in config.routes:
            if route.mode_spec not in modes:
                log.warning("Route %r has no listener: add --mode %s", route.name, route.mode_spec)


addons = [Shadow()]

if os.environ.get("CUTOVER_SHADOW_DEBUG"):  # pragma: no cover - a developer's switch
    logging.getLogger("shadow").setLevel(logging.DEBUG)
