"""The proxy stopped mid-burst: by SIGTERM (clean), by SIGKILL, and with its sidecar.

mitmdump runs in a session of its own, and its sidecar (`shadow.sidecar`,
which records and mirrors) is its child in the same process group. A
SIGTERM lets both flush. A SIGKILL of mitmdump alone leaves the sidecar to
read what is already in the pipe and finish cleanly. A SIGKILL of the
whole group is a machine crash: what the sidecar held unwritten is lost,
and the next report states how many events may be missing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from compare import Criteria, analyze, render_markdown
from cutover.ledger import list_instances, open_ledger, unclean_stops
from tests.faults.harness import (
    CandidateSink,
    LedgerView,
    LegacySink,
    Servers,
    assert_legacy_answers,
    assert_orders_accounted,
    ingress_route,
    orders,
    send_orders,
    sink_answer,
    url_of,
    wait_until,
)
from tests.shadow.harness import ProxyUnderTest

pytestmark = pytest.mark.slow

BURST = 400
# Webhooks under way at once; at most these are cut off by a signal.
CONCURRENCY = 8
# Webhooks the legacy flow has received when the signal is sent.
SIGNAL_AFTER = 80
# For the crash: late enough that the writer has committed under the
# burst's rate, which its estimate of a crash's loss is taken from.
CRASH_AFTER = 250


def _keys_received(legacy: LegacySink) -> set[str]:
    return {str(json.loads(body)["id"]) for body in legacy.received}


def _sidecar_pid(proxy_pid: int) -> int:
    children = Path(f"/proc/{proxy_pid}/task/{proxy_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _burst_with_signal(proxy: ProxyUnderTest, legacy: LegacySink, stop,
                       after: int = SIGNAL_AFTER) -> list:
    """Send BURST webhooks; call `stop()` once `after` of them reached the legacy flow."""
    answers: list = []
    sender = threading.Thread(target=lambda: answers.extend(send_orders(
        proxy.url("ingress", "/webhooks/orders/create"), orders(BURST), concurrency=CONCURRENCY)))
    sender.start()
    wait_until(lambda: len(legacy.received) >= after, 60, f"{after} webhooks")
    stop()
    sender.join(120)
    assert not sender.is_alive()
    return answers


def test_sigterm_mid_burst_flushes_everything(tmp_path):
    legacy, candidate = LegacySink(), CandidateSink()
    with Servers(legacy, candidate):
        with ProxyUnderTest(tmp_path, [ingress_route(url_of(legacy), url_of(candidate))]) as proxy:
            process = proxy.child.process
            answers = _burst_with_signal(proxy, legacy, lambda: process.send_signal(signal.SIGTERM))
            code = proxy.stop()
    view = LedgerView.read(proxy.ledger_url, proxy.run_id)

    answered = [answer for answer in answers if answer.status is not None]
    assert code == 0
    assert len(answered) >= SIGNAL_AFTER - CONCURRENCY
    assert_legacy_answers(answered, sink_answer)
    # Every webhook that passed the proxy is recorded, answered or cut off.
    assert _keys_received(legacy) <= view.keys_with("webhook.received")
    assert {answer.key for answer in answered} <= view.keys_with("webhook.responded")
    assert assert_orders_accounted(view, _keys_received(legacy)) == set()
    assert view.losses == 0
    instance = list_instances(open_ledger(proxy.ledger_url), proxy.run_id)[0]
    assert instance.stopped_unix_s is not None


def test_sigkill_proxy_sidecar_finishes_recording(tmp_path):
    legacy, candidate = LegacySink(), CandidateSink()
    with Servers(legacy, candidate):
        with ProxyUnderTest(tmp_path, [ingress_route(url_of(legacy), url_of(candidate))]) as proxy:
            process = proxy.child.process
            sidecar = _sidecar_pid(process.pid)
            answers = _burst_with_signal(proxy, legacy, lambda: process.send_signal(signal.SIGKILL))
            wait_until(lambda: _gone(sidecar), 60, "the sidecar to finish")
            code = proxy.stop()
    view = LedgerView.read(proxy.ledger_url, proxy.run_id)

    answered = [answer for answer in answers if answer.status is not None]
    assert code == -signal.SIGKILL
    assert len(answered) >= SIGNAL_AFTER - CONCURRENCY
    assert_legacy_answers(answered, sink_answer)
    # The sidecar read what mitmdump had written to the pipe before it died,
    # which includes the webhook of every answered request.
    assert {answer.key for answer in answered} <= view.keys_with("webhook.received")
    assert view.losses == 0
    instance = list_instances(open_ledger(proxy.ledger_url), proxy.run_id)[0]
    assert instance.stopped_unix_s is not None


def test_sigkill_process_group_next_report_counts_missing(tmp_path):
    """A crash of mitmdump and its sidecar: the report estimates the events lost."""
    legacy, candidate = LegacySink(), CandidateSink()
    with Servers(legacy, candidate):
        route = ingress_route(url_of(legacy), url_of(candidate))
        with ProxyUnderTest(tmp_path, [route]) as proxy:
            process = proxy.child.process
            running = LedgerView.read(proxy.ledger_url, proxy.run_id)
            answers = _burst_with_signal(proxy, legacy, lambda: os.killpg(process.pid, signal.SIGKILL),
                                         after=CRASH_AFTER)
            proxy.stop()

        engine = open_ledger(proxy.ledger_url)
        # The heartbeat goes stale STALE_AFTER_S after the kill.
        wait_until(lambda: unclean_stops(engine, proxy.run_id), 30, "the instance's heartbeat to go stale")
        after_crash = LedgerView.read(proxy.ledger_url, proxy.run_id)
        report = render_markdown(analyze(engine, proxy.run_id, criteria=Criteria(min_orders=1)))

        # The same instance started again records the rest of the run.
        with ProxyUnderTest(tmp_path, [route]) as restarted:
            more = send_orders(restarted.url("ingress", "/webhooks/orders/create"),
                               orders(10, first=BURST + 1))
            code = restarted.stop()
    after_restart = LedgerView.read(proxy.ledger_url, proxy.run_id)

    answered = [answer for answer in answers if answer.status is not None]
    assert "ledger.may_be_missing" not in running.counters
    assert len(answered) >= CRASH_AFTER - CONCURRENCY
    assert_legacy_answers(answered + more, sink_answer)
    missing = assert_orders_accounted(after_crash, {answer.key for answer in answered})
    may_be_missing = after_crash.counters["ledger.may_be_missing"]
    assert may_be_missing >= len(missing)
    assert f"about {may_be_missing}, the maximum that instance held unwritten" in " ".join(report.split())
    assert code == 0
    assert {answer.key for answer in more} <= after_restart.keys_with("webhook.received")
    assert after_restart.counters["ledger.may_be_missing"] == may_be_missing
    assert after_restart.counters["webhooks.seen"] == after_crash.counters["webhooks.seen"] + len(more)
    assert "did not stop cleanly before this start" in restarted.log_text()
