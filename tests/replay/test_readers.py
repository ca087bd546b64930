"""Capture readers: real public files, files from each tool's writer, malformed input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from replay import CaptureError, CaptureFormat, OnError, ReadProblems, detect_format, load_source
from tests.replay.helpers import FIXTURES, signed_webhooks
from tests.replay.writers import (
    http_request,
    mitm_flow,
    write_goreplay,
    write_har_with_mitmproxy,
    write_mitm,
)

REAL_DUMPS = sorted((FIXTURES / "mitmproxy").glob("*.mitm"))


@pytest.mark.parametrize("path", REAL_DUMPS, ids=lambda path: path.name)
def test_mitmproxy_reads_real_dumps_of_every_version(path):
    requests = list(load_source(path))

    assert requests, f"no request read from {path.name}"
    assert all(request.timestamp is not None for request in requests)
    assert all(request.path.startswith("/") for request in requests)


def test_mitmproxy_real_dump_keeps_post_body():
    requests = list(load_source(FIXTURES / "mitmproxy" / "flows-successful_log.mitm"))

    posts = [request for request in requests if request.method == "POST"]
    assert len(posts) == 1
    assert posts[0].path == "/post"
    assert posts[0].body == b"key1=value1&key2=value2"


def test_mitmproxy_flowwriter_dump_keeps_body_bytes(tmp_path):
    webhooks = signed_webhooks(3)
    flows = [mitm_flow(body, headers, timestamp=1_700_000_000 + index)
             for index, (_, body, headers) in enumerate(webhooks)]
    path = write_mitm(tmp_path / "capture.mitm", flows)

    requests = list(load_source(path))

    assert [request.body for request in requests] == [body for _, body, _ in webhooks]
    assert [request.timestamp for request in requests] == [1_700_000_000, 1_700_000_001, 1_700_000_002]
    assert requests[0].header("x-shopify-hmac-sha256") == webhooks[0][2]["X-Shopify-Hmac-Sha256"]


def truncated_dump(folder: Path) -> Path:
    """Write a dump of three webhooks whose last record is cut short."""
    flows = [mitm_flow(body, headers, timestamp=1.0) for _, body, headers in signed_webhooks(3)]
    whole = write_mitm(folder / "whole.mitm", flows).read_bytes()
    truncated = folder / "truncated.mitm"
    truncated.write_bytes(whole[: len(whole) - 200])
    return truncated


def test_mitmproxy_truncated_dump_names_file_and_record(tmp_path):
    truncated = truncated_dump(tmp_path)

    with pytest.raises(CaptureError, match=r"truncated\.mitm, record 3: the dump is truncated"):
        list(load_source(truncated))


def test_mitmproxy_truncated_dump_skip_keeps_earlier_flows(tmp_path):
    truncated = truncated_dump(tmp_path)
    problems = ReadProblems(on_error=OnError.SKIP)

    requests = list(load_source(truncated, problems=problems))

    assert len(requests) == 2
    assert problems.count == 1
    assert problems.kept[0].record == 3


def test_mitmproxy_newer_format_version_is_explained(tmp_path):
    from mitmproxy.io import tnetstring

    flow = mitm_flow(b"{}", {}, timestamp=1.0)
    state = flow.get_state()
    state["version"] = 999
    path = tmp_path / "future.mitm"
    path.write_bytes(tnetstring.dumps(state))

    with pytest.raises(CaptureError, match=r"future\.mitm, record 1: .*flow format version 999"):
        list(load_source(path))


def test_har_reads_real_chrome_post():
    requests = list(load_source(FIXTURES / "har" / "mitmproxy-postdata.har"))

    assert len(requests) == 1
    assert requests[0].method == "POST"
    assert requests[0].path == "/metrics"
    assert requests[0].body.startswith(b'{"metadata":{"pageViewId":1689428126308')
    assert not any(name.startswith(":") for name, _ in requests[0].headers)


def test_har_and_mitm_exports_of_same_traffic_agree():
    from_har = list(load_source(FIXTURES / "har" / "mitmproxy-successful_log.har"))
    from_mitm = list(load_source(FIXTURES / "mitmproxy" / "flows-successful_log.mitm"))

    assert [(r.method, r.path, r.body) for r in from_har] == [(r.method, r.path, r.body) for r in from_mitm]
    for har, mitm in zip(from_har, from_mitm, strict=True):
        assert har.timestamp == pytest.approx(mitm.timestamp, abs=0.001)


def test_har_written_by_mitmproxy_keeps_webhook_bodies(tmp_path):
    webhooks = signed_webhooks(2)
    flows = [mitm_flow(body, headers, timestamp=1_700_000_000 + index)
             for index, (_, body, headers) in enumerate(webhooks)]
    path = write_har_with_mitmproxy(tmp_path / "export.har", flows)

    requests = list(load_source(path))

    assert [request.body for request in requests] == [body for _, body, _ in webhooks]


def test_har_entry_without_postdata_names_record(tmp_path):
    har = json.loads((FIXTURES / "har" / "mitmproxy-successful_log.har").read_text())
    del har["log"]["entries"][1]["request"]["postData"]
    path = tmp_path / "no-postdata.har"
    path.write_text(json.dumps(har))

    with pytest.raises(CaptureError, match=r"no-postdata\.har, record 2: the POST request has no postData"):
        list(load_source(path))


def test_har_entry_without_postdata_is_skipped_and_counted(tmp_path):
    har = json.loads((FIXTURES / "har" / "mitmproxy-successful_log.har").read_text())
    del har["log"]["entries"][1]["request"]["postData"]
    path = tmp_path / "no-postdata.har"
    path.write_text(json.dumps(har))
    problems = ReadProblems(on_error=OnError.SKIP)

    requests = list(load_source(path, problems=problems))

    assert [request.method for request in requests] == ["GET"]
    assert problems.count == 1


def test_har_streams_entries_across_read_chunks(tmp_path):
    big_body = "x" * 200_000
    entries = [{"startedDateTime": f"2025-11-28T06:00:0{index}Z",
                "request": {"method": "POST", "url": f"http://shop.example/hook?n={index}", "headers": [],
                            "postData": {"mimeType": "application/json", "text": big_body}}}
               for index in range(3)]
    path = tmp_path / "big.har"
    path.write_text(json.dumps({"log": {"version": "1.2", "pages": [], "entries": entries}}, indent=1))

    requests = list(load_source(path))

    assert [request.path for request in requests] == ["/hook?n=0", "/hook?n=1", "/hook?n=2"]
    assert all(len(request.body) == 200_000 for request in requests)


def test_har_not_json_names_file(tmp_path):
    path = tmp_path / "broken.har"
    path.write_text('{"log": {"entries": [{"request": ')

    with pytest.raises(CaptureError, match=r"broken\.har, record 1: not valid HAR JSON"):
        list(load_source(path))


def test_goreplay_reads_requests_and_skips_responses(tmp_path):
    webhooks = signed_webhooks(3)
    path = write_goreplay(tmp_path / "capture.gor",
                          [http_request(body, headers) for _, body, headers in webhooks], responses=True)

    requests = list(load_source(path))

    assert [request.body for request in requests] == [body for _, body, _ in webhooks]
    assert requests[1].timestamp == pytest.approx(1_700_000_000.01)
    assert requests[0].header("Content-Length") is None


def test_goreplay_dechunks_and_keeps_gzip_body(tmp_path):
    _, body, headers = signed_webhooks(1)[0]
    compressed = gzip.compress(body)
    payload = http_request(compressed, {**headers, "Content-Encoding": "gzip"}, chunked=True)
    path = write_goreplay(tmp_path / "capture.gor.gz", [payload], compress=True)

    [request] = list(load_source(path))

    assert request.body == compressed
    assert request.header("Content-Encoding") == "gzip"
    assert request.header("Transfer-Encoding") is None


def test_goreplay_bad_header_names_record(tmp_path):
    good = http_request(b"{}", {})
    path = tmp_path / "bad.gor"
    path.write_bytes(b"1 abc 1700000000000000000 0\n" + good + "\n🐵🙈🙉\n".encode()
                     + b"request without header\n" + good + "\n🐵🙈🙉\n".encode())

    with pytest.raises(CaptureError, match=r"bad\.gor, record 2: invalid GoReplay header line"):
        list(load_source(path))


def test_goreplay_wrong_content_length_is_an_error(tmp_path):
    payload = http_request(b'{"id":1}', {}).replace(b"Content-Length: 8", b"Content-Length: 80")
    path = write_goreplay(tmp_path / "short.gor", [payload])

    with pytest.raises(CaptureError, match=r"record 1: the body is 8 bytes but Content-Length says 80"):
        list(load_source(path))


def test_jsonl_reads_string_body_byte_for_byte(tmp_path):
    _, body, headers = signed_webhooks(1)[0]
    line = {"body": body.decode(), "headers": headers, "timestamp": "2025-11-28T06:00:00Z",
            "path": "/webhooks/orders/create"}
    path = tmp_path / "hooks.jsonl"
    path.write_text(json.dumps(line, ensure_ascii=False) + "\n\n")

    [request] = list(load_source(path))

    assert request.body == body
    assert request.method == "POST"
    assert request.timestamp == 1764309600.0


def test_jsonl_line_not_json_names_line_number(tmp_path):
    path = tmp_path / "hooks.jsonl"
    path.write_text('{"body": "a"}\n{"body": "b"}\nnot json\n')

    with pytest.raises(CaptureError, match=r"hooks\.jsonl, record 3: the line is not JSON"):
        list(load_source(path))


def test_jsonl_skip_mode_counts_bad_lines(tmp_path):
    path = tmp_path / "hooks.jsonl"
    path.write_text('{"body": "a"}\nnot json\n{"headers": {}}\n{"body_base64": "Yg=="}\n')
    problems = ReadProblems(on_error=OnError.SKIP)

    requests = list(load_source(path, problems=problems))

    assert [request.body for request in requests] == [b"a", b"b"]
    assert problems.count == 2
    assert [error.record for error in problems.kept] == [2, 3]


def test_detect_format_by_content(tmp_path):
    cases = {
        "a": (b'{"log": {"entries": []}}', CaptureFormat.HAR),
        "b": (b'{"body": "x"}\n{"body": "y"}\n', CaptureFormat.JSONL),
        "pretty": (b'{\n  "log": {\n    "entries": []\n  }\n}\n', CaptureFormat.HAR),
        "c": (b"1 abc 1700000000000000000 0\nPOST / HTTP/1.1\r\n\r\n", CaptureFormat.GOREPLAY),
        "d": ((FIXTURES / "mitmproxy" / "dumpfile-7.mitm").read_bytes(), CaptureFormat.MITMPROXY),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert detect_format(path) is expected, name


def test_run_folder_with_only_ledger_explains_why(tmp_path):
    run = tmp_path / "demo-1"
    run.mkdir()
    (run / "ledger.sqlite").write_bytes(b"")

    with pytest.raises(CaptureError, match=r"stores a SHA-256 digest .* not the body"):
        list(load_source(run))


def test_run_folder_reads_its_capture_files(tmp_path):
    run = tmp_path / "demo-1"
    run.mkdir()
    (run / "ledger.sqlite").write_bytes(b"")
    (run / "ingress.jsonl").write_text('{"body": "a"}\n')

    assert [request.body for request in load_source(run)] == [b"a"]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CaptureError, match=r"nope\.mitm: file not found"):
        list(load_source(Path(tmp_path / "nope.mitm")))


def test_readers_import_without_aiohttp(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "hooks.jsonl"
    path.write_text('{"body": "a"}\n')
    script = ("import sys, replay; "
              f"assert [r.body for r in replay.load_source({str(path)!r})] == [b'a']; "
              "print('aiohttp' in sys.modules, 'mitmproxy' in sys.modules)")

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)

    assert result.stdout.split() == ["False", "False"]


def test_mitmproxy_reads_shadow_proxy_capture(tmp_path):
    from shadow.capture import CaptureWriter

    webhooks = signed_webhooks(2)
    writer = CaptureWriter(tmp_path / "run-1" / "ingress.mitm")
    for index, (_, body, headers) in enumerate(webhooks):
        writer.add(mitm_flow(body, headers, timestamp=1_700_000_000 + index))
    writer.close()

    requests = list(load_source(tmp_path / "run-1"))

    assert [request.body for request in requests] == [body for _, body, _ in webhooks]
