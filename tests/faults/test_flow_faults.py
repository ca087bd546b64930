"""Faulty flows behind the real proxy: the storefront keeps the legacy flow's answer.

Each test starts mitmdump with the addon in front of servers on loopback,
sends a burst of signed webhooks and checks the invariants: every webhook
got the legacy flow's answer (or, when the legacy flow itself is broken,
mitmproxy's 502), and every order is in the ledger with what became of
its mirror copy.
"""

from __future__ import annotations

import pytest

from cutover.topology import free_ports
from tests.faults.harness import (
    MALFORMED_ANSWERS,
    CandidateSink,
    LedgerView,
    LegacySink,
    MalformedServer,
    Servers,
    assert_legacy_answers,
    assert_orders_accounted,
    ingress_route,
    orders,
    send_orders,
    sink_answer,
    url_of,
)
from tests.shadow.harness import ProxyUnderTest

pytestmark = pytest.mark.slow

BURST = 24


def _run_burst(tmp_path, legacy_url: str, candidate_url: str, count: int = BURST,
               mirror: dict | None = None):
    batch = orders(count)
    proxy = ProxyUnderTest(tmp_path, [ingress_route(legacy_url, candidate_url)], mirror=mirror)
    with proxy:
        answers = send_orders(proxy.url("ingress", "/webhooks/orders/create"), batch, concurrency=count)
        code = proxy.stop()
    return answers, LedgerView.read(proxy.ledger_url, proxy.run_id), code, proxy


def test_candidate_down_every_order_mirror_failed(tmp_path):
    legacy = LegacySink()
    with Servers(legacy):
        closed = f"http://127.0.0.1:{free_ports(1)[0]}"
        answers, view, code, _ = _run_burst(tmp_path, url_of(legacy), closed)

    keys = {answer.key for answer in answers}
    assert code == 0
    assert_legacy_answers(answers, sink_answer)
    assert len(legacy.received) == BURST
    assert assert_orders_accounted(view, keys) == set()
    assert view.keys_with("webhook.responded") == keys
    assert view.keys_with("mirror.failed") == keys
    assert all("ClientConnectorError" in detail["reason"] for detail in view.details("mirror.failed"))
    assert view.losses == 0


def test_candidate_slow_10s_storefront_not_held(tmp_path):
    """A candidate that answers after 10 s: copies arrive late, answers do not wait."""
    legacy, candidate = LegacySink(), CandidateSink(delay_s=10.0)
    with Servers(legacy, candidate):
        # 16 copies in flight at once and a timeout above the delay, so
        # every copy waits the full 10 s and still arrives.
        answers, view, code, _ = _run_burst(tmp_path, url_of(legacy), url_of(candidate), count=16,
                                            mirror={"concurrency": 16, "timeout_s": 15.0})

    keys = {answer.key for answer in answers}
    assert code == 0
    assert_legacy_answers(answers, sink_answer)
    assert assert_orders_accounted(view, keys) == set()
    assert view.keys_with("mirror.sent") == keys
    for key in keys:
        responded = view.kinds[key]["webhook.responded"][0]
        mirrored = view.kinds[key]["mirror.sent"][0]
        assert mirrored.latency_ms >= 10_000, key
        # The storefront's answer was recorded before the copy was answered.
        assert responded.mono_ns < mirrored.mono_ns + int(mirrored.latency_ms * 1e6), key
    assert view.losses == 0


def test_candidate_500_recorded_per_order(tmp_path):
    legacy, candidate = LegacySink(), CandidateSink(status=500)
    with Servers(legacy, candidate):
        answers, view, code, _ = _run_burst(tmp_path, url_of(legacy), url_of(candidate))

    keys = {answer.key for answer in answers}
    assert code == 0
    assert_legacy_answers(answers, sink_answer)
    assert len(candidate.received) == BURST
    assert assert_orders_accounted(view, keys) == set()
    assert view.keys_with("mirror.failed") == keys
    assert {detail["reason"] for detail in view.details("mirror.failed")} == {"HTTP 500"}
    assert view.losses == 0


@pytest.mark.parametrize("mode", sorted(MALFORMED_ANSWERS))
def test_candidate_malformed_answer_recorded(tmp_path, mode):
    legacy, candidate = LegacySink(), MalformedServer(mode)
    with Servers(legacy, candidate):
        answers, view, code, _ = _run_burst(tmp_path, url_of(legacy), url_of(candidate))

    keys = {answer.key for answer in answers}
    assert code == 0
    assert_legacy_answers(answers, sink_answer)
    assert candidate.requests == BURST
    assert assert_orders_accounted(view, keys) == set()
    assert view.keys_with("mirror.failed") == keys
    assert view.losses == 0


@pytest.mark.parametrize("mode", sorted(MALFORMED_ANSWERS))
def test_legacy_malformed_answer_gives_502(tmp_path, mode):
    """The storefront gets mitmproxy's 502, and the failed answer is recorded."""
    legacy, candidate = MalformedServer(mode), CandidateSink()
    with Servers(legacy, candidate):
        answers, view, code, _ = _run_burst(tmp_path, url_of(legacy), url_of(candidate))

    keys = {answer.key for answer in answers}
    assert code == 0
    assert {answer.status for answer in answers} == {502}
    assert legacy.requests == BURST
    assert assert_orders_accounted(view, keys) == set()
    assert view.keys_with("webhook.responded") == keys
    reasons = [detail.get("reason", "") for detail in view.details("webhook.responded")]
    assert all(reasons), reasons[:3]
    assert view.keys_with("mirror.sent") == keys
    assert view.losses == 0
