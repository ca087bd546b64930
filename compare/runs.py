"""Read one run or one order from the ledger: run lookup, timeline, single-order check."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from compare.assess import OrderRow, assess_order
from compare.join import EvidenceTally, summarise_order
from compare.parity import Normalisation
from cutover.ledger import Event, LedgerError, Run

__all__ = ["RunNotFoundError", "inspect_order", "ledger_url", "load_run", "order_timeline"]

# Run ids listed in the message when a run is not found.
_RUNS_LISTED = 20


class RunNotFoundError(LedgerError):
    """The requested run id is not in the ledger."""


def order_timeline(engine: Engine, run_id: str, order_key: str) -> list[Event]:
    """Return every event of one order in both flows, in time order.

    Time order is by the monotonic clock, or by wall clock when more than
    one proxy instance recorded the order.
    """
    load_run(engine, run_id)
    statement = select(Event).where(Event.run_id == run_id, Event.order_key == order_key)
    try:
        with Session(engine) as session:
            events = list(session.exec(statement))
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't read order {order_key!r} of run {run_id!r}: {exc}") from exc

    if len({event.instance_id for event in events}) > 1:
        events.sort(key=lambda event: (event.wall_time, event.id or 0))
    else:
        events.sort(key=lambda event: (event.mono_ns, event.id or 0))
    return events


def inspect_order(
    engine: Engine, run_id: str, order_key: str, normalisation: Normalisation | None = None
) -> OrderRow | None:
    """Classify and compare one order, or return None when the run has no event for it."""
    events = order_timeline(engine, run_id, order_key)
    if not events:
        return None
    order = summarise_order(order_key, events, EvidenceTally())
    return assess_order(order, normalisation or Normalisation())


def load_run(engine: Engine, run_id: str) -> Run:
    """Return the run's row, or raise RunNotFoundError naming the runs present."""
    try:
        with Session(engine) as session:
            run = session.get(Run, run_id)
            if run is not None:
                return run
            recent = select(Run.id).order_by(col(Run.started_at).desc()).limit(_RUNS_LISTED)
            present = list(session.exec(recent))
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't read run {run_id!r} from the ledger: {exc}") from exc

    listed = ", ".join(present) if present else "none"
    raise RunNotFoundError(
        f"Run {run_id!r} not found in the ledger at {ledger_url(engine)}; "
        f"runs present (most recent first, at most {_RUNS_LISTED}): {listed}."
    )


def ledger_url(engine: Engine) -> str:
    """Return the ledger's URL with any password hidden, for messages and reports."""
    return engine.url.render_as_string(hide_password=True)
