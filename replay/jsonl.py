"""Read JSON lines: one webhook a line.

Each line is an object with the body and, optionally, the headers, the time
and the request target:

    {"body": "{\\"id\\":1}", "headers": {"X-Shopify-Topic": "orders/create"},
     "timestamp": "2025-11-28T06:00:00Z", "method": "POST", "path": "/webhooks/orders/create"}

`body` as a string is sent as its UTF-8 bytes, and `body_base64` as the
decoded bytes: both are byte-exact. `body` as a JSON object or array is
written compactly, so a signature made over other bytes will not verify.
`timestamp` is seconds since the Unix epoch or an ISO 8601 time; `headers`
is an object or a list of [name, value] pairs. Blank lines are passed over.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from replay.capture import CapturedRequest, CaptureError, ReadProblems, iso_timestamp

__all__ = ["read_jsonl"]

DEFAULT_METHOD = "POST"
DEFAULT_PATH = "/"


def read_jsonl(path: Path, problems: ReadProblems) -> Iterator[CapturedRequest]:
    """Yield one request per non-blank line; the record number is the line number."""
    with path.open("rb") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                yield _request_of(line, str(path), line_number)
            except CaptureError as exc:
                problems.add(exc)


def _request_of(line: bytes, source: str, record: int) -> CapturedRequest:
    try:
        item = json.loads(line)
    except RecursionError:
        raise CaptureError(source, record, "the line is JSON nested too deeply to read.") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise CaptureError(source, record, f"the line is not JSON: {exc}") from None
    if not isinstance(item, dict):
        raise CaptureError(source, record, "the line is not a JSON object.")

    return CapturedRequest(
        method=_string(item, "method", DEFAULT_METHOD, source, record).upper(),
        path=_string(item, "path", DEFAULT_PATH, source, record),
        headers=_headers(item.get("headers"), source, record),
        body=_body(item, source, record),
        timestamp=_timestamp(item.get("timestamp"), source, record),
        source=source,
        record=record,
    )


def _string(item: dict[str, Any], name: str, default: str, source: str, record: int) -> str:
    value = item.get(name, default)
    if not isinstance(value, str) or not value:
        raise CaptureError(source, record, f"{name} must be a non-empty string, but got {value!r}.")
    return value


def _body(item: dict[str, Any], source: str, record: int) -> bytes:
    if "body_base64" in item:
        try:
            return base64.b64decode(item["body_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise CaptureError(source, record, f"body_base64 is not valid base64: {exc}") from None
    if "body" not in item:
        raise CaptureError(source, record, "the line has no body (give body or body_base64).")
    body = item["body"]
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, dict | list):
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raise CaptureError(source, record, f"body must be a string, object or array, but got {type(body).__name__}.")


def _headers(value: Any, source: str, record: int) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    pairs = value.items() if isinstance(value, dict) else value
    try:
        headers = tuple((name, field_value) for name, field_value in pairs)
    except (TypeError, ValueError):
        raise CaptureError(source, record, "headers must be an object or a list of [name, value] pairs.") from None
    if not all(isinstance(name, str) and isinstance(text, str) for name, text in headers):
        raise CaptureError(source, record, "header names and values must be strings.")
    return headers


def _timestamp(value: Any, source: str, record: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return iso_timestamp(value)
        except ValueError:
            pass
    raise CaptureError(source, record,
                       f"timestamp must be epoch seconds or an ISO 8601 time, but got {value!r}.")
