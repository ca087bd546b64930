"""Find the order key of a captured webhook.

The key is read with a JMESPath rule (default `id`, Shopify's order id)
from the JSON body, after undoing a gzip or deflate `Content-Encoding`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath.parser import ParsedResult

from replay.capture import CapturedRequest
from sandbox.webhook_auth import BodyDecodeError, decode_body

__all__ = ["DEFAULT_KEY_RULE", "compile_key_rule", "decoded_body", "order_key_of", "sample_bucket"]

DEFAULT_KEY_RULE = "id"
# Sampling resolution: a sample share is applied in steps of 1/10,000.
SAMPLE_BUCKETS = 10_000


def compile_key_rule(text: str) -> ParsedResult:
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"Invalid order-key rule {text!r}: {exc}. Use a JMESPath expression such as 'id'.") from exc


def decoded_body(request: CapturedRequest) -> bytes:
    """Return the body with its Content-Encoding undone; raises BodyDecodeError."""
    return decode_body(request.body, request.header("Content-Encoding"))


def order_key_value(request: CapturedRequest, rule: ParsedResult) -> Any:
    """Return the JSON value the rule finds in the body, or None."""
    try:
        document = json.loads(decoded_body(request))
    except (BodyDecodeError, ValueError, RecursionError):  # ValueError: not JSON, or not UTF-8
        return None
    value = rule.search(document)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value


def order_key_of(request: CapturedRequest, rule: ParsedResult) -> str | None:
    value = order_key_value(request, rule)
    return None if value is None else str(value)


def sample_bucket(request: CapturedRequest, order_key: str | None) -> int:
    """Return a stable bucket in [0, SAMPLE_BUCKETS) from the order key, else from the body."""
    material = order_key.encode("utf-8") if order_key is not None else request.body
    digest = hashlib.sha256(material).digest()
    return int.from_bytes(digest[:8], "big") % SAMPLE_BUCKETS
