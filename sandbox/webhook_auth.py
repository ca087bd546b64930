"""Reading and verifying Shopify webhook requests on the receiving side.

Shopify signs the uncompressed body, so a compressed request is decoded
first and the HMAC is checked over the decoded bytes. The app that reads
the body must be built with `auto_decompress=False`, or aiohttp decodes it
before the handler reads it, and the `Content-Encoding` header no longer
describes the bytes. Shopify's header names are read case-insensitively,
with and without the `X-` prefix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib

from multidict import CIMultiDictProxy

__all__ = [
    "MAX_DECODED_BODY_BYTES",
    "BodyDecodeError",
    "decode_body",
    "event_id_of",
    "hmac_matches",
    "shopify_header",
]

# Upper bound on a decoded webhook body. Shopify order payloads are far
# smaller; the bound stops a small compressed body from expanding without
# limit.
MAX_DECODED_BODY_BYTES = 10 * 1024 * 1024


class BodyDecodeError(Exception):
    """A request body that can't be decoded, with the HTTP status to respond with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def shopify_header(headers: CIMultiDictProxy[str], name: str) -> str | None:
    """Return Shopify header `name` (given without the X- prefix), prefixed or not."""
    return headers.get(f"X-{name}") or headers.get(name)


def event_id_of(headers: CIMultiDictProxy[str]) -> str | None:
    return shopify_header(headers, "Shopify-Event-Id")


def hmac_matches(body: bytes, signature: str | None, secret: str) -> bool:
    """Check a base64 HMAC-SHA256 signature of `body` made with `secret`."""
    if not signature:
        return False
    expected = base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest())
    # SECURITY: a constant-time comparison, so timing does not reveal how
    # much of a forged signature was right.
    return hmac.compare_digest(expected, signature.strip().encode("utf-8", errors="replace"))


def decode_body(raw: bytes, content_encoding: str | None) -> bytes:
    """Undo the request's Content-Encoding (identity, gzip or deflate).

    Raises BodyDecodeError with 415 for other encodings, 413 when the
    decoded body exceeds MAX_DECODED_BODY_BYTES and 400 for corrupt data.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return raw
    if encoding in ("gzip", "x-gzip"):
        return _inflate(raw, zlib.MAX_WBITS | 16, encoding)
    if encoding == "deflate":
        # RFC 9110 defines deflate as the zlib format; some clients send a
        # raw deflate stream instead, so that is accepted too.
        try:
            return _inflate(raw, zlib.MAX_WBITS, encoding)
        except BodyDecodeError as exc:
            if exc.status != 400:
                raise
            return _inflate(raw, -zlib.MAX_WBITS, encoding)
    raise BodyDecodeError(
        415, f"Content-Encoding {content_encoding!r} is not supported; send identity, gzip or deflate."
    )


def _inflate(raw: bytes, wbits: int, encoding: str) -> bytes:
    decompressor = zlib.decompressobj(wbits)
    try:
        decoded = decompressor.decompress(raw, MAX_DECODED_BODY_BYTES)
    except zlib.error as exc:
        raise BodyDecodeError(400, f"Invalid {encoding} body: {exc}") from exc
    if decompressor.unconsumed_tail:
        raise BodyDecodeError(413, f"Decoded body exceeds {MAX_DECODED_BODY_BYTES} bytes.")
    if not decompressor.eof:
        raise BodyDecodeError(400, f"Invalid {encoding} body: the stream is truncated.")
    return decoded
