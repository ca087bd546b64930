"""Join a run's events per order and flow in SQL, for large runs.

`join_orders_sql` yields the same `OrderJoin` objects, in the same order, as
`join_orders(iter_events(engine, run_id), tally)`, and leaves the same
counts in the `EvidenceTally`. It works on SQLite and PostgreSQL.

The database does the per-event work. One grouped query reduces the run to
one row per order and flow, with each kind's count and first time by both
clocks, the instance ids and the webhook body digests. A second query
streams only the events whose order and snapshot matter: ERP submissions
that carry a snapshot, ERP acknowledgements and confirmations. Both
queries are read in order-key order and merged, so memory contains one
order at a time, as in `join_orders`.

Orders the aggregates can't reduce exactly go through `summarise_order`,
the Python path's own reduction, with that order's events: an order with
two events of one flow on the same monotonic reading (a tie, or an event
stored twice, which the Python path counts once), or with an event of a
kind the comparator does not know. Such orders are rare in a real run.

Times follow `compare.join`: the recording proxy's monotonic clock when
one instance recorded the whole order, else wall clock. Wall clocks of
different proxies agree only within their skew. `skew_bound` computes that
bound from the offsets the proxies measured when they registered, and
`judge_gap` says when a wall-clock gap is too small to call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import String, and_, case, func, not_, null, or_, select, type_coerce
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from sqlmodel import select as select_models

from compare.join import MIRROR_LOSS_KINDS, EvidenceTally, FlowSummary, OrderJoin, summarise_order
from cutover.events import CONFIRMATION_KINDS, PENDING_NOTICE_KINDS, EventKind, Flow
from cutover.ledger import Event, LedgerError, list_instances

__all__ = ["GapCall", "SkewBound", "join_orders_sql", "judge_gap", "skew_bound"]

_EVENTS = Event.__table__
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KNOWN_KINDS = tuple(str(kind) for kind in EventKind)

# Kind families of a FlowSummary, each with a count and a first time.
_FAMILIES: dict[str, tuple[str, ...]] = {
    "received": (EventKind.WEBHOOK_RECEIVED, EventKind.MIRROR_SENT),
    "submitted": (EventKind.ERP_SUBMITTED,),
    "acked": (EventKind.ERP_ACKED,),
    "rejected": (EventKind.ERP_REJECTED,),
    "confirmed": tuple(CONFIRMATION_KINDS),
    "pending_notice": tuple(PENDING_NOTICE_KINDS),
}
# Mirror losses are counted per kind, for EvidenceTally.mirror_losses, in
# the set the Python join uses.
_LOSS_KINDS = tuple(sorted(MIRROR_LOSS_KINDS))
# Positions of each family's count, first monotonic time and first wall
# time in a row of _flow_groups_query, whose first 7 columns are fixed.
_COUNT_AT = tuple(7 + 3 * index for index in range(len(_FAMILIES)))
_MONO_AT = tuple(position + 1 for position in _COUNT_AT)
_WALL_AT = tuple(position + 2 for position in _COUNT_AT)
# After the families: throttles, failures, one count per loss kind, digests.
_THROTTLES_AT = 7 + 3 * len(_FAMILIES)
_LOSSES_AT = _THROTTLES_AT + 2
# Rows fetched from the database at a time.
_FETCH_ROWS = 10_000


def join_orders_sql(engine: Engine, run_id: str, tally: EvidenceTally) -> Iterator[OrderJoin]:
    """Yield one `OrderJoin` per order key of the run, computed with grouped SQL aggregates.

    Raises LedgerError when the ledger cannot be read.
    """
    try:
        with engine.connect() as connection:
            _begin_snapshot(connection)
            yield from _join(connection, run_id, tally)
            _tally_unjoined(connection, run_id, tally)
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't join the events of run {run_id!r}: {exc}") from exc


def _begin_snapshot(connection: Connection) -> None:
    """Make every query of this connection see the same events while proxies still write."""
    if connection.dialect.name == "postgresql":
        connection.execution_options(isolation_level="REPEATABLE READ")
        connection.exec_driver_sql("SELECT 1")
    elif connection.dialect.name == "sqlite":
        # pysqlite starts no transaction before a SELECT; in WAL mode an
        # explicit one is a read snapshot. Closing the connection ends it.
        connection.exec_driver_sql("BEGIN")


def _join(connection: Connection, run_id: str, tally: EvidenceTally) -> Iterator[OrderJoin]:
    # Wall-clock columns are needed only when more than one instance recorded the run.
    c = _EVENTS.c
    several = connection.execute(
        select(func.min(c.instance_id) != func.max(c.instance_id)).where(c.run_id == run_id)
    ).scalar()
    groups = _stream(connection, _flow_groups_query(run_id, wall=bool(several)))
    snapshots = _SnapshotStream(_stream(connection, _snapshots_query(run_id)))

    session = Session(bind=connection)
    order_rows: list[Any] = []
    for row in groups:
        if order_rows and row.order_key != order_rows[0].order_key:
            yield _order(order_rows, snapshots, tally, session, run_id)
            order_rows = []
        order_rows.append(row)
    if order_rows:
        yield _order(order_rows, snapshots, tally, session, run_id)


def _stream(connection: Connection, statement: Any) -> Iterator[Any]:
    yield from connection.execute(statement.execution_options(stream_results=True, yield_per=_FETCH_ROWS))


def _flow_groups_query(run_id: str, *, wall: bool) -> Any:
    """Build the query of one row per order key and flow: each kind family's count and first times.

    Without `wall`, the first wall times are NULL, which saves the database
    their work.
    """
    c = _EVENTS.c
    # Wall times stay text on SQLite and are parsed only for orders timed by wall clock.
    wall_time = type_coerce(c.wall_time, String)
    columns = [
        c.order_key, c.flow,
        func.count().label("events"),
        func.count(c.mono_ns.distinct()).label("readings"),
        func.count(case((not_(c.kind.in_(_KNOWN_KINDS)), 1))).label("unknown_kinds"),
        func.min(c.instance_id).label("instance_min"),
        func.max(c.instance_id).label("instance_max"),
    ]
    for name, kinds in _FAMILIES.items():
        matches = c.kind.in_(kinds)
        first_wall = func.min(case((matches, wall_time))) if wall else null()
        columns += [
            func.count(case((matches, 1))).label(f"{name}_count"),
            func.min(case((matches, c.mono_ns))).label(f"{name}_mono"),
            first_wall.label(f"{name}_wall"),
        ]
    columns += [
        func.count(case((c.kind == EventKind.ERP_THROTTLED, 1))).label("throttles"),
        func.count(case((c.kind == EventKind.ERP_FAILED, 1))).label("failures"),
    ]
    for index, kind in enumerate(_LOSS_KINDS):
        columns.append(func.count(case((c.kind == kind, 1))).label(f"loss_{index}"))

    received = and_(c.kind.in_(_FAMILIES["received"]), c.digest != "")
    columns.append(func.aggregate_strings(case((received, c.digest)), ",").label("digests"))

    return (
        select(*columns)
        .where(c.run_id == run_id, c.order_key.is_not(None))
        .group_by(c.order_key, c.flow)
        .order_by(c.order_key, c.flow)
    )


def _snapshots_query(run_id: str) -> Any:
    """Build the query of the events that decide a flow's snapshots, in time order.

    These are ERP submissions with a snapshot, ERP acknowledgements and
    confirmations.
    """
    c = _EVENTS.c
    wanted = or_(
        and_(c.kind == EventKind.ERP_SUBMITTED, c.snapshot.is_not(None)),
        c.kind == EventKind.ERP_ACKED,
        c.kind.in_(_FAMILIES["confirmed"]),
    )
    return (
        select(c.order_key, c.flow, c.kind, c.id, c.mono_ns,
               type_coerce(c.wall_time, String).label("wall"), c.snapshot)
        .where(c.run_id == run_id, c.order_key.is_not(None), wanted)
        .order_by(c.order_key, c.flow, c.mono_ns, c.id)
    )


class _SnapshotStream:
    """The snapshots query, handed out one (order key, flow) group at a time.

    Its groups are a subset of the flow groups, in the same order, because
    both queries read one snapshot of the ledger.
    """

    def __init__(self, rows: Iterator[Any]) -> None:
        self._rows = rows
        self._next = next(rows, None)

    def take(self, order_key: str, flow: str) -> list[Any]:
        row = self._next
        if row is None or row.order_key != order_key or row.flow != flow:
            return []
        taken = []
        while row is not None and row.order_key == order_key and row.flow == flow:
            taken.append(row)
            row = next(self._rows, None)
        self._next = row
        return taken


def _order(rows: list[Any], snapshots: _SnapshotStream, tally: EvidenceTally,
           session: Session, run_id: str) -> OrderJoin:
    """Build one order's join from its flow groups, as `summarise_order` does from its events."""
    order_key = str(rows[0].order_key)
    timed_rows = [snapshots.take(row.order_key, row.flow) for row in rows]

    if any(row.readings < row.events or row.unknown_kinds for row in rows):
        order = _summarise_in_python(session, run_id, order_key, tally)
    else:
        order = _summarise(order_key, rows, timed_rows, tally)

    if order.wall_clock:
        tally.wall_clock_orders += 1
    tally.mirrored_body_mismatches += order.mirrored_body_mismatches()
    return order


def _summarise(order_key: str, rows: list[Any], timed_rows: list[list[Any]],
               tally: EvidenceTally) -> OrderJoin:
    wall_clock = (len({row.instance_min for row in rows} | {row.instance_max for row in rows}) > 1)
    order = OrderJoin(order_key, FlowSummary(), FlowSummary(), wall_clock)

    for row, timed in zip(rows, timed_rows, strict=True):
        if row.flow == Flow.LEGACY:
            summary = order.legacy
        elif row.flow == Flow.CANDIDATE:
            summary = order.candidate
        else:
            tally.unknown_flow += row.events
            continue
        _fill(summary, row, wall_clock)
        _fill_snapshots(summary, timed, wall_clock)
        losses = row[_LOSSES_AT:_LOSSES_AT + len(_LOSS_KINDS)]
        for kind, count in zip(_LOSS_KINDS, losses, strict=True):
            if count:
                tally.mirror_losses[kind] += count
    return order


def _summarise_in_python(session: Session, run_id: str, order_key: str,
                         tally: EvidenceTally) -> OrderJoin:
    """Reduce one order with `summarise_order`, adding its evidence counts to `tally`."""
    statement = select_models(Event).where(Event.run_id == run_id, Event.order_key == order_key)
    events = list(session.exec(statement))

    found = EvidenceTally()
    order = summarise_order(order_key, events, found)
    for item in fields(EvidenceTally):
        value = getattr(found, item.name)
        if isinstance(value, Counter):
            getattr(tally, item.name).update(value)
        else:
            setattr(tally, item.name, getattr(tally, item.name) + value)
    return order


def _fill(summary: FlowSummary, row: Any, wall_clock: bool) -> None:
    # Positions follow _flow_groups_query; a Row's tuple access is several
    # times faster than its attribute access, which counts at a million orders.
    values = tuple(row)
    summary.events = values[2]
    (summary.received_ns, summary.submitted_ns, summary.acked_ns, summary.rejected_ns,
     summary.confirmed_ns, summary.pending_notice_ns) = (
        [_wall_ns(values[index]) for index in _WALL_AT] if wall_clock
        else [values[index] for index in _MONO_AT])
    (_, summary.submissions, summary.acks, summary.rejections, summary.confirmations,
     summary.pending_notices) = [values[index] for index in _COUNT_AT]
    summary.throttles, summary.failures = values[_THROTTLES_AT:_LOSSES_AT]
    summary.mirror_losses = sum(values[_LOSSES_AT:_LOSSES_AT + len(_LOSS_KINDS)])
    if values[-1]:
        summary.body_digests = set(values[-1].split(","))


def _fill_snapshots(summary: FlowSummary, rows: list[Any], wall_clock: bool) -> None:
    """Set the ERP snapshots (last, current at the first acknowledgement) and the confirmation's."""
    if wall_clock:
        rows = sorted(rows, key=lambda row: (_wall_ns(row.wall), row.id))

    acked = confirmed = False
    for row in rows:
        if row.kind == EventKind.ERP_SUBMITTED:
            summary.last_snapshot = row.snapshot
        elif row.kind == EventKind.ERP_ACKED:
            if not acked:
                acked = True
                summary.snapshot_before_ack = summary.last_snapshot
        elif not confirmed:
            confirmed = True
            summary.confirmation_snapshot = row.snapshot


def _tally_unjoined(connection: Connection, run_id: str, tally: EvidenceTally) -> None:
    """Count events without an order key by kind."""
    c = _EVENTS.c
    statement = (select(c.kind, func.count()).where(c.run_id == run_id, c.order_key.is_(None))
                 .group_by(c.kind))
    for kind, count in connection.execute(statement):
        tally.uncorrelated[kind] += count


def _wall_ns(value: datetime | str | None) -> int | None:
    # SQLite returns the stored text of a UTC time without its zone;
    # PostgreSQL returns an aware datetime.
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


@dataclass(frozen=True)
class SkewBound:
    """How far apart the wall clocks of a run's proxy instances can be, in ms."""

    # None when an instance that recorded events has no measured offset.
    bound_ms: float | None
    instances: int
    # Instances with events in the run but no registration.
    unmeasured: tuple[str, ...]

    @property
    def known(self) -> bool:
        return self.bound_ms is not None


def skew_bound(engine: Engine, run_id: str) -> SkewBound:
    """Compute the run's wall-clock skew bound from its registered proxy instances.

    Each instance's clock is within |offset| + uncertainty of the reference
    clock, so two instances are within the sum of their two terms. The
    bound is the largest such sum over pairs of instances that recorded
    events. The offsets are not applied to the event times, so the bound
    includes them.
    """
    c = _EVENTS.c
    try:
        with engine.connect() as connection:
            recording = {
                instance for (instance,) in connection.execute(
                    select(c.instance_id).where(c.run_id == run_id).distinct())
            }
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't read the proxy instances of run {run_id!r}: {exc}") from exc

    registered = {row.instance_id: row for row in list_instances(engine, run_id)}
    unmeasured = tuple(sorted(
        instance for instance in recording
        if instance not in registered or registered[instance].clock_offset_ms is None
    ))
    if len(recording) < 2:
        return SkewBound(0.0, len(recording), unmeasured)
    if unmeasured:
        return SkewBound(None, len(recording), unmeasured)

    terms = sorted(
        (abs(registered[instance].clock_offset_ms) + registered[instance].clock_uncertainty_ms
         for instance in recording),
        reverse=True,
    )
    return SkewBound(round(terms[0] + terms[1], 3), len(recording), ())


class GapCall(StrEnum):
    """Outcome of judging a gap measured across proxy clocks."""

    OPEN = "open"
    CLOSED = "closed"
    WITHIN_SKEW = "within_skew"


def judge_gap(gap_ms: float, wall_clock: bool, bound: SkewBound) -> GapCall:
    """Call a gap open or closed, or within the skew bound when the clocks can't tell.

    Gaps timed by one proxy's monotonic clock are always called. A gap timed
    by wall clock is called only when it is farther from zero than the skew
    bound, and never when the bound is unknown.
    """
    if wall_clock and (bound.bound_ms is None or abs(gap_ms) <= bound.bound_ms):
        return GapCall.WITHIN_SKEW
    return GapCall.OPEN if gap_ms < 0 else GapCall.CLOSED
