"""Turn what the proxy's hooks observed into ledger events.

Hooks only copy references and timestamps into an `Observation`; the
ledger writer's thread calls `EventBuilder` to decode bodies, extract order
keys, redact personal data and classify answers. That keeps JSON parsing,
hashing and redaction off the proxy's hot path.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cutover.events import EventKind, Flow
from cutover.privacy import Redactor
from shadow.config import RouteSpec

__all__ = ["EventBuilder", "Observation", "ObservationKind"]

log = logging.getLogger(__name__)

# Bodies larger than this are not decoded for keying (a decompression bomb
# must not exhaust the proxy); the raw bytes are still forwarded.
MAX_DECODED_BODY = 8 * 1024 * 1024

# How many http flows remember their order key for the events that follow
# them (the answer, the mirror's result).
KEY_CACHE_SIZE = 200_000

# NetSuite RESTlets answer 400 with this code when the account-wide
# concurrency limit is exceeded: a throttle, not a rejection.
NETSUITE_THROTTLE_CODES = ("SSS_REQUEST_LIMIT_EXCEEDED", "CONCURRENCY_LIMIT_EXCEEDED")


class ObservationKind:
    WEBHOOK = "webhook"
    WEBHOOK_RESPONSE = "webhook.response"
    MIRROR_SENT = "mirror.sent"
    MIRROR_FAILED = "mirror.failed"
    MIRROR_DROPPED = "mirror.dropped"
    MIRROR_SKIPPED = "mirror.skipped"
    ERP_REQUEST = "erp.request"
    ERP_RESPONSE = "erp.response"
    ERP_ERROR = "erp.error"
    EMAIL = "email"


HeaderFields = tuple[tuple[bytes, bytes], ...]

# Delivery headers kept with each webhook event, under these names. Read
# case-insensitively; newer Shopify deliveries drop the X- prefix.
DELIVERY_HEADERS = {
    "topic": ("X-Shopify-Topic", "Shopify-Topic", "X-WC-Webhook-Topic"),
    "event_id": ("X-Shopify-Event-Id", "Shopify-Event-Id", "webhook-id"),
    "webhook_id": ("X-Shopify-Webhook-Id", "Shopify-Webhook-Id", "X-WC-Webhook-Delivery-ID"),
}


def header_value(fields: HeaderFields, name: str) -> str | None:
    """Return the first value of header `name` (any case), or None."""
    wanted = name.lower().encode("latin-1")
    for key, value in fields:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


@dataclass(slots=True)
class Observation:
    kind: str
    route: RouteSpec
    http_flow_id: str
    mono_ns: int
    wall_s: float
    method: str = ""
    path: str = ""
    body: bytes | None = None
    # Raw header fields as mitmproxy holds them: the request's, and for
    # answers also the response's. Read them with `header_value`.
    headers: HeaderFields = ()
    response_headers: HeaderFields = ()
    status: int | None = None
    latency_ms: float | None = None
    reason: str = ""
    quarantined: bool = False


def decode_body(body: bytes, content_encoding: str) -> bytes:
    """Undo gzip or deflate for keying; other encodings raise ValueError."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decompressor = zlib.decompressobj()
    elif encoding == "br":
        import brotli  # shipped with mitmproxy

        decoded = brotli.decompress(body)
        if len(decoded) > MAX_DECODED_BODY:
            raise ValueError(f"decoded body exceeds {MAX_DECODED_BODY} bytes")
        return decoded
    else:
        raise ValueError(f"unsupported Content-Encoding {content_encoding!r}")
    try:
        decoded = decompressor.decompress(body, MAX_DECODED_BODY + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"corrupt {encoding} body: {exc}") from exc
    if len(decoded) > MAX_DECODED_BODY:
        raise ValueError(f"decoded body exceeds {MAX_DECODED_BODY} bytes")
    return decoded


def key_text(value: Any) -> str | None:
    """Return an order key as text; ids above 2^53 stay exact integers."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    text = str(value).strip()
    return text or None


class EventBuilder:
    """Build ledger rows from observations; called by the ledger writer's thread."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self._redactor = redactor or Redactor()
        self._keys: OrderedDict[str, str | None] = OrderedDict()

    def __call__(self, observation: Observation) -> dict[str, Any] | None:
        handler = getattr(self, "_on_" + observation.kind.replace(".", "_"))
        return handler(observation)

    def _on_webhook(self, obs: Observation) -> dict[str, Any]:
        key, _, reason = self._key_from_body(obs)
        self._remember(obs.http_flow_id, key)
        detail: dict[str, Any] = {"path": obs.path}
        for name, candidates in DELIVERY_HEADERS.items():
            detail[name] = next(
                (value for candidate in candidates
                 if (value := header_value(obs.headers, candidate)) is not None),
                None,
            )
        if key is None:
            return self._uncorrelated(obs, reason, detail)
        return self._row(
            obs, key, obs.route.flow, EventKind.WEBHOOK_RECEIVED,
            digest=_sha256(obs.body or b""), detail=detail,
        )

    def _on_webhook_response(self, obs: Observation) -> dict[str, Any] | None:
        key = self._keys.get(obs.http_flow_id)
        if key is None:
            return None  # its webhook was already recorded as uncorrelated
        detail = {"reason": obs.reason} if obs.reason else None
        return self._row(obs, key, obs.route.flow, EventKind.WEBHOOK_RESPONDED, detail=detail)

    def _on_mirror_sent(self, obs: Observation) -> dict[str, Any] | None:
        return self._mirror_row(obs, EventKind.MIRROR_SENT)

    def _on_mirror_failed(self, obs: Observation) -> dict[str, Any] | None:
        return self._mirror_row(obs, EventKind.MIRROR_FAILED)

    def _on_mirror_dropped(self, obs: Observation) -> dict[str, Any] | None:
        return self._mirror_row(obs, EventKind.MIRROR_DROPPED)

    def _on_mirror_skipped(self, obs: Observation) -> dict[str, Any] | None:
        return self._mirror_row(obs, EventKind.MIRROR_SKIPPED)

    def _mirror_row(self, obs: Observation, kind: EventKind) -> dict[str, Any] | None:
        if obs.http_flow_id in self._keys:
            key = self._keys[obs.http_flow_id]
        else:
            key, _, _ = self._key_from_body(obs)
        if key is None:
            return self._uncorrelated(obs, f"{kind.value} of a webhook with no order key",
                                      {"reason": obs.reason} if obs.reason else {})
        mirror_flow = Flow.CANDIDATE if obs.route.flow == Flow.LEGACY else Flow.LEGACY
        detail = {"reason": obs.reason} if obs.reason else None
        digest = _sha256(obs.body) if obs.body is not None else None
        return self._row(obs, key, mirror_flow, kind, digest=digest, detail=detail)

    def _on_erp_request(self, obs: Observation) -> dict[str, Any] | None:
        if obs.method.upper() not in obs.route.submit_methods:
            self._remember(obs.http_flow_id, None)
            return None

        key = None
        if obs.route.path_key is not None:
            match = obs.route.path_key.search(obs.path)
            if match:
                key = match.group(1)
        key_from_body, document, reason = self._key_from_body(obs)
        key = key or key_from_body
        self._remember(obs.http_flow_id, key)
        detail = {"method": obs.method, "path": obs.path}
        if key is None:
            return self._uncorrelated(obs, reason or "no order key in path or body", detail)

        snapshot = None
        digest = None
        if document is not None:
            snapshot = json.dumps(self._redactor.redact(document), sort_keys=True,
                                  separators=(",", ":"), ensure_ascii=False)
            digest = _sha256(snapshot.encode("utf-8"))
        return self._row(obs, key, obs.route.flow, EventKind.ERP_SUBMITTED,
                         snapshot=snapshot, digest=digest, detail=detail)

    def _on_erp_response(self, obs: Observation) -> dict[str, Any] | None:
        key = self._keys.get(obs.http_flow_id)
        if key is None:
            return None  # not a submission, or its request was uncorrelated
        status = obs.status or 0
        detail: dict[str, Any] = {}
        location = header_value(obs.response_headers, "location")
        if location:
            detail["location"] = location
        encoding = header_value(obs.response_headers, "content-encoding") or ""
        error_code = _netsuite_error_code(obs.body, encoding) if status >= 400 else None
        if error_code:
            detail["error_code"] = error_code

        if 200 <= status < 300:
            kind = EventKind.ERP_ACKED
        elif status == 429 or error_code in NETSUITE_THROTTLE_CODES:
            kind = EventKind.ERP_THROTTLED
        elif 400 <= status < 500:
            kind = EventKind.ERP_REJECTED
        else:
            kind = EventKind.ERP_FAILED
        return self._row(obs, key, obs.route.flow, kind, detail=detail or None)

    def _on_erp_error(self, obs: Observation) -> dict[str, Any] | None:
        key = self._keys.get(obs.http_flow_id)
        if key is None:
            return None
        return self._row(obs, key, obs.route.flow, EventKind.ERP_FAILED,
                         detail={"reason": obs.reason})

    def _on_email(self, obs: Observation) -> dict[str, Any]:
        key, document, reason = self._key_from_body(obs)
        detail: dict[str, Any] = {"path": obs.path}
        if key is None:
            return self._uncorrelated(obs, reason, detail)

        kinds = obs.route.email_kinds
        label = kinds.rule.search(document) if kinds is not None else None
        detail["category"] = label
        if kinds is not None and label in kinds.confirmation:
            kind = (EventKind.CONFIRMATION_QUARANTINED if obs.quarantined
                    else EventKind.CONFIRMATION_SENT)
        elif kinds is not None and label in kinds.pending_notice:
            kind = (EventKind.PENDING_NOTICE_QUARANTINED if obs.quarantined
                    else EventKind.PENDING_NOTICE_SENT)
        else:
            kind = EventKind.EMAIL_OTHER

        snapshot = json.dumps(self._redactor.redact(_email_snapshot(document)), sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False)
        return self._row(obs, key, obs.route.flow, kind, snapshot=snapshot,
                         digest=_sha256(snapshot.encode("utf-8")), detail=detail)

    def _key_from_body(self, obs: Observation) -> tuple[str | None, Any, str]:
        """Return (order key, parsed body, reason when there is no key)."""
        if not obs.body:
            return None, None, "empty body"
        encoding = header_value(obs.headers, "content-encoding") or ""
        try:
            document = json.loads(decode_body(obs.body, encoding))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return None, None, f"body is not JSON: {exc.__class__.__name__}"
        try:
            value = obs.route.key_rule.search(document)
        except Exception as exc:
            return None, document, f"key rule {obs.route.key_rule_text!r} failed: {exc}"
        key = key_text(value)
        if key is None:
            return None, document, f"key rule {obs.route.key_rule_text!r} found no order key"
        return key, document, ""

    def _remember(self, http_flow_id: str, key: str | None) -> None:
        self._keys[http_flow_id] = key
        if len(self._keys) > KEY_CACHE_SIZE:
            self._keys.popitem(last=False)

    def _uncorrelated(self, obs: Observation, reason: str, detail: dict[str, Any]) -> dict[str, Any]:
        log.debug("Uncorrelated %s on route %s (http flow %s): %s",
                  obs.kind, obs.route.name, obs.http_flow_id, reason)
        return self._row(obs, None, obs.route.flow, EventKind.UNCORRELATED,
                         detail={**detail, "route": obs.route.name, "reason": reason})

    def _row(
        self,
        obs: Observation,
        key: str | None,
        flow: Flow,
        kind: EventKind,
        *,
        snapshot: str | None = None,
        digest: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "order_key": key,
            "flow": flow.value,
            "kind": kind.value,
            "wall_time": datetime.fromtimestamp(obs.wall_s, UTC),
            "mono_ns": obs.mono_ns,
            "route": obs.route.name,
            "http_flow_id": obs.http_flow_id,
            "status": obs.status,
            "latency_ms": obs.latency_ms,
            "snapshot": snapshot,
            "digest": digest,
            "detail": json.dumps(detail, ensure_ascii=False) if detail else None,
        }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _netsuite_error_code(body: bytes | None, content_encoding: str) -> str | None:
    """Return the first `o:errorCode` of a NetSuite error body, if any."""
    if not body:
        return None
    try:
        document = json.loads(decode_body(body, content_encoding))
        return str(document["o:errorDetails"][0]["o:errorCode"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _email_snapshot(document: Any) -> Any:
    """Keep what a confirmation's comparison needs; free text is left out."""
    if not isinstance(document, dict):
        return document
    kept = ("subject", "categories", "custom_args", "dynamic_template_data", "template_id",
            "Metadata", "TemplateModel", "Tag")
    return {name: document[name] for name in kept if name in document}
