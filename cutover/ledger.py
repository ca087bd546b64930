"""The ledger: the event store of every run.

SQLite in WAL mode is the embedded default (one file under the run's
folder); PostgreSQL is used when the URL names it, and several proxy
instances may record one run into it. The proxy never writes on its hot
path: it hands rows to a `LedgerWriter`, whose thread inserts them in
batches (COPY on PostgreSQL). Rows the writer cannot store are counted as
`ledger.lost`.

`open_ledger` brings the schema to the current Alembic revision (see
`cutover/migrations/`) and rejects a ledger written by a newer cutover.
Each proxy instance registers itself in `proxy_instances` with its wall
clock's offset from the ledger server's clock, so the comparator can state
how far apart the instances' clocks may be. Its writer keeps a heartbeat
in that row and marks the clean stop after its last flush; an instance
with neither a clean stop nor a recent heartbeat was killed or crashed,
and `load_counters` reports the events it may have lost as
`ledger.may_be_missing`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Text, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, create_engine, select

__all__ = [
    "Event",
    "LedgerError",
    "LedgerWriter",
    "ProxyInstance",
    "Run",
    "RunCounter",
    "UncleanStop",
    "finish_run",
    "insert_events",
    "iter_events",
    "ledger_url_for",
    "list_instances",
    "load_counters",
    "measure_clock_offset",
    "open_ledger",
    "register_instance",
    "safe_url",
    "start_run",
    "unclean_stops",
    "utc_now",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
DEFAULT_FLUSH_INTERVAL_S = 0.2
# Rows kept in memory while the database is unreachable; beyond this the
# oldest rows are lost and counted.
DEFAULT_BUFFER_ROWS = 200_000
# Waits between attempts to reach a ledger that failed: doubling from the
# first to the last, then staying there.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
# A writer refreshes its instance's heartbeat this often. An instance with
# no clean stop and no heartbeat for STALE_AFTER_S counts as stopped without
# one (killed, crashed, or cut off from the ledger that long).
HEARTBEAT_INTERVAL_S = 1.0
STALE_AFTER_S = 10.0
# Counter name of the events that instances stopped without a clean stop
# may have lost; `load_counters` computes it, no writer counts it.
MAY_BE_MISSING = "ledger.may_be_missing"
# Round trips to the ledger server when measuring a proxy's clock offset;
# the one with the shortest round trip is kept.
CLOCK_SAMPLES = 8
_EVENT_COLUMNS = ("run_id", "order_key", "flow", "kind", "wall_time", "mono_ns", "instance_id",
                  "route", "http_flow_id", "status", "latency_ms", "snapshot", "digest", "detail")


class LedgerError(Exception):
    """The ledger could not be opened, read or written."""


class Run(SQLModel, table=True):
    __tablename__ = "runs"

    id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=32, description="demo, shadow, replay or loadtest")
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    # JSON of the settings the run was started with, secrets removed.
    settings: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_run_order_flow", "run_id", "order_key", "flow", "mono_ns"),
        Index("ix_events_run_kind", "run_id", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64)
    order_key: str | None = Field(default=None, max_length=128)
    flow: str = Field(max_length=16, description="legacy or candidate")
    kind: str = Field(max_length=32, description="an EventKind value")
    # UTC, microsecond resolution.
    wall_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # The recording proxy's monotonic clock in nanoseconds: comparable only
    # between events of one proxy instance.
    mono_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    instance_id: str = Field(default="", max_length=64)
    route: str | None = Field(default=None, max_length=64)
    http_flow_id: str | None = Field(default=None, max_length=64)
    status: int | None = None
    latency_ms: float | None = None
    # Redacted JSON of what matters for comparison, and its SHA-256.
    snapshot: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    digest: str | None = Field(default=None, max_length=64)
    # JSON with the reason of a failure, delivery ids, the request path.
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class RunCounter(SQLModel, table=True):
    """A loss or volume counter of one proxy instance in one run."""

    __tablename__ = "run_counters"

    run_id: str = Field(primary_key=True, max_length=64)
    instance_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(primary_key=True, max_length=64)
    value: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class ProxyInstance(SQLModel, table=True):
    """One proxy instance recording into a run, with its measured clock offset."""

    __tablename__ = "proxy_instances"

    run_id: str = Field(primary_key=True, max_length=64)
    instance_id: str = Field(primary_key=True, max_length=64)
    host_name: str = Field(max_length=255)
    pid: int | None = None
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # The instance's wall clock minus the reference clock, in ms, and the
    # bound on the error of that figure (half the round trip of the
    # measurement). None when no reference clock was reachable.
    clock_offset_ms: float | None = None
    clock_uncertainty_ms: float | None = None
    clock_reference: str = Field(default="", max_length=64,
                                 description="what the offset was measured against")
    # Unix time in seconds of the writer's last stored flush or idle
    # heartbeat; None until its first one (and on instances registered by
    # older code). Seconds, not a DateTime, so that run exports carry it as
    # a plain number.
    heartbeat_unix_s: float | None = None
    # Unix time in seconds of the writer's last flush on a clean stop.
    stopped_unix_s: float | None = None
    # The maximum number of events the writer held unwritten, taken at each
    # commit: what a kill at the worst moment seen so far would have lost.
    max_unwritten_events: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                                   server_default="0"))
    # Events that earlier runs of this instance id, stopped without a clean
    # stop, may have lost; carried over when the instance registers again.
    missing_before_restart: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                                     server_default="0"))


@dataclass(frozen=True)
class UncleanStop:
    """A proxy instance that stopped without storing its last events, or may have."""

    instance_id: str
    # Its last heartbeat: events it observed after this may be missing.
    last_heartbeat: datetime | None
    may_be_missing: int


def utc_now() -> datetime:
    return datetime.now(UTC)


def ledger_url_for(folder: Path) -> str:
    """Return the URL of the default SQLite ledger inside a run folder."""
    return f"sqlite:///{(folder / 'ledger.sqlite').resolve()}"


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_ledger(url: str, *, create: bool = True) -> Engine:
    """Open the ledger at `url` and bring its schema to the current revision.

    With `create`, an empty database gets the tables; without it, an empty
    database is left as it is (readers then fail on the missing tables).
    Raises LedgerError when the database is unreachable, the driver is
    missing or the ledger was written by a newer cutover.
    """
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we depend on; SQLAlchemy's bare scheme
        # would pick psycopg2.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")

    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _enable_sqlite_wal)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _migrate(engine, create=create)
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't open the ledger at {safe_url(url)}: {exc}") from exc
    except ModuleNotFoundError as exc:
        raise LedgerError(
            f"Can't open the ledger at {safe_url(url)}: driver {exc.name!r} is not installed."
        ) from exc
    return engine


def _migrate(engine: Engine, *, create: bool) -> None:
    """Upgrade the schema to the newest Alembic revision in `cutover/migrations/versions/`."""
    from cutover import migrations

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Proxies starting together must not create the tables twice.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": migrations.LOCK_KEY})
        tables = set(inspect(connection).get_table_names())
        if not tables & {"events", "alembic_version"} and not create:
            return
        revision = migrations.current_revision(connection)
        if revision is not None and not migrations.is_known(revision):
            raise LedgerError(
                f"The ledger at {safe_url(str(engine.url))} has schema revision {revision!r}, "
                f"which this cutover does not know (its newest is {migrations.head()!r}): "
                f"it was written by a newer cutover. Upgrade cutover to read it."
            )
        if revision is None and "events" in tables:
            # Ledgers from before migrations have the first revision's tables.
            migrations.stamp(connection, migrations.INITIAL)
        migrations.upgrade(connection)


def safe_url(url: str) -> str:
    """Return `url` with any password replaced, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def start_run(engine: Engine, run_id: str, kind: str, settings: dict[str, Any]) -> Run:
    run = Run(id=run_id, kind=kind, started_at=utc_now(), settings=json.dumps(settings))
    try:
        with Session(engine) as session:
            existing = session.get(Run, run_id)
            if existing is not None:
                return existing
            session.add(run)
            session.commit()
            session.refresh(run)
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't record run {run_id!r}: {exc}") from exc
    return run


def finish_run(engine: Engine, run_id: str) -> None:
    try:
        with Session(engine) as session:
            run = session.get(Run, run_id)
            if run is None:
                raise LedgerError(f"Run {run_id!r} not found in the ledger.")
            run.finished_at = utc_now()
            session.add(run)
            session.commit()
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't finish run {run_id!r}: {exc}") from exc


def iter_events(engine: Engine, run_id: str, *, batch: int = 5000) -> Iterator[Event]:
    """Yield the events of one run ordered by order key, flow and monotonic time."""
    statement = (
        select(Event)
        .where(Event.run_id == run_id)
        .order_by(Event.order_key, Event.flow, Event.mono_ns, Event.id)
        .execution_options(yield_per=batch)
    )
    try:
        with Session(engine) as session:
            yield from session.exec(statement)
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't read the events of run {run_id!r}: {exc}") from exc


def load_counters(engine: Engine, run_id: str, *, now: datetime | None = None) -> dict[str, int]:
    """Return the run's counters summed over its proxy instances.

    Adds `ledger.may_be_missing`, the events that instances stopped without
    a clean stop may have lost (see `unclean_stops`), when there are any.
    """
    totals: dict[str, int] = {}
    try:
        with Session(engine) as session:
            for row in session.exec(select(RunCounter).where(RunCounter.run_id == run_id)):
                totals[row.name] = totals.get(row.name, 0) + row.value
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't read the counters of run {run_id!r}: {exc}") from exc
    missing = sum(stop.may_be_missing for stop in unclean_stops(engine, run_id, now=now))
    if missing:
        totals[MAY_BE_MISSING] = totals.get(MAY_BE_MISSING, 0) + missing
    return totals


def unclean_stops(engine: Engine, run_id: str, *, now: datetime | None = None) -> list[UncleanStop]:
    """Return the run's proxy instances that stopped without a clean stop.

    An instance counts when it has a heartbeat older than `STALE_AFTER_S`
    and no clean stop: it was killed, crashed, or its ledger has been
    unreachable since. It may have lost the events it held unwritten, which
    are estimated by the maximum it held at a commit (at least one event,
    because an idle instance may have received one just before it died).
    A crash under more load than the instance had seen loses more.
    Losses of earlier runs of a restarted instance are added as well.
    NOTE: observations still in the proxy's pipe to its sidecar are not in
    that bound; they are the events of one event-loop turn.
    """
    now_s = (now or utc_now()).timestamp()
    stops = []
    for instance in list_instances(engine, run_id):
        may_be_missing = instance.missing_before_restart or 0
        heartbeat_s = instance.heartbeat_unix_s
        last_heartbeat = None
        if (instance.stopped_unix_s is None and heartbeat_s is not None
                and now_s - heartbeat_s > STALE_AFTER_S):
            may_be_missing += max(1, instance.max_unwritten_events or 0)
            last_heartbeat = datetime.fromtimestamp(heartbeat_s, UTC)
        if may_be_missing:
            stops.append(UncleanStop(instance.instance_id, last_heartbeat, may_be_missing))
    return stops


def insert_events(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert event rows (dicts of `Event` columns without `id`) in one batch.

    PostgreSQL gets COPY, which sends the batch as one stream without a
    statement per row; other databases get an executemany INSERT.
    """
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        connection.execute(Event.__table__.insert(), rows)
        return

    import psycopg

    columns = ", ".join(_EVENT_COLUMNS)
    statement = f"COPY events ({columns}) FROM STDIN"
    driver = connection.connection.driver_connection
    # COPY goes through the driver, so its errors arrive unwrapped; they are
    # mapped onto SQLAlchemy's, which tell a refused row from a lost server.
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(tuple(row.get(name) for name in _EVENT_COLUMNS))
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise DataError(statement, None, exc) from exc
    except psycopg.Error as exc:
        raise OperationalError(statement, None, exc) from exc


def measure_clock_offset(engine: Engine, samples: int = CLOCK_SAMPLES) -> tuple[float, float, str]:
    """Measure this host's wall clock against the ledger server's clock.

    Returns (offset ms, uncertainty ms, reference). The offset is local time
    minus server time at the midpoint of the fastest of `samples` round
    trips. The server read its clock somewhere within that round trip, so
    half of it bounds the error. A SQLite ledger is a file on this host, so
    its reference is this host's own clock: offset and uncertainty are 0.
    """
    if engine.dialect.name == "sqlite":
        return 0.0, 0.0, "local clock (SQLite ledger)"

    best: tuple[int, int, int] | None = None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))  # the first query pays for the connection set-up
            for _ in range(max(1, samples)):
                sent_ns = time.time_ns()
                server = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
                received_ns = time.time_ns()
                if best is None or received_ns - sent_ns < best[1] - best[0]:
                    best = (sent_ns, received_ns, _epoch_ns(server))
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't measure the clock offset against the ledger server: {exc}") from exc

    assert best is not None
    sent_ns, received_ns, server_ns = best
    offset_ms = ((sent_ns + received_ns) / 2 - server_ns) / 1e6
    # PostgreSQL timestamps have microsecond resolution.
    uncertainty_ms = (received_ns - sent_ns) / 2e6 + 0.001
    return round(offset_ms, 3), round(uncertainty_ms, 3), "postgresql clock_timestamp()"


def _epoch_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def register_instance(
    engine: Engine, run_id: str, instance_id: str, *, measure_clock: bool = True
) -> ProxyInstance:
    """Record that a proxy instance records into `run_id`, with its measured clock offset.

    Registering again (a restarted proxy) replaces the earlier row, keeping
    the events an earlier run without a clean stop may have lost. A failed
    clock measurement is logged and stored as an unknown offset, so the
    comparator treats that instance's wall-clock gaps as unbounded.
    """
    offset_ms = uncertainty_ms = None
    reference = "not measured"
    if measure_clock:
        try:
            offset_ms, uncertainty_ms, reference = measure_clock_offset(engine)
        except LedgerError as exc:
            log.error("Can't measure the clock of instance %s (run %s): %s", instance_id, run_id, exc)
            reference = "measurement failed"

    instance = ProxyInstance(
        run_id=run_id, instance_id=instance_id, host_name=socket.gethostname(), pid=os.getpid(),
        started_at=utc_now(), clock_offset_ms=offset_ms, clock_uncertainty_ms=uncertainty_ms,
        clock_reference=reference,
    )
    try:
        with Session(engine) as session:
            existing = session.get(ProxyInstance, (run_id, instance_id))
            if existing is not None:
                instance.missing_before_restart = _missing_of(existing)
                session.delete(existing)
                session.flush()
            session.add(instance)
            session.commit()
            session.refresh(instance)
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't register instance {instance_id!r} of run {run_id!r}: {exc}") from exc
    log.info("Instance %s of run %s registered: clock offset %s ms (within %s ms, against %s)",
             instance_id, run_id, offset_ms, uncertainty_ms, reference)
    return instance


def _missing_of(earlier: ProxyInstance) -> int:
    """Return the events an earlier run of a re-registered instance may have lost."""
    missing = earlier.missing_before_restart or 0
    if earlier.stopped_unix_s is None and earlier.heartbeat_unix_s is not None:
        bound = max(1, earlier.max_unwritten_events or 0)
        log.warning("Instance %s of run %s did not stop cleanly before this start; up to %d "
                    "events it observed may be missing", earlier.instance_id, earlier.run_id, bound)
        missing += bound
    return missing


def list_instances(engine: Engine, run_id: str) -> list[ProxyInstance]:
    """Return the proxy instances registered for a run, by instance id."""
    statement = (select(ProxyInstance).where(ProxyInstance.run_id == run_id)
                 .order_by(ProxyInstance.instance_id))
    try:
        with Session(engine) as session:
            return list(session.exec(statement))
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't read the proxy instances of run {run_id!r}: {exc}") from exc


class LedgerWriter:
    """Insert event rows in batches from a background thread.

    `put()` is cheap and never blocks, so an event loop can call it. The
    optional `transform` turns what was put into an event row (a dict of
    `Event` columns) inside the writer's thread; it returns None to skip.
    Counters set through `count()` are written with every flush. The
    writer keeps the heartbeat of its instance's `proxy_instances` row (if
    the instance is registered) and marks the clean stop after `close()`
    stored everything.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        run_id: str,
        instance_id: str = "",
        transform: Callable[[Any], dict[str, Any] | None] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        buffer_rows: int = DEFAULT_BUFFER_ROWS,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, but got {batch_size!r}")
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be positive, but got {flush_interval_s!r}")
        self._engine = engine
        self._run_id = run_id
        self._instance_id = instance_id
        self._transform = transform
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._buffer_rows = buffer_rows
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: list[dict[str, Any]] = []
        self._counters: dict[str, int] = {}
        self._counters_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._failing_since: float | None = None
        self._retry_at: float | None = None
        self._retry_wait_s = RETRY_FIRST_S
        self._overflow_logged = False
        self._heartbeat_interval_s = heartbeat_interval_s
        self._next_heartbeat = 0.0
        self._max_unwritten = 0
        # Counter values stored by earlier writers of this run and instance,
        # read at the first write of counters.
        self._counter_base: dict[str, int] | None = None
        self.written = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Any) -> None:
        self._inbox.put(item)

    def count(self, name: str, increment: int = 1) -> None:
        with self._counters_lock:
            self._counters[name] = self._counters.get(name, 0) + increment

    def counters(self) -> dict[str, int]:
        with self._counters_lock:
            return dict(self._counters)

    def backlog(self) -> int:
        """Return how many rows wait to be written (the ledger lag in rows)."""
        return self._inbox.qsize() + len(self._pending)

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush everything put so far and stop the thread."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("Ledger writer did not finish within %.0f s; %d rows may be lost",
                      timeout_s, self.backlog())

    def _run(self) -> None:
        while not self._stop.is_set():
            deadline = time.monotonic() + self._flush_interval_s
            try:
                self._drain(deadline)
                if self._retry_at is None or time.monotonic() >= self._retry_at:
                    self._flush()
                    self._beat()
            except Exception:  # the thread must outlive any one failure
                log.exception("Ledger writer failed (run %s); %d rows kept for the next try",
                              self._run_id, len(self._pending))
                self._stop.wait(self._flush_interval_s)

        # A drain takes at most a few batches while the ledger is reachable,
        # so drain and flush until the inbox is empty.
        while True:
            self._drain(None)
            if self._inbox.empty():
                break
            self._flush()
        self._flush(final=True)

    def _drain(self, deadline: float | None) -> None:
        """Move items from the inbox to the pending rows until `deadline`."""
        # While the database is away, take everything so that the buffer
        # bound, not the inbox, decides what is lost.
        failing = self._failing_since is not None
        while failing or len(self._pending) < self._batch_size * 4:
            try:
                if deadline is None:
                    item = self._inbox.get_nowait()
                else:
                    item = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            self._accept(item)

    def _accept(self, item: Any) -> None:
        try:
            row = self._transform(item) if self._transform else item
        except Exception:  # a bad rule must not stop recording
            log.exception("Can't turn an observation into an event (run %s)", self._run_id)
            self.count("events.transform_failed")
            return
        if row is None:
            return
        row.setdefault("run_id", self._run_id)
        row.setdefault("instance_id", self._instance_id)
        self._pending.append(row)
        overflow = len(self._pending) - self._buffer_rows
        if overflow > 0:
            del self._pending[:overflow]
            self.count("ledger.lost", overflow)
            if not self._overflow_logged:
                self._overflow_logged = True
                log.error("Ledger buffer full (%d rows, run %s, instance %s): dropping the oldest "
                          "rows and counting them as ledger.lost", self._buffer_rows, self._run_id,
                          self._instance_id)

    def _flush(self, final: bool = False) -> None:
        while self._pending or final:
            rows = self._pending[: self._batch_size]
            last = len(self._pending) <= self._batch_size
            unwritten = max(self._max_unwritten, len(self._pending) + self._inbox.qsize())
            # Every flush's last transaction refreshes the heartbeat: the
            # peak of unwritten rows must be stored before a kill can lose it.
            beat = last
            try:
                with self._engine.begin() as connection:
                    if rows:
                        self._insert(connection, rows)
                    if final or last:
                        self._write_counters(connection)
                    if beat:
                        self._write_heartbeat(connection, unwritten, stopped=final)
            except (DataError, IntegrityError) as exc:
                # The database answered, but refused a row (a value too long
                # for its column, say). One bad row must not block the rest.
                done = self._insert_row_by_row(rows, exc)
                del self._pending[:done]
                if done < len(rows):
                    return  # the database went away meanwhile; retry later
                continue
            except SQLAlchemyError as exc:
                self._report_failure(exc)
                if final:
                    self.count("ledger.lost", len(self._pending))
                    log.error("Ledger unreachable at close: %d events of run %s lost",
                              len(self._pending), self._run_id)
                    self._pending.clear()
                return
            if self._failing_since is not None:
                log.warning("Ledger reachable again after %.1f s (run %s), %d rows waiting",
                            time.monotonic() - self._failing_since, self._run_id, len(self._pending))
                self._failing_since = None
                self._retry_at = None
                self._retry_wait_s = RETRY_FIRST_S
                self._overflow_logged = False
            del self._pending[: len(rows)]
            self.written += len(rows)
            self._max_unwritten = unwritten
            if beat:
                self._next_heartbeat = time.monotonic() + self._heartbeat_interval_s
            if not self._pending:
                return

    def _beat(self) -> None:
        """Write the heartbeat of an idle writer when it is due."""
        if self._failing_since is not None or time.monotonic() < self._next_heartbeat:
            return
        try:
            with self._engine.begin() as connection:
                self._write_heartbeat(connection, self._max_unwritten, stopped=False)
        except SQLAlchemyError as exc:
            self._report_failure(exc)
            return
        self._next_heartbeat = time.monotonic() + self._heartbeat_interval_s

    def _write_heartbeat(self, connection: Connection, unwritten: int, *, stopped: bool) -> None:
        table = ProxyInstance.__table__
        now_s = time.time()
        values: dict[str, Any] = {"heartbeat_unix_s": now_s, "max_unwritten_events": unwritten}
        if stopped:
            values["stopped_unix_s"] = now_s
        connection.execute(
            table.update()
            .where((table.c.run_id == self._run_id) & (table.c.instance_id == self._instance_id))
            .values(**values)
        )

    def _insert(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        insert_events(connection, rows)

    def _insert_row_by_row(self, rows: list[dict[str, Any]], first_error: Exception) -> int:
        """Insert `rows` one at a time, counting the ones the database rejects.

        Returns how many rows were dealt with (stored or rejected); fewer than
        all when the database became unreachable on the way.
        """
        rejected = 0
        done = 0
        for row in rows:
            try:
                with self._engine.begin() as connection:
                    self._insert(connection, [row])
            except (DataError, IntegrityError) as exc:
                rejected += 1
                log.error("Ledger rejected a %s event of order %.40r (run %s): %s",
                          row.get("kind"), row.get("order_key"), self._run_id,
                          str(exc.orig).splitlines()[0] if exc.orig else exc.__class__.__name__)
            except SQLAlchemyError as exc:
                self._report_failure(exc)
                break
            else:
                self.written += 1
            done += 1
        if rejected:
            self.count("ledger.rejected", rejected)
        log.warning("Batch of %d events split after %s; %d rejected (run %s)",
                    len(rows), first_error.__class__.__name__, rejected, self._run_id)
        return done

    def _write_counters(self, connection: Any) -> None:
        counters = self.counters()
        if not counters:
            return
        table = RunCounter.__table__
        if self._counter_base is None:
            # A restarted instance (same run and instance id) continues the
            # counts of its earlier runs instead of replacing them.
            rows = connection.execute(
                select(table.c.name, table.c.value)
                .where((table.c.run_id == self._run_id) & (table.c.instance_id == self._instance_id))
            )
            self._counter_base = {name: value for name, value in rows}
        for name, count in counters.items():
            value = self._counter_base.get(name, 0) + count
            key = (
                (table.c.run_id == self._run_id)
                & (table.c.instance_id == self._instance_id)
                & (table.c.name == name)
            )
            updated = connection.execute(table.update().where(key).values(value=value))
            if updated.rowcount == 0:
                connection.execute(
                    table.insert().values(
                        run_id=self._run_id, instance_id=self._instance_id, name=name, value=value
                    )
                )

    def _report_failure(self, exc: SQLAlchemyError) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            log.error("Can't write to the ledger (run %s), keeping up to %d rows in memory "
                      "and retrying: %s", self._run_id, self._buffer_rows, _first_line(exc))
        else:
            log.debug("Ledger still unreachable (run %s), next attempt in %.1f s",
                      self._run_id, self._retry_wait_s)
        self._retry_at = now + self._retry_wait_s
        self._retry_wait_s = min(self._retry_wait_s * 2, RETRY_MAX_S)


def _first_line(exc: SQLAlchemyError) -> str:
    """Return the driver's message of `exc` without SQLAlchemy's statement and parameters."""
    reason = str(exc.orig) if getattr(exc, "orig", None) is not None else ""
    first = reason.strip().splitlines()[0] if reason.strip() else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__
