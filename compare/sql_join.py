"""Join a run's events per order in one sorted scan, for large runs.

`join_orders_sql` yields the same `OrderJoin` objects, in the same order, as
`join_orders(iter_events(engine, run_id), tally)`, and leaves the same
counts in the `EvidenceTally`. It works on SQLite and PostgreSQL.

The database hands out the run's keyed events in the order of the ledger's
index (order key, flow, monotonic time), as plain DB-API rows of the
columns the join reads, with the snapshot only on the events whose
snapshot matters. Each order's rows go to `summarise_rows`, the same
reduction the Python join uses, so both joins agree by construction. Only
one order's rows are in memory at a time. On PostgreSQL the rows come
through a server-side cursor, so the client holds one batch.

`key_range` limits the scan to the order keys in [low, high), so that
several processes can each join one part of a run (see
`compare.partitions`).

Times follow `compare.join`: the recording proxy's monotonic clock when
one instance recorded the whole order, else wall clock. Wall clocks of
different proxies agree only within their skew. `skew_bound` computes that
bound from the offsets the proxies measured when they registered, and
`judge_gap` says when a wall-clock gap is too small to call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from compare.join import EvidenceTally, OrderJoin, summarise_rows
from cutover.events import CONFIRMATION_KINDS, EventKind
from cutover.ledger import Event, LedgerError, list_instances

__all__ = ["GapCall", "KeyRange", "SkewBound", "driver_errors", "join_orders_sql", "judge_gap",
           "skew_bound"]

_EVENTS = Event.__table__
# Rows fetched from the database at a time.
_FETCH_ROWS = 10_000
# Kinds whose snapshot the join reads: ERP submissions and confirmations.
_SNAPSHOT_KINDS = (EventKind.ERP_SUBMITTED, *sorted(CONFIRMATION_KINDS))

# Order keys from the first (inclusive) to the second (exclusive); None on
# either side leaves it open.
KeyRange = tuple[str | None, str | None]


def join_orders_sql(engine: Engine, run_id: str, tally: EvidenceTally, *,
                    key_range: KeyRange = (None, None)) -> Iterator[OrderJoin]:
    """Yield one `OrderJoin` per order key of the run, in key order, from one sorted scan.

    Events without an order key are counted in `tally.uncorrelated` once
    every order was yielded. With a `key_range` that has a lower bound they
    are left to the range that has none, so each is counted once. Raises LedgerError when the ledger
    cannot be read.
    """
    try:
        with engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                # Both queries read one snapshot while proxies still write.
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
                connection.exec_driver_sql("SELECT 1")
            driver = connection.connection.driver_connection
            if not postgres:
                # pysqlite opens no transaction before a SELECT; in WAL mode
                # an explicit one is a read snapshot, ended when the
                # connection goes back to the pool.
                driver.execute("BEGIN")
            yield from _join(driver, postgres, run_id, key_range, tally)
            if key_range[0] is None:
                _tally_unjoined(driver, postgres, run_id, tally)
    except (SQLAlchemyError, *driver_errors(engine)) as exc:
        raise LedgerError(f"Can't join the events of run {run_id!r}: {exc}") from exc


def driver_errors(engine: Engine) -> tuple[type[BaseException], ...]:
    """Return the DB-API error class of the engine's driver, for code that uses driver cursors."""
    error = getattr(engine.dialect.dbapi, "Error", None)
    return (error,) if isinstance(error, type) else ()


def _scan_statement(postgres: bool, key_range: KeyRange) -> tuple[str, list[Any]]:
    mark = "%s" if postgres else "?"
    kinds = ", ".join(f"'{kind}'" for kind in _SNAPSHOT_KINDS)
    conditions = [f"run_id = {mark}", "order_key IS NOT NULL"]
    low, high = key_range
    if low is not None:
        conditions.append(f"order_key >= {mark}")
    if high is not None:
        conditions.append(f"order_key < {mark}")
    statement = (
        "SELECT order_key, flow, kind, mono_ns, id, instance_id, status, digest, "
        f"CASE WHEN kind IN ({kinds}) THEN snapshot END, wall_time "
        f"FROM events WHERE {' AND '.join(conditions)} "
        "ORDER BY order_key, flow, mono_ns, id"
    )
    return statement, [value for value in key_range if value is not None]


def _join(driver: Any, postgres: bool, run_id: str, key_range: KeyRange,
          tally: EvidenceTally) -> Iterator[OrderJoin]:
    statement, bounds = _scan_statement(postgres, key_range)
    if postgres:
        # A named cursor is a server-side one: memory stays at one batch.
        cursor = driver.cursor(name="cutover_join")
        cursor.itersize = _FETCH_ROWS
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(statement, [run_id, *bounds])
        rows: list[tuple] = []
        current = None
        while batch := cursor.fetchmany(_FETCH_ROWS):
            for row in batch:
                if row[0] != current:
                    if rows:
                        yield _order(str(current), rows, tally)
                    rows = []
                    current = row[0]
                rows.append(row)
        if rows:
            yield _order(str(current), rows, tally)
    finally:
        cursor.close()


def _order(order_key: str, rows: list[tuple], tally: EvidenceTally) -> OrderJoin:
    order = summarise_rows(order_key, rows, tally, in_flow_order=True)
    if order.wall_clock:
        tally.wall_clock_orders += 1
    tally.mirrored_body_mismatches += order.mirrored_body_mismatches()
    return order


def _tally_unjoined(driver: Any, postgres: bool, run_id: str, tally: EvidenceTally) -> None:
    """Count events without an order key by kind."""
    mark = "%s" if postgres else "?"
    cursor = driver.cursor()
    try:
        cursor.execute(f"SELECT kind, count(*) FROM events WHERE run_id = {mark} "
                       "AND order_key IS NULL GROUP BY kind", [run_id])
        for kind, count in cursor.fetchall():
            tally.uncorrelated[kind] += count
    finally:
        cursor.close()


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
