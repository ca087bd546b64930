"""Turn what the proxy's hooks observed into ledger events.

Hooks only copy references and timestamps into an `Observation` and send it
to the sidecar process. There the ledger writer's thread calls
`EventBuilder` to decode bodies, extract order keys, redact personal data
and classify responses. That keeps JSON parsing, hashing and redaction out
of the proxy's process.

What a route's traffic looks like (key rules, delivery headers, what counts
as a submission, how an answer is classified) comes from its preset
(`shadow.presets`); a route without one behaves as Shopify, NetSuite and
SendGrid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath.parser import ParsedResult

from cutover.events import EventKind, Flow
from cutover.privacy import Redactor
from shadow.config import RouteSpec
from shadow.presets import (
    NETSUITE,
    SENDGRID,
    SHOPIFY,
    EmailPreset,
    ErpPreset,
    StorefrontPreset,
)

__all__ = ["EventBuilder", "Observation", "ObservationKind"]

log = logging.getLogger(__name__)

# Compressed bodies that decode to more than this are not keyed, so that a
# decompression bomb can't exhaust the sidecar. The raw bytes are still
# forwarded to both flows.
MAX_DECODED_BODY = 8 * 1024 * 1024

# Compressed bytes handed to the brotli decoder at a time; see `_unbrotli`.
BROTLI_STEP_BYTES = 16

# Longest order key the ledger stores (its order_key column); a longer one
# is recorded as uncorrelated rather than refused by the database.
MAX_KEY_LENGTH = 128

# How many http flows remember their order key for the events that follow
# them (the answer, the mirror's result).
KEY_CACHE_SIZE = 200_000

# How many webhook events (and storefront-sent confirmations, and ERP jobs)
# are remembered for attempt counting and deduplication; the oldest go first.
DELIVERY_CACHE_SIZE = 100_000

# Shopify's GraphQL id of an order; its numeric part is the REST `id`.
SHOPIFY_ORDER_GID = re.compile(r"^gid://shopify/Order/(\d+)$")

# WooCommerce's ping when a webhook is created or its URL changes.
WOOCOMMERCE_PING = re.compile(rb"^webhook_id=(\d+)$")


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
    # The email service's response to a call that was not quarantined.
    EMAIL_RESPONSE = "email.response"
    # The ingress request once more, on a route with legacy_confirmation_from:
    # the storefront itself sent the confirmation.
    WEBHOOK_CONFIRMATION = "webhook.confirmation"


HeaderFields = tuple[tuple[bytes, bytes], ...]


def header_value(fields: HeaderFields, name: str) -> str | None:
    """Return the first value of header `name` (any case), or None."""
    wanted = name.lower().encode("latin-1")
    for key, value in fields:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def first_header(fields: HeaderFields, names: tuple[str, ...]) -> tuple[str, str] | tuple[None, None]:
    """Return (name, value) of the first of `names` present, or (None, None)."""
    for name in names:
        value = header_value(fields, name)
        if value is not None:
            return name, value
    return None, None


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
    """Undo gzip, deflate or brotli for keying, up to MAX_DECODED_BODY bytes.

    Raises ValueError for other encodings, for corrupt data and for a body
    that decodes to more than MAX_DECODED_BODY bytes (a decompression bomb).
    """
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, encoding)
    if encoding == "deflate":
        # RFC 9110 defines deflate as the zlib format; some clients send a
        # raw deflate stream instead, so that is accepted too.
        try:
            return _inflate(body, zlib.MAX_WBITS, encoding)
        except _CorruptBody:
            return _inflate(body, -zlib.MAX_WBITS, encoding)
    if encoding == "br":
        return _unbrotli(body)
    raise ValueError(f"unsupported Content-Encoding {content_encoding!r}")


class _CorruptBody(ValueError):
    pass


def _inflate(body: bytes, window_bits: int, encoding: str) -> bytes:
    decompressor = zlib.decompressobj(window_bits)
    try:
        decoded = decompressor.decompress(body, MAX_DECODED_BODY + 1)
    except zlib.error as exc:
        raise _CorruptBody(f"corrupt {encoding} body: {exc}") from exc
    if len(decoded) > MAX_DECODED_BODY:
        raise ValueError(f"decoded body exceeds {MAX_DECODED_BODY} bytes")
    return decoded


def _unbrotli(body: bytes) -> bytes:
    """Decode brotli in small steps, so that a bomb stops near the bound.

    The brotli module shipped with mitmproxy (1.1) has no output limit: one
    call returns everything its input decodes to. A meta-block decodes to at
    most 16 MiB and its header takes about 10 bytes (RFC 7932, section 9.2),
    so one step of BROTLI_STEP_BYTES input bytes adds a few tens of MiB at most.
    """
    import brotli  # shipped with mitmproxy

    decompressor = brotli.Decompressor()
    parts: list[bytes] = []
    size = 0
    try:
        for start in range(0, len(body), BROTLI_STEP_BYTES):
            part = decompressor.process(body[start:start + BROTLI_STEP_BYTES])
            size += len(part)
            if size > MAX_DECODED_BODY:
                raise ValueError(f"decoded body exceeds {MAX_DECODED_BODY} bytes")
            parts.append(part)
    except brotli.error as exc:
        raise _CorruptBody(f"corrupt br body: {exc}") from exc
    return b"".join(parts)


class JsonFloat(float):
    """A JSON number with a fraction or exponent, with the text it was written as.

    It behaves as the float Python's json module would return, and keeps
    `text` so that an order key written as `9007199254740993.0` keeps every
    digit.
    """

    __slots__ = ("text",)


def _json_float(text: str) -> JsonFloat:
    number = JsonFloat(text)
    number.text = text
    return number


def parse_json(data: bytes | str) -> Any:
    """Parse a body for keying; floats keep their text (see `JsonFloat`).

    Invalid UTF-8 inside a body does not hide its order key: when strict
    decoding fails, the bytes are decoded again with U+FFFD in place of
    the invalid ones. Raises ValueError when the body is not JSON and
    RecursionError when it is nested too deeply.
    """
    try:
        return json.loads(data, parse_float=_json_float)
    except UnicodeDecodeError:
        if not isinstance(data, bytes):
            raise
        return json.loads(data.decode("utf-8", "replace"), parse_float=_json_float)


def stored_path(path: str) -> str:
    """Return a request path as the ledger stores it: query values replaced by `*`.

    Storefronts and ERP clients put tokens in the query string
    (`?access_token=...`), and the ledger must not store secrets. The
    parameter names stay, so that the path still shows which call it was.
    """
    base, question, query = path.partition("?")
    if not question:
        return path
    names = [part.partition("=")[0] for part in query.split("&")]
    return base + "?" + "&".join(f"{name}=*" if name else "" for name in names)


def key_text(value: Any) -> str | None:
    """Return an order key as text; ids above 2^53 keep every digit.

    An id is the same order whether a hop writes it as a JSON string or a
    number: 123, "123", " 123 " and 123.0 all give "123", because the
    storefront sends a number where the ERP and email calls carry text. A
    number with a fraction, such as 12.5, is no key. A Shopify order GID
    (`gid://shopify/Order/123`) becomes its numeric id, so hops that carry
    either form join on one key.
    """
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float):
        exact = _exact_integer(value)
        if exact is None:
            return None
        value = exact
    text = str(value).strip()
    match = SHOPIFY_ORDER_GID.match(text)
    if match:
        return match.group(1)
    return text or None


def _exact_integer(value: float) -> int | None:
    """Return the integer a JSON number spells, from its text when it has one."""
    text = getattr(value, "text", None)
    if text is not None:
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
        # A huge exponent (1e999999) is no id and would take long to expand.
        if not number.is_finite() or number.adjusted() > MAX_KEY_LENGTH or number != number.to_integral_value():
            return None
        return int(number)
    if not math.isfinite(value) or not value.is_integer():
        return None
    return int(value)


def parse_time(value: Any) -> float | None:
    """Return a storefront timestamp as Unix seconds, or None if it is not one.

    Accepts Unix seconds (BigCommerce, Standard Webhooks) and ISO 8601 with
    any number of fraction digits (Shopify sends nanoseconds); a time
    without an offset is UTC, as WooCommerce's `*_gmt` and Adobe Commerce's
    fields are.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return float(text)
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?", text
    )
    if match is None:
        return None
    date, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in (None, "Z") else offset
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}{offset}")
    except ValueError:
        return None
    return moment.timestamp() + float("0." + fraction if fraction else 0)


@lru_cache(maxsize=256)
def _rule(text: str) -> ParsedResult:
    return jmespath.compile(text)


def _search(rule: str | None, document: Any) -> Any:
    """Apply a preset's JMESPath rule; a document it can't apply to gives None."""
    if rule is None or not isinstance(document, dict | list):
        return None
    try:
        return _rule(rule).search(document)
    except jmespath.exceptions.JMESPathError:
        return None


def _storefront(route: RouteSpec) -> StorefrontPreset:
    return route.preset if isinstance(route.preset, StorefrontPreset) else SHOPIFY


def _erp(route: RouteSpec) -> ErpPreset:
    return route.preset if isinstance(route.preset, ErpPreset) else NETSUITE


def _email(route: RouteSpec) -> EmailPreset:
    return route.preset if isinstance(route.preset, EmailPreset) else SENDGRID


class _BoundedMap(OrderedDict):
    """An insertion-ordered map that forgets its oldest entry past `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if len(self) > self.limit:
            self.popitem(last=False)


class EventBuilder:
    """Build ledger rows from observations; the sidecar's ledger writer thread calls it."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self._redactor = redactor or Redactor()
        self._keys: OrderedDict[str, str | None] = OrderedDict()
        # Deliveries seen per (event id, subscription): the attempt counter.
        self._attempts: _BoundedMap = _BoundedMap(DELIVERY_CACHE_SIZE)
        # Order keys whose storefront-sent confirmation is already recorded.
        self._storefront_confirmed: _BoundedMap = _BoundedMap(DELIVERY_CACHE_SIZE)
        # ERP job location -> order key, for asynchronous submissions; and
        # the http flows that poll such a job.
        self._jobs: _BoundedMap = _BoundedMap(DELIVERY_CACHE_SIZE)
        self._polls: _BoundedMap = _BoundedMap(DELIVERY_CACHE_SIZE)
        self._pings: _BoundedMap = _BoundedMap(DELIVERY_CACHE_SIZE)

    def __call__(self, observation: Observation) -> dict[str, Any] | None:
        handler = getattr(self, "_on_" + observation.kind.replace(".", "_"))
        try:
            return handler(observation)
        except RecursionError:
            # A body that parses but is nested too deeply for a rule or the
            # redaction is still traffic the ledger must show.
            return self._uncorrelated(observation, "body nested too deeply to process",
                                      {"path": observation.path})

    def _on_webhook(self, obs: Observation) -> dict[str, Any]:
        preset = _storefront(obs.route)
        ping = _woocommerce_ping(obs) if preset.form_ping else None
        if ping is not None:
            self._remember(obs.http_flow_id, None)
            self._pings[obs.http_flow_id] = ping
            return self._row(obs, None, obs.route.flow, EventKind.WEBHOOK_PING,
                             detail={"path": stored_path(obs.path), "webhook_id": ping,
                                     "route": obs.route.name})

        key, document, reason = self._key_from_body(obs)
        self._remember(obs.http_flow_id, key)
        detail = self._delivery_detail(obs, preset, document)
        if key is None:
            return self._uncorrelated(obs, reason, detail)
        return self._row(
            obs, key, obs.route.flow, EventKind.WEBHOOK_RECEIVED,
            digest=_sha256(obs.body or b""), detail=detail,
        )

    def _delivery_detail(
        self, obs: Observation, preset: StorefrontPreset, document: Any
    ) -> dict[str, Any]:
        """Describe one delivery: topic, event id, subscription, delivery id, attempt."""
        detail: dict[str, Any] = {"path": stored_path(obs.path)}
        _, topic = first_header(obs.headers, preset.topic_headers)
        detail["topic"] = topic if topic is not None else key_text(_search(preset.topic_rule, document))

        _, event_id = first_header(obs.headers, preset.event_id_headers)
        event_id_source = "header"
        if event_id is None:
            event_id = key_text(_search(preset.event_id_rule, document))
            event_id_source = "body"
        if event_id is None and obs.body:
            # NOTE: WooCommerce sends no event id, so an identical body counts
            # as the same event; a payload rebuilt after the order changed
            # counts as a new event.
            event_id = "sha256:" + _sha256(obs.body)[:32]
            event_id_source = "body digest"
        detail["event_id"] = event_id
        detail["event_id_source"] = event_id_source

        _, detail["webhook_id"] = first_header(obs.headers, preset.webhook_id_headers)
        _, detail["delivery_id"] = first_header(obs.headers, preset.delivery_id_headers)
        alternate = key_text(_search(preset.alternate_id_rule, document))
        if alternate is not None:
            detail["alternate_id"] = alternate

        # One subscription's retries share the event id; fan-out to several
        # subscriptions repeats it with another webhook id or path.
        _, attempt = first_header(obs.headers, preset.attempt_headers)
        if attempt is not None and attempt.isdigit():
            detail["attempt"], detail["attempt_source"] = int(attempt), "header"
        elif event_id is not None:
            subscription = detail["webhook_id"] or obs.path
            counted = self._attempts.get((event_id, subscription), 0) + 1
            self._attempts[(event_id, subscription)] = counted
            detail["attempt"], detail["attempt_source"] = counted, "counted"
        else:
            detail["attempt"], detail["attempt_source"] = None, "unknown"
        if preset.create_topics and detail["topic"] is not None:
            detail["creates_order"] = detail["topic"] in preset.create_topics
        return detail

    def _on_webhook_confirmation(self, obs: Observation) -> dict[str, Any] | None:
        """Record the confirmation a storefront sends itself, timed from the webhook.

        The webhook's time is wall clock; the row's `mono_ns` is moved back by
        the same amount from this observation's own (mono_ns, wall_s) pair, so
        the comparator can order it with the proxy's other events.
        """
        preset = _storefront(obs.route)
        source = obs.route.legacy_confirmation_from
        if source is None:
            return None
        key, document, _ = self._key_from_body(obs)
        if key is None:
            return None  # the webhook itself was recorded as uncorrelated
        _, topic = first_header(obs.headers, preset.topic_headers)
        if topic is None:
            topic = key_text(_search(preset.topic_rule, document))
        if preset.create_topics and topic not in preset.create_topics:
            return None
        if key in self._storefront_confirmed:
            return None  # a retry or fan-out of the same order's creation

        if source == "triggered_at":
            source_name, raw = first_header(obs.headers, preset.triggered_at_headers)
            source_name = f"{source_name} header" if source_name else "trigger-time header"
        else:
            raw = _search(preset.created_at_rule, document)
            source_name = f"body {preset.created_at_rule}"
        sent_at = parse_time(raw)
        if sent_at is None:
            return self._uncorrelated(obs, f"storefront-sent confirmation not recorded: "
                                           f"no usable time in {source_name}",
                                      {"path": stored_path(obs.path), "confirmation_from": source})

        self._storefront_confirmed[key] = True
        lag_ns = round((obs.wall_s - sent_at) * 1e9)
        row = self._row(obs, key, Flow.LEGACY, EventKind.CONFIRMATION_SENT, detail={
            "category": "storefront_confirmation",
            "confirmation_from": source,
            "source": source_name,
            "lag_ms": round(lag_ns / 1e6, 3),
        })
        row["mono_ns"] = obs.mono_ns - lag_ns
        row["wall_time"] = datetime.fromtimestamp(sent_at, UTC)
        return row

    def _on_webhook_response(self, obs: Observation) -> dict[str, Any] | None:
        if obs.http_flow_id not in self._keys and obs.reason:
            # The request failed before its `request` hook ran (mitmproxy
            # rejects an invalid header name, for one), so no webhook was recorded.
            return self._uncorrelated(obs, f"request failed before it reached a flow: {obs.reason}",
                                      {"path": stored_path(obs.path)})
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
        if obs.http_flow_id in self._pings:
            return None  # a ping carries no order, so its mirror result is no evidence
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
        preset = _erp(obs.route)
        if not self._is_submission(obs, preset):
            self._remember(obs.http_flow_id, None)
            job = self._job_for(obs.path, preset) if obs.method.upper() == "GET" else None
            if job is not None:
                self._polls[obs.http_flow_id] = job
            return None

        key = None
        if obs.route.path_key is not None:
            match = obs.route.path_key.search(obs.path)
            if match:
                key = key_text(match.group(1))
        key_from_body, document, reason = self._key_from_body(obs)
        key = key or key_from_body
        self._remember(obs.http_flow_id, key)
        detail = {"method": obs.method, "path": stored_path(obs.path)}
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

    def _is_submission(self, obs: Observation, preset: ErpPreset) -> bool:
        if obs.method.upper() not in obs.route.submit_methods:
            return False
        if preset.not_submission_header is not None:
            name, value = preset.not_submission_header
            if (header_value(obs.headers, name) or "").strip().lower() == value:
                return False
        if preset.submit_path is not None:
            return re.search(preset.submit_path, obs.path) is not None
        return True

    def _job_for(self, path: str, preset: ErpPreset) -> str | None:
        """Return the known asynchronous job that `path` polls, if any."""
        if preset.job_path is None:
            return None
        start = path.find(preset.job_path)
        if start < 0:
            return None
        job_id = re.split(r"[/?]", path[start + len(preset.job_path):], maxsplit=1)[0]
        job = path[:start] + preset.job_path + job_id
        return job if job in self._jobs else None

    def _on_erp_response(self, obs: Observation) -> dict[str, Any] | None:
        preset = _erp(obs.route)
        job = self._polls.pop(obs.http_flow_id, None)
        if job is not None:
            return self._job_status_row(obs, job)
        key = self._keys.get(obs.http_flow_id)
        if key is None:
            return None  # not a submission, or its request was uncorrelated

        status = obs.status or 0
        detail: dict[str, Any] = {}
        location = header_value(obs.response_headers, "location")
        if location:
            detail["location"] = location
        document = self._response_document(obs)
        error_code = key_text(_search(preset.error_code_rule, document)) if status >= 400 else None
        if error_code:
            detail["error_code"] = error_code

        if status in preset.queued_statuses and 200 <= status < 300:
            kind = EventKind.ERP_QUEUED
            if location:
                self._jobs[_path_of(location)] = key
        elif 200 <= status < 300:
            kind = EventKind.ERP_ACKED
            erp_id = key_text(_search(preset.ack_id_rule, document))
            if erp_id is not None:
                detail["erp_id"] = erp_id
        elif status in preset.throttle_statuses or error_code in preset.throttle_codes:
            kind = EventKind.ERP_THROTTLED
        elif 400 <= status < 500:
            kind = EventKind.ERP_REJECTED
        else:
            kind = EventKind.ERP_FAILED
        return self._row(obs, key, obs.route.flow, kind, detail=detail or None)

    def _job_status_row(self, obs: Observation, job: str) -> dict[str, Any] | None:
        """Turn a poll of an asynchronous ERP job into its outcome, once per job.

        NetSuite's job and task resources carry `completed` and `progress`
        ("pending", "succeeded", "failed"); only a finished job is an outcome.
        """
        key = self._jobs.get(job)
        document = self._response_document(obs)
        if key is None or not isinstance(document, dict) or document.get("completed") is not True:
            return None
        progress = document.get("progress")
        if progress == "succeeded":
            kind = EventKind.ERP_ACKED
        elif progress == "failed":
            kind = EventKind.ERP_REJECTED
        else:
            return None
        del self._jobs[job]
        return self._row(obs, key, obs.route.flow, kind,
                         detail={"job": job, "progress": progress})

    def _response_document(self, obs: Observation) -> Any:
        if not obs.body:
            return None
        encoding = header_value(obs.response_headers, "content-encoding") or ""
        try:
            return json.loads(decode_body(obs.body, encoding))
        except ValueError:
            return None

    def _on_erp_error(self, obs: Observation) -> dict[str, Any] | None:
        key = self._keys.get(obs.http_flow_id)
        if key is None:
            return None
        return self._row(obs, key, obs.route.flow, EventKind.ERP_FAILED,
                         detail={"reason": obs.reason})

    def _on_email(self, obs: Observation) -> dict[str, Any]:
        preset = _email(obs.route)
        key, document, reason = self._key_from_body(obs)
        self._remember(obs.http_flow_id, key)
        detail: dict[str, Any] = {"path": stored_path(obs.path)}
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

        snapshot = json.dumps(self._redactor.redact(_email_snapshot(document, preset)),
                              sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return self._row(obs, key, obs.route.flow, kind, snapshot=snapshot,
                         digest=_sha256(snapshot.encode("utf-8")), detail=detail)

    def _on_email_response(self, obs: Observation) -> dict[str, Any] | None:
        """Record an email call the service did not accept; accepted ones add nothing."""
        preset = _email(obs.route)
        key = self._keys.get(obs.http_flow_id)
        if key is None:
            return None
        status = obs.status or 0
        document = self._response_document(obs)
        error_code = _search(preset.error_code_rule, document)
        accepted = status in preset.accepted_statuses and (
            preset.error_code_rule is None or error_code == preset.error_code_ok
        )
        if accepted:
            return None
        detail: dict[str, Any] = {"status": status}
        if error_code is not None:
            detail["error_code"] = error_code
        return self._row(obs, key, obs.route.flow, EventKind.EMAIL_FAILED, detail=detail)

    def order_key(self, obs: Observation) -> str | None:
        """Return the order key the body of `obs` carries, by its route's rule."""
        return self._key_from_body(obs)[0]

    def _key_from_body(self, obs: Observation) -> tuple[str | None, Any, str]:
        """Return (order key, parsed body, reason when there is no key)."""
        if obs.body is None:
            # mitmproxy streamed the body (stream_large_bodies) and the tee did
            # not keep it, because it outgrew the mirror limit.
            return None, None, "body was streamed and not kept, so it can't be keyed"
        if not obs.body:
            return None, None, "empty body"
        encoding = header_value(obs.headers, "content-encoding") or ""
        try:
            decoded = decode_body(obs.body, encoding)
        except ValueError as exc:
            return None, None, f"body can't be decoded: {exc}"
        try:
            document = parse_json(decoded)
        except json.JSONDecodeError as exc:
            return None, None, f"body is not JSON: JSONDecodeError: {exc.msg} at byte {exc.pos}"
        except ValueError as exc:  # such as an integer of more than 4300 digits
            return None, None, f"body is not JSON: {exc.__class__.__name__}: {str(exc)[:120]}"
        except RecursionError:
            return None, None, "body is JSON nested too deeply to parse"
        try:
            value = obs.route.key_rule.search(document)
        except Exception as exc:
            return None, document, f"key rule {obs.route.key_rule_text!r} failed: {exc}"
        key = key_text(value)
        if key is None:
            return None, document, f"key rule {obs.route.key_rule_text!r} found no order key"
        if len(key) > MAX_KEY_LENGTH:
            return None, document, (f"order key of {len(key)} characters is longer than "
                                    f"{MAX_KEY_LENGTH}, the ledger's limit")
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


def _path_of(location: str) -> str:
    """Return the path of a `Location` value, which may be absolute or relative."""
    if "://" in location:
        location = "/" + location.split("://", 1)[1].partition("/")[2]
    return location.rstrip("/")


def _woocommerce_ping(obs: Observation) -> str | None:
    """Return the webhook id of a WooCommerce ping (form body `webhook_id=N`), else None."""
    content_type = (header_value(obs.headers, "content-type") or "").lower()
    if not obs.body or "application/x-www-form-urlencoded" not in content_type:
        return None
    match = WOOCOMMERCE_PING.match(obs.body.strip())
    return match.group(1).decode("ascii") if match else None


def _email_snapshot(document: Any, preset: EmailPreset) -> Any:
    """Keep what a confirmation's comparison needs; free text is left out."""
    if not isinstance(document, dict):
        return document
    return {name: document[name] for name in preset.snapshot_fields if name in document}
