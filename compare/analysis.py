"""Analyse a run: stream its orders, tally the figures, reach the verdict.

Everything is tallied order by order in bounded structures (HDR histograms,
counters, a time series with widening buckets, at most `MAX_ORDER_ROWS`
rows), so memory does not grow with the number of orders. The one
exception is a storefront export given for reconciliation, whose keys are
held in a set.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from compare.assess import OrderRow, assess_order
from compare.classes import HANDLED_CLASSES, OPEN_GAP_CLASSES, OrderClass, gap_ms
from compare.completeness import Reconciliation
from compare.join import EvidenceTally, FlowSummary, OrderJoin, join_orders
from compare.parity import Normalisation, field_pattern
from compare.partitions import (
    default_workers,
    key_ranges,
    merge_capped_counts,
    merge_evidence,
    merge_findings,
    merge_reconciliation,
)
from compare.runs import ledger_url, load_run, order_timeline
from compare.series import SeriesPoint, TimeSeries
from compare.significance import RankComparison, compare_distributions
from compare.sql_join import GapCall, KeyRange, SkewBound, join_orders_sql, judge_gap, skew_bound
from compare.timing import Distribution, GapRecorder, GapStats, LatencyRecorder, LatencyStats
from compare.verdict import (
    MAX_EXAMPLES,
    Criteria,
    CriterionResult,
    Findings,
    Status,
    Verdict,
    evaluate,
)
from cutover.events import EventKind, Flow
from cutover.ledger import Event, LedgerError, iter_events, load_counters, open_ledger

__all__ = [
    "STAGES",
    "Analysis",
    "ChartData",
    "FlowFigures",
    "ParityExample",
    "TimelineEntry",
    "analyze",
]

# Latencies compared between the flows: from the webhook to each stage, and
# the gap from the acknowledgement to the confirmation.
STAGES = ("webhook_to_submission", "webhook_to_ack", "webhook_to_confirmation", "gap")

_NOT_MEASURED = LatencyStats(0, None, None, None, None)

# Orders with a finding whose events are kept for the HTML drill-down, the
# most severe first. Each costs one indexed ledger query after the join.
TIMELINE_ROWS = 200

# Differing fields counted per run for noise calibration; beyond this the
# rest are counted under one name.
MAX_DIFFERENCE_FIELDS = 200
OTHER_FIELDS = "(other fields)"
# A worker process counts up to this many fields by name; the merge keeps
# the first MAX_DIFFERENCE_FIELDS of the run.
_WORKER_FIELD_LIMIT = 100_000

# Proxy counters of events that never reached the ledger (sidecar.dropped
# counts messages the proxy could not hand to its sidecar), and the
# estimates of events lost by proxies and sidecars that stopped without a
# clean stop: an order
# with a lost event may look closed when it was not, so any of them makes
# the evidence incomplete.
RECORDING_LOSS_COUNTERS = ("ledger.lost", "ledger.rejected", "events.transform_failed",
                           "ledger.may_be_missing", "sidecar.dropped", "sidecar.may_be_missing")

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
    webhook_to_submission: LatencyStats = _NOT_MEASURED

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
class TimelineEntry:
    """One event of an order's timeline, in ms from the order's first event."""

    at_ms: float
    flow: str
    kind: str
    status: int | None


@dataclass(frozen=True)
class ChartData:
    """Data of the HTML report's charts: distributions per flow and counts over time."""

    gaps: dict[str, Distribution]
    to_confirmation: dict[str, Distribution]
    # Buckets from the first webhook with counts named "orders",
    # "legacy_open" and "candidate_open".
    over_time: list[SeriesPoint]


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
    # The proxies' wall-clock skew bound, when orders were recorded by more
    # than one proxy; None for a run recorded by one proxy.
    clock_skew: SkewBound | None = None
    # Where the legacy flow's confirmation times come from when the
    # storefront sends the confirmation itself (such as "X-Shopify-Triggered-At
    # header"); None when the proxy saw the confirmation emails.
    legacy_confirmation_source: str | None = None
    confirmation_parity: float | None = None
    confirmation_pairs: int = 0
    confirmation_differences: int = 0
    confirmation_examples: list[ParityExample] = field(default_factory=list)
    # Stage name (see STAGES) to the rank test of candidate against legacy.
    timing_comparisons: dict[str, RankComparison | None] = field(default_factory=dict)
    hours_covered: float | None = None
    peak_orders_per_min: float | None = None
    # Storefront orders by the flows they reached; None without an export.
    reconciliation: dict[str, Any] | None = None
    # ERP payload fields that differed, as ignore-rule patterns, with the
    # number of orders; and those of them that matched noise paths.
    difference_fields: dict[str, int] = field(default_factory=dict)
    noise_fields: dict[str, int] = field(default_factory=dict)
    noise_orders: int = 0
    charts: ChartData | None = None
    # Events of the first TIMELINE_ROWS notable orders, by order key.
    timelines: dict[str, list[TimelineEntry]] = field(default_factory=dict)

    @property
    def marginal_criteria(self) -> list[CriterionResult]:
        return [result for result in self.criteria_results if result.status == Status.MARGINAL]

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
        self.to_submission = LatencyRecorder()
        self.to_ack = LatencyRecorder()
        self.to_confirmation = LatencyRecorder()
        self.gaps = GapRecorder()

    def add(self, summary: FlowSummary, order_class: OrderClass) -> None:
        self.classes[order_class] += 1
        # Most orders have nothing but one submission, so only non-zero
        # figures touch the Counter, which is slow to update by keywords.
        totals = self.totals
        totals["submissions"] += summary.submissions
        if summary.rejections:
            totals["rejections"] += summary.rejections
        if summary.throttles:
            totals["throttles"] += summary.throttles
        if summary.failures:
            totals["failures"] += summary.failures
        if summary.pending_notices:
            totals["pending_notices"] += summary.pending_notices
        if summary.acks > 1:
            totals["duplicate_acks"] += 1
        if summary.confirmations > 1:
            totals["duplicate_confirmations"] += 1
        self.to_submission.record(summary.received_ns, summary.submitted_ns)
        self.to_ack.record(summary.received_ns, summary.acked_ns)
        self.to_confirmation.record(summary.received_ns, summary.confirmed_ns)

        gap = gap_ms(summary)
        if gap is not None:
            self.gaps.record(gap)
        elif order_class == OrderClass.CONFIRMED_WITHOUT_ERP:
            self.gaps.record_unbounded()

    def merge(self, other: _FlowTally) -> None:
        self.classes.update(other.classes)
        self.totals.update(other.totals)
        self.to_submission.merge(other.to_submission)
        self.to_ack.merge(other.to_ack)
        self.to_confirmation.merge(other.to_confirmation)
        self.gaps.merge(other.gaps)

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
            webhook_to_submission=self.to_submission.stats(),
        )

    def distributions(self) -> dict[str, Distribution]:
        return {
            "webhook_to_submission": self.to_submission.distribution(),
            "webhook_to_ack": self.to_ack.distribution(),
            "webhook_to_confirmation": self.to_confirmation.distribution(),
            "gap": self.gaps.distribution(),
        }


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
    criteria: Criteria = field(default_factory=Criteria)
    confirmation_examples: list[ParityExample] = field(default_factory=list)
    series: TimeSeries = field(default_factory=TimeSeries)
    reconciliation: Reconciliation | None = None
    difference_fields: Counter[str] = field(default_factory=Counter)
    noise_fields: Counter[str] = field(default_factory=Counter)
    noise_orders: int = 0
    # Differing fields counted by name before the rest go under OTHER_FIELDS.
    # A worker process counts them all; the merge applies the limit.
    field_limit: int = MAX_DIFFERENCE_FIELDS
    # Reads the run's clock skew bound; called once, at the first order
    # timed by wall clock (recorded by more than one proxy).
    skew_source: Callable[[], SkewBound] | None = None
    skew: SkewBound | None = None

    def add(self, order: OrderJoin, row: OrderRow) -> None:
        self.orders += 1
        self.legacy.add(order.legacy, row.legacy)
        self.candidate.add(order.candidate, row.candidate)
        within_skew = self._within_skew(order)
        if within_skew:
            self.findings.gaps_within_skew.add(row.order_key)
        self._add_findings(row, within_skew)
        self._add_sla(order, row)
        self._add_to_series(order, row)
        if self.reconciliation is not None:
            self.reconciliation.add(row.order_key, row.legacy, row.candidate)
        if row.severity is not None:
            self._keep_row(row)

    def _within_skew(self, order: OrderJoin) -> bool:
        """Return True when the candidate's gap is timed across proxies and too small to call."""
        if not order.wall_clock or self.skew_source is None:
            return False
        gap = gap_ms(order.candidate)
        if gap is None:
            return False
        if self.skew is None:
            self.skew = self.skew_source()
            self.findings.clock_skew_bound_ms = self.skew.bound_ms
        return judge_gap(gap, True, self.skew) == GapCall.WITHIN_SKEW

    def _add_sla(self, order: OrderJoin, row: OrderRow) -> None:
        candidate = order.candidate
        if not row.compared or candidate.received_ns is None or candidate.confirmed_ns is None:
            return
        self.findings.sla_measured += 1
        elapsed_ms = (candidate.confirmed_ns - candidate.received_ns) / 1e6
        if elapsed_ms > self.criteria.confirmation_sla_ms:
            self.findings.sla_late.add(row.order_key)

    def _add_to_series(self, order: OrderJoin, row: OrderRow) -> None:
        # NOTE: orders timed by wall clock (recorded by several proxies) are
        # left out, because their times are not on the monotonic clock of
        # the other orders. Runs recorded only that way have no series, so
        # hours covered and the burst cannot be measured.
        if order.wall_clock:
            return
        received_ns = order.legacy.received_ns
        if received_ns is None:
            received_ns = order.candidate.received_ns
        if received_ns is None:
            return
        self.series.add(received_ns, "orders")
        if row.legacy in OPEN_GAP_CLASSES:
            self.series.add(received_ns, "legacy_open")
        if row.candidate in OPEN_GAP_CLASSES:
            self.series.add(received_ns, "candidate_open")

    def _add_findings(self, row: OrderRow, within_skew: bool = False) -> None:
        findings = self.findings
        key = row.order_key
        findings.compared_orders += row.compared
        findings.legacy_orders += row.legacy in HANDLED_CLASSES
        self.extra_in_candidate += row.extra_in_candidate
        self.parity_unpaired += row.payload_unpaired

        if row.candidate == OrderClass.NOT_MIRRORED:
            findings.not_mirrored.add(key)
        # A gap the clocks can't resolve is neither open nor closed: it counts
        # in gaps_within_skew instead.
        if row.candidate in OPEN_GAP_CLASSES and not within_skew:
            findings.candidate_open_gaps.add(key)
        if row.candidate == OrderClass.CONFIRMED_WITHOUT_ERP:
            if row.candidate_confirmed_after_rejection:
                findings.confirmed_after_rejection.add(key)
            else:
                findings.confirmed_without_erp.add(key)
        if row.missing_in_candidate:
            findings.missing_in_candidate.add(key)
        if row.candidate_duplicate_erp:
            findings.duplicate_erp_orders.add(key)
        if row.candidate_duplicate_confirmation:
            findings.duplicate_confirmations.add(key)
        if row.extra_side_effects or row.extra_in_candidate:
            findings.extra_side_effects.add(key)

        if row.confirmation is not None:
            findings.confirmation_pairs += 1
            if not row.confirmation.equal:
                findings.confirmation_differences.add(key)
                _add_example(self.confirmation_examples, key, row.confirmation.difference)

        if row.payload is None:
            return
        findings.parity_pairs += 1
        self._count_fields(row)
        if not row.payload.equal:
            findings.parity_differences.add(key)
            _add_example(self.parity_examples, key, row.payload.difference)

    def _count_fields(self, row: OrderRow) -> None:
        payload = row.payload
        assert payload is not None
        patterns = {field_pattern(path) for path in payload.paths}
        for pattern in patterns:
            if pattern in self.difference_fields or len(self.difference_fields) < self.field_limit:
                self.difference_fields[pattern] += 1
            else:
                self.difference_fields[OTHER_FIELDS] += 1
        if payload.noise:
            self.noise_orders += 1
            self.noise_fields.update(pattern for pattern in patterns
                                     if pattern in self.difference_fields)

    @classmethod
    def merged(cls, parts: list[_RunTally]) -> _RunTally:
        """Merge the tallies of consecutive key ranges, in key order, into the tally of the run."""
        tally = parts[0]
        difference_fields: Counter[str] = Counter()
        merge_capped_counts(difference_fields, tally.difference_fields, MAX_DIFFERENCE_FIELDS,
                            OTHER_FIELDS)
        noise_fields = Counter(tally.noise_fields)
        for other in parts[1:]:
            tally.legacy.merge(other.legacy)
            tally.candidate.merge(other.candidate)
            merge_findings(tally.findings, other.findings)
            tally.orders += other.orders
            tally.extra_in_candidate += other.extra_in_candidate
            tally.parity_unpaired += other.parity_unpaired
            tally.parity_examples = (tally.parity_examples + other.parity_examples)[:MAX_EXAMPLES]
            tally.confirmation_examples = (
                tally.confirmation_examples + other.confirmation_examples)[:MAX_EXAMPLES]
            tally.rows = _rows_by_severity(tally.rows + other.rows)
            tally.notable_total += other.notable_total
            tally.series.merge(other.series)
            if tally.reconciliation is not None and other.reconciliation is not None:
                merge_reconciliation(tally.reconciliation, other.reconciliation)
            merge_capped_counts(difference_fields, other.difference_fields, MAX_DIFFERENCE_FIELDS,
                                OTHER_FIELDS)
            noise_fields.update(other.noise_fields)
            tally.noise_orders += other.noise_orders
            tally.skew = tally.skew or other.skew
        tally.difference_fields = difference_fields
        # One pass counts noise only for the fields it counts by name.
        tally.noise_fields = Counter({name: count for name, count in noise_fields.items()
                                      if name in difference_fields and name != OTHER_FIELDS})
        tally.field_limit = MAX_DIFFERENCE_FIELDS
        return tally

    def _keep_row(self, row: OrderRow) -> None:
        self.notable_total += 1
        self.rows.append(row)
        # Trim in batches so that keeping the most severe rows costs a sort
        # per MAX_ORDER_ROWS orders, not one per order.
        if len(self.rows) >= 2 * MAX_ORDER_ROWS:
            self.rows = _rows_by_severity(self.rows)


def _add_example(examples: list[ParityExample], key: str, difference: str) -> None:
    if len(examples) < MAX_EXAMPLES:
        examples.append(ParityExample(key, difference))


def _rows_by_severity(rows: list[OrderRow]) -> list[OrderRow]:
    return sorted(rows, key=lambda row: (row.severity, row.order_key))[:MAX_ORDER_ROWS]


def analyze(
    engine: Engine,
    run_id: str,
    criteria: Criteria | None = None,
    normalisation: Normalisation | None = None,
    *,
    storefront_orders: Iterable[str] | None = None,
    join: str = "auto",
    workers: int | None = None,
) -> Analysis:
    """Join the run's events per order, compare the flows and decide the verdict.

    `storefront_orders` are the keys of the storefront's own order list;
    when given, orders that reached neither flow or only one are reported.
    `join` is "sql" (one sorted scan of the ledger's index with plain
    driver rows), "python" (the ORM's events, a slower reference) or
    "auto", which takes SQL on SQLite and PostgreSQL; both give the same
    orders. With the SQL join, a large run is split into key ranges
    analysed by `workers` processes (default: the CPUs available, at most
    4); the result is the same as with one. Raises RunNotFoundError when
    the run is not in the ledger, and LedgerError when the ledger cannot
    be read.
    """
    if join not in ("auto", "sql", "python"):
        raise ValueError(f"join must be 'auto', 'sql' or 'python', but got {join!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be 1 or more, but got {workers}")
    use_sql = join == "sql" or (
        join == "auto" and engine.dialect.name in ("postgresql", "sqlite")
    )
    criteria = criteria or Criteria()
    normalisation = normalisation or Normalisation()
    if use_sql and _can_share(engine):
        ranges = key_ranges(engine, run_id, workers or default_workers())
        if len(ranges) > 1:
            run = load_run(engine, run_id)
            orders = set(storefront_orders) if storefront_orders is not None else None
            tally, evidence = _tally_in_workers(engine, run_id, ranges, criteria, normalisation, orders)
            return _finish(engine, run, tally, evidence, criteria, normalisation)
    return analyze_orders(
        engine, run_id,
        (lambda evidence: join_orders_sql(engine, run_id, evidence)) if use_sql
        else (lambda evidence: join_orders(iter_events(engine, run_id), evidence)),
        criteria, normalisation, storefront_orders=storefront_orders,
    )


def analyze_orders(
    engine: Engine,
    run_id: str,
    join: Any,
    criteria: Criteria | None = None,
    normalisation: Normalisation | None = None,
    *,
    storefront_orders: Iterable[str] | None = None,
) -> Analysis:
    """Analyse the `OrderJoin`s that `join(evidence_tally)` yields, as `analyze` does.

    This lets another join (such as one computed in SQL) feed the same
    assessment, criteria and reports.
    """
    criteria = criteria or Criteria()
    normalisation = normalisation or Normalisation()
    run = load_run(engine, run_id)

    evidence = EvidenceTally()
    tally = _RunTally(criteria=criteria, skew_source=lambda: skew_bound(engine, run_id))
    if storefront_orders is not None:
        tally.reconciliation = Reconciliation(set(storefront_orders))
    for order in join(evidence):
        tally.add(order, assess_order(order, normalisation))
    return _finish(engine, run, tally, evidence, criteria, normalisation)


def _can_share(engine: Engine) -> bool:
    """Tell whether other processes can open this engine's database: not an in-memory SQLite."""
    if engine.dialect.name == "postgresql":
        return True
    database = engine.url.database
    return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:" \
        and "mode=memory" not in str(engine.url)


def _tally_in_workers(
    engine: Engine, run_id: str, ranges: list[KeyRange], criteria: Criteria,
    normalisation: Normalisation, storefront_orders: set[str] | None,
) -> tuple[_RunTally, EvidenceTally]:
    """Tally each key range in a process of its own and merge the tallies in key order."""
    url = engine.url.render_as_string(hide_password=False)
    # spawn, not fork: the caller may run threads (a progress display), and
    # a forked child would inherit their locks.
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=len(ranges), mp_context=context) as pool:
            futures = [pool.submit(_tally_range, url, run_id, key_range, criteria, normalisation,
                                   storefront_orders) for key_range in ranges]
            parts = [future.result() for future in futures]
    except BrokenProcessPool as exc:
        raise LedgerError(
            f"A worker process analysing run {run_id!r} stopped unexpectedly ({exc}). Run again, "
            "or with --workers 1 to analyse in one process."
        ) from exc
    tally = _RunTally.merged([part for part, _ in parts])
    evidence = parts[0][1]
    for _, other in parts[1:]:
        merge_evidence(evidence, other)
    tally.skew_source = lambda: skew_bound(engine, run_id)
    return tally, evidence


def _tally_range(
    url: str, run_id: str, key_range: KeyRange, criteria: Criteria, normalisation: Normalisation,
    storefront_orders: set[str] | None,
) -> tuple[_RunTally, EvidenceTally]:
    """Join and tally the orders of one key range; runs in a worker process."""
    engine = open_ledger(url, create=False)
    try:
        evidence = EvidenceTally()
        tally = _RunTally(criteria=criteria, field_limit=_WORKER_FIELD_LIMIT,
                          skew_source=lambda: skew_bound(engine, run_id))
        if storefront_orders is not None:
            tally.reconciliation = Reconciliation(storefront_orders)
        for order in join_orders_sql(engine, run_id, evidence, key_range=key_range):
            tally.add(order, assess_order(order, normalisation))
        tally.skew_source = None
        return tally, evidence
    finally:
        engine.dispose()


def _finish(engine: Engine, run: Any, tally: _RunTally, evidence: EvidenceTally,
            criteria: Criteria, normalisation: Normalisation) -> Analysis:
    """Decide the verdict on a finished tally and gather the figures of the report."""
    run_id = run.id
    findings = tally.findings
    span_s = tally.series.span_s
    findings.hours_covered = None if span_s is None else span_s / 3600
    findings.peak_orders_per_min = tally.series.peak_per_minute("orders")
    if tally.reconciliation is not None:
        tally.reconciliation.finish()
        findings.unreconciled = tally.reconciliation.unreconciled

    counters = load_counters(engine, run_id)
    findings.recording_losses = {name: counters[name] for name in RECORDING_LOSS_COUNTERS
                                 if counters.get(name)}
    verdict, results = evaluate(criteria, findings)
    notable = _rows_by_severity(tally.rows)
    if evidence.wall_clock_orders and tally.skew is None:
        tally.skew = skew_bound(engine, run_id)
    legacy_distributions = tally.legacy.distributions()
    candidate_distributions = tally.candidate.distributions()
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
        counters=counters,
        evidence=_evidence_figures(evidence, findings),
        clock_skew=tally.skew,
        legacy_confirmation_source=_storefront_confirmation_source(engine, run_id),
        uncorrelated_by_kind=dict(sorted(evidence.uncorrelated.items())),
        notable_orders=notable,
        notable_total=tally.notable_total,
        confirmation_parity=findings.confirmation_parity,
        confirmation_pairs=findings.confirmation_pairs,
        confirmation_differences=findings.confirmation_differences.count,
        confirmation_examples=tally.confirmation_examples,
        timing_comparisons={
            stage: compare_distributions(legacy_distributions[stage], candidate_distributions[stage])
            for stage in STAGES
        },
        hours_covered=findings.hours_covered,
        peak_orders_per_min=findings.peak_orders_per_min,
        reconciliation=None if tally.reconciliation is None else tally.reconciliation.figures(),
        difference_fields=dict(tally.difference_fields.most_common()),
        noise_fields=dict(tally.noise_fields.most_common()),
        noise_orders=tally.noise_orders,
        charts=ChartData(
            gaps={"legacy": legacy_distributions["gap"], "candidate": candidate_distributions["gap"]},
            to_confirmation={"legacy": legacy_distributions["webhook_to_confirmation"],
                             "candidate": candidate_distributions["webhook_to_confirmation"]},
            over_time=tally.series.points(),
        ),
        timelines=_timelines(engine, run_id, notable[:TIMELINE_ROWS]),
    )


def _timelines(engine: Engine, run_id: str, rows: list[OrderRow]) -> dict[str, list[TimelineEntry]]:
    timelines = {}
    for row in rows:
        events = order_timeline(engine, run_id, row.order_key)
        if not events:
            continue
        wall_clock = len({event.instance_id for event in events}) > 1
        if wall_clock:
            start = events[0].wall_time
            offsets = [(event.wall_time - start).total_seconds() * 1000 for event in events]
        else:
            offsets = [(event.mono_ns - events[0].mono_ns) / 1e6 for event in events]
        timelines[row.order_key] = [
            TimelineEntry(round(offset, 3), event.flow, event.kind, event.status)
            for offset, event in zip(offsets, events, strict=True)
        ]
    return timelines


def _storefront_confirmation_source(engine: Engine, run_id: str) -> str | None:
    """Return the source the proxy took storefront-sent confirmation times from, if any."""
    statement = (
        select(Event.detail)
        .where(Event.run_id == run_id, Event.flow == Flow.LEGACY.value,
               Event.kind == EventKind.CONFIRMATION_SENT.value,
               col(Event.detail).contains("storefront_confirmation"))
        .limit(1)
    )
    try:
        with Session(engine) as session:
            detail = session.exec(statement).first()
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't read the confirmations of run {run_id!r}: {exc}") from exc
    if detail is None:
        return None
    return str(json.loads(detail).get("source") or "the storefront's webhook")


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
        "repeated_events": evidence.repeated_events,
        "gaps_within_clock_skew": findings.gaps_within_skew.count,
    }
