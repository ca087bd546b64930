"""The shadow proxy's recording and mirroring, run in the sidecar process.

The mitmproxy hooks only describe what they saw; `Backend` does the work
that costs CPU: it builds ledger events (order keys, redaction, digests),
writes them, sends the mirror copies to the other flow, and keeps the live
figures. It runs in its own process (`shadow.sidecar`), so that work does
not share the proxy's interpreter, and so its GIL, with the primary path.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

from cutover.ledger import safe_url
from cutover.privacy import Redactor, redaction_key_from_env
from shadow.config import RouteSpec, ShadowConfig, parse_listen
from shadow.events import EventBuilder, Observation
from shadow.metrics import LiveFigures
from shadow.mirror import Mirror, MirrorCopy, MirrorResult
from shadow.recorder import Recorder
from shadow.sampling import in_sample

__all__ = ["Backend"]

log = logging.getLogger(__name__)


class Backend:
    def __init__(
        self,
        config: ShadowConfig,
        *,
        run_id: str,
        ledger_url: str,
        instance_id: str,
        metrics_listen: str = "",
        status: bool = False,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self._ledger_url = ledger_url
        self._instance_id = instance_id
        self._metrics_listen = metrics_listen
        self._status = status
        self.builder = EventBuilder(Redactor(redaction_key_from_env()))
        self.figures = LiveFigures(
            queue_depth=lambda: self.mirror.queued if self.mirror else 0,
            ledger_lag=lambda: self.recorder.backlog() if self.recorder else 0,
        )
        self.recorder: Recorder | None = None
        self.mirror: Mirror | None = None
        self._status_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sample = self.config.mirror.sample

        def build_and_count(observation: Observation) -> dict[str, Any] | None:
            row = self.builder(observation)
            key = row.get("order_key") if row else None
            if key is not None and not in_sample(key, sample):
                return None  # an order outside the sample is left out in every flow
            self.figures.observe(row)
            return row

        # The ledger may be unreachable now: the recorder keeps trying while
        # the proxy forwards, because the storefront must not wait for it.
        self.recorder = Recorder(
            self._ledger_url, run_id=self.run_id, instance_id=self._instance_id,
            run_settings={"routes": [route.name for route in self.config.routes]},
            transform=build_and_count,
        )
        self.recorder.start()
        self.mirror = Mirror(self.config.mirror, self._on_mirror_result)
        self.mirror.start()
        log.warning("cutover shadow recording run %s into %s (%d routes, instance %s)",
                    self.run_id, safe_url(self._ledger_url), len(self.config.routes),
                    self._instance_id)
        self._start_metrics()
        if self._status:
            self._status_task = asyncio.create_task(self._show_status())

    async def close(self) -> None:
        if self._status_task is not None:
            self._status_task.cancel()
        self.figures.close()
        if self.mirror is not None:
            await self.mirror.close()
        if self.recorder is not None:
            self.recorder.close()
            log.warning("cutover shadow stopped: run %s, %d events written, counters %s",
                        self.run_id, self.recorder.written, self.recorder.counters())

    def record(self, observation: Observation) -> None:
        assert self.recorder is not None
        self.recorder.put(observation)

    def count(self, name: str, increment: int = 1) -> None:
        assert self.recorder is not None
        self.recorder.count(name, increment)

    def mirror_webhook(self, webhook: Observation, copy: MirrorCopy, skip_reason: str) -> None:
        """Send the copy of a recorded webhook, unless it is skipped or out of the sample."""
        assert self.mirror is not None
        if not self._sampled(webhook):
            self.count("mirror.not_sampled")
            return
        if skip_reason:
            log.warning("Not mirroring http flow %s: %s", copy.http_flow_id, skip_reason)
            self._on_mirror_result(MirrorResult(
                kind="mirror.skipped", copy=copy, mono_ns=time.monotonic_ns(),
                wall_s=time.time(), reason=skip_reason,
            ))
            return
        self.mirror.submit(copy)

    def _sampled(self, webhook: Observation) -> bool:
        fraction = self.config.mirror.sample
        if fraction >= 1.0:
            return True
        key = self.builder.order_key(webhook)
        return key is None or in_sample(key, fraction)  # a webhook without a key is mirrored

    def _on_mirror_result(self, result: MirrorResult) -> None:
        route: RouteSpec = result.copy.context
        self.count(result.kind)
        self.record(Observation(
            kind=result.kind, route=route, http_flow_id=result.copy.http_flow_id,
            mono_ns=result.mono_ns, wall_s=result.wall_s, method=result.copy.method,
            path=result.copy.path, body=result.copy.body, headers=result.copy.headers,
            status=result.status, latency_ms=result.latency_ms, reason=result.reason,
        ))

    def _start_metrics(self) -> None:
        if not self._metrics_listen:
            return
        host, port = parse_listen(self._metrics_listen, "metrics")
        try:
            self.figures.serve(host, port)
        except OSError as exc:
            # The proxy keeps forwarding without metrics; traffic matters more.
            log.error("Can't serve metrics on %s:%d: %s", host, port, exc.strerror or exc)

    async def _show_status(self) -> None:
        on_terminal = sys.stderr.isatty()
        interval_s = 1.0 if on_terminal else 30.0
        while True:
            await asyncio.sleep(interval_s)
            if self.recorder is None or self.mirror is None:
                continue
            line = self.figures.status_line(self.recorder.backlog(), self.mirror.queued)
            if on_terminal:
                sys.stderr.write("\r\x1b[2K" + line)
                sys.stderr.flush()
            else:
                log.warning("cutover status: %s", line)
