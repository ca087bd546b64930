"""Time the comparator's verdict on a run of 1,000,000 orders.

The script writes a synthetic run into a SQLite ledger (and, with
`--postgres`, into a PostgreSQL schema of its own), then measures in one
run, each in a child process so that its peak memory (maxrss) is its own:

- `baseline`: a plain sorted join, one `SELECT ... ORDER BY order_key, flow,
  mono_ns` read with the DB-API cursor, reduced to the candidate's open
  gaps in a few lines of Python. No parity, no classes: a floor, not a
  comparator;
- `join-sql` / `join-python`: the per-order join alone in one process,
  `join_orders_sql` against `join_orders` over the ORM's `iter_events`,
  consumed and counted;
- `verdict`: the whole `analyze` (classes, parity, histograms, verdict) as
  `cutover report` runs it: the SQL join, with the run split into key
  ranges over as many worker processes as there are CPUs (at most 4);
- `verdict-1-worker`: the same in one process;
- `verdict-python`: the same in one process over the Python join.

A typical order has 8 events: webhook.received, erp.submitted, erp.acked
and confirmation.sent in the legacy flow, and mirror.sent, erp.submitted,
erp.acked and confirmation.quarantined in the candidate. About 5 % of the
orders vary: throttled retries, rejections, lost mirror copies, a payload
difference, or a candidate that confirms before the acknowledgement.

    .venv/bin/python bench/compare_1m.py [--orders 1000000] [--postgres] \\
        [--measure baseline,join-sql,verdict,verdict-1-worker,join-python,verdict-python]

The SQLite file is kept under `--data` (default `/tmp/cutover-bench`) and
reused when it already contains a run of the requested size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postgres_schema import postgres_schema  # noqa: E402

from cutover.ledger import open_ledger, start_run  # noqa: E402

RUN_ID = "bench-1m"
RUN_START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
MEASUREMENTS = ("baseline", "join-sql", "verdict", "verdict-1-worker", "join-python", "verdict-python")
_COLUMNS = ("run_id", "order_key", "flow", "kind", "wall_time", "mono_ns", "instance_id",
            "route", "http_flow_id", "status", "latency_ms", "snapshot", "digest", "detail")


def _sales_order(key: str, flow: str, quantity: int) -> str:
    # The fields a flow fills with its own values (memo, custbody_synced_at)
    # differ between the flows, so every pair needs normalising.
    return json.dumps({
        "externalId": key,
        "entity": {"id": "customer-" + key[-4:]},
        "item": {"items": [
            {"item": {"id": "7"}, "quantity": quantity, "rate": 19.9},
            {"item": {"id": "12"}, "quantity": 1, "rate": "4.50"},
        ]},
        "memo": f"{flow} sync",
        "custbody_synced_at": "2026-11-27T09:00:00Z",
    }, separators=(",", ":"))


def generate_orders(orders: int, seed: int = 7) -> Iterator[tuple]:
    """Yield event rows (in `_COLUMNS` order) for `orders` synthetic orders."""
    rng = random.Random(seed)
    wall0 = RUN_START.replace(tzinfo=None)

    for index in range(orders):
        key = f"#{1_000_000_000 + index}"
        start_ns = index * 2_000_000  # one order every 2 ms
        variant = rng.random()
        digest = f"{index:064x}"
        legacy_snapshot = _sales_order(key, "legacy", 2)
        candidate_snapshot = _sales_order(key, "candidate", 3 if variant < 0.01 else 2)

        events = [
            ("legacy", "webhook.received", 0, None, digest),
            ("legacy", "confirmation.sent", 4, None, None),
            ("legacy", "erp.submitted", 20, legacy_snapshot, None),
            ("legacy", "erp.acked", 70, None, None),
        ]
        if 0.01 <= variant < 0.015:
            events.append(("candidate", "mirror.dropped", 1, None, None))
        else:
            events.append(("candidate", "mirror.sent", 1, None, digest))
            if 0.015 <= variant < 0.035:
                events += [("candidate", "erp.submitted", 10, candidate_snapshot, None),
                           ("candidate", "erp.throttled", 15, None, None),
                           ("candidate", "erp.submitted", 500, candidate_snapshot, None)]
                ack_ms = 560
            else:
                events.append(("candidate", "erp.submitted", 10, candidate_snapshot, None))
                ack_ms = 45
            if 0.035 <= variant < 0.045:
                events += [("candidate", "erp.rejected", ack_ms, None, None)]
            else:
                confirm_ms = ack_ms - 3 if 0.045 <= variant < 0.05 else ack_ms + 5
                events += [("candidate", "erp.acked", ack_ms, None, None),
                           ("candidate", "confirmation.quarantined", confirm_ms, None, None)]

        for flow, kind, at_ms, snapshot, body_digest in events:
            mono_ns = start_ns + at_ms * 1_000_000
            wall = wall0 + timedelta(microseconds=mono_ns // 1000)
            yield (RUN_ID, key, flow, kind, wall.strftime("%Y-%m-%d %H:%M:%S.%f"), mono_ns,
                   "proxy-1", flow, None, None, None, snapshot, body_digest, None)


def fill_sqlite(path: Path, orders: int) -> int:
    """Write the run into a fresh SQLite ledger file; return the event count."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    engine = open_ledger(f"sqlite:///{path}")
    start_run(engine, RUN_ID, "bench", {"orders": orders})
    engine.dispose()

    connection = sqlite3.connect(path)
    placeholders = ", ".join("?" for _ in _COLUMNS)
    statement = f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
    rows = generate_orders(orders)
    written = 0
    while True:
        chunk = [row for _, row in zip(range(100_000), rows, strict=False)]
        if not chunk:
            break
        connection.executemany(statement, chunk)
        connection.commit()
        written += len(chunk)
    connection.execute("ANALYZE")
    connection.close()
    return written


def fill_postgres(url: str, orders: int) -> int:
    """Write the run into the PostgreSQL ledger at `url` with COPY."""
    engine = open_ledger(url)
    start_run(engine, RUN_ID, "bench", {"orders": orders})
    written = 0
    with engine.raw_connection() as raw:
        driver = raw.driver_connection
        with driver.cursor() as cursor:
            with cursor.copy(f"COPY events ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                for row in generate_orders(orders):
                    copy.write_row((*row[:4], row[4] + "+00", *row[5:]))
                    written += 1
            cursor.execute("ANALYZE events")
        driver.commit()
    engine.dispose()
    return written


def sqlite_event_count(path: Path) -> int:
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as connection:
        try:
            return connection.execute(
                "SELECT count(*) FROM events WHERE run_id = ?", (RUN_ID,)).fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def measure(url: str, what: str) -> dict:
    """Run one measurement in this process and return its figures."""
    from compare.analysis import analyze
    from compare.join import EvidenceTally, join_orders
    from compare.sql_join import join_orders_sql
    from cutover.ledger import iter_events

    engine = open_ledger(url)
    started = time.perf_counter()
    if what == "baseline":
        result = _baseline(engine)
    elif what in ("join-python", "join-sql"):
        tally = EvidenceTally()
        if what == "join-sql":
            orders = join_orders_sql(engine, RUN_ID, tally)
        else:
            orders = join_orders(iter_events(engine, RUN_ID), tally)
        result = {"orders": sum(1 for _ in orders)}
    else:
        options = {
            "verdict": {},
            "verdict-1-worker": {"workers": 1},
            "verdict-python": {"join": "python", "workers": 1},
        }[what]
        analysis = analyze(engine, RUN_ID, **options)
        result = {
            "orders": analysis.orders,
            "verdict": str(analysis.verdict),
            "candidate_open_gaps": analysis.candidate.open_gaps,
            "parity_differences": analysis.parity_differences,
        }
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    # The verdict's worker processes: the peak of the largest one.
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if children:
        result["worker_peak_rss_mb"] = round(children)
    return result


def _baseline(engine) -> dict:
    """Count the candidate's open gaps with one sorted scan and no comparator."""
    statement = ("SELECT order_key, kind, mono_ns FROM events WHERE run_id = %s AND flow = 'candidate' "
                 "ORDER BY order_key, flow, mono_ns")
    with engine.raw_connection() as raw:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            statement = statement.replace("%s", "?")
        cursor.execute(statement, (RUN_ID,))
        orders = open_gaps = 0
        current = None
        acked = confirmed = None
        while rows := cursor.fetchmany(50_000):
            for key, kind, mono_ns in rows:
                if key != current:
                    open_gaps += _is_open(acked, confirmed)
                    orders += 1
                    current, acked, confirmed = key, None, None
                if kind == "erp.acked" and acked is None:
                    acked = mono_ns
                elif kind == "confirmation.quarantined" and confirmed is None:
                    confirmed = mono_ns
        open_gaps += _is_open(acked, confirmed)
    return {"orders": orders, "candidate_open_gaps": open_gaps}


def _is_open(acked: int | None, confirmed: int | None) -> bool:
    return confirmed is not None and (acked is None or confirmed < acked)


def _run_child(url: str, what: str) -> dict:
    command = [sys.executable, __file__, "--child", what, "--url", url]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1:]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders in the run")
    parser.add_argument("--data", type=Path, default=Path("/tmp/cutover-bench"),
                        help="folder of the SQLite ledger file")
    parser.add_argument("--postgres", action="store_true",
                        help="also load the run into PostgreSQL at 127.0.0.1:5432 and measure there")
    parser.add_argument("--measure", default=",".join(MEASUREMENTS),
                        help="comma-separated measurements, from: " + ", ".join(MEASUREMENTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.url, args.child)))
        return

    wanted = [name.strip() for name in args.measure.split(",") if name.strip()]
    unknown = set(wanted) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s) {sorted(unknown)}; choose from {MEASUREMENTS}")

    args.data.mkdir(parents=True, exist_ok=True)
    path = args.data / f"ledger-{args.orders}.sqlite"
    events = sqlite_event_count(path)
    if events == 0:
        started = time.perf_counter()
        events = fill_sqlite(path, args.orders)
        print(f"sqlite: wrote {events} events in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}; {args.orders} orders, {events} events", flush=True)

    backends = [("sqlite", f"sqlite:///{path}")]
    with contextlib.ExitStack() as stack:
        if args.postgres:
            url = stack.enter_context(postgres_schema())
            started = time.perf_counter()
            fill_postgres(url, args.orders)
            print(f"postgres: loaded in {time.perf_counter() - started:.0f} s", flush=True)
            backends.append(("postgres", url))

        print("| backend | measurement | orders | s | peak RSS MB | result |")
        print("| --- | --- | --- | --- | --- | --- |")
        for backend, url in backends:
            for what in wanted:
                figures = _run_child(url, what)
                seconds = figures.pop("seconds", "-")
                rss = figures.pop("peak_rss_mb", "-")
                orders = figures.pop("orders", "-")
                print(f"| {backend} | {what} | {orders} | {seconds} | {rss} | {figures} |", flush=True)


if __name__ == "__main__":
    main()
