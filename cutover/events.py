"""The event vocabulary shared by the proxy, the ledger and the comparator.

An event is one timestamped observation about one order in one flow. The
proxy records them; the comparator joins them per order and flow.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CONFIRMATION_KINDS", "PENDING_NOTICE_KINDS", "EventKind", "Flow"]


class Flow(StrEnum):
    """One of the two order-handling paths under comparison."""

    LEGACY = "legacy"
    CANDIDATE = "candidate"


class EventKind(StrEnum):
    WEBHOOK_RECEIVED = "webhook.received"
    WEBHOOK_RESPONDED = "webhook.responded"
    # A storefront's test delivery when a webhook is created (WooCommerce);
    # it carries no order.
    WEBHOOK_PING = "webhook.ping"
    MIRROR_SENT = "mirror.sent"
    MIRROR_FAILED = "mirror.failed"
    MIRROR_DROPPED = "mirror.dropped"
    # Not mirrored on purpose: the body exceeded the mirror's size limit.
    MIRROR_SKIPPED = "mirror.skipped"
    ERP_SUBMITTED = "erp.submitted"
    # The ERP accepted the order for asynchronous processing (NetSuite's 202
    # with a job location); the outcome comes later from polling the job.
    ERP_QUEUED = "erp.queued"
    ERP_ACKED = "erp.acked"
    ERP_REJECTED = "erp.rejected"
    ERP_THROTTLED = "erp.throttled"
    # A 5xx answer or no answer at all: the ERP neither accepted nor refused
    # the order, so the flow is expected to retry.
    ERP_FAILED = "erp.failed"
    CONFIRMATION_SENT = "confirmation.sent"
    CONFIRMATION_QUARANTINED = "confirmation.quarantined"
    PENDING_NOTICE_SENT = "pending_notice.sent"
    PENDING_NOTICE_QUARANTINED = "pending_notice.quarantined"
    # Email traffic that is neither a confirmation nor a pending notice.
    EMAIL_OTHER = "email.other"
    # The email service did not accept a call it was sent (an error status,
    # or Postmark's 200 with a non-zero ErrorCode): that message never left.
    EMAIL_FAILED = "email.failed"
    UNCORRELATED = "uncorrelated"


# A quarantined confirmation is the candidate's confirmation: it was held back
# by the proxy, but the flow decided to confirm at that moment.
CONFIRMATION_KINDS = frozenset(
    {EventKind.CONFIRMATION_SENT, EventKind.CONFIRMATION_QUARANTINED}
)
PENDING_NOTICE_KINDS = frozenset(
    {EventKind.PENDING_NOTICE_SENT, EventKind.PENDING_NOTICE_QUARANTINED}
)
