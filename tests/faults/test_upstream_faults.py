"""Faults of the services the flows call, seen through the proxy's taps, on the real sandbox."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from cutover.topology import free_ports
from tests.faults.harness import (
    FAST_SANDBOX,
    SandboxUnderTest,
    assert_legacy_answers,
    assert_orders_accounted,
    orders,
    sandbox_answer,
    send_orders,
    wait_until,
)

pytestmark = pytest.mark.slow

THROTTLE_S = 60.0
# Webhooks sent at these offsets into the throttled minute, 10 each.
BATCH_OFFSETS_S = (0.0, 20.0, 40.0)
BATCH = 10


def _events_by_flow(view, kind: str, flow: str) -> list:
    return [event for events in view.kinds.values() for event in events.get(kind, [])
            if event.flow == flow]


def test_erp_throttles_every_request_for_a_minute(tmp_path):
    """Both ERP accounts respond 429 to every request for a minute: each 429 is recorded."""
    settings = replace(FAST_SANDBOX, erp_throttle_all_s=THROTTLE_S, gated_max_attempts=30,
                       gated_backoff_s=0.5)
    answers = []
    with SandboxUnderTest(tmp_path, settings) as stack:
        started = time.monotonic()
        for number, offset in enumerate(BATCH_OFFSETS_S):
            time.sleep(max(0.0, started + offset - time.monotonic()))
            answers += send_orders(stack.ingress_url, orders(BATCH, first=1 + number * BATCH))
        keys = {answer.key for answer in answers}
        # The legacy flow's poller tries every second, so it syncs each
        # order soon after the minute ends.
        wait_until(lambda: stack.view().keys_with("erp.acked") >= keys, THROTTLE_S + 30,
                   "the legacy flow's acknowledgements")
        throttled = (stack.simulator("erp", "/_sim/stats")["throttled"]
                     + stack.simulator("erp_candidate", "/_sim/stats")["throttled"])
        code = stack.stop_proxy()
    view = stack.view()

    assert code == 0
    assert_legacy_answers(answers, sandbox_answer)
    assert assert_orders_accounted(view, keys) == set()
    assert view.keys_with("mirror.sent") == keys
    # Every 429 the simulators gave was recorded, in the flow that got it.
    recorded = _events_by_flow(view, "erp.throttled", "legacy") + _events_by_flow(view, "erp.throttled", "candidate")
    assert len(recorded) == throttled
    assert {event.order_key for event in _events_by_flow(view, "erp.throttled", "legacy")} == keys
    # The gated flow's workers are busy retrying earlier orders, so a late
    # order may get its first try only after the minute.
    assert {event.order_key for event in _events_by_flow(view, "erp.throttled", "candidate")} <= keys
    assert _events_by_flow(view, "erp.throttled", "candidate")
    # No order was acknowledged within the minute.
    first_throttle_ns = min(event.mono_ns for event in recorded)
    first_ack_ns = min(event.mono_ns for event in _events_by_flow(view, "erp.acked", "legacy"))
    assert first_ack_ns - first_throttle_ns >= (THROTTLE_S - 1) * 1e9
    assert view.losses == 0


def test_email_upstream_unreachable_recorded_as_failed(tmp_path):
    """The legacy flow's email service is unreachable: its confirmations are recorded as failed."""
    closed_port = free_ports(1)[0]

    def unreachable_email(config):
        route = next(route for route in config["route"] if route["name"] == "legacy-email")
        route["upstream"] = f"http://127.0.0.1:{closed_port}"

    with SandboxUnderTest(tmp_path, edit_config=unreachable_email) as stack:
        answers = send_orders(stack.ingress_url, orders(20))
        keys = {answer.key for answer in answers}
        wait_until(lambda: stack.view().keys_with("email.failed") >= keys, 30,
                   "an email.failed event per order")
        legacy = stack.simulator("legacy", "/_sim/stats")
        delivered = stack.simulator("email", "/_sim/messages")
        code = stack.stop_proxy()
    view = stack.view()

    assert code == 0
    assert_legacy_answers(answers, sandbox_answer)
    assert assert_orders_accounted(view, keys) == set()
    assert legacy["email_failures"] == len(keys)
    assert [message for message in delivered if message["category"] == "order_confirmation"] == []
    assert {event.order_key for event in _events_by_flow(view, "confirmation.sent", "legacy")} == keys
    assert {event.order_key for event in _events_by_flow(view, "email.failed", "legacy")} == keys
    # The candidate's emails are quarantined by the proxy, so they still count.
    assert view.keys_with("confirmation.quarantined") == keys
    assert view.losses == 0
