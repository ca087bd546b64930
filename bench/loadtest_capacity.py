"""Highest arrival rate the whole load-test topology sustains on this machine.

Runs `steady` load tests at rising rates through Locust, the shadow proxy and
the sandbox, all on this machine, and stops at the first rate that fails.
A rate is sustained when all of these hold: Locust offered at least 98 % of
the planned webhooks, and every order sent is in the ledger or a loss
counter. No mirror copy was dropped or failed, no event was lost, and both
flows settled.

The sandbox ERP is made fast and wide (limit 64, 5 ms base latency, 0.5 ms per
request in flight), so that the harness, not the simulated ERP, sets the
ceiling. The proxy's CPU time per order is read from /proc before and after
each step (Linux only).

    .venv/bin/python bench/loadtest_capacity.py [--rates 25,50,75,100] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.run import LoadTestOptions, run_loadtest  # noqa: E402
from loadtest.shapes import build_profile  # noqa: E402
from sandbox.settings import SandboxSettings  # noqa: E402

MIN_OFFERED_SHARE = 0.98


def measure(rate: float, seconds: float, runs_dir: Path, workers: int) -> dict:
    sandbox = replace(SandboxSettings(), erp_concurrency_limit=64, erp_base_latency_ms=5.0,
                      erp_latency_per_inflight_ms=0.5, legacy_poll_interval_s=1.0)
    run_id = f"capacity-{int(rate)}"
    options = LoadTestOptions(run_id=run_id, profile=build_profile("steady", rate, seconds), runs_dir=runs_dir,
                              sandbox=sandbox, workers=workers, seed=int(rate), settle_timeout_s=60.0)
    result = run_loadtest(options)

    phase = result.figures.phases[0]
    accounting = result.figures.accounting
    counters = result.figures.counters
    latencies = sorted(order_ms for order_ms in _response_ms(result.folder / "locust"))
    mirror_losses = counters.get("mirror.dropped", 0) + counters.get("mirror.failed", 0)
    offered_share = phase.sent / phase.planned_orders if phase.planned_orders else 0.0
    row = {
        "rate": rate, "planned": phase.planned_orders, "sent": phase.sent,
        "offered_share": round(offered_share, 4), "unaccounted": accounting.unaccounted,
        "mirror_losses": mirror_losses, "ledger_lost": counters.get("ledger.lost", 0),
        "settled": result.settled,
        "proxy_cpu_ms_per_order": result.facts.get("proxy_cpu_ms_per_order"),
        "webhook_p50_ms": _percentile(latencies, 50), "webhook_p99_ms": _percentile(latencies, 99),
    }
    row["sustained"] = (offered_share >= MIN_OFFERED_SHARE and accounting.unaccounted == 0
                        and mirror_losses == 0 and row["ledger_lost"] == 0 and result.settled)
    return row


def _response_ms(folder: Path) -> list[float]:
    values = []
    for path in folder.glob("orders-*.jsonl"):
        values += [json.loads(line)["ms"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    return values


def _percentile(values: list[float], percentile: float) -> float | None:
    if not values:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(percentile) - 1], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="25,50,75,100,125,150", help="Comma-separated webhooks/s to try, rising.")
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of each steady step in seconds.")
    parser.add_argument("--workers", type=int, default=0, help="Locust workers (0: one Locust process).")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="cutover-capacity-") as folder:
        for rate in (float(text) for text in args.rates.split(",")):
            row = measure(rate, args.seconds, Path(folder), args.workers)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not row["sustained"]:
                break

    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
          f"Command: .venv/bin/python bench/loadtest_capacity.py --rates {args.rates} --seconds {args.seconds:g}"
          + (f" --workers {args.workers}" if args.workers else "") + "\n")
    print("| target webhooks/s | sent / planned | unaccounted | mirror losses | ledger lost | settled "
          "| proxy CPU ms/order | webhook p50 ms | p99 ms | sustained |")
    print("| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |")
    for row in rows:
        print(f"| {row['rate']:g} | {row['sent']} / {row['planned']} | {row['unaccounted']} | {row['mirror_losses']} "
              f"| {row['ledger_lost']} | {row['settled']} | {row['proxy_cpu_ms_per_order']} "
              f"| {row['webhook_p50_ms']} | {row['webhook_p99_ms']} | {'yes' if row['sustained'] else 'no'} |")


if __name__ == "__main__":
    main()
