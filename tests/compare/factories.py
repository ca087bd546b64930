"""Insert hand-made runs into a real SQLite ledger for the comparator tests.

Times are given in ms from the start of the run and stored as the proxy's
monotonic clock (`mono_ns`) and as wall time from `RUN_START`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from cutover.events import EventKind, Flow
from cutover.ledger import Event, RunCounter

RUN_START = datetime(2024, 11, 29, 12, 0, tzinfo=UTC)

Times = float | Iterable[float] | None


def sales_order(key: str, lines: Iterable[tuple[str, Any, Any]] = (("7", 2, 19.9),), **fields: Any) -> str:
    """Return the JSON text of a NetSuite sales order with (item id, quantity, rate) lines."""
    body = {
        "externalId": key,
        "entity": {"id": "customer-hash-1"},
        "item": {
            "items": [
                {"item": {"id": item}, "quantity": quantity, "rate": rate}
                for item, quantity, rate in lines
            ]
        },
    }
    body.update(fields)
    return json.dumps(body)


def confirmation_email(key: str, items: Iterable[tuple[str, Any, Any]] = (("7", 2, "19.90"),),
                       total: str = "39.80", currency: str = "EUR") -> str:
    """Return a confirmation snapshot as the proxy stores it, with (sku, quantity, price) items."""
    body = {
        "subject": f"Your order {key} is confirmed",
        "categories": ["order_confirmation"],
        "custom_args": {"order_id": key},
        "dynamic_template_data": {
            "order_name": key,
            "items": [{"sku": sku, "title": "Mug", "quantity": quantity, "price": price}
                      for sku, quantity, price in items],
            "total": total,
            "currency": currency,
        },
    }
    return json.dumps(body, sort_keys=True)


class LedgerRun:
    """A run in a real ledger and helpers that insert its events."""

    def __init__(self, engine: Engine, run_id: str) -> None:
        self.engine = engine
        self.run_id = run_id
        self._pending: list[Event] = []

    def event(
        self,
        order_key: str | None,
        flow: Flow,
        kind: EventKind,
        at_ms: float,
        *,
        instance_id: str = "proxy-1",
        **columns: Any,
    ) -> None:
        self._pending.append(
            Event(
                run_id=self.run_id,
                order_key=order_key,
                flow=str(flow),
                kind=str(kind),
                wall_time=RUN_START + timedelta(milliseconds=at_ms),
                mono_ns=round(at_ms * 1_000_000),
                instance_id=instance_id,
                **columns,
            )
        )

    def order(
        self,
        key: str,
        flow: Flow,
        *,
        received: Times = None,
        submitted: Times = None,
        acked: Times = None,
        rejected: Times = None,
        throttled: Times = None,
        confirmed: Times = None,
        pending_notice: Times = None,
        snapshot: str | None = None,
        email: str | None = None,
    ) -> None:
        """Insert one flow's events for one order at the given times in ms.

        `snapshot` is the ERP request body and `email` the confirmation's;
        both default to the same content in either flow.
        """
        candidate = flow == Flow.CANDIDATE
        body_digest = hashlib.sha256(key.encode()).hexdigest()
        snapshot = snapshot if snapshot is not None else sales_order(key)
        email = email if email is not None else confirmation_email(key)

        received_kind = EventKind.MIRROR_SENT if candidate else EventKind.WEBHOOK_RECEIVED
        for at in _times(received):
            self.event(key, flow, received_kind, at, digest=body_digest, status=200)
        for at in _times(submitted):
            self.event(key, flow, EventKind.ERP_SUBMITTED, at, snapshot=snapshot,
                       detail=json.dumps({"method": "POST", "path": "/record/v1/salesOrder"}))
        for at in _times(throttled):
            self.event(key, flow, EventKind.ERP_THROTTLED, at, status=429)
        for at in _times(acked):
            self.event(key, flow, EventKind.ERP_ACKED, at, status=204)
        for at in _times(rejected):
            self.event(key, flow, EventKind.ERP_REJECTED, at, status=400,
                       detail=json.dumps({"error_code": "INVALID_FLD_VALUE"}))

        confirmation = (EventKind.CONFIRMATION_QUARANTINED if candidate
                        else EventKind.CONFIRMATION_SENT)
        for at in _times(confirmed):
            self.event(key, flow, confirmation, at, snapshot=email)
        notice = (EventKind.PENDING_NOTICE_QUARANTINED if candidate
                  else EventKind.PENDING_NOTICE_SENT)
        for at in _times(pending_notice):
            self.event(key, flow, notice, at)

    def good_order(self, key: str, start_ms: float = 0.0) -> None:
        """Insert an order that the legacy flow confirms early and the candidate after the ack."""
        self.order(key, Flow.LEGACY, received=start_ms, confirmed=start_ms + 5,
                   submitted=start_ms + 30, acked=start_ms + 80)
        self.order(key, Flow.CANDIDATE, received=start_ms + 1, submitted=start_ms + 10,
                   acked=start_ms + 40, confirmed=start_ms + 45)

    def good_orders(self, count: int, prefix: str = "order-") -> list[str]:
        keys = [f"{prefix}{index:04d}" for index in range(count)]
        for index, key in enumerate(keys):
            self.good_order(key, start_ms=index * 1000.0)
        return keys

    def counter(self, name: str, value: int, instance_id: str = "proxy-1") -> None:
        with Session(self.engine) as session:
            session.add(RunCounter(run_id=self.run_id, instance_id=instance_id, name=name,
                                   value=value))
            session.commit()

    def commit(self) -> None:
        with Session(self.engine) as session:
            session.add_all(self._pending)
            session.commit()
        self._pending = []


def _times(times: Times) -> list[float]:
    if times is None:
        return []
    if isinstance(times, int | float):
        return [float(times)]
    return list(times)
