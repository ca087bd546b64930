"""Outcome parity of the side effects beyond the ERP payload.

The proxy stores a redacted copy of every confirmation email's body in the
event's `snapshot`: subject, categories, custom args and the template data
(SendGrid's `dynamic_template_data`, Postmark's `TemplateModel`). The
customer-facing content of a confirmation is its items, quantities,
prices, total and currency, so only those are compared. Wording and
subject lines may differ between flows.
"""

from __future__ import annotations

import json
from typing import Any

from compare.classes import HANDLED_CLASSES, OrderClass
from compare.join import OrderJoin
from compare.parity import Normalisation, PayloadComparison, compare_decoded

__all__ = ["CONFIRMATION_NORMALISATION", "compare_confirmations", "confirmation_content",
           "extra_side_effects"]

# Fields of the template data that make up a confirmation's content.
CONTENT_FIELDS = ("items", "total", "currency")
# Fields of an item line that are compared; titles are shop copy, not content.
ITEM_FIELDS = ("sku", "quantity", "price")

# Items in any order, numbers as decimals, nothing ignored.
CONFIRMATION_NORMALISATION = Normalisation(ignore_paths=())


def confirmation_content(snapshot: str) -> dict[str, Any] | None:
    """Return the compared content of a confirmation snapshot, or None if it has none."""
    try:
        document = json.loads(snapshot)
    except json.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    data = document.get("dynamic_template_data") or document.get("TemplateModel")
    if not isinstance(data, dict):
        return None

    content: dict[str, Any] = {name: data.get(name) for name in CONTENT_FIELDS}
    items = content["items"]
    if isinstance(items, list):
        content["items"] = [
            {name: item.get(name) for name in ITEM_FIELDS} if isinstance(item, dict) else item
            for item in items
        ]
    return content


def compare_confirmations(
    legacy_snapshot: str, candidate_snapshot: str,
    normalisation: Normalisation = CONFIRMATION_NORMALISATION,
) -> PayloadComparison:
    """Compare the content of both flows' first confirmations of one order."""
    contents = []
    for flow, snapshot in (("legacy", legacy_snapshot), ("candidate", candidate_snapshot)):
        content = confirmation_content(snapshot)
        if content is None:
            return PayloadComparison(
                False, f"The {flow} confirmation snapshot has no template data to compare.")
        contents.append(content)
    return compare_decoded(contents[0], contents[1], normalisation)


def extra_side_effects(order: OrderJoin, legacy: OrderClass, candidate: OrderClass) -> tuple[str, ...]:
    """Describe ERP orders and confirmations the candidate made for an order the legacy flow did not.

    Orders the legacy flow never saw are reported as seen by the candidate
    only, not here.
    """
    if legacy not in HANDLED_CLASSES:
        return ()
    extras = []
    if order.candidate.acks and not order.legacy.acks and order.legacy.rejections:
        extras.append("ERP order acknowledged where the legacy flow's was rejected")
    if order.candidate.confirmations and not order.legacy.confirmations:
        extras.append("confirmation sent where the legacy flow sent none")
    return tuple(extras)
