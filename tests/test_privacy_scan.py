"""Personal data and secrets seeded into a run appear nowhere the harness writes.

A whole parallel run (real sandbox, real mitmdump, SQLite ledger) with a
seeded webhook signing secret, a seeded CUTOVER_REDACTION_KEY and the
customers' names, emails, phones and street addresses; then every file of
the run folder (the SQLite file's bytes, its WAL, the logs, the settings
files) and the reports in every format are scanned for them. The secrets are
also looked for base64-, hex- and URL-encoded (`tests/security/scan.py`).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from compare import Criteria, analyze, write_reports
from cutover.demo import DemoOptions, run_parallel
from cutover.privacy import REDACTION_KEY_ENV
from sandbox.orders import make_orders
from sandbox.settings import SandboxSettings
from tests.security.scan import Needle, Scanner, files_under

pytestmark = pytest.mark.slow

SIGNING_SECRET = "shpss_seeded-secret-4f1c9a7e"
REDACTION_KEY = "redaction-key/seeded+7d2e=91b0c4"
ORDERS = 30
SEED = 23


def _personal_values() -> set[str]:
    values = set()
    for order in make_orders(SEED, ORDERS):
        customer = order["customer"]
        values |= {order["email"], customer["email"], customer["phone"], customer["last_name"],
                   f"{customer['first_name']} {customer['last_name']}"}
        for address in (order["billing_address"], order["shipping_address"]):
            values |= {address["name"], address["address1"], address["phone"]}
    return values


@pytest.fixture(scope="module")
def privacy_run(tmp_path_factory):
    """Run the demo once with the seeded secrets and write every report format."""
    folder = tmp_path_factory.mktemp("privacy")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(REDACTION_KEY_ENV, REDACTION_KEY)
        sandbox = replace(SandboxSettings(), webhook_secret=SIGNING_SECRET, legacy_poll_interval_s=0.5)
        options = DemoOptions(run_id="privacy", runs_dir=folder / "runs", orders=ORDERS, burst=10,
                              rate_per_s=100.0, seed=SEED, settle_timeout_s=60.0, sandbox=sandbox)
        result = run_parallel(options)
    analysis = analyze(result.engine, result.run_id, criteria=Criteria(min_orders=ORDERS))
    reports = folder / "reports"
    write_reports(analysis, reports, ("md", "json", "html", "junit"))
    result.engine.dispose()
    return files_under(result.folder, reports)


def test_run_writes_every_expected_file(privacy_run):
    names = {path.name for path in privacy_run}

    assert names >= {"ledger.sqlite", "proxy.log", "sandbox.log", "shadow.json", "sandbox.json",
                     "report.md", "report.json", "report.html", "report.junit.xml"}


def test_run_files_hold_no_secret(privacy_run):
    scanner = Scanner([Needle("webhook signing secret", SIGNING_SECRET),
                       Needle(REDACTION_KEY_ENV, REDACTION_KEY)])

    findings = scanner.scan_files(privacy_run)

    assert not findings, "\n".join(map(str, findings))


def test_run_files_hold_no_personal_data(privacy_run):
    values = _personal_values()
    scanner = Scanner(Needle("personal data " + repr(value), value, encoded=False) for value in values)
    assert len(values) > 4 * ORDERS / 2

    findings = scanner.scan_files(privacy_run)

    assert not findings, "\n".join(map(str, findings))
