"""Sending to a loopback target: bytes, signatures, failures, records, the gated flow."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import socket

import replay
from replay import (
    Behaviour,
    CapturedRequest,
    IdRewriter,
    OnError,
    ReadProblems,
    compile_key_rule,
    load_source,
)
from sandbox.settings import WEBHOOK_PATH
from tests.replay.helpers import FIXTURES, SECRET, signed_webhooks
from tests.replay.writers import http_request, mitm_flow, write_goreplay, write_har_with_mitmproxy, write_mitm


def as_requests(webhooks, *, gzip_body: bool = False) -> list[CapturedRequest]:
    requests = []
    for index, (_, body, headers) in enumerate(webhooks):
        if gzip_body:
            body, headers = gzip.compress(body), {**headers, "Content-Encoding": "gzip"}
        requests.append(CapturedRequest("POST", WEBHOOK_PATH, tuple(headers.items()), body,
                                        1_700_000_000 + index * 0.01, "test", index + 1))
    return requests


def test_send_delivers_bodies_byte_for_byte(sink):
    webhooks = signed_webhooks(5)

    summary = asyncio.run(replay.send(as_requests(webhooks), sink.url))

    assert summary.sent == 5
    assert summary.ok == 5
    assert summary.failed_total == 0
    assert sorted(item.body for item in sink.received) == sorted(body for _, body, _ in webhooks)
    assert all(item.hmac_ok for item in sink.received)
    assert all(item.path == WEBHOOK_PATH for item in sink.received)


def test_send_adds_no_client_headers(sink):
    asyncio.run(replay.send(as_requests(signed_webhooks(1)), sink.url))

    headers = {name.lower() for name in sink.received[0].headers}
    assert "user-agent" not in headers
    assert "accept-encoding" not in headers
    assert sink.received[0].headers["X-Shopify-Topic"] == "orders/create"


def test_send_keeps_gzip_body_and_signature(sink):
    webhooks = signed_webhooks(2)

    summary = asyncio.run(replay.send(as_requests(webhooks, gzip_body=True), sink.url))

    assert summary.ok == 2
    assert all(item.headers["Content-Encoding"] == "gzip" for item in sink.received)
    assert all(item.hmac_ok for item in sink.received)


def test_send_from_every_format_verifies_hmac(sink, tmp_path):
    webhooks = signed_webhooks(2)
    flows = [mitm_flow(body, headers, timestamp=1_700_000_000 + index)
             for index, (_, body, headers) in enumerate(webhooks)]
    jsonl = tmp_path / "hooks.jsonl"
    jsonl.write_text("".join(json.dumps({"body": body.decode(), "headers": headers, "path": WEBHOOK_PATH},
                                        ensure_ascii=False) + "\n" for _, body, headers in webhooks))
    sources = [
        write_mitm(tmp_path / "capture.mitm", flows),
        write_har_with_mitmproxy(tmp_path / "capture.har", flows),
        write_goreplay(tmp_path / "capture.gor", [http_request(body, headers, chunked=True)
                                                  for _, body, headers in webhooks]),
        jsonl,
    ]

    for path in sources:
        sink.received.clear()
        summary = asyncio.run(replay.send(load_source(path), sink.url, max_pause_s=0))
        assert summary.ok == 2, path.name
        assert [item.body for item in sink.received] == [body for _, body, _ in webhooks], path.name
        assert all(item.hmac_ok for item in sink.received), path.name


def test_send_real_dump_to_target_path(sink):
    source = load_source(FIXTURES / "mitmproxy" / "flows-successful_log.mitm")

    summary = asyncio.run(replay.send(source, sink.url + "/captured", max_pause_s=0))

    assert summary.ok == 2
    assert [item.path for item in sink.received] == ["/captured", "/captured"]
    assert sink.received[1].body == b"key1=value1&key2=value2"


def test_send_counts_failures_by_reason(sink):
    sink.statuses = {2: 500, 3: 401}

    summary = asyncio.run(replay.send(as_requests(signed_webhooks(4)), sink.url, concurrency=1))

    assert summary.ok == 2
    assert summary.failed == {"HTTP 500": 1, "HTTP 401": 1}


def test_send_connection_refused_is_a_failure():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    summary = asyncio.run(replay.send(as_requests(signed_webhooks(2)), f"http://127.0.0.1:{port}"))

    assert summary.sent == 2
    assert summary.failed == {"connection error": 2}


def test_send_rewrite_ids_signs_with_secret(sink):
    webhooks = signed_webhooks(3)
    rewriter = IdRewriter(SECRET, prefix="55", key_rule=compile_key_rule("id"))

    summary = asyncio.run(replay.send(as_requests(webhooks), sink.url, rewriter=rewriter))

    assert summary.ok == 3
    ids = sorted(json.loads(item.body)["id"] for item in sink.received)
    assert ids == [55000001, 55000002, 55000003]
    assert all(item.hmac_ok for item in sink.received)


def test_send_records_every_delivery(sink):
    record = io.StringIO()
    behaviour = Behaviour(duplicate=1.0, duplicate_delay_s=0.01, seed=1)

    summary = asyncio.run(replay.send(as_requests(signed_webhooks(3)), sink.url, behaviour=behaviour,
                                      record=record))

    rows = [json.loads(line) for line in record.getvalue().splitlines()]
    assert summary.sent == 6
    assert summary.by_kind == {"original": 3, "duplicate": 3}
    assert len(rows) == 6
    by_key: dict[str, set[str]] = {}
    for row in rows:
        by_key.setdefault(row["order_key"], set()).add(row["event_id"])
        assert row["status"] == 200
    assert len(by_key) == 3
    assert all(len(events) == 1 for events in by_key.values())


def test_send_stop_mode_ends_at_bad_record(sink, tmp_path):
    path = tmp_path / "hooks.jsonl"
    path.write_text('{"body": "a"}\n{"body": "b"}\nnot json\n{"body": "c"}\n')

    summary = asyncio.run(replay.send(load_source(path), sink.url))

    assert summary.sent == 2
    assert "hooks.jsonl, record 3: the line is not JSON" in summary.stopped_by


def test_send_skip_mode_reports_skipped(sink, tmp_path):
    path = tmp_path / "hooks.jsonl"
    path.write_text('{"body": "a"}\nnot json\n{"body": "c"}\n')
    problems = ReadProblems(on_error=OnError.SKIP)

    summary = asyncio.run(replay.send(load_source(path, problems=problems), sink.url))

    assert summary.sent == 2
    assert summary.skipped_records == 1
    assert "record 2" in summary.skipped_examples[0]
    assert summary.stopped_by is None


def test_send_loops_need_rereadable_source(sink):
    try:
        asyncio.run(replay.send(iter(as_requests(signed_webhooks(1))), sink.url, loops=2))
    except ValueError as exc:
        assert "can be read again" in str(exc)
    else:
        raise AssertionError("a one-shot iterator with loops=2 was accepted")


def test_send_measures_schedule_lag(sink):
    summary = asyncio.run(replay.send(as_requests(signed_webhooks(20)), sink.url, rate=200))

    assert summary.sent == 20
    assert summary.lag_max_ms >= summary.lag_p99_ms >= summary.lag_p50_ms > 0
    assert summary.rate_per_s > 0


def test_send_to_gated_flow_rewritten_and_duplicated():
    from tests.sandbox.helpers import fast_settings, running_stack

    async def scenario():
        async with running_stack(fast_settings()) as stack:
            rewriter = IdRewriter(stack.settings.webhook_secret, prefix="4242", key_rule=compile_key_rule("id"))
            behaviour = Behaviour(duplicate=1.0, duplicate_delay_s=0.01, seed=5)
            summary = await replay.send(as_requests(signed_webhooks(4)), stack.webhook_url("gated"),
                                        rewriter=rewriter, behaviour=behaviour)
            return summary, stack.gated.stats

    summary, stats = asyncio.run(scenario())

    assert summary.ok == 8
    assert stats.hmac_failures == 0
    assert stats.received == 8
    assert stats.duplicates_ignored == 4


def test_send_drops_http2_pseudo_headers(sink):
    source = load_source(FIXTURES / "mitmproxy" / "dumpfile-019.mitm")

    summary = asyncio.run(replay.send(source, sink.url))

    assert summary.ok == 1
    assert not any(name.startswith(":") for name in sink.received[0].headers)


def test_send_logs_first_failures_only(sink, caplog):
    sink.statuses = {index: 500 for index in range(1, 9)}

    with caplog.at_level("WARNING", logger="replay.sender"):
        summary = asyncio.run(replay.send(as_requests(signed_webhooks(8)), sink.url, concurrency=1))

    failures = [record for record in caplog.records if "failed: HTTP 500" in record.getMessage()]
    assert summary.failed == {"HTTP 500": 8}
    assert len(failures) == 5
    assert any("counted in the summary, not logged" in record.getMessage() for record in caplog.records)
