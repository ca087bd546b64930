"""Hostile and odd webhooks through the real proxy: the primary path holds, and evidence is kept.

One mitmdump with the addon sits between a raw-socket storefront and two
recording aiohttp sinks (legacy and candidate). Every case is sent once, on
its own connection and its own path, before the proxy stops. The tests then
check, case by case, what the storefront got back, what each flow got and
what the ledger contains.
"""

from __future__ import annotations

import json
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import pytest

from shadow.events import stored_path
from tests.shadow.harness import ProxyUnderTest, RecordingSink, SinkServer

# Bytes of zeros inside the compression bombs; each decodes to about 1 GiB.
BOMB_PADDING = 1024 * 1024 * 1024
BIG_BODY_PADDING = 20 * 1024 * 1024
# The mirror's default limit: a larger body goes to the legacy flow only.
MIRROR_LIMIT = 16 * 1024 * 1024
DECODE_LIMIT = 8 * 1024 * 1024
LEGACY_STATUS = 202
SOCKET_TIMEOUT_S = 30.0

# Headers the mirror leaves to its HTTP client, as a proxy must (RFC 9110,
# section 7.6.1): the candidate gets its own Host and Content-Length.
HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "expect"}


@dataclass
class Case:
    name: str
    # The body, or a function that builds a large one when the run starts.
    content: bytes | Callable[[], bytes]
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Who responds to the storefront: "legacy" (its handler's 202), "legacy-server"
    # (the legacy flow's HTTP server rejects the request before any handler)
    # or "proxy" (mitmproxy rejects it as malformed HTTP).
    answered_by: str = "legacy"
    # The ledger event: ("webhook.received", order key) or ("uncorrelated",
    # words of the reason); None where mitmproxy rejects the request before
    # any hook of the addon runs.
    ledger: tuple[str, str] | None = None
    # What the candidate gets: "exact" (the same bytes and headers) or
    # "counted" (nothing, and a mirror.skipped or mirror.failed event gives the reason).
    candidate: str = "exact"
    # The request target on the wire; the default is /hostile/<name>.
    target: bytes = b""
    add_length: bool = True

    @property
    def body(self) -> bytes:
        return self.content() if callable(self.content) else self.content

    @property
    def path(self) -> str:
        return (self.target or f"/hostile/{self.name}".encode()).decode("latin-1")

    def wire(self) -> bytes:
        headers = [(b"Host", b"storefront.example"), *self.headers]
        if self.add_length:
            headers.append((b"Content-Length", str(len(self.body)).encode()))
        headers.append((b"Connection", b"close"))
        head = b"POST " + self.path.encode("latin-1") + b" HTTP/1.1\r\n"
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        return head + b"\r\n" + self.body

    def sent_headers(self) -> list[tuple[str, str]]:
        """The header fields the storefront sent, as a latin-1 server reads them, without Host."""
        return [(name.decode("latin-1"), value.decode("latin-1"))
                for name, value in parse_head(self.wire())[1] if name.lower() != b"host"]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]


def parse_head(message: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    head = message.split(b"\r\n\r\n", 1)[0]
    first, *lines = head.split(b"\r\n")
    fields = []
    for line in lines:
        name, _, value = line.partition(b":")
        fields.append((name, value.strip(b" ")))
    return first, fields


@cache
def _gzip_bomb() -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"0" * (1024 * 1024)
    parts = [compressor.compress(b'{"id": 7001, "note": "')]
    parts += [compressor.compress(zeros) for _ in range(BOMB_PADDING // len(zeros))]
    parts += [compressor.compress(b'"}'), compressor.flush()]
    return b"".join(parts)


@cache
def _brotli_bomb() -> bytes:
    import brotli  # shipped with mitmproxy

    compressor = brotli.Compressor(quality=5)
    zeros = b"0" * (1024 * 1024)
    parts = [compressor.process(b'{"id": 7002, "note": "')]
    parts += [compressor.process(zeros) for _ in range(BOMB_PADDING // len(zeros))]
    parts += [compressor.process(b'"}'), compressor.finish()]
    return b"".join(parts)


def _order(order_id: object, **extra: object) -> bytes:
    return json.dumps({"id": order_id, **extra}).encode()


@cache
def _big_order() -> bytes:
    return _order(1005, note="x" * BIG_BODY_PADDING)


JSON = (b"Content-Type", b"application/json")
TOPIC = (b"X-Shopify-Topic", b"orders/create")

CASES = [
    Case("control", _order(1001), [JSON, TOPIC], ledger=("webhook.received", "1001")),
    Case("not-json", b"<order><id>1002</id></order>", [(b"Content-Type", b"application/xml")],
         ledger=("uncorrelated", "body is not JSON")),
    Case("invalid-utf8", b'{"id": 1003, "note": "caf\xe9 \xff\xfe"}', [JSON],
         ledger=("webhook.received", "1003")),
    Case("utf16-with-bom", '{"id": 1004}'.encode("utf-16"), [JSON],
         ledger=("webhook.received", "1004")),
    Case("empty-body", b"", [JSON], ledger=("uncorrelated", "empty body")),
    Case("body-20mb", _big_order, [JSON],
         ledger=("webhook.received", "1005"), candidate="counted"),
    Case("gzip-bomb", _gzip_bomb, [JSON, (b"Content-Encoding", b"gzip")],
         ledger=("uncorrelated", f"decoded body exceeds {DECODE_LIMIT} bytes")),
    Case("brotli-bomb", _brotli_bomb, [JSON, (b"Content-Encoding", b"br")],
         ledger=("uncorrelated", f"decoded body exceeds {DECODE_LIMIT} bytes")),
    Case("gzip-corrupt", b"\x1f\x8b\x08\x00garbage that is not deflate", [JSON, (b"Content-Encoding", b"gzip")],
         ledger=("uncorrelated", "body can't be decoded: corrupt gzip body")),
    Case("duplicate-headers", _order(1006),
         [JSON, TOPIC, (b"X-Shopify-Topic", b"orders/updated"), (b"X-Shopify-Hmac-Sha256", b"c2lnbmF0dXJlLTE="),
          (b"X-Shopify-Hmac-Sha256", b"c2lnbmF0dXJlLTI=")],
         ledger=("webhook.received", "1006")),
    Case("deep-array", b"[" * 100_000 + b"]" * 100_000, [JSON],
         ledger=("uncorrelated", "nested too deeply")),
    Case("deep-object-with-id", b'{"id": 1007, "a": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001, [JSON],
         ledger=("uncorrelated", "nested too deeply")),
    Case("id-as-string", _order("1008"), [JSON], ledger=("webhook.received", "1008")),
    Case("id-as-integer", _order(1008), [JSON], ledger=("webhook.received", "1008")),
    Case("id-above-2-53", b'{"id": 9007199254740993}', [JSON],
         ledger=("webhook.received", "9007199254740993")),
    Case("id-above-2-53-as-float", b'{"id": 9007199254740993.0}', [JSON],
         ledger=("webhook.received", "9007199254740993")),
    Case("id-above-2-64", b'{"id": 123456789012345678901234567890}', [JSON],
         ledger=("webhook.received", "123456789012345678901234567890")),
    Case("id-of-5000-digits", b'{"id": ' + b"7" * 5000 + b"}", [JSON],
         ledger=("uncorrelated", "body is not JSON")),
    Case("id-null-gid-fallback", b'{"id": null, "admin_graphql_api_id": "gid://shopify/Order/1009"}', [JSON],
         ledger=("webhook.received", "1009")),
    Case("order-key-missing", b'{"order": {"number": 1010}}', [JSON],
         ledger=("uncorrelated", "found no order key")),
    Case("id-is-object", b'{"id": {"value": 1011}}', [JSON],
         ledger=("uncorrelated", "found no order key")),
    Case("encoded-crlf-in-query", _order(1012), [JSON],
         target=b"/hostile/encoded-crlf-in-query?note=a%0d%0aX-Injected:%201&topic=%2e%2e%2F",
         ledger=("webhook.received", "1012")),
    Case("utf8-header-value", _order(1013), [JSON, (b"X-Note", "café ☃".encode())],
         ledger=("webhook.received", "1013")),
    # The proxy forwards these; the legacy flow's HTTP server rejects them.
    Case("bare-cr-in-header", _order(1014), [JSON, (b"X-Inject", b"a\rX-Injected: 1")],
         answered_by="legacy-server", ledger=("webhook.received", "1014"), candidate="counted"),
    Case("nul-in-header", _order(1015), [JSON, (b"X-Inject", b"a\x00b")],
         answered_by="legacy-server", ledger=("webhook.received", "1015"), candidate="counted"),
    Case("obs-fold-header", _order(1016), [JSON, (b"X-Fold", b"a\r\n X-Injected: 1")],
         answered_by="legacy-server", ledger=("webhook.received", "1016"), candidate="counted"),
    # mitmproxy rejects these request smuggling attempts itself (RFC 9112,
    # section 6.3). Where it does so before any hook, no event is possible.
    Case("space-before-colon", _order(1017), [JSON, (b"X-Foo ", b"bar")], answered_by="proxy",
         ledger=("uncorrelated", "request failed before it reached a flow")),
    Case("conflicting-content-length", _order(1018), [JSON, (b"Content-Length", b"3")],
         answered_by="proxy"),
    Case("content-length-and-chunked", _order(1019), [JSON, (b"Transfer-Encoding", b"chunked")],
         answered_by="proxy"),
]

# Cases the mirror does not copy faithfully. aiohttp refuses to send a
# header value with CR, LF or NUL (a ValueError, which the mirror's worker
# logs and swallows, so the copy is lost without a count). It writes header
# values as UTF-8 after the mirror decoded the wire bytes as latin-1, so
# non-ASCII bytes change. yarl re-quotes the request target (%0d becomes
# %0D, %2e%2e%2F becomes ../).


def _exchange(port: int, message: bytes) -> Answer:
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as connection:
        connection.sendall(message)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    first, fields = parse_head(b"".join(chunks))
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in fields}
    return Answer(int(first.split()[1]), headers)


def _wait_for_paths(sink: RecordingSink, paths: set[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not paths <= {item.path for item in sink.received} and time.monotonic() < deadline:
        time.sleep(0.05)


@dataclass
class Run:
    answers: dict[str, Answer]
    legacy: RecordingSink
    candidate: RecordingSink
    events: list
    log: str

    def received(self, sink: RecordingSink, case: Case):
        return [item for item in sink.received if item.path == case.path]

    def events_of(self, case: Case) -> list:
        """The ledger events of the case's http flow, found by its path."""
        flow_ids = {event.http_flow_id for event in self.events
                    if event.detail and json.loads(event.detail).get("path") == stored_path(case.path)}
        return [event for event in self.events if event.http_flow_id in flow_ids]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    folder = tmp_path_factory.mktemp("hostile-ingress")
    legacy = RecordingSink(status=LEGACY_STATUS, headers={"X-Answered-By": "legacy"})
    candidate = RecordingSink()
    answers = {}
    with SinkServer(legacy, candidate):
        route = {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
                 "mirror_to": f"http://127.0.0.1:{candidate.port}"}
        with ProxyUnderTest(folder, [route]) as proxy:
            for case in CASES:
                answers[case.name] = _exchange(proxy.ports["ingress"], case.wire())
            mirrored = {case.path for case in CASES if case.answered_by != "proxy"
                        and case.candidate == "exact"}
            _wait_for_paths(candidate, mirrored)
    return Run(answers, legacy, candidate, proxy.events(), proxy.log_text())


def _param(case: Case):
    return pytest.param(case, id=case.name)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_storefront_gets_answer_of_legacy(run, case):
    answer = run.answers[case.name]
    if case.answered_by == "legacy":
        assert answer.status == LEGACY_STATUS
        assert answer.headers.get("x-answered-by") == "legacy"
    elif case.answered_by == "legacy-server":
        assert answer.status == 400
        assert "aiohttp" in answer.headers.get("server", "")
    else:
        assert answer.status == 400
        assert answer.headers.get("server", "").startswith("mitmproxy")
    # The proxy keeps serving: every later case got a response too.
    assert len(run.answers) == len(CASES)


@pytest.mark.parametrize("case", [_param(case) for case in CASES if case.answered_by == "legacy"])
def test_legacy_gets_exact_request(run, case):
    received = run.received(run.legacy, case)
    assert len(received) == 1
    assert received[0].body == case.body
    assert [item for item in received[0].headers if item[0].lower() != "host"] == case.sent_headers()


@pytest.mark.parametrize("case", [_param(case) for case in CASES if case.answered_by != "legacy"])
def test_rejected_request_reaches_no_handler(run, case):
    assert run.received(run.legacy, case) == []
    assert run.received(run.candidate, case) == []


@pytest.mark.parametrize("case", [_param(case) for case in CASES
                                  if case.answered_by != "proxy"])
def test_candidate_gets_copy_or_loss_is_counted(run, case):
    received = run.received(run.candidate, case)
    mirror_events = [_mirror_kind(event) for event in run.events_of(case)]
    mirror_events = [kind for kind in mirror_events if kind is not None]
    if case.candidate == "exact":
        assert len(received) == 1
        assert received[0].body == case.body
        wanted = [item for item in case.sent_headers() if item[0].lower() not in HOP_BY_HOP]
        assert [item for item in received[0].headers if item[0].lower() not in HOP_BY_HOP] == wanted
        assert mirror_events == ["mirror.sent"]
    else:
        assert received == []
        assert mirror_events in (["mirror.skipped"], ["mirror.failed"])


def _mirror_kind(event) -> str | None:
    """Return the mirror outcome an event records; a webhook with no key has it in the reason."""
    if event.kind.startswith("mirror."):
        return event.kind
    reason = json.loads(event.detail or "{}").get("reason", "")
    if event.kind == "uncorrelated" and reason.startswith("mirror."):
        return reason.split()[0]
    return None


@pytest.mark.parametrize("case", [_param(case) for case in CASES if case.ledger is not None])
def test_ledger_records_webhook(run, case):
    kind, expected = case.ledger
    recorded = [event for event in run.events_of(case) if event.kind in ("webhook.received", "uncorrelated")
                and json.loads(event.detail).get("path") == stored_path(case.path)]
    assert [event.kind for event in recorded] == [kind]
    if kind == "webhook.received":
        assert recorded[0].order_key == expected
    else:
        assert recorded[0].order_key is None
        assert expected in json.loads(recorded[0].detail)["reason"]


def test_string_and_integer_ids_key_one_order(run):
    keys = {case.name: [event.order_key for event in run.events_of(case) if event.kind == "webhook.received"]
            for case in CASES if case.name in ("id-as-string", "id-as-integer")}
    assert keys == {"id-as-string": ["1008"], "id-as-integer": ["1008"]}


def test_ledger_path_has_no_query_values(run):
    case = next(case for case in CASES if case.name == "encoded-crlf-in-query")
    paths = {json.loads(event.detail).get("path") for event in run.events_of(case) if event.detail}
    assert "/hostile/encoded-crlf-in-query?note=*&topic=*" in paths
    assert not any("X-Injected" in (event.detail or "") for event in run.events)


def test_large_body_skips_mirror_with_reason(run):
    case = next(case for case in CASES if case.name == "body-20mb")
    skipped = [event for event in run.events_of(case) if event.kind == "mirror.skipped"]
    assert [event.order_key for event in skipped] == ["1005"]
    assert f"exceeds the mirror limit of {MIRROR_LIMIT} bytes" in json.loads(skipped[0].detail)["reason"]


def test_bombs_reach_both_flows_compressed(run):
    for name in ("gzip-bomb", "brotli-bomb"):
        case = next(case for case in CASES if case.name == name)
        assert len(case.body) < MIRROR_LIMIT
        assert [item.body for item in run.received(run.legacy, case)] == [case.body]
        assert [item.body for item in run.received(run.candidate, case)] == [case.body]


def test_proxy_log_has_no_traceback_from_recording(run):
    # The mirror's swallowed errors are the known gap above; the recording
    # side (keying, redaction, ledger) must never raise on this input.
    recording = [line for line in run.log.splitlines() if "can't handle a" in line]
    assert recording == []


def test_streamed_20mb_body_reaches_legacy_and_loss_is_recorded(tmp_path):
    """Above stream_large_bodies the body is teed; past the mirror limit the tee keeps nothing."""
    big = Case("streamed-20mb", _big_order, [JSON])
    small = Case("streamed-3mb", _order(1020, note="x" * 3 * 1024 * 1024), [JSON])
    legacy = RecordingSink(status=LEGACY_STATUS, headers={"X-Answered-By": "legacy"})
    candidate = RecordingSink()
    with SinkServer(legacy, candidate):
        route = {"name": "ingress", "role": "ingress", "upstream": f"http://127.0.0.1:{legacy.port}",
                 "mirror_to": f"http://127.0.0.1:{candidate.port}"}
        with ProxyUnderTest(tmp_path, [route], extra=["--set", "stream_large_bodies=1m"]) as proxy:
            answers = [_exchange(proxy.ports["ingress"], case.wire()) for case in (big, small)]
            _wait_for_paths(candidate, {small.path})
    run = Run({}, legacy, candidate, proxy.events(), proxy.log_text())

    assert [answer.status for answer in answers] == [LEGACY_STATUS, LEGACY_STATUS]
    assert [item.body for item in run.received(legacy, big)] == [big.body]
    assert run.received(candidate, big) == []
    assert [item.body for item in run.received(candidate, small)] == [small.body]
    # The 20 MB webhook is in the ledger, but without its order key.
    webhook = [event for event in run.events_of(big) if json.loads(event.detail).get("path") == stored_path(big.path)]
    assert [event.kind for event in webhook] == ["uncorrelated"]
    assert json.loads(webhook[0].detail)["reason"] == "body was streamed and not kept, so it can't be keyed"
    assert [_mirror_kind(event) for event in run.events_of(big) if event not in webhook] == ["mirror.skipped"]
    assert ("webhook.received", "1020") in {(event.kind, event.order_key) for event in run.events}
