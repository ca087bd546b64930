"""The ledger: the event store of every run.

SQLite in WAL mode is the embedded default (one file under the run's
folder); PostgreSQL is used when the URL says so. The proxy never writes on
its hot path: it hands rows to a `LedgerWriter`, whose thread inserts them
in batches. Rows the writer cannot store are counted as `ledger.lost`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Text, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, create_engine, select

__all__ = [
    "Event",
    "LedgerError",
    "LedgerWriter",
    "Run",
    "RunCounter",
    "finish_run",
    "iter_events",
    "ledger_url_for",
    "load_counters",
    "open_ledger",
    "safe_url",
    "start_run",
    "utc_now",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
DEFAULT_FLUSH_INTERVAL_S = 0.2
# Rows kept in memory while the database is unreachable; beyond this the
# oldest rows are lost and counted.
DEFAULT_BUFFER_ROWS = 200_000


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
    """Open the ledger at `url` and create its tables when they are missing."""
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
        if create:
            SQLModel.metadata.create_all(engine)
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't open the ledger at {safe_url(url)}: {exc}") from exc
    except ModuleNotFoundError as exc:
        raise LedgerError(
            f"Can't open the ledger at {safe_url(url)}: driver {exc.name!r} is not installed."
        ) from exc
    return engine


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


def load_counters(engine: Engine, run_id: str) -> dict[str, int]:
    """Return the run's counters summed over its proxy instances."""
    totals: dict[str, int] = {}
    try:
        with Session(engine) as session:
            for row in session.exec(select(RunCounter).where(RunCounter.run_id == run_id)):
                totals[row.name] = totals.get(row.name, 0) + row.value
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't read the counters of run {run_id!r}: {exc}") from exc
    return totals


class LedgerWriter:
    """Insert event rows in batches from a background thread.

    `put()` is cheap and never blocks, so a proxy hook can call it. The
    optional `transform` turns what was put into an event row (a dict of
    `Event` columns) inside the writer's thread; it returns None to skip.
    Counters set through `count()` are written with every flush.
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
            self._drain(deadline)
            self._flush()
        self._drain(None)
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

    def _flush(self, final: bool = False) -> None:
        while self._pending or final:
            rows = self._pending[: self._batch_size]
            try:
                with self._engine.begin() as connection:
                    if rows:
                        connection.execute(Event.__table__.insert(), rows)
                    if final or len(self._pending) <= self._batch_size:
                        self._write_counters(connection)
            except SQLAlchemyError as exc:
                self._report_failure(exc)
                if final:
                    self.count("ledger.lost", len(self._pending))
                    log.error("Ledger unreachable at close: %d events of run %s lost",
                              len(self._pending), self._run_id)
                    self._pending.clear()
                return
            if self._failing_since is not None:
                log.warning("Ledger reachable again (run %s)", self._run_id)
                self._failing_since = None
            del self._pending[: len(rows)]
            self.written += len(rows)
            if not self._pending:
                return

    def _write_counters(self, connection: Any) -> None:
        counters = self.counters()
        if not counters:
            return
        table = RunCounter.__table__
        for name, value in counters.items():
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
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error("Can't write to the ledger (run %s), keeping %d rows in memory: %s",
                      self._run_id, len(self._pending), exc.__class__.__name__)
