"""Per-phase figures of a load test, from the ledger and Locust's order logs.

Each order belongs to the load phase in which the proxy received its
webhook, by the wall time of its first `webhook.received`. An order that
never reached the ledger belongs to the phase in which Locust sent it. The
orders are joined and classified by `compare.join` and `compare.classes`,
so a phase's open gaps follow the same rules as the readiness report.

Phase boundaries are the profile's stage boundaries counted from the
shape's start, which the shape's first line in `timeline.jsonl` gives.

NOTE: webhook times come from the proxy's wall clock and send times from
the load generator's. On one machine they agree; with workers on other
machines, an order near a phase boundary may land in the neighbouring phase
by the clock skew between them.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from compare.classes import OPEN_GAP_CLASSES, OrderClass, classify, gap_ms
from compare.join import EvidenceTally, FlowSummary, join_orders
from compare.timing import GapRecorder, GapStats, LatencyRecorder, LatencyStats
from cutover.events import EventKind, Flow
from cutover.ledger import Event, iter_events, load_counters
from loadtest.shapes import Profile

__all__ = [
    "Accounting",
    "FlowPhase",
    "LoadTestFigures",
    "PhaseFigures",
    "SentOrder",
    "analyze_phases",
    "read_order_logs",
    "read_timeline",
]

log = logging.getLogger(__name__)

# Width in seconds of one point of the time series in the chart.
SERIES_STEP_S = 1.0


@dataclass(frozen=True)
class SentOrder:
    """One webhook as Locust sent it: order key, wall time in s, HTTP status (0: no response)."""

    key: str
    at: float
    status: int
    error: str | None


@dataclass(frozen=True)
class FlowPhase:
    """One flow's figures in one load phase."""

    orders: int
    open_gaps: int
    classes: dict[str, int]
    time_to_confirmation: LatencyStats
    # Confirmation minus acknowledgement in ms; negative is an open gap.
    gap: GapStats
    erp_throttles: int
    pending_notices: int


@dataclass(frozen=True)
class PhaseFigures:
    name: str
    start_s: float
    end_s: float
    # Webhooks per second the profile asked for, on average over the phase.
    target_rate: float
    planned_orders: int
    # Webhooks Locust sent in the phase, and those that got a 2xx response.
    sent: int
    sent_ok: int
    # Orders whose webhook the proxy received in the phase.
    orders: int
    legacy: FlowPhase
    candidate: FlowPhase
    # Candidate copies the proxy failed to mirror (mirror.failed and mirror.dropped events).
    mirror_losses: int

    @property
    def offered_rate(self) -> float:
        length = self.end_s - self.start_s
        return self.sent / length if length > 0 else 0.0

    @property
    def shortfall(self) -> int:
        """Webhooks the profile asked for that Locust did not send."""
        return max(0, self.planned_orders - self.sent)


@dataclass(frozen=True)
class Accounting:
    """The fate of every webhook Locust sent: ledger, loss counter, or unaccounted."""

    sent: int
    in_ledger: int
    # Sent, got no HTTP response, and left no trace in the ledger: lost
    # before the proxy, counted by the load generator.
    no_response: int
    # Got an HTTP response from the proxy but are not in the ledger, so
    # the ledger.lost counter should cover them.
    answered_not_in_ledger: int
    ledger_lost: int
    # Orders in the ledger that the order logs do not list (sent by a user
    # Locust stopped mid-request, or by another sender).
    not_in_logs: int
    # Legacy webhooks the candidate has no evidence of: neither a mirror copy
    # nor a mirror loss event.
    candidate_without_evidence: int
    mirror_dropped_counter: int

    @property
    def unaccounted(self) -> int:
        """Sent orders found neither in the ledger nor in a loss counter."""
        ledger_side = max(0, self.answered_not_in_ledger - self.ledger_lost)
        mirror_side = max(0, self.candidate_without_evidence - self.mirror_dropped_counter)
        return ledger_side + mirror_side


@dataclass(frozen=True)
class LoadTestFigures:
    run_id: str
    profile: Profile
    phases: list[PhaseFigures]
    accounting: Accounting
    counters: dict[str, int]
    # Per SERIES_STEP_S from the profile's start: target rate, sent per
    # second, and orders with an open gap per second of webhook time per flow.
    series: dict[str, list[float]] = field(default_factory=dict)

    def phase(self, name: str) -> PhaseFigures:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(f"No load phase {name!r}; the phases are {[p.name for p in self.phases]}")

    def to_dict(self) -> dict:
        phases = []
        for phase in self.phases:
            row = asdict(phase)
            row.update(offered_rate=round(phase.offered_rate, 3), shortfall=phase.shortfall)
            phases.append(row)
        accounting = asdict(self.accounting)
        accounting["unaccounted"] = self.accounting.unaccounted
        return {"run_id": self.run_id, "profile": self.profile.to_dict(), "phases": phases,
                "accounting": accounting, "counters": self.counters,
                "series_step_s": SERIES_STEP_S, "series": self.series}


def read_order_logs(folder: Path) -> list[SentOrder]:
    """Read every `orders-*.jsonl` in `folder`; a torn last line (a killed writer) is skipped."""
    orders = []
    for path in sorted(folder.glob("orders-*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                record = json.loads(line)
                orders.append(SentOrder(record["key"], float(record["at"]), int(record["status"]),
                                        record.get("error")))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("Skipping an unreadable order log line %s:%d", path, number)
    return orders


def read_timeline(path: Path) -> list[dict]:
    """Read the shape's ticks; raise FileNotFoundError when the shape never ran."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class _FlowTally:
    def __init__(self) -> None:
        self.classes: Counter[OrderClass] = Counter()
        self.to_confirmation = LatencyRecorder()
        self.gaps = GapRecorder()
        self.throttles = 0
        self.pending_notices = 0

    def add(self, summary: FlowSummary, flow: Flow) -> OrderClass:
        """Classify one flow's handling of one order, tally it, and return its class."""
        order_class = classify(summary, flow)
        self.classes[order_class] += 1
        self.to_confirmation.record(summary.received_ns, summary.confirmed_ns)

        gap = gap_ms(summary)
        if gap is not None:
            self.gaps.record(gap)
        elif order_class == OrderClass.CONFIRMED_WITHOUT_ERP:
            self.gaps.record_unbounded()

        self.throttles += summary.throttles
        self.pending_notices += summary.pending_notices
        return order_class

    def figures(self) -> FlowPhase:
        return FlowPhase(
            orders=sum(self.classes.values()),
            open_gaps=sum(self.classes[c] for c in OPEN_GAP_CLASSES),
            classes={str(c): n for c, n in sorted(self.classes.items())},
            time_to_confirmation=self.to_confirmation.stats(),
            gap=self.gaps.stats(),
            erp_throttles=self.throttles,
            pending_notices=self.pending_notices,
        )


@dataclass
class _PhaseTally:
    legacy: _FlowTally = field(default_factory=_FlowTally)
    candidate: _FlowTally = field(default_factory=_FlowTally)
    orders: int = 0
    sent: int = 0
    sent_ok: int = 0
    mirror_losses: int = 0


class _Clock:
    """Maps a wall time to its load phase and to its step of the time series."""

    def __init__(self, profile: Profile, start_wall: float) -> None:
        self.start_wall = start_wall
        self.starts = [start_wall + start for _stage, start, _end in profile.boundaries()]
        self.steps = int(profile.duration_s / SERIES_STEP_S) + 1

    def phase(self, at: float) -> int:
        # Orders before the first phase count in it; orders after the last, in the last.
        return max(0, bisect.bisect_right(self.starts, at) - 1)

    def step(self, at: float) -> int | None:
        index = int((at - self.start_wall) // SERIES_STEP_S)
        return index if 0 <= index < self.steps else None


def analyze_phases(
    engine: Engine, run_id: str, profile: Profile, start_wall: float, sent: Iterable[SentOrder],
) -> LoadTestFigures:
    """Split the run's orders into the profile's phases and tally each one.

    `start_wall` is the wall time (s since the epoch) of the profile's time 0.
    """
    clock = _Clock(profile, start_wall)
    tallies = [_PhaseTally() for _ in profile.stages]
    series = {"target_rate": _target_series(profile, clock.steps), "sent_rate": [0.0] * clock.steps,
              "legacy_open_gaps": [0.0] * clock.steps, "candidate_open_gaps": [0.0] * clock.steps}

    sent_by_key: dict[str, SentOrder] = {}
    for order in sent:
        sent_by_key[order.key] = order
        tally = tallies[clock.phase(order.at)]
        tally.sent += 1
        tally.sent_ok += 200 <= order.status < 300
        if (step := clock.step(order.at)) is not None:
            series["sent_rate"][step] += 1

    ledger = _tally_ledger(engine, run_id, clock, tallies, series, sent_by_key)
    counters = load_counters(engine, run_id)
    accounting = _account(sent_by_key, ledger, counters)

    phases = []
    for (stage, start, end), tally in zip(profile.boundaries(), tallies, strict=True):
        phases.append(PhaseFigures(
            name=stage.name, start_s=start, end_s=end,
            target_rate=round((stage.start_rate + stage.end_rate) / 2, 3),
            planned_orders=round(stage.planned_orders),
            sent=tally.sent, sent_ok=tally.sent_ok, orders=tally.orders,
            legacy=tally.legacy.figures(), candidate=tally.candidate.figures(),
            mirror_losses=tally.mirror_losses,
        ))
    return LoadTestFigures(run_id, profile, phases, accounting, counters, series)


@dataclass
class _LedgerTally:
    in_ledger: set[str] = field(default_factory=set)
    not_in_logs: int = 0
    candidate_without_evidence: int = 0


def _tally_ledger(
    engine: Engine, run_id: str, clock: _Clock, tallies: list[_PhaseTally],
    series: dict[str, list[float]], sent_by_key: dict[str, SentOrder],
) -> _LedgerTally:
    """Join the run's orders and add each to the phase of its legacy webhook."""
    result = _LedgerTally()
    webhook_times: dict[str, float] = {}
    events = _tap_webhook_times(iter_events(engine, run_id), webhook_times)
    for order in join_orders(events, EvidenceTally()):
        received_at = webhook_times.pop(order.order_key, None)
        if received_at is None:
            # No legacy webhook for this key: candidate-only or tap-only
            # traffic, which the readiness report counts.
            continue
        if order.order_key in sent_by_key:
            result.in_ledger.add(order.order_key)
        else:
            result.not_in_logs += 1

        tally = tallies[clock.phase(received_at)]
        tally.orders += 1
        tally.mirror_losses += order.candidate.mirror_losses
        step = clock.step(received_at)
        for flow, summary, flow_tally in ((Flow.LEGACY, order.legacy, tally.legacy),
                                          (Flow.CANDIDATE, order.candidate, tally.candidate)):
            order_class = flow_tally.add(summary, flow)
            if flow == Flow.CANDIDATE and order_class == OrderClass.NOT_RECEIVED:
                result.candidate_without_evidence += 1
            if order_class in OPEN_GAP_CLASSES and step is not None:
                series[f"{flow.value}_open_gaps"][step] += 1
    return result


def _account(sent_by_key: dict[str, SentOrder], ledger: _LedgerTally, counters: dict[str, int]) -> Accounting:
    missing = [order for key, order in sent_by_key.items() if key not in ledger.in_ledger]
    no_response = sum(1 for order in missing if order.status == 0)
    return Accounting(
        sent=len(sent_by_key), in_ledger=len(ledger.in_ledger), no_response=no_response,
        answered_not_in_ledger=len(missing) - no_response,
        ledger_lost=counters.get("ledger.lost", 0), not_in_logs=ledger.not_in_logs,
        candidate_without_evidence=ledger.candidate_without_evidence,
        mirror_dropped_counter=counters.get("mirror.dropped", 0),
    )


def _target_series(profile: Profile, steps: int) -> list[float]:
    values = []
    for step in range(steps):
        point = profile.point_at(step * SERIES_STEP_S)
        values.append(round(point[1], 3) if point else 0.0)
    return values


def _tap_webhook_times(events: Iterable[Event], times: dict[str, float]) -> Iterator[Event]:
    """Pass the events through and note each order's first legacy webhook wall time."""
    for event in events:
        if (event.kind == EventKind.WEBHOOK_RECEIVED and event.flow == Flow.LEGACY
                and event.order_key is not None and event.order_key not in times):
            times[event.order_key] = _epoch_s(event.wall_time)
        yield event


def _epoch_s(moment: datetime) -> float:
    # SQLite returns the stored UTC time without its zone.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
