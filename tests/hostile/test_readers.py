"""Every reader of outside input, given hostile files: it reads them correctly or names the problem.

Each reader either returns what the file contains or raises its own error type
with the file name and what is wrong; through the CLI that is one line on
standard error and exit code 2, never a traceback.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compare.completeness import OrderExportError, load_order_export
from compare.config import CompareConfigError, load_compare_config
from cutover.cli import app
from cutover.commands.ledger import ExportError, export_run, import_run
from cutover.ledger import open_ledger, start_run
from replay import CaptureError, load_source
from shadow.config import ConfigError, load_config

runner = CliRunner()

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
LONG_INTEGER = b"7" * 5000


def _deep_tnetstring(depth: int) -> bytes:
    value = b"0:]"
    for _ in range(depth):
        value = b"%d:%s]" % (len(value), value)
    return value


DEEP_TNETSTRING = _deep_tnetstring(5000)
# Bytes that are not UTF-8 in any position: a stray continuation byte and 0xff.
NOT_UTF8 = b"id\n\x80\xff\n"
# A GoReplay file of two requests whose gzip stream ends before its end marker.
TRUNCATED_GZIP = gzip.compress(b"".join(
    b"1 %d 1700000000000000000 0\nPOST /hook HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}\n\xf0\x9f\x90\xb5"
    b"\xf0\x9f\x99\x88\xf0\x9f\x99\x89\n" % number for number in (1, 2)))[:-6]

EXPORT_CASES = [
    pytest.param("orders.csv", b'id,name\n1,"Ann\n2,Bob\n3,Cy\n', "not valid CSV on line", id="csv-unclosed-quote"),
    pytest.param("orders.csv", NOT_UTF8, "is not UTF-8 text", id="csv-not-utf8"),
    pytest.param("orders.csv", "id\n1\n".encode("utf-16"), "is not UTF-8 text", id="csv-utf16"),
    pytest.param("orders.csv", b"customer,total\nAnn,5\n", "has no key column", id="csv-no-key-column"),
    pytest.param("orders.csv", b"id\n\n\n", "lists no orders", id="csv-header-only"),
    pytest.param("orders.csv", b"", "has no key column", id="csv-empty"),
    pytest.param("orders.json", DEEP_JSON, "nested too deeply", id="json-deep"),
    pytest.param("orders.json", b"[" + LONG_INTEGER + b"]", "not valid JSON", id="json-5000-digit-id"),
    pytest.param("orders.json", b'{"orders": {"id": 1}}', "must be a JSON list", id="json-orders-not-list"),
    pytest.param("orders.json", b'[{"id": 1.5}]', "has no key field", id="json-float-id"),
    pytest.param("orders.json", b'[{"number": 1}]', "has no key field", id="json-missing-key"),
    pytest.param("orders.json", b'[1, 2', "not valid JSON", id="json-truncated"),
]


@pytest.mark.parametrize(("name", "data", "message"), EXPORT_CASES)
def test_order_export_rejects_hostile_file(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(OrderExportError, match=message) as raised:
        load_order_export(path)
    assert str(path) in str(raised.value)


def test_order_export_keeps_big_ids_and_quoted_newlines(tmp_path):
    csv_path = tmp_path / "orders.csv"
    csv_path.write_bytes(b'\xef\xbb\xbfid,note\r\n9007199254740993,"two\r\nlines"\r\n2,"a ""quoted"" word"\r\n')
    json_path = tmp_path / "orders.json"
    json_path.write_bytes(b'{"orders": [{"id": 9007199254740993}, {"id": "00042"}, 123456789012345678901234567890]}')

    assert load_order_export(csv_path) == {"9007199254740993", "2"}
    assert load_order_export(json_path) == {"9007199254740993", "00042", "123456789012345678901234567890"}


COMPARE_CONFIG_CASES = [
    pytest.param(NOT_UTF8, "is not UTF-8 text", id="not-utf8"),
    pytest.param(b"[compare.criteria\nmin_orders = 1\n", "Invalid TOML", id="unclosed-table"),
    pytest.param(b"[criteria]\nmin_orders = 1\n", "has no \\[compare\\] table", id="criteria-outside-compare"),
    pytest.param(b"[compare]\ncriteria = 5\n", "expected a table", id="criteria-not-table"),
    pytest.param(b"[compare.criteria]\nmin_orders = " + LONG_INTEGER + b"\n", "Invalid TOML", id="5000-digit-int"),
    pytest.param(b"[compare.normalisation]\nfield_map = 1\n", "must be a table of candidate path", id="field-map-int"),
]


@pytest.mark.parametrize(("data", "message"), COMPARE_CONFIG_CASES)
def test_compare_config_rejects_hostile_file(tmp_path, data, message):
    path = tmp_path / "compare.toml"
    path.write_bytes(data)
    with pytest.raises(CompareConfigError, match=message) as raised:
        load_compare_config(path)
    assert str(path) in str(raised.value)


ROUTE = {"name": "ingress", "role": "ingress", "listen": 18080, "upstream": "http://127.0.0.1:18081",
         "mirror_to": "http://127.0.0.1:18082"}

SHADOW_CONFIG_CASES = [
    pytest.param("shadow.json", NOT_UTF8, "not UTF-8 text", id="not-utf8"),
    pytest.param("shadow.json", DEEP_JSON, "nested too deeply", id="deep-json"),
    pytest.param("shadow.json", b"[1, 2]", "the top level must be an object", id="json-list"),
    pytest.param("shadow.json", b'{"route": [' + json.dumps({**ROUTE, "listen": LONG_INTEGER.decode()}).encode()
                 + b"]}", "listen must be a port", id="listen-5000-digits"),
    pytest.param("shadow.json", json.dumps({"route": [{**ROUTE, "listen": True}]}).encode(),
                 "listen must be a port", id="listen-bool"),
    pytest.param("shadow.json", json.dumps({"route": [{**ROUTE, "listen": 8080.9}]}).encode(),
                 "listen must be a port", id="listen-float"),
    pytest.param("shadow.json", json.dumps({"route": [{**ROUTE, "key": ["id"]}]}).encode(),
                 "key must be a JMESPath expression", id="key-list"),
    pytest.param("shadow.toml", b'[[route]]\nname = "a"\nrole = "erp"\nlisten = 1\nupstream = "http://127.0.0.1:2"\n'
                 b"path_key = 5\n", "path_key must be",
                 id="path-key-int"),
    pytest.param("shadow.toml", b"[[route]\n", "Invalid shadow configuration", id="toml-unclosed"),
]


@pytest.mark.parametrize(("name", "data", "message"), SHADOW_CONFIG_CASES)
def test_shadow_config_rejects_hostile_file(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(path)
    assert str(path) in str(raised.value)


CAPTURE_CASES = [
    pytest.param("capture.jsonl", DEEP_JSON + b"\n", "nested too deeply", id="jsonl-deep"),
    pytest.param("capture.jsonl", b'{"body": "x", "timestamp": ' + LONG_INTEGER + b"}\n", "the line is not JSON",
                 id="jsonl-5000-digits"),
    pytest.param("capture.jsonl", NOT_UTF8, "the line is not JSON", id="jsonl-not-utf8"),
    pytest.param("capture.har", b'{"log": {"entries": ' + DEEP_JSON + b"}}", "nested too deeply", id="har-deep"),
    pytest.param("capture.har", b'{"orders": []}', "not a HAR file: it has no log.entries", id="har-no-log"),
    pytest.param("capture.har", b'{"log": 5}', "not a HAR file: its 'log' is not an object", id="har-log-number"),
    pytest.param("capture.gor.gz", b"1 abc 1\nPOST / HTTP/1.1\r\n\r\n", "gzip stream can't be read",
                 id="gor-gz-not-gzip"),
    pytest.param("capture.gor.gz", TRUNCATED_GZIP, "gzip stream can't be read", id="gor-gz-truncated"),
    pytest.param("capture.gor", b"1 abc 1\nPOST / HTTP/1.1\r\nContent-Length: 99\r\n\r\n{}", "Content-Length says 99",
                 id="gor-short-body"),
    pytest.param("capture.mitm", b"99999999999:", "not a valid mitmproxy flow record", id="mitm-huge-length"),
    pytest.param("capture.mitm", b"5:hello,", "not a readable mitmproxy flow", id="mitm-not-a-flow"),
    pytest.param("capture.mitm", DEEP_TNETSTRING, "nested too deeply", id="mitm-deep"),
]


@pytest.mark.parametrize(("name", "data", "message"), CAPTURE_CASES)
def test_capture_reader_rejects_hostile_file(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CaptureError, match=message) as raised:
        list(load_source(path))
    assert str(path) in str(raised.value)


def test_run_folder_capture_is_read_like_a_file(tmp_path):
    folder = tmp_path / "runs" / "run-1"
    folder.mkdir(parents=True)
    (folder / "ingress.jsonl").write_bytes(b'{"body": "{\\"id\\": 9007199254740993}"}\n' + DEEP_JSON + b"\n")
    with pytest.raises(CaptureError, match=r"ingress\.jsonl, record 2: the line is JSON nested too deeply"):
        list(load_source(folder))


def _exported_run(tmp_path: Path) -> Path:
    source = f"sqlite:///{tmp_path / 'source.sqlite'}"
    engine = open_ledger(source)
    start_run(engine, "run-1", "shadow", {})
    engine.dispose()
    path = tmp_path / "run.jsonl"
    export_run(source, "run-1", path)
    return path


def _event(**fields) -> str:
    event = {"record": "event", "order_key": "9007199254740993", "flow": "legacy", "kind": "webhook.received",
             "wall_time": "2025-11-28T06:00:00+00:00", "mono_ns": 1, "instance_id": "proxy-1", "route": "ingress",
             "http_flow_id": "f1", "status": None, "latency_ms": None, "snapshot": None, "digest": None,
             "detail": None}
    return json.dumps({**event, **fields})


LEDGER_IMPORT_CASES = [
    pytest.param(DEEP_JSON, "line 1: JSON nested too deeply", id="deep-header"),
    pytest.param(b"[1]\n", "line 1: expected a JSON object", id="header-list"),
    pytest.param(b'{"format": "cutover-ledger-export", "version": "1", "id": "r"}\n', "must be an integer",
                 id="header-version-string"),
    pytest.param(NOT_UTF8, "line 1: invalid JSON", id="not-utf8"),
    pytest.param(_event(wall_time="yesterday"), "field 'wall_time' must be an ISO 8601 time", id="bad-time"),
    pytest.param(_event(mono_ns="1"), "field 'mono_ns' must be an integer", id="mono-as-string"),
    pytest.param(_event(mono_ns=2**64), "field 'mono_ns' must be an integer", id="mono-above-int64"),
    pytest.param(_event(flow=None), "field 'flow' must not be null", id="flow-null"),
    pytest.param(_event(id=5), "unknown field\\(s\\) 'id'", id="event-with-id"),
    pytest.param(_event(order_key=123), "field 'order_key' must be a string", id="key-as-integer"),
    pytest.param(json.dumps({"record": "counter", "run_id": "other-run", "instance_id": "p", "name": "n",
                             "value": 1}), "is not the exported run", id="counter-of-other-run"),
    pytest.param(json.dumps({"record": "counter", "instance_id": "p", "value": 1}), "missing field\\(s\\) name",
                 id="counter-without-name"),
    pytest.param(json.dumps({"record": "bogus"}), "unknown record 'bogus'", id="unknown-record"),
    pytest.param(b"\n".join([b"x"] * 2), "invalid JSON", id="garbage-line"),
]


@pytest.mark.parametrize(("line", "message"), LEDGER_IMPORT_CASES)
def test_ledger_import_rejects_hostile_file(tmp_path, line, message):
    path = _exported_run(tmp_path)
    data = line if isinstance(line, bytes) else line.encode()
    if message.startswith(("line 1", "must be an integer")):
        path.write_bytes(data)
    else:
        path.write_bytes(path.read_bytes() + data + b"\n")
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    with pytest.raises(ExportError, match=message) as raised:
        import_run(target, path)
    assert str(path) in str(raised.value)


def test_ledger_import_keeps_nothing_of_a_rejected_file(tmp_path):
    path = _exported_run(tmp_path)
    path.write_bytes(path.read_bytes() + (_event() + "\n").encode() + (_event(mono_ns="x") + "\n").encode())
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    with pytest.raises(ExportError):
        import_run(target, path)
    path.write_bytes(path.read_bytes().rsplit(b"\n", 2)[0] + b"\n")

    counts = import_run(target, path)

    assert counts.events == 1


# One case per reader through the command line: exit code 2, one line, no traceback.

def _one_line_error(result, path: Path) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert str(path) in lines[0]
    return lines[0]


def test_cli_report_rejects_unclosed_csv_quote(tmp_path):
    export = tmp_path / "orders.csv"
    export.write_bytes(b'id,name\n1,"Ann\n2,Bob\n')
    result = runner.invoke(app, ["report", "--runs-dir", str(tmp_path / "runs"), "--orders-export", str(export)])
    assert "unclosed quote" in _one_line_error(result, export)


def test_cli_report_rejects_deep_json_export(tmp_path):
    export = tmp_path / "orders.json"
    export.write_bytes(DEEP_JSON)
    result = runner.invoke(app, ["report", "--runs-dir", str(tmp_path / "runs"), "--orders-export", str(export)])
    assert "nested too deeply" in _one_line_error(result, export)


def test_cli_report_rejects_compare_config_without_compare_table(tmp_path):
    config = tmp_path / "compare.toml"
    config.write_bytes(b"[criteria]\nmin_orders = 5\n")
    result = runner.invoke(app, ["report", "--runs-dir", str(tmp_path / "runs"), "--compare-config", str(config)])
    assert "no [compare] table" in _one_line_error(result, config)


def test_cli_shadow_rejects_non_utf8_config(tmp_path):
    config = tmp_path / "cutover.toml"
    config.write_bytes(NOT_UTF8)
    result = runner.invoke(app, ["shadow", "--config", str(config), "--print-command"])
    assert "not UTF-8 text" in _one_line_error(result, config)


def test_cli_replay_rejects_deep_jsonl_before_sending(tmp_path):
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(DEEP_JSON + b"\n")
    # Nothing listens on the discard port; the read fails before any send.
    result = runner.invoke(app, ["replay", str(capture), "--target", "http://127.0.0.1:9/",
                                 "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert "Nothing was sent" in _one_line_error(result, capture)


def test_cli_replay_rejects_broken_gzip(tmp_path):
    capture = tmp_path / "capture.gor.gz"
    capture.write_bytes(TRUNCATED_GZIP)
    result = runner.invoke(app, ["replay", str(capture), "--target", "http://127.0.0.1:9/",
                                 "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert "gzip stream can't be read" in _one_line_error(result, capture)


def test_cli_ledger_import_rejects_bad_event(tmp_path):
    path = _exported_run(tmp_path)
    path.write_bytes(path.read_bytes() + (_event(wall_time="yesterday") + "\n").encode())
    result = runner.invoke(app, ["ledger", "import", str(path), "--ledger", f"sqlite:///{tmp_path / 't.sqlite'}"])
    assert "must be an ISO 8601 time" in _one_line_error(result, path)
