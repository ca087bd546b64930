"""Ledger ingest rate: events per second one proxy's `LedgerWriter` stores.

Each writer runs in its own process, as each proxy does, puts `--events`
event rows as fast as it can and closes, which flushes everything. The
figure is rows stored per second from the first `put()` to the end of
`close()`. Measured in one run:

- SQLite (WAL), one writer;
- PostgreSQL with COPY (what the writer uses), one writer and two writers
  recording one run at once, as two proxies do;
- PostgreSQL with a batched executemany INSERT, one writer, for comparison.

Rows look like the proxy's: about one in four carries a 300-byte snapshot.

    .venv/bin/python bench/ledger_ingest.py [--events 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postgres_schema import postgres_schema  # noqa: E402

from cutover.ledger import Event, LedgerWriter, load_counters, open_ledger, start_run  # noqa: E402

RUN_ID = "bench-ingest"
SNAPSHOT = json.dumps({"externalId": "#1", "item": {"items": [{"item": {"id": "7"}, "quantity": 2,
                                                              "rate": 19.9}] * 4}, "memo": "x" * 60})
KINDS = ("webhook.received", "erp.submitted", "erp.acked", "confirmation.sent")


def _row(index: int, instance: str) -> dict:
    kind = KINDS[index % 4]
    return {
        "order_key": f"{instance}-{index // 8}", "flow": "legacy" if index % 8 < 4 else "candidate",
        "kind": kind, "wall_time": datetime.now(UTC), "mono_ns": time.monotonic_ns(),
        "route": "ingress", "http_flow_id": uuid.uuid4().hex, "status": 200, "latency_ms": 1.5,
        "snapshot": SNAPSHOT if kind == "erp.submitted" else None,
        "digest": "ab" * 32 if kind == "webhook.received" else None,
    }


def write(url: str, instance: str, events: int, insert: str) -> dict:
    """Put `events` rows through one LedgerWriter and return its figures."""
    engine = open_ledger(url)
    start_run(engine, RUN_ID, "bench", {})
    writer = LedgerWriter(engine, run_id=RUN_ID, instance_id=instance)
    if insert == "executemany":
        writer._insert = lambda connection, rows: connection.execute(Event.__table__.insert(), rows)
    rows = [_row(index, instance) for index in range(events)]

    writer.start()
    started = time.perf_counter()
    for row in rows:
        writer.put(row)
    writer.close(timeout_s=600)
    elapsed = time.perf_counter() - started
    return {"written": writer.written, "lost": writer.counters().get("ledger.lost", 0),
            "seconds": round(elapsed, 2), "events_per_s": round(writer.written / elapsed)}


def _children(url: str, instances: list[str], events: int, insert: str) -> list[dict]:
    children = [
        subprocess.Popen([sys.executable, __file__, "--child", instance, "--url", url,
                          "--events", str(events), "--insert", insert],
                         stdout=subprocess.PIPE, text=True)
        for instance in instances
    ]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=900)
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="event rows each writer puts")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--insert", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(write(args.url, args.child, args.events, args.insert)))
        return

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.events} events per writer", flush=True)
    print("| ledger | insert | writers | events/s per writer | total events/s | lost | stored |")
    print("| --- | --- | --- | --- | --- | --- | --- |")

    setups = [("sqlite", "executemany", 1), ("postgres", "COPY", 1), ("postgres", "COPY", 2),
              ("postgres", "executemany", 1)]
    for ledger, insert, writers in setups:
        with contextlib.ExitStack() as stack:
            if ledger == "sqlite":
                folder = stack.enter_context(tempfile.TemporaryDirectory())
                url = f"sqlite:///{folder}/ledger.sqlite"
            else:
                url = stack.enter_context(postgres_schema())
            open_ledger(url).dispose()  # migrate once, before the writers race
            instances = [f"proxy-{index}" for index in range(writers)]
            mode = "executemany" if insert == "executemany" and ledger == "postgres" else "default"
            results = _children(url, instances, args.events, mode)

            engine = open_ledger(url)
            with engine.connect() as connection:
                stored = connection.exec_driver_sql("SELECT count(*) FROM events").scalar()
            lost = load_counters(engine, RUN_ID).get("ledger.lost", 0)
            engine.dispose()
            per_writer = round(sum(r["events_per_s"] for r in results) / writers)
            slowest = max(r["seconds"] for r in results)
            print(f"| {ledger} | {insert} | {writers} | {per_writer} | "
                  f"{round(writers * args.events / slowest)} | {lost} | {stored} |", flush=True)


if __name__ == "__main__":
    main()
