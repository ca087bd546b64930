"""Assess one joined order: classes, gaps, findings and what to tell a reader."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from compare.classes import (
    HANDLED_CLASSES,
    OrderClass,
    classify,
    gap_ms,
    is_duplicate,
    is_missing_in_candidate,
)
from compare.join import FlowSummary, OrderJoin
from compare.parity import Normalisation, PayloadComparison, compare_payloads
from compare.side_effects import compare_confirmations, extra_side_effects
from cutover.events import Flow

__all__ = ["OrderRow", "Severity", "assess_order"]


class Severity(IntEnum):
    """Sort rank of an order row in reports; lower comes first."""

    CANDIDATE_CRITICAL = 0
    MISSING_IN_CANDIDATE = 1
    PAYLOAD_DIFFERS = 2
    CANDIDATE_OTHER = 3
    LEGACY_ONLY = 4


# Not frozen: one is built per order, and a frozen dataclass's __init__ costs
# several times more.
@dataclass(slots=True)
class OrderRow:
    """One order's classes, gaps and findings, as listed in reports."""

    order_key: str
    legacy: OrderClass
    candidate: OrderClass
    legacy_gap_ms: float | None
    candidate_gap_ms: float | None
    missing_in_candidate: bool
    legacy_duplicate: bool
    candidate_duplicate: bool
    # None unless both flows have an acknowledged submission with a snapshot.
    payload: PayloadComparison | None
    # Acknowledged in both flows, but a flow's submission snapshot is missing.
    payload_unpaired: bool
    issues: tuple[str, ...]
    # The most severe finding, or None when nothing about the order needs a look.
    severity: Severity | None
    # None unless both flows confirmed and both confirmations have a snapshot.
    confirmation: PayloadComparison | None = None
    # Side effects of the candidate that the legacy flow did not make.
    extra_side_effects: tuple[str, ...] = ()
    candidate_duplicate_erp: bool = False
    candidate_duplicate_confirmation: bool = False
    candidate_confirmed_after_rejection: bool = False

    @property
    def compared(self) -> bool:
        """True when the legacy flow saw the order and the mirror delivered it."""
        return self.legacy in HANDLED_CLASSES and self.candidate != OrderClass.NOT_MIRRORED

    @property
    def extra_in_candidate(self) -> bool:
        return self.legacy == OrderClass.NOT_RECEIVED and self.candidate in HANDLED_CLASSES


def assess_order(order: OrderJoin, normalisation: Normalisation) -> OrderRow:
    """Classify both flows of one order and compare their ERP payloads."""
    legacy = classify(order.legacy, Flow.LEGACY)
    candidate = classify(order.candidate, Flow.CANDIDATE)
    missing = is_missing_in_candidate(order, legacy, candidate)

    payload = None
    unpaired = False
    if order.legacy.acks and order.candidate.acks:
        legacy_snapshot = order.legacy.acked_snapshot
        candidate_snapshot = order.candidate.acked_snapshot
        if legacy_snapshot is None or candidate_snapshot is None:
            unpaired = True
        else:
            payload = compare_payloads(legacy_snapshot, candidate_snapshot, normalisation)

    confirmation = None
    if order.legacy.confirmation_snapshot and order.candidate.confirmation_snapshot:
        confirmation = compare_confirmations(order.legacy.confirmation_snapshot,
                                             order.candidate.confirmation_snapshot)
    extras = extra_side_effects(order, legacy, candidate)
    after_rejection = (candidate == OrderClass.CONFIRMED_WITHOUT_ERP
                       and order.candidate.rejections > 0)

    issues: list[tuple[Severity, str]] = []
    issues += _flow_issues("candidate", order.candidate, candidate, Severity.CANDIDATE_CRITICAL)
    issues += _flow_issues("legacy", order.legacy, legacy, Severity.LEGACY_ONLY)
    if missing:
        issues.append((Severity.MISSING_IN_CANDIDATE, f"missing in candidate ({candidate})"))
    if payload is not None and not payload.equal:
        issues.append((Severity.PAYLOAD_DIFFERS, "ERP payload differs"))
    if confirmation is not None and not confirmation.equal:
        issues.append((Severity.PAYLOAD_DIFFERS, "confirmation content differs"))
    issues += [(Severity.CANDIDATE_OTHER, f"extra in candidate: {text}") for text in extras]
    if unpaired:
        issues.append((Severity.CANDIDATE_OTHER,
                       "acknowledged in both flows, but a submission snapshot is missing"))
    if candidate == OrderClass.NOT_MIRRORED:
        issues.append((Severity.CANDIDATE_OTHER, "not mirrored to the candidate (evidence loss)"))
    if legacy == OrderClass.NOT_RECEIVED and candidate in HANDLED_CLASSES:
        issues.append((Severity.CANDIDATE_OTHER, "seen by the candidate only"))

    return OrderRow(
        order_key=order.order_key,
        legacy=legacy,
        candidate=candidate,
        legacy_gap_ms=gap_ms(order.legacy),
        candidate_gap_ms=gap_ms(order.candidate),
        missing_in_candidate=missing,
        legacy_duplicate=is_duplicate(order.legacy),
        candidate_duplicate=is_duplicate(order.candidate),
        payload=payload,
        payload_unpaired=unpaired,
        issues=tuple(text for _, text in sorted(issues)),
        severity=min((rank for rank, _ in issues), default=None),
        confirmation=confirmation,
        extra_side_effects=extras,
        candidate_duplicate_erp=order.candidate.acks > 1,
        candidate_duplicate_confirmation=order.candidate.confirmations > 1,
        candidate_confirmed_after_rejection=after_rejection,
    )


def _flow_issues(
    flow: str, summary: FlowSummary, order_class: OrderClass, severity: Severity
) -> list[tuple[Severity, str]]:
    """Describe an open gap and duplicates of one flow."""
    issues = []
    if order_class == OrderClass.OPEN:
        lead_ms = (summary.acked_ns - summary.confirmed_ns) / 1e6
        issues.append((severity, f"{flow} confirmed {lead_ms:g} ms before the ERP acknowledgement"))
    elif order_class == OrderClass.CONFIRMED_WITHOUT_ERP:
        after = " after a rejection" if summary.rejections else ""
        issues.append((severity, f"{flow} confirmed without ERP acknowledgement{after}"))
    if summary.acks > 1:
        issues.append((severity, f"{flow} got {summary.acks} ERP acknowledgements"))
    if summary.confirmations > 1:
        issues.append((severity, f"{flow} sent {summary.confirmations} confirmations"))
    return issues

