"""Classify what each flow did with an order, and the order-level findings.

The gap of an order in a flow is its first confirmation time minus its first
ERP acknowledgement time, in ms. A quarantined confirmation counts as the
candidate's confirmation. The rules, checked top to bottom:

1. Confirmed at least once:
   - acknowledged, and the first confirmation is at or after the first
     acknowledgement (gap >= 0; a tie of the clock is closed): `closed`;
   - acknowledged, but confirmed before (gap < 0): `open`;
   - never acknowledged, whether rejected or not: `confirmed_without_erp`,
     an open gap without bound.
2. Never confirmed:
   - acknowledged: `acked_unconfirmed`;
   - rejected and never acknowledged: `rejected`;
   - with any other event (webhook, submission, throttling, 5xx, pending
     notice): `pending`, no ERP outcome yet.
3. No event of the flow for this order: `not_received`. A candidate whose
   only events for the order are mirror.failed or mirror.dropped is
   `not_mirrored`: the evidence is lost, which is not a candidate fault. A
   candidate with a mirror.sent or any ERP or email event after a failed
   mirror did get the order and is classified by 1 and 2.

Pending notices never change the class, so a pending notice before the
acknowledgement followed by the confirmation after it is `closed`.

Order-level findings:

- missing in candidate: the legacy flow saw the order and the candidate,
  not `not_mirrored`, either has no ERP outcome (`pending`,
  `not_received`) or never confirmed an order that the legacy flow
  confirmed and the ERP acknowledged. Orders still in flight when the run
  ends count too, so let both flows drain before finishing a run.
- duplicate in a flow: more than one ERP acknowledgement (a second ERP
  order) or more than one confirmation for the order.

NOTE: a retried upsert (`PUT .../salesOrder/eid:{externalId}`) that the ERP
acknowledges twice also counts as a duplicate, although it may have updated
one record. The `location` in the acks' detail could tell the two apart.
"""

from __future__ import annotations

from enum import StrEnum

from compare.join import FlowSummary, OrderJoin
from cutover.events import Flow

__all__ = [
    "HANDLED_CLASSES",
    "OPEN_GAP_CLASSES",
    "OrderClass",
    "classify",
    "gap_ms",
    "is_duplicate",
    "is_missing_in_candidate",
]


class OrderClass(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    CONFIRMED_WITHOUT_ERP = "confirmed_without_erp"
    REJECTED = "rejected"
    ACKED_UNCONFIRMED = "acked_unconfirmed"
    PENDING = "pending"
    NOT_RECEIVED = "not_received"
    NOT_MIRRORED = "not_mirrored"


# Classes in which the customer was confirmed before the ERP had the order.
OPEN_GAP_CLASSES = frozenset({OrderClass.OPEN, OrderClass.CONFIRMED_WITHOUT_ERP})
# Classes in which the flow saw the order.
HANDLED_CLASSES = frozenset(OrderClass) - {OrderClass.NOT_RECEIVED, OrderClass.NOT_MIRRORED}


def classify(summary: FlowSummary, flow: Flow) -> OrderClass:
    """Return the class of one flow's handling of one order."""
    if summary.confirmations:
        if summary.acked_ns is None:
            return OrderClass.CONFIRMED_WITHOUT_ERP
        if summary.confirmed_ns < summary.acked_ns:
            return OrderClass.OPEN
        return OrderClass.CLOSED

    if summary.acks:
        return OrderClass.ACKED_UNCONFIRMED
    if summary.rejections:
        return OrderClass.REJECTED

    lost_in_mirror = summary.mirror_losses and summary.events == summary.mirror_losses
    if flow == Flow.CANDIDATE and lost_in_mirror:
        return OrderClass.NOT_MIRRORED
    if summary.events:
        return OrderClass.PENDING
    return OrderClass.NOT_RECEIVED


def gap_ms(summary: FlowSummary) -> float | None:
    """Return confirmation time minus acknowledgement time in ms, if both exist."""
    if summary.confirmed_ns is None or summary.acked_ns is None:
        return None
    return (summary.confirmed_ns - summary.acked_ns) / 1e6


def is_duplicate(summary: FlowSummary) -> bool:
    return summary.acks > 1 or summary.confirmations > 1


def is_missing_in_candidate(order: OrderJoin, legacy: OrderClass, candidate: OrderClass) -> bool:
    """Tell whether the candidate failed an order that the mirror delivered to it."""
    if legacy not in HANDLED_CLASSES or candidate == OrderClass.NOT_MIRRORED:
        return False
    if candidate in (OrderClass.PENDING, OrderClass.NOT_RECEIVED):
        return True
    legacy_done = legacy in (OrderClass.CLOSED, OrderClass.OPEN)
    return legacy_done and order.candidate.confirmations == 0
