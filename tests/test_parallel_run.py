"""End to end: a real mitmdump with the addon in front of the real sandbox.

Each test starts the sandbox and the proxy as child processes on free
loopback ports, sends seeded Shopify-shaped webhooks through the proxy's
ingress, and reads what happened from the ledger and the simulators.
"""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from dataclasses import replace

import pytest

from compare import Criteria, analyze
from cutover.demo import DemoOptions, run_parallel
from cutover.ledger import iter_events
from sandbox.settings import SandboxSettings

pytestmark = pytest.mark.slow

FAST_SANDBOX = replace(
    SandboxSettings(), legacy_poll_interval_s=1.0, gated_pending_sla_s=2.0,
    erp_base_latency_ms=5.0, erp_latency_per_inflight_ms=2.0,
)


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def _timelines(engine, run_id):
    """Return {order key: {flow: {event kind: [mono_ns, ...]}}}."""
    timelines = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for event in iter_events(engine, run_id):
        timelines[event.order_key][event.flow][event.kind].append((event.mono_ns, event.status))
    return timelines


@pytest.fixture(scope="module")
def correct_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    seen = {}

    def inspect(topology):
        sandbox = topology.sandbox
        seen["messages"] = _get_json(sandbox.base_url(sandbox.email_port) + "/_sim/messages")
        seen["gated"] = _get_json(sandbox.base_url(sandbox.gated_port) + "/_sim/stats")

    options = DemoOptions(run_id="e2e-correct", runs_dir=runs, orders=40, burst=15,
                          rate_per_s=50.0, settle_timeout_s=60.0, sandbox=FAST_SANDBOX)
    result = run_parallel(options, on_settled=inspect)
    return result, seen


def test_parallel_run_settles_with_every_order_sent(correct_run):
    result, _ = correct_run
    assert result.send_failures == {}
    assert result.sent == 40
    assert result.settled


def test_parallel_run_records_both_flows_per_order(correct_run):
    result, _ = correct_run
    timelines = _timelines(result.engine, result.run_id)
    orders = {key: flows for key, flows in timelines.items() if key is not None}
    assert len(orders) == 40

    for key, flows in orders.items():
        legacy, candidate = flows["legacy"], flows["candidate"]
        assert legacy["webhook.received"], key
        # The gated flow answers 401 when the HMAC does not verify.
        assert [status for _, status in candidate["mirror.sent"]] == [200], key

        legacy_ack = min(t for t, _ in legacy["erp.acked"])
        legacy_confirmation = min(t for t, _ in legacy["confirmation.sent"])
        assert legacy_confirmation < legacy_ack, f"legacy confirmed {key} after the ERP"

        candidate_ack = min(t for t, _ in candidate["erp.acked"])
        candidate_confirmation = min(t for t, _ in candidate["confirmation.quarantined"])
        assert candidate_confirmation > candidate_ack, f"candidate confirmed {key} before the ERP"
        assert "confirmation.sent" not in candidate, key


def test_parallel_run_mirror_is_byte_identical(correct_run):
    result, _ = correct_run
    received, mirrored = {}, {}
    for event in iter_events(result.engine, result.run_id):
        if event.kind == "webhook.received":
            received[event.order_key] = event.digest
        elif event.kind == "mirror.sent":
            mirrored[event.order_key] = event.digest
    assert received == mirrored


def test_parallel_run_hmac_verified_at_gated_flow(correct_run):
    _, seen = correct_run
    assert seen["gated"]["hmac_failures"] == 0
    assert seen["gated"]["received"] >= 40


def test_parallel_run_quarantine_holds(correct_run):
    _, seen = correct_run
    messages = seen["messages"]
    per_order = defaultdict(int)
    for message in messages:
        per_order[message["order_id"]] += 1
    # Only the legacy flow's confirmations reach the email service: one per
    # order, and no pending notice (only the gated flow sends those).
    assert len(per_order) == 40
    assert set(per_order.values()) == {1}
    assert all(message["category"] == "order_confirmation" for message in messages)


def test_parallel_run_verdict_is_go(correct_run):
    result, _ = correct_run
    analysis = analyze(result.engine, result.run_id, criteria=Criteria(min_orders=40))
    assert analysis.verdict == "GO", [c for c in analysis.criteria_results if c.status != "PASS"]
    assert analysis.exit_code == 0


def test_faulty_candidate_gets_no_go_naming_the_order(tmp_path):
    sandbox = replace(FAST_SANDBOX, gated_confirm_early_every=200)
    options = DemoOptions(run_id="e2e-faulty", runs_dir=tmp_path, orders=200, burst=50,
                          rate_per_s=150.0, settle_timeout_s=90.0, sandbox=sandbox)
    seen = {}

    def inspect(topology):
        sandbox = topology.sandbox
        seen["gated"] = _get_json(sandbox.base_url(sandbox.gated_port) + "/_sim/stats")

    result = run_parallel(options, on_settled=inspect)
    early = [str(key) for key in seen["gated"]["early_confirmations"]]
    assert len(early) == 1

    analysis = analyze(result.engine, result.run_id, criteria=Criteria(min_orders=100))
    assert analysis.verdict == "NO-GO"
    assert analysis.exit_code == 1
    failed = [c for c in analysis.criteria_results if c.status == "FAIL"]
    assert any(early[0] in c.examples for c in failed), failed
