"""Give replayed orders fresh keys and sign them again.

A replayed order whose key the flows or the ERP already saw would be taken
as a duplicate. `IdRewriter` maps every original order key to a new one,
the prefix followed by a counter, and writes it in place of the old key:

- in the body, every whole occurrence of the old key's text (so
  `"id":5001` and `gid://shopify/Order/5001` both change), without parsing
  and re-encoding the JSON, so Shopify's escapes stay as they were;
- in every header value except the signature;
- the event and webhook ids (`X-Shopify-Event-Id`, `X-Shopify-Webhook-Id`)
  become UUIDs derived from the new key and the old id, so a duplicate of
  a delivery keeps sharing its event id with the first one.

A gzip or deflate body is decoded, rewritten and compressed again. The
HMAC header (`X-Shopify-Hmac-Sha256`, with or without the `X-`) is then
computed over the new decoded body with the shop's secret.
"""

from __future__ import annotations

import gzip
import re
import uuid
import zlib
from dataclasses import replace

from jmespath.parser import ParsedResult

from replay.capture import CapturedRequest
from replay.keys import decoded_body, order_key_value
from sandbox.storefront import sign
from sandbox.webhook_auth import BodyDecodeError

__all__ = ["DEFAULT_SECRET_ENV", "IdRewriter", "RewriteError"]

DEFAULT_SECRET_ENV = "CUTOVER_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"
# Headers whose value identifies one delivery or event; they get new UUIDs.
ID_HEADERS = ("shopify-event-id", "shopify-webhook-id")
COUNTER_DIGITS = 6
REWRITTEN_ID_NAMESPACE = uuid.UUID("0b8f3c52-7a0e-4f4e-9d61-5b2f6f0c9e13")


class RewriteError(Exception):
    """A request whose order key can't be rewritten."""


class IdRewriter:
    """Rewrite order keys to `<prefix><counter>` and re-sign the body.

    The same original key gets the same new key within one pass over the
    source; `next_pass()` starts a new mapping, so every loop of a replay
    sends fresh orders. Numeric keys stay numbers, so the prefix must be
    digits when the keys are JSON numbers.
    """

    def __init__(self, secret: str, *, prefix: str, key_rule: ParsedResult) -> None:
        if not secret:
            raise ValueError("The webhook signing secret is empty; set it to the shop's secret.")
        if not prefix:
            raise ValueError("The id prefix is empty; give a prefix such as '77'.")
        self._secret = secret
        self._prefix = prefix
        self._rule = key_rule
        self._counter = 0
        # Grows by one entry per distinct order in a pass, about 100 bytes each.
        self._keys: dict[str, str] = {}

    def __repr__(self) -> str:
        # SECURITY: the repr leaves out the secret.
        return f"IdRewriter(prefix={self._prefix!r}, rewritten={self._counter})"

    @property
    def prefix(self) -> str:
        return self._prefix

    def next_pass(self) -> None:
        self._keys.clear()

    def rewrite(self, request: CapturedRequest) -> tuple[CapturedRequest, str, str]:
        """Return the rewritten request, the original key and the new key."""
        try:
            body = decoded_body(request)
        except BodyDecodeError as exc:
            raise RewriteError(f"can't decode the body to rewrite it: {exc}") from None
        value = order_key_value(request, self._rule)
        if value is None:
            raise RewriteError("no order key in the body, so no new key can be given.")
        old_key = str(value)
        new_key = self._new_key(old_key, numeric=isinstance(value, int))

        new_body = _replace_token(body, old_key.encode("utf-8"), new_key.encode("utf-8"))
        wire_body = _encode_like(new_body, request.header("Content-Encoding"))
        headers = self._rewrite_headers(request.headers, old_key, new_key, sign(new_body, self._secret))
        return replace(request, body=wire_body, headers=headers), old_key, new_key

    def _new_key(self, old_key: str, *, numeric: bool) -> str:
        new_key = self._keys.get(old_key)
        if new_key is None:
            self._counter += 1
            new_key = f"{self._prefix}{self._counter:0{COUNTER_DIGITS}d}"
            self._keys[old_key] = new_key
        if numeric and not new_key.isdigit():
            raise RewriteError(
                f"the order key {old_key} is a JSON number, but the new key {new_key!r} is not; "
                "use an id prefix made of digits."
            )
        return new_key

    def _rewrite_headers(self, headers: tuple[tuple[str, str], ...], old_key: str, new_key: str,
                         signature: str) -> tuple[tuple[str, str], ...]:
        rewritten = []
        signed = False
        for name, value in headers:
            bare = name.lower().removeprefix("x-")
            if bare == SIGNATURE_HEADER.lower().removeprefix("x-"):
                rewritten.append((name, signature))
                signed = True
            elif bare in ID_HEADERS:
                rewritten.append((name, str(uuid.uuid5(REWRITTEN_ID_NAMESPACE, f"{new_key}:{value}"))))
            else:
                rewritten.append((name, value.replace(old_key, new_key)))
        if not signed:
            rewritten.append((SIGNATURE_HEADER, signature))
        return tuple(rewritten)


def _replace_token(body: bytes, old: bytes, new: bytes) -> bytes:
    """Replace `old` where it is not part of a longer word or number."""
    pattern = re.compile(rb"(?<![0-9A-Za-z_-])" + re.escape(old) + rb"(?![0-9A-Za-z_-])")
    return pattern.sub(lambda _match: new, body)


def _encode_like(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return gzip.compress(body, mtime=0)
    if encoding == "deflate":
        return zlib.compress(body)
    return body
