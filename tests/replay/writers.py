"""Capture files written by each tool's own writer, for the reader tests."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from replay.goreplay import write_goreplay_record


def mitm_flow(body: bytes, headers: dict[str, str], *, timestamp: float, path: str = "/webhooks/orders/create"):
    """Return a complete mitmproxy HTTP flow of one POST with its response."""
    from mitmproxy import http
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    flow.request = http.Request.make("POST", f"http://shop.example{path}", body, headers)
    flow.request.raw_content = body
    flow.request.timestamp_start = timestamp
    flow.request.timestamp_end = timestamp + 0.001
    return flow


def write_mitm(path: Path, flows: list) -> Path:
    from mitmproxy import io as mitm_io

    with path.open("wb") as file:
        writer = mitm_io.FlowWriter(file)
        for flow in flows:
            writer.add(flow)
    return path


def write_har_with_mitmproxy(path: Path, flows: list) -> Path:
    """Write a HAR file with mitmproxy's own HAR exporter."""
    from mitmproxy.addons.savehar import SaveHar

    path.write_text(json.dumps(SaveHar().make_har(flows)), encoding="utf-8")
    return path


def http_request(body: bytes, headers: dict[str, str], *, chunked: bool = False,
                 path: str = "/webhooks/orders/create") -> bytes:
    """Return a raw HTTP/1.1 POST as a client writes it on the wire."""
    lines = [f"POST {path} HTTP/1.1", "Host: shop.example"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        middle = len(body) // 2
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:middle], body[middle:]) if part)
        payload = encoded + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def write_goreplay(path: Path, requests: list[bytes], *, start_ns: int = 1_700_000_000_000_000_000,
                   step_ns: int = 10_000_000, responses: bool = False, compress: bool = False) -> Path:
    buffer = io.BytesIO()
    for index, payload in enumerate(requests):
        request_id = f"{index + 1:024x}"
        write_goreplay_record(buffer, request_id, start_ns + index * step_ns, payload)
        if responses:
            write_goreplay_record(buffer, request_id, start_ns + index * step_ns + 1000,
                                  b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", payload_type=2)
    data = buffer.getvalue()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path
