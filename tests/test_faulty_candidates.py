"""End to end: seeded faulty variants of the gated flow get NO-GO, the correct one GO.

Each case runs the real sandbox behind a real mitmdump with the addon, with
one fault of the gated flow switched on, and checks that the report names
the criterion the fault breaks and exactly the orders the sandbox reports
it broke.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace

import pytest

from compare import Criteria, Status, Verdict, analyze, write_reports
from cutover.demo import DemoOptions, run_parallel
from sandbox.settings import SandboxSettings

pytestmark = pytest.mark.slow

ORDERS = 100
FAULT_EVERY = 25

FAST_SANDBOX = replace(
    SandboxSettings(), legacy_poll_interval_s=1.0, gated_pending_sla_s=2.0,
    erp_base_latency_ms=5.0, erp_latency_per_inflight_ms=2.0, gated_max_attempts=3,
)
CRITERIA = Criteria(min_orders=ORDERS - 10)


# Cases by name: the faults switched on in the sandbox.
CASES = {
    "correct": {},
    "confirms-early": {"gated_confirm_early_every": FAULT_EVERY},
    "drops-order": {"gated_drop_every": FAULT_EVERY},
    "submits-twice": {"gated_submit_twice_every": FAULT_EVERY},
    "rounds-price": {"gated_round_price_every": FAULT_EVERY},
    "confirms-after-rejection": {"gated_confirm_on_failure": True, "erp_reject_rate": 0.05},
}
# A dropped order never gets an ERP outcome in the candidate, so that run
# can't settle. It ends after this wait, long past the other orders' outcomes.
DROP_SETTLE_TIMEOUT_S = 12.0


def _gated_stats(topology) -> dict:
    sandbox = topology.sandbox
    url = sandbox.base_url(sandbox.gated_port) + "/_sim/stats"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


@pytest.fixture(scope="module")
def run_case(tmp_path_factory):
    """Return a function that runs one case once per module and returns (analysis, gated stats)."""
    done: dict[str, tuple] = {}

    def run(name: str) -> tuple:
        if name in done:
            return done[name]
        faults = CASES[name]
        dropping = bool(faults.get("gated_drop_every"))
        seen: dict = {}
        options = DemoOptions(
            run_id=name, runs_dir=tmp_path_factory.mktemp("runs"), orders=ORDERS, burst=20,
            rate_per_s=100.0, settle_timeout_s=DROP_SETTLE_TIMEOUT_S if dropping else 60.0,
            sandbox=replace(FAST_SANDBOX, **faults),
        )
        result = run_parallel(options, on_settled=lambda topology: seen.update(_gated_stats(topology)))
        assert result.send_failures == {}
        assert result.settled != dropping, f"run {name}: settled {result.settled}"
        done[name] = (analyze(result.engine, name, criteria=CRITERIA), seen)
        return done[name]

    return run


def _criterion(analysis, name: str):
    return next(result for result in analysis.criteria_results if result.name == name)


def test_correct_gated_flow_gets_go(run_case):
    analysis, _ = run_case("correct")

    failed = [result.name for result in analysis.criteria_results if not result.passed]
    assert analysis.verdict == Verdict.GO, failed
    assert analysis.exit_code == 0
    assert analysis.compared_orders == ORDERS
    assert analysis.confirmation_pairs == ORDERS
    assert analysis.legacy.open_gaps == ORDERS


@pytest.mark.parametrize(
    ("case", "stats_key", "criterion"),
    [
        ("confirms-early", "early_confirmations", "no_open_gap"),
        ("drops-order", "dropped", "no_missing_order"),
        ("submits-twice", "submitted_twice", "no_duplicate_erp_order"),
        ("rounds-price", "price_rounded", "erp_parity"),
        ("confirms-after-rejection", "confirmed_after_failure", "no_confirmation_after_rejection"),
    ],
)
def test_faulty_gated_flow_gets_no_go(run_case, case, stats_key, criterion):
    analysis, stats = run_case(case)
    broken = {str(key) for key in stats[stats_key]}
    result = _criterion(analysis, criterion)

    assert broken, f"the fault of {case} touched no order"
    assert analysis.verdict == Verdict.NO_GO
    assert analysis.exit_code == 1
    assert result.status == Status.FAIL
    assert set(result.examples) == broken


def test_rounded_price_fails_confirmation_parity_too(run_case, tmp_path):
    analysis, stats = run_case("rounds-price")
    broken = {str(key) for key in stats["price_rounded"]}

    assert analysis.parity_differences == len(broken)
    confirmation = _criterion(analysis, "confirmation_parity")
    assert confirmation.status == Status.FAIL
    assert set(confirmation.examples) == broken

    paths = write_reports(analysis, tmp_path / "reports", formats=("md", "json", "html", "junit"))
    html = paths[2].read_text(encoding="utf-8")
    for key in broken:
        assert key in html
