"""Analyse a run: stream its orders, tally the figures, reach the verdict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from compare.assess import OrderRow, assess_order
from compare.classes import HANDLED_CLASSES, OPEN_GAP_CLASSES, OrderClass, gap_ms
from compare.join import EvidenceTally, FlowSummary, OrderJoin, join_orders
from compare.parity import Normalisation
from compare.runs import ledger_url, load_run
from compare.timing import GapRecorder, GapStats, LatencyRecorder, LatencyStats
from compare.verdict import (
    MAX_EXAMPLES,
    Criteria,
    CriterionResult,
    Findings,
    Verdict,
    evaluate,
)
from cutover.events import Flow
from cutover.ledger import iter_events, load_counters

__all__ = [
    "Analysis",
    "FlowFigures",
    "ParityExample",
    "analyze",
]

# Order rows kept for display, the most severe first. The count of all
# notable orders is kept regardless.
MAX_ORDER_ROWS = 1000


@dataclass(frozen=True)
class FlowFigures:
    """Per-flow counts by class, open gaps, duplicates and timings."""

    flow: Flow
    classes: dict[str, int]
    # Orders the flow saw: every class but not_received and not_mirrored.
    handled: int
    # Orders confirmed before the ERP acknowledgement or without one.
    open_gaps: int
    duplicate_acks: int
    duplicate_confirmations: int
    submissions: int
    rejections: int
    throttles: int
    failures: int
    pending_notices: int
    webhook_to_ack: LatencyStats
    webhook_to_confirmation: LatencyStats
    gap: GapStats

    @property
    def open_gap_share(self) -> float | None:
        """Open gaps as a share of the orders the flow handled."""
        return self.open_gaps / self.handled if self.handled else None


@dataclass(frozen=True)
class ParityExample:
    """One order whose ERP payloads differ, with a short description."""

    order_key: str
    difference: str


@dataclass(frozen=True)
class Analysis:
    """Everything the readiness report shows about one run."""

    run_id: str
    run_kind: str
    started_at: datetime
    finished_at: datetime | None
    ledger_url: str
    verdict: Verdict
    criteria: Criteria
    normalisation: Normalisation
    criteria_results: list[CriterionResult]
    # Orders with at least one keyed event, and those both flows could be
    # compared on (seen by the legacy flow and mirrored to the candidate).
    orders: int
    compared_orders: int
    legacy: FlowFigures
    candidate: FlowFigures
    missing_in_candidate: int
    extra_in_candidate: int
    parity: float | None
    parity_pairs: int
    parity_differences: int
    parity_unpaired: int
    parity_examples: list[ParityExample]
    # The proxies' counters (such as mirror.dropped, ledger.lost), summed
    # over instances, and the evidence loss found in the events.
    counters: dict[str, int]
    evidence: dict[str, int]
    uncorrelated_by_kind: dict[str, int]
    # Orders with a finding, the most severe first, at most MAX_ORDER_ROWS.
    notable_orders: list[OrderRow]
    notable_total: int

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    @property
    def flows(self) -> tuple[FlowFigures, FlowFigures]:
        return self.legacy, self.candidate

    def order_rows(self, limit: int = 20) -> list[OrderRow]:
        """Return the first `limit` orders with a finding, the most severe first."""
        return self.notable_orders[:limit]


class _FlowTally:
    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.classes: Counter[OrderClass] = Counter()
        self.totals: Counter[str] = Counter()
        self.to_ack = LatencyRecorder()
        self.to_confirmation = LatencyRecorder()
        self.gaps = GapRecorder()

    def add(self, summary: FlowSummary, order_class: OrderClass) -> None:
        self.classes[order_class] += 1
        self.totals.update(
            submissions=summary.submissions,
            rejections=summary.rejections,
            throttles=summary.throttles,
            failures=summary.failures,
            pending_notices=summary.pending_notices,
            duplicate_acks=int(summary.acks > 1),
            duplicate_confirmations=int(summary.confirmations > 1),
        )
        self.to_ack.record(summary.received_ns, summary.acked_ns)
        self.to_confirmation.record(summary.received_ns, summary.confirmed_ns)

        gap = gap_ms(summary)
        if gap is not None:
            self.gaps.record(gap)
        elif order_class == OrderClass.CONFIRMED_WITHOUT_ERP:
            self.gaps.record_unbounded()

    def figures(self) -> FlowFigures:
        applicable = [c for c in OrderClass
                      if self.flow == Flow.CANDIDATE or c != OrderClass.NOT_MIRRORED]
        return FlowFigures(
            flow=self.flow,
            classes={str(c): self.classes[c] for c in applicable},
            handled=sum(self.classes[c] for c in HANDLED_CLASSES),
            open_gaps=sum(self.classes[c] for c in OPEN_GAP_CLASSES),
            duplicate_acks=self.totals["duplicate_acks"],
            duplicate_confirmations=self.totals["duplicate_confirmations"],
            submissions=self.totals["submissions"],
            rejections=self.totals["rejections"],
            throttles=self.totals["throttles"],
            failures=self.totals["failures"],
            pending_notices=self.totals["pending_notices"],
            webhook_to_ack=self.to_ack.stats(),
            webhook_to_confirmation=self.to_confirmation.stats(),
            gap=self.gaps.stats(),
        )


@dataclass
class _RunTally:
    legacy: _FlowTally = field(default_factory=lambda: _FlowTally(Flow.LEGACY))
    candidate: _FlowTally = field(default_factory=lambda: _FlowTally(Flow.CANDIDATE))
    findings: Findings = field(default_factory=Findings)
    orders: int = 0
    extra_in_candidate: int = 0
    parity_unpaired: int = 0
    parity_examples: list[ParityExample] = field(default_factory=list)
    rows: list[OrderRow] = field(default_factory=list)
    notable_total: int = 0

    def add(self, order: OrderJoin, row: OrderRow) -> None:
        self.orders += 1
        self.legacy.add(order.legacy, row.legacy)
        self.candidate.add(order.candidate, row.candidate)
        self._add_findings(row)
        if row.severity is not None:
            self._keep_row(row)

    def _add_findings(self, row: OrderRow) -> None:
        findings = self.findings
        key = row.order_key
        findings.compared_orders += row.compared
        findings.legacy_orders += row.legacy in HANDLED_CLASSES
        self.extra_in_candidate += row.extra_in_candidate
        self.parity_unpaired += row.payload_unpaired

        if row.candidate == OrderClass.NOT_MIRRORED:
            findings.not_mirrored.add(key)
        if row.candidate in OPEN_GAP_CLASSES:
            findings.candidate_open_gaps.add(key)
        if row.missing_in_candidate:
            findings.missing_in_candidate.add(key)
        if row.candidate_duplicate:
            findings.candidate_duplicates.add(key)

        if row.payload is None:
            return
        findings.parity_pairs += 1
        if not row.payload.equal:
            findings.parity_differences.add(key)
            if len(self.parity_examples) < MAX_EXAMPLES:
                self.parity_examples.append(ParityExample(key, row.payload.difference))

    def _keep_row(self, row: OrderRow) -> None:
        self.notable_total += 1
        self.rows.append(row)
        # Trim in batches so that keeping the most severe rows costs a sort
        # per MAX_ORDER_ROWS orders, not one per order.
        if len(self.rows) >= 2 * MAX_ORDER_ROWS:
            self.rows = _rows_by_severity(self.rows)


def _rows_by_severity(rows: list[OrderRow]) -> list[OrderRow]:
    return sorted(rows, key=lambda row: (row.severity, row.order_key))[:MAX_ORDER_ROWS]


def analyze(
    engine: Engine,
    run_id: str,
    criteria: Criteria | None = None,
    normalisation: Normalisation | None = None,
) -> Analysis:
    """Join the run's events per order, compare the flows and decide the verdict.

    Raises RunNotFoundError when the run is not in the ledger, and
    LedgerError when the ledger cannot be read.
    """
    criteria = criteria or Criteria()
    normalisation = normalisation or Normalisation()
    run = load_run(engine, run_id)

    evidence = EvidenceTally()
    tally = _RunTally()
    for order in join_orders(iter_events(engine, run_id), evidence):
        tally.add(order, assess_order(order, normalisation))

    verdict, results = evaluate(criteria, tally.findings)
    findings = tally.findings
    return Analysis(
        run_id=run.id,
        run_kind=run.kind,
        started_at=run.started_at,
        finished_at=run.finished_at,
        ledger_url=ledger_url(engine),
        verdict=verdict,
        criteria=criteria,
        normalisation=normalisation,
        criteria_results=results,
        orders=tally.orders,
        compared_orders=findings.compared_orders,
        legacy=tally.legacy.figures(),
        candidate=tally.candidate.figures(),
        missing_in_candidate=findings.missing_in_candidate.count,
        extra_in_candidate=tally.extra_in_candidate,
        parity=findings.parity,
        parity_pairs=findings.parity_pairs,
        parity_differences=findings.parity_differences.count,
        parity_unpaired=tally.parity_unpaired,
        parity_examples=tally.parity_examples,
        counters=load_counters(engine, run_id),
        evidence=_evidence_figures(evidence, findings),
        uncorrelated_by_kind=dict(sorted(evidence.uncorrelated.items())),
        notable_orders=_rows_by_severity(tally.rows),
        notable_total=tally.notable_total,
    )


def _evidence_figures(evidence: EvidenceTally, findings: Findings) -> dict[str, int]:
    return {
        "uncorrelated_events": sum(evidence.uncorrelated.values()),
        "mirror_failed_events": evidence.mirror_losses["mirror.failed"],
        "mirror_dropped_events": evidence.mirror_losses["mirror.dropped"],
        "orders_not_mirrored": findings.not_mirrored.count,
        "mirrored_body_mismatches": evidence.mirrored_body_mismatches,
        "orders_timed_by_wall_clock": evidence.wall_clock_orders,
        "unknown_flow_events": evidence.unknown_flow,
        "unknown_kind_events": sum(evidence.unknown_kind.values()),
    }
