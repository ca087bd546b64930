"""Split a run into ranges of order keys, and merge what was tallied per range.

A large run is analysed by several worker processes, each joining and
tallying the orders of one range of order keys (`compare.sql_join` reads
a range from the ledger's index). An order's events all share its key, so
no order is split. The ranges hold about the same number of events.

The merge functions add up what the workers tallied, so the result equals
tallying the whole run in one process. Counts are summed. Example keys are
taken from the ranges in key order, as one pass would have met them.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import fields
from itertools import pairwise

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from compare.completeness import Reconciliation
from compare.join import EvidenceTally
from compare.sql_join import KeyRange, driver_errors
from compare.verdict import MAX_EXAMPLES, Findings, KeySample
from cutover.ledger import LedgerError

__all__ = [
    "MIN_EVENTS_PER_WORKER",
    "default_workers",
    "key_ranges",
    "merge_capped_counts",
    "merge_evidence",
    "merge_findings",
    "merge_keys",
    "merge_reconciliation",
]

# Below this many keyed events per worker, starting worker processes costs
# more than it saves.
MIN_EVENTS_PER_WORKER = 250_000
# Maximum number of workers when the caller passes none.
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """Return the number of worker processes to use: the CPUs this process may run on, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


def key_ranges(engine: Engine, run_id: str, workers: int, *,
               min_events: int | None = None) -> list[KeyRange]:
    """Split the run's order keys into at most `workers` ranges of about equal event counts.

    Returns one open range when the run is too small to be worth
    splitting, that is when a range would hold fewer than `min_events`
    keyed events (default `MIN_EVENTS_PER_WORKER`). Raises LedgerError when
    the ledger cannot be read.
    """
    if min_events is None:
        min_events = MIN_EVENTS_PER_WORKER
    if workers < 1:
        raise ValueError(f"workers must be 1 or more, but got {workers}")
    try:
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            mark = "%s" if connection.dialect.name == "postgresql" else "?"
            keyed = f"FROM events WHERE run_id = {mark} AND order_key IS NOT NULL"
            cursor = driver.cursor()
            try:
                cursor.execute(f"SELECT count(*) {keyed}", [run_id])
                events = cursor.fetchone()[0]
                parts = min(workers, events // max(1, min_events))
                bounds: list[str] = []
                for part in range(1, parts):
                    cursor.execute(f"SELECT order_key {keyed} ORDER BY order_key LIMIT 1 OFFSET {mark}",
                                   [run_id, events * part // parts])
                    bound = cursor.fetchone()[0]
                    if not bounds or bound > bounds[-1]:
                        bounds.append(bound)
            finally:
                cursor.close()
    except (SQLAlchemyError, *driver_errors(engine)) as exc:
        raise LedgerError(f"Can't split the orders of run {run_id!r}: {exc}") from exc

    edges: list[str | None] = [None, *bounds, None]
    return list(pairwise(edges))


def merge_keys(into: KeySample, other: KeySample) -> None:
    """Add another range's sample to `into`, which covers the earlier keys."""
    into.count += other.count
    into.keys = (into.keys + other.keys)[:MAX_EXAMPLES]


def merge_findings(into: Findings, other: Findings) -> None:
    """Add another range's findings to `into`, which covers the earlier keys.

    Only what is tallied per order is merged. The figures set once the
    tally is over (hours covered, recording losses, reconciliation) stay as
    they are in `into`.
    """
    for item in fields(Findings):
        mine, theirs = getattr(into, item.name), getattr(other, item.name)
        if isinstance(mine, KeySample):
            merge_keys(mine, theirs)
        elif isinstance(mine, int) and not isinstance(mine, bool):
            setattr(into, item.name, mine + theirs)
        elif mine is None and theirs is not None and item.name == "clock_skew_bound_ms":
            into.clock_skew_bound_ms = theirs


def merge_evidence(into: EvidenceTally, other: EvidenceTally) -> None:
    """Add another range's evidence counts to `into`."""
    for item in fields(EvidenceTally):
        mine, theirs = getattr(into, item.name), getattr(other, item.name)
        if isinstance(mine, Counter):
            mine.update(theirs)
        else:
            setattr(into, item.name, mine + theirs)


def merge_reconciliation(into: Reconciliation, other: Reconciliation) -> None:
    """Add another range's reconciliation, made against the same export, to `into`."""
    into.both += other.both
    for name in ("only_legacy", "only_candidate", "neither", "unreconciled"):
        merge_keys(getattr(into, name), getattr(other, name))
    # A key is unseen when no range met it.
    into.unseen &= other.unseen


def merge_capped_counts(into: Counter[str], other: Counter[str], limit: int, overflow: str) -> None:
    """Add counts kept for at most `limit` names, the rest under `overflow`, as one pass would.

    `other` must list its names in the order its range first met them.
    """
    for name, count in other.items():
        if name == overflow:
            continue
        if name in into or len(into) < limit:
            into[name] += count
        else:
            into[overflow] += count
    if other.get(overflow):
        into[overflow] += other[overflow]
