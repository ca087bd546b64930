"""Presets: how common storefronts, ERPs and email services look on the wire.

A route names a preset (`preset = "woocommerce"`); the preset supplies the
order-key rule, the delivery headers of a webhook, what counts as an ERP
submission and how its response is classified, and how an email call is
classified. A route's own `key`, `path_key`, `submit_methods` and `kind` settings
override the preset's. The defaults (`shopify`, `netsuite`, `sendgrid`) are
the behaviour of a route that names no preset.

The wire details follow the vendors' public API documentation. A NOTE marks
a rule that still needs checking against a captured request.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "DEFAULT_PRESETS",
    "PRESETS",
    "EmailPreset",
    "ErpPreset",
    "StorefrontPreset",
    "preset_names",
    "quarantine_response",
]


@dataclass(frozen=True)
class StorefrontPreset:
    """Wire conventions of a storefront's order webhooks."""

    name: str
    # JMESPath over the webhook body.
    key: str
    # Header names are read case-insensitively, first present wins.
    topic_headers: tuple[str, ...] = ()
    # Stays the same across retries of one event: the idempotency key.
    event_id_headers: tuple[str, ...] = ()
    # The subscription that delivered the event (fan-out sends one event to
    # several subscriptions).
    webhook_id_headers: tuple[str, ...] = ()
    # Changes with every attempt.
    delivery_id_headers: tuple[str, ...] = ()
    attempt_headers: tuple[str, ...] = ()
    # JMESPath fallbacks over the body when no header is present.
    topic_rule: str | None = None
    event_id_rule: str | None = None
    # A second id of the same order, kept in the event detail for lookups.
    alternate_id_rule: str | None = None
    # When the storefront emitted the webhook, and when the order was made;
    # the sources for a storefront-sent confirmation's time.
    triggered_at_headers: tuple[str, ...] = ()
    created_at_rule: str | None = None
    # Topics that announce a new order.
    create_topics: frozenset[str] = frozenset()
    # WooCommerce pings a new webhook's URL with a form body `webhook_id=N`.
    form_ping: bool = False

    role = "ingress"


@dataclass(frozen=True)
class ErpPreset:
    """Wire conventions of an ERP's order API: submissions and their responses."""

    name: str
    key: str
    # Regular expression with one group that finds the key in the path.
    path_key: str | None = None
    submit_methods: tuple[str, ...] = ("POST", "PUT", "PATCH")
    # Regular expression the path must match to be a submission; None: any path.
    submit_path: str | None = None
    # A request carrying this header value (compared in lower case) is never
    # a submission, whatever its method.
    not_submission_header: tuple[str, str] | None = None
    # Every other 2xx status is an acknowledgement. These are accepted for
    # asynchronous processing only, so not yet an acknowledgement.
    queued_statuses: frozenset[int] = frozenset()
    throttle_statuses: frozenset[int] = frozenset({429})
    # JMESPath to the error code in an error body, and the codes that mean
    # "slow down" rather than "this order is wrong".
    error_code_rule: str | None = None
    throttle_codes: frozenset[str] = frozenset()
    # JMESPath to the ERP's own document id in a success body.
    ack_id_rule: str | None = None
    # Path prefix of asynchronous job status resources, polled with GET.
    job_path: str | None = None

    role = "erp"

    @property
    def success_body(self) -> bool:
        """Whether classifying an answer needs the body of a 2xx response too."""
        return self.ack_id_rule is not None or self.job_path is not None


@dataclass(frozen=True)
class EmailPreset:
    """Wire conventions of a send call to an email service or marketing platform."""

    name: str
    key: str
    kind: str
    confirmation: tuple[str, ...] = ("order_confirmation",)
    pending_notice: tuple[str, ...] = ("order_pending",)
    accepted_statuses: frozenset[int] = frozenset({200, 201, 202})
    message_id_header: str | None = None
    # JMESPath to an error code in the answer; any value other than
    # `error_code_ok` means the message was not accepted, even in a 200.
    error_code_rule: str | None = None
    error_code_ok: int | str | None = None
    # Top-level request fields kept in the snapshot; free text stays out.
    snapshot_fields: tuple[str, ...] = ()
    # The answer a quarantined call gets: status, headers, body template.
    quarantine_status: int = 202
    quarantine_json: bool = False

    role = "email"


SHOPIFY = StorefrontPreset(
    name="shopify",
    # Newer payloads and GraphQL-based apps may carry only the GID
    # `gid://shopify/Order/<id>`; the builder reduces it to the numeric id.
    key="id || admin_graphql_api_id",
    # Newer deliveries use the same names without the `X-` prefix.
    topic_headers=("X-Shopify-Topic", "Shopify-Topic"),
    event_id_headers=("X-Shopify-Event-Id", "Shopify-Event-Id"),
    webhook_id_headers=("X-Shopify-Webhook-Id", "Shopify-Webhook-Id"),
    triggered_at_headers=("X-Shopify-Triggered-At", "Shopify-Triggered-At"),
    alternate_id_rule="admin_graphql_api_id",
    created_at_rule="created_at",
    create_topics=frozenset({"orders/create"}),
)

BIGCOMMERCE = StorefrontPreset(
    name="bigcommerce",
    # The payload is thin: `data` holds only the resource type and id.
    key="data.id",
    # Standard Webhooks headers: `webhook-id` stays the same on retries.
    event_id_headers=("webhook-id",),
    triggered_at_headers=("webhook-timestamp",),
    topic_rule="scope",
    # BigCommerce documents that a hook fired twice for one event carries
    # the same `hash` in both bodies.
    event_id_rule="hash",
    created_at_rule="created_at",
    create_topics=frozenset({"store/order/created"}),
)

WOOCOMMERCE = StorefrontPreset(
    name="woocommerce",
    key="id",
    topic_headers=("X-WC-Webhook-Topic",),
    webhook_id_headers=("X-WC-Webhook-ID",),
    # A new delivery id on every attempt; there is no event id header, so
    # the builder uses the body digest as the event identity.
    delivery_id_headers=("X-WC-Webhook-Delivery-ID",),
    alternate_id_rule="order_key",
    created_at_rule="date_created_gmt",
    create_topics=frozenset({"order.created"}),
    form_ping=True,
)

ADOBE_COMMERCE = StorefrontPreset(
    name="adobe_commerce",
    # `increment_id` is the order number customers, emails and ERPs see;
    # `entity_id` is the database row id. An I/O Events delivery wraps the
    # order in `data.value`; a webhook may send it bare.
    key="data.value.increment_id || increment_id",
    alternate_id_rule="data.value.entity_id || entity_id",
    # NOTE: the header and topic names follow Adobe I/O Events' CloudEvents
    # envelope; check them against a captured delivery before relying on them.
    event_id_headers=("x-adobe-event-id",),
    topic_rule="type",
    event_id_rule="event_id || id",
    created_at_rule="data.value.created_at || created_at",
    create_topics=frozenset({
        "com.adobe.commerce.observer.sales_order_place_after",
        "com.adobe.commerce.observer.sales_order_save_commit_after",
        "observer.sales_order_place_after",
    }),
)

NETSUITE = ErpPreset(
    name="netsuite",
    key="externalId",
    # `PUT .../record/v1/salesOrder/eid:{externalId}` creates or updates.
    path_key=r"/eid:([^/?]+)",
    # `Prefer: respond-async` gets 202 with the job in `Location`.
    queued_statuses=frozenset({202}),
    error_code_rule='"o:errorDetails"[0]."o:errorCode"',
    # RESTlets answer 400 with these codes when the account-wide
    # concurrency limit is exceeded: a throttle, not a rejection.
    throttle_codes=frozenset({"SSS_REQUEST_LIMIT_EXCEEDED", "CONCURRENCY_LIMIT_EXCEEDED"}),
    job_path="/services/rest/async/v1/job/",
)

SAP_S4HANA = ErpPreset(
    name="sap_s4hana",
    key="PurchaseOrderByCustomer",
    submit_methods=("POST",),
    # Deep insert of header and `to_Item` in one POST on the entity set.
    submit_path=r"/API_SALES_ORDER_SRV/A_SalesOrder/?(?:\?|$)",
    # OData services hand out the CSRF token on a GET with this header.
    not_submission_header=("x-csrf-token", "fetch"),
    error_code_rule="error.code",
    ack_id_rule="d.SalesOrder",
)

BUSINESS_CENTRAL = ErpPreset(
    name="business_central",
    key="externalDocumentNumber",
    submit_methods=("POST",),
    submit_path=r"/salesOrders/?(?:\?|$)",
    error_code_rule="error.code",
    ack_id_rule="number",
)

SENDGRID = EmailPreset(
    name="sendgrid",
    # SendGrid allows custom_args and dynamic_template_data at the top level
    # and per personalization.
    key=("custom_args.order_id || personalizations[0].custom_args.order_id"
         " || personalizations[0].dynamic_template_data.order_id"
         " || dynamic_template_data.order_id"),
    kind="categories[0]",
    accepted_statuses=frozenset({202}),
    message_id_header="X-Message-Id",
    snapshot_fields=("subject", "categories", "custom_args", "dynamic_template_data",
                     "template_id"),
)

POSTMARK = EmailPreset(
    name="postmark",
    key="Metadata.order_id",
    kind="Tag || TemplateAlias",
    accepted_statuses=frozenset({200}),
    # Postmark answers 200 with `ErrorCode` 0 on success; other codes (for
    # example 406, inactive recipient) mean the message was not sent.
    error_code_rule="ErrorCode",
    error_code_ok=0,
    snapshot_fields=("Subject", "Tag", "Metadata", "TemplateModel", "TemplateId",
                     "TemplateAlias", "MessageStream"),
    quarantine_status=200,
    quarantine_json=True,
)

KLAVIYO = EmailPreset(
    name="klaviyo",
    # A Create Event call (`POST /api/events`); Klaviyo deduplicates on
    # `unique_id`, which integrations set to the order id.
    key="data.attributes.unique_id || data.attributes.properties.OrderId",
    kind="data.attributes.metric.data.attributes.name",
    confirmation=("Placed Order",),
    # Klaviyo has no standard pending metric: a merchant's own name goes here.
    pending_notice=("Order Pending",),
    accepted_statuses=frozenset({202}),
    snapshot_fields=("data",),
)

PRESETS: dict[str, StorefrontPreset | ErpPreset | EmailPreset] = {
    preset.name: preset
    for preset in (SHOPIFY, BIGCOMMERCE, WOOCOMMERCE, ADOBE_COMMERCE, NETSUITE, SAP_S4HANA,
                   BUSINESS_CENTRAL, SENDGRID, POSTMARK, KLAVIYO)
}

DEFAULT_PRESETS = {"ingress": "shopify", "erp": "netsuite", "email": "sendgrid"}


def preset_names(role: str) -> list[str]:
    """Return the names of the presets for one route role."""
    return [name for name, preset in PRESETS.items() if preset.role == role]


def quarantine_response(preset: EmailPreset | str) -> tuple[int, dict[str, str], bytes]:
    """Return the (status, headers, body) a quarantined email call is answered with.

    The answer looks like the service's own success answer, so the
    candidate flow goes on as if the message had been sent.
    """
    if isinstance(preset, str):
        found = PRESETS.get(preset)
        if not isinstance(found, EmailPreset):
            raise ValueError(f"{preset!r} is not an email preset; use one of "
                             f"{', '.join(preset_names('email'))}")
        preset = found

    message_id = "quarantined-" + uuid.uuid4().hex
    headers: dict[str, str] = {}
    if preset.message_id_header:
        headers[preset.message_id_header] = message_id
    if not preset.quarantine_json:
        return preset.quarantine_status, headers, b""

    headers["Content-Type"] = "application/json; charset=utf-8"
    body = {
        "SubmittedAt": datetime.now(UTC).isoformat(),
        "MessageID": message_id,
        "ErrorCode": 0,
        "Message": "OK",
    }
    return preset.quarantine_status, headers, json.dumps(body).encode("utf-8")

