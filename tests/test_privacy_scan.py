"""Personal data and secrets seeded into a run appear nowhere the harness writes.

A whole parallel run (real sandbox, real mitmdump) with its webhook signing
secret and its customers' names, emails, phones and street addresses; then
every file of the run folder and the report folder is scanned for them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from compare import Criteria, analyze, write_reports
from cutover.demo import DemoOptions, run_parallel
from sandbox.orders import make_orders
from sandbox.settings import SandboxSettings

pytestmark = pytest.mark.slow

SECRET = "shpss_seeded-secret-4f1c9a7e"
ORDERS = 30
SEED = 23


def _personal_values() -> set[str]:
    values = set()
    for order in make_orders(SEED, ORDERS):
        customer = order["customer"]
        values |= {order["email"], customer["email"], customer["phone"],
                   f"{customer['first_name']} {customer['last_name']}"}
        for address in (order["billing_address"], order["shipping_address"]):
            values |= {address["name"], address["address1"], address["phone"]}
    return values


def _files(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*") if path.is_file()]


def test_run_writes_no_personal_data_or_secret(tmp_path):
    sandbox = replace(SandboxSettings(), webhook_secret=SECRET, legacy_poll_interval_s=0.5)
    options = DemoOptions(run_id="privacy", runs_dir=tmp_path / "runs", orders=ORDERS, burst=10,
                          rate_per_s=100.0, seed=SEED, settle_timeout_s=60.0, sandbox=sandbox)
    result = run_parallel(options)
    analysis = analyze(result.engine, result.run_id, criteria=Criteria(min_orders=ORDERS))
    reports = tmp_path / "reports"
    write_reports(analysis, reports)
    result.engine.dispose()

    # The sandbox's own settings file and log are the system under test's,
    # not the harness's: the sandbox must know its secret.
    scanned = [path for path in _files(result.folder, reports)
               if path.name not in ("sandbox.json", "sandbox.log")]
    assert {path.name for path in scanned} >= {"ledger.sqlite", "proxy.log", "shadow.json",
                                               "report.md", "report.json"}
    needles = _personal_values() | {SECRET}
    assert len(needles) > 4 * ORDERS / 2
    for path in scanned:
        content = path.read_bytes()
        for needle in needles:
            assert needle.encode("utf-8") not in content, f"{needle!r} found in {path.name}"
