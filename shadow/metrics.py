"""Live figures of a running proxy: Prometheus metrics and a one-line status.

`LiveFigures` watches the event rows on their way into the ledger (on the
ledger writer's thread), so the figures follow the same order keys and the
same rules as the ledger: an order's gap is open in a flow when that flow
sends its confirmation before the ERP acknowledged the order.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from cutover.events import CONFIRMATION_KINDS, PENDING_NOTICE_KINDS, EventKind, Flow

__all__ = ["LiveFigures"]

log = logging.getLogger(__name__)

# Orders whose acknowledgement is remembered per flow to judge a later
# confirmation; the oldest are forgotten first. At 100 orders per second this
# covers more than an hour between acknowledgement and confirmation.
ACKED_ORDERS_REMEMBERED = 500_000

MIRROR_KINDS = {
    EventKind.MIRROR_SENT: "sent",
    EventKind.MIRROR_FAILED: "failed",
    EventKind.MIRROR_DROPPED: "dropped",
    EventKind.MIRROR_SKIPPED: "skipped",
}


class LiveFigures:
    """Counters fed from ledger rows; thread-safe, cheap per row."""

    def __init__(self, queue_depth: Callable[[], int], ledger_lag: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._acked: dict[str, OrderedDict[str, None]] = {flow.value: OrderedDict() for flow in Flow}
        self._totals: dict[str, int] = {}

        self.webhooks = Counter("cutover_webhooks_seen", "Webhooks seen at the ingress.",
                                registry=self.registry)
        self.mirror = Counter("cutover_mirror", "Mirror copies by result.", ["result"],
                              registry=self.registry)
        self.open_gaps = Counter(
            "cutover_open_gaps", "Orders confirmed before the ERP acknowledged them.", ["flow"],
            registry=self.registry)
        self.confirmations = Counter("cutover_confirmations", "Confirmations sent or quarantined.",
                                     ["flow"], registry=self.registry)
        self.throttles = Counter("cutover_erp_throttles", "ERP answers that throttled a submission.",
                                 ["flow"], registry=self.registry)
        self.pending_notices = Counter("cutover_pending_notices", "Pending-status emails.", ["flow"],
                                       registry=self.registry)
        self.uncorrelated = Counter("cutover_uncorrelated", "Events no rule could key.",
                                    registry=self.registry)
        queue_gauge = Gauge("cutover_mirror_queue_depth", "Copies waiting to be mirrored.",
                            registry=self.registry)
        queue_gauge.set_function(queue_depth)
        lag_gauge = Gauge("cutover_ledger_lag_rows", "Events waiting to be written to the ledger.",
                          registry=self.registry)
        lag_gauge.set_function(ledger_lag)
        self._server: Any = None

    def observe(self, row: dict[str, Any] | None) -> None:
        """Count one ledger row; call it on every row the writer stores."""
        if row is None:
            return
        kind, flow, key = row["kind"], row["flow"], row["order_key"]

        if kind == EventKind.WEBHOOK_RECEIVED:
            self.webhooks.inc()
        elif kind in MIRROR_KINDS:
            self.mirror.labels(MIRROR_KINDS[EventKind(kind)]).inc()
        elif kind == EventKind.ERP_ACKED:
            self._remember_ack(flow, key)
        elif kind == EventKind.ERP_THROTTLED:
            self.throttles.labels(flow).inc()
        elif kind in CONFIRMATION_KINDS:
            self.confirmations.labels(flow).inc()
            if not self._was_acked(flow, key):
                self.open_gaps.labels(flow).inc()
                self._add("open_gaps." + flow)
        elif kind in PENDING_NOTICE_KINDS:
            self.pending_notices.labels(flow).inc()
        elif kind == EventKind.UNCORRELATED:
            self.uncorrelated.inc()
        self._add(kind)

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._totals)

    def status_line(self, lag_rows: int, queued: int) -> str:
        totals = self.totals()
        return (
            f"webhooks {totals.get('webhook.received', 0):,} | mirrored "
            f"{totals.get('mirror.sent', 0):,} failed {totals.get('mirror.failed', 0):,} "
            f"dropped {totals.get('mirror.dropped', 0):,} skipped {totals.get('mirror.skipped', 0):,}"
            f" | open gaps legacy {totals.get('open_gaps.legacy', 0):,} "
            f"candidate {totals.get('open_gaps.candidate', 0):,} | queue {queued:,} "
            f"| ledger lag {lag_rows:,} rows"
        )

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics on host:port from a background thread."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        log.warning("cutover metrics at http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _remember_ack(self, flow: str, key: str | None) -> None:
        if key is None:
            return
        with self._lock:
            acked = self._acked[flow]
            acked[key] = None
            if len(acked) > ACKED_ORDERS_REMEMBERED:
                acked.popitem(last=False)

    def _was_acked(self, flow: str, key: str | None) -> bool:
        with self._lock:
            return key is not None and key in self._acked[flow]

    def _add(self, name: str) -> None:
        with self._lock:
            self._totals[name] = self._totals.get(name, 0) + 1
