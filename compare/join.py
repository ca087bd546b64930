"""Join a run's events per order and flow into small summaries.

`join_orders` reads the events of a run in the ledger's order (order key,
flow, monotonic time), groups them by order key and reduces each order to
two `FlowSummary` objects. Only one order's events are in memory at a time,
so a run of months fits.

Event times come from the recording proxy's monotonic clock (`mono_ns`).
When one order's events were recorded by more than one proxy instance,
their monotonic clocks are unrelated, so that order is timed by wall clock
instead and counted in `EvidenceTally.wall_clock_orders`.

Wall-clock timing is only as good as the proxies' clock sync, so the
analysis calls a gap on such an order only when it is wider than the
proxies' skew bound (`compare.sql_join.judge_gap`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from operator import attrgetter

from cutover.events import CONFIRMATION_KINDS, PENDING_NOTICE_KINDS, EventKind, Flow
from cutover.ledger import Event

__all__ = [
    "ROW_COLUMNS",
    "EvidenceTally",
    "FlowSummary",
    "OrderJoin",
    "join_orders",
    "summarise_order",
    "summarise_rows",
    "wall_ns",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A skipped copy (body over the mirror's size limit) never reached the
# candidate either, so it is evidence loss like a failed or dropped one.
MIRROR_LOSS_KINDS = frozenset(
    {EventKind.MIRROR_FAILED, EventKind.MIRROR_DROPPED, EventKind.MIRROR_SKIPPED}
)
_KNOWN_KINDS = frozenset(EventKind)
_RECEIVED_KINDS = frozenset({EventKind.WEBHOOK_RECEIVED, EventKind.MIRROR_SENT})

# The event columns of one row handed to `summarise_rows`, in order, and
# the positions the reduction reads.
ROW_COLUMNS = ("order_key", "flow", "kind", "mono_ns", "id", "instance_id", "status", "digest",
               "snapshot", "wall_time")
_MONO, _ID, _INSTANCE, _WALL = 3, 4, 5, 9


@dataclass(slots=True)
class FlowSummary:
    """Summary of one flow's handling of one order, with times in ns on the order's clock."""

    # Legacy: first webhook.received. Candidate: first mirror.sent, the
    # moment the candidate's copy of the webhook left the proxy.
    received_ns: int | None = None
    events: int = 0
    mirror_losses: int = 0
    submitted_ns: int | None = None
    submissions: int = 0
    acked_ns: int | None = None
    acks: int = 0
    rejected_ns: int | None = None
    rejections: int = 0
    throttles: int = 0
    failures: int = 0
    confirmed_ns: int | None = None
    confirmations: int = 0
    pending_notice_ns: int | None = None
    pending_notices: int = 0
    # Digests of the webhook bodies this flow received (legacy) or was sent
    # (candidate), to check that mirroring was byte-identical.
    body_digests: set[str] = field(default_factory=set)
    # The last submission before the first acknowledgement, and the last
    # submission of all.
    snapshot_before_ack: str | None = None
    last_snapshot: str | None = None
    # The redacted email body of the first confirmation: subject, categories
    # and template data with items, total and currency.
    confirmation_snapshot: str | None = None

    @property
    def acked_snapshot(self) -> str | None:
        """ERP request body of the acknowledged submission, else of the last one."""
        if self.snapshot_before_ack is not None:
            return self.snapshot_before_ack
        return self.last_snapshot

    def add(self, kind: str, at_ns: int, digest: str | None, snapshot: str | None) -> None:
        """Fold one event of this flow, in time order, into the summary."""
        self.events += 1
        if kind in _RECEIVED_KINDS:
            if self.received_ns is None:
                self.received_ns = at_ns
            if digest:
                self.body_digests.add(digest)
        elif kind in MIRROR_LOSS_KINDS:
            self.mirror_losses += 1
        elif kind == EventKind.ERP_SUBMITTED:
            self.submissions += 1
            if self.submitted_ns is None:
                self.submitted_ns = at_ns
            if snapshot is not None:
                self.last_snapshot = snapshot
        elif kind == EventKind.ERP_ACKED:
            self.acks += 1
            if self.acked_ns is None:
                self.acked_ns = at_ns
                self.snapshot_before_ack = self.last_snapshot
        elif kind == EventKind.ERP_REJECTED:
            self.rejections += 1
            if self.rejected_ns is None:
                self.rejected_ns = at_ns
        elif kind == EventKind.ERP_THROTTLED:
            self.throttles += 1
        elif kind == EventKind.ERP_FAILED:
            self.failures += 1
        elif kind in CONFIRMATION_KINDS:
            self.confirmations += 1
            if self.confirmed_ns is None:
                self.confirmed_ns = at_ns
                self.confirmation_snapshot = snapshot
        elif kind in PENDING_NOTICE_KINDS:
            self.pending_notices += 1
            if self.pending_notice_ns is None:
                self.pending_notice_ns = at_ns


@dataclass(slots=True)
class OrderJoin:
    """Both flows' summaries of one order."""

    order_key: str
    legacy: FlowSummary
    candidate: FlowSummary
    wall_clock: bool = False

    def mirrored_body_mismatches(self) -> int:
        """Count bodies sent to the candidate that the legacy flow never received."""
        if not self.legacy.body_digests:
            return 0
        return len(self.candidate.body_digests - self.legacy.body_digests)


@dataclass
class EvidenceTally:
    """Evidence found in the events themselves that the comparison could not use."""

    uncorrelated: Counter[str] = field(default_factory=Counter)
    # mirror.failed and mirror.dropped events, by kind.
    mirror_losses: Counter[str] = field(default_factory=Counter)
    unknown_flow: int = 0
    unknown_kind: Counter[str] = field(default_factory=Counter)
    wall_clock_orders: int = 0
    mirrored_body_mismatches: int = 0
    # Events recorded twice: same flow, kind, instance, clock reading,
    # status and digest as another event. Only the first one counts.
    repeated_events: int = 0


def join_orders(events: Iterable[Event], tally: EvidenceTally) -> Iterator[OrderJoin]:
    """Yield one `OrderJoin` per order key; `events` must be grouped by order key.

    Events without an order key are counted in `tally.uncorrelated` by kind.
    """
    for order_key, group in groupby(events, key=attrgetter("order_key")):
        if order_key is None:
            tally.uncorrelated.update(event.kind for event in group)
            continue

        order = summarise_order(str(order_key), list(group), tally)
        if order.wall_clock:
            tally.wall_clock_orders += 1
        tally.mirrored_body_mismatches += order.mirrored_body_mismatches()
        yield order


def summarise_order(order_key: str, events: list[Event], tally: EvidenceTally) -> OrderJoin:
    """Reduce all events of one order to a summary per flow."""
    rows = [(event.order_key, event.flow, event.kind, event.mono_ns, event.id or 0, event.instance_id,
             event.status, event.digest, event.snapshot, event.wall_time) for event in events]
    return summarise_rows(order_key, rows, tally)


def summarise_rows(order_key: str, rows: list[tuple], tally: EvidenceTally, *,
                   in_flow_order: bool = False) -> OrderJoin:
    """Reduce the event rows of one order, laid out as `ROW_COLUMNS`, to a summary per flow.

    With `in_flow_order`, the rows come sorted by flow, monotonic time and
    id, as the ledger's index hands them out, which saves a sort when one
    proxy instance recorded the whole order.
    """
    first_instance = rows[0][_INSTANCE]
    wall_clock = False
    for row in rows:
        if row[_INSTANCE] != first_instance:
            wall_clock = True
            break
    if wall_clock:
        timed = sorted(((wall_ns(row[_WALL]), row) for row in rows),
                       key=lambda pair: (pair[0], pair[1][_ID]))
    elif in_flow_order:
        timed = [(row[_MONO], row) for row in rows]
    else:
        timed = sorted(((row[_MONO], row) for row in rows), key=lambda pair: (pair[0], pair[1][_ID]))

    order = OrderJoin(order_key, FlowSummary(), FlowSummary(), wall_clock)
    legacy, candidate = order.legacy, order.candidate
    seen: set[tuple[object, ...]] = set()
    for at_ns, row in timed:
        _, flow, kind, mono_ns, _, instance, status, digest, snapshot, _ = row
        # One proxy's monotonic clock never gives two observations the same
        # ns reading, so an identical row is the same observation stored twice.
        identity = (flow, kind, instance, mono_ns, status, digest)
        if identity in seen:
            tally.repeated_events += 1
            continue
        seen.add(identity)
        if flow == Flow.LEGACY:
            summary = legacy
        elif flow == Flow.CANDIDATE:
            summary = candidate
        else:
            tally.unknown_flow += 1
            continue
        if kind not in _KNOWN_KINDS:
            tally.unknown_kind[kind] += 1
        elif kind in MIRROR_LOSS_KINDS:
            tally.mirror_losses[kind] += 1
        summary.add(kind, at_ns, digest, snapshot)
    return order


def wall_ns(value: datetime | str) -> int:
    """Return a wall-clock time as ns since the epoch.

    SQLite hands out the stored text of a UTC time without its zone, the
    ORM a naive datetime, PostgreSQL an aware one.
    """
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
