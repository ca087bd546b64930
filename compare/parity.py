"""ERP payload parity: do both flows send the ERP the same sales order?

Each flow's acknowledged submission is normalised before comparison:

- fields that are the flow's own (ids, timestamps, memos) are removed by
  `Normalisation.ignore_paths`, regular expressions searched in deepdiff
  paths such as ``root['item']['items'][0]['rate']``, the same syntax as
  deepdiff's ``exclude_regex_paths``;
- numbers, and strings that spell a plain decimal number, become `Decimal`,
  so that "19.90", 19.9 and 19.90 are one amount;
- lists are compared as multisets when `ignore_order` is set, so reordered
  lines match, but a line sent twice does not match a line sent once.

A canonical SHA-256 of the normalised payload decides most pairs. deepdiff
runs only when the digests differ, to describe the difference or to find
that there is none.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from deepdiff import DeepDiff

__all__ = ["DEFAULT_IGNORE_PATHS", "Normalisation", "PayloadComparison", "compare_payloads"]

# Fields of a NetSuite sales order that each flow fills with its own value.
# These are the record's internal id and document number, dates, sync
# timestamps (any key ending in `_at`) and free-text memos. Ids are ignored
# only at the top level, because a line's `item.id` names the product.
DEFAULT_IGNORE_PATHS: tuple[str, ...] = (
    r"^root\['(id|internalId|tranId)'\]$",
    r"\['(tranDate|createdDate|lastModifiedDate)'\]",
    r"\['custbody_synced_at'\]",
    r"\['[^']*_at'\]",
    r"\['memo'\]",
)

# A plain decimal number without leading zeros: "007" stays a string
# because it is more likely a code than an amount.
_DECIMAL_STRING = re.compile(r"[+-]?(?:0|[1-9]\d*)(?:\.\d+)?")

# Lines of the deepdiff description kept in one example.
_DIFF_LINES = 3


@dataclass(frozen=True)
class Normalisation:
    """Rules applied to both flows' ERP payloads before they are compared."""

    ignore_paths: tuple[str, ...] = DEFAULT_IGNORE_PATHS
    ignore_order: bool = True
    decimal_numbers: bool = True
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.ignore_paths, str):
            raise TypeError(
                f"ignore_paths must be a sequence of regular expressions, but got the string "
                f"{self.ignore_paths!r}; wrap it in a tuple."
            )
        object.__setattr__(self, "ignore_paths", tuple(self.ignore_paths))

        patterns = []
        for path in self.ignore_paths:
            try:
                patterns.append(re.compile(path))
            except re.error as exc:
                raise ValueError(
                    f"Invalid ignore path {path!r}: {exc}. Use a regular expression over "
                    r"deepdiff paths, such as \['memo'\] to ignore every memo field."
                ) from exc
        object.__setattr__(self, "_patterns", tuple(patterns))

    def apply(self, payload: Any) -> Any:
        """Return a normalised copy of a decoded JSON payload."""
        return self._normalise(payload, "root")

    def _normalise(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            members = {}
            for key, item in value.items():
                item_path = f"{path}[{key!r}]"
                if not self._ignored(item_path):
                    members[key] = self._normalise(item, item_path)
            return members

        if isinstance(value, list):
            items = []
            for index, item in enumerate(value):
                item_path = f"{path}[{index}]"
                if not self._ignored(item_path):
                    items.append(self._normalise(item, item_path))
            return items

        if self.decimal_numbers:
            return _to_decimal(value)
        return value

    def _ignored(self, path: str) -> bool:
        return any(pattern.search(path) for pattern in self._patterns)

    def digest(self, normalised: Any) -> str:
        """Return the SHA-256 of a normalised payload's canonical form."""
        return hashlib.sha256(self._canonical(normalised).encode()).hexdigest()

    def _canonical(self, value: Any) -> str:
        # Written by hand rather than with json.dumps(sort_keys=True) so that
        # equal Decimals with different exponents, and lists in any order,
        # produce the same text.
        if isinstance(value, dict):
            members = sorted(f"{json.dumps(str(k))}:{self._canonical(v)}" for k, v in value.items())
            return "{" + ",".join(members) + "}"
        if isinstance(value, list):
            items = [self._canonical(item) for item in value]
            if self.ignore_order:
                items.sort()
            return "[" + ",".join(items) + "]"
        if isinstance(value, Decimal):
            return _decimal_text(value)
        return json.dumps(value)


def _to_decimal(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr gives the shortest text that round-trips, so 19.9 becomes
        # Decimal("19.9") and not the binary expansion.
        return Decimal(repr(value)) if math.isfinite(value) else value
    if isinstance(value, str) and _DECIMAL_STRING.fullmatch(value):
        return Decimal(value)
    return value


def _decimal_text(value: Decimal) -> str:
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class PayloadComparison:
    """The outcome of comparing the two flows' ERP payloads of one order."""

    equal: bool
    # Short human-readable description, legacy as the old value and the
    # candidate as the new one; empty when equal.
    difference: str = ""


def compare_payloads(
    legacy_snapshot: str, candidate_snapshot: str, normalisation: Normalisation
) -> PayloadComparison:
    """Compare two ERP request bodies (JSON text) after normalisation."""
    payloads = []
    for flow, snapshot in (("legacy", legacy_snapshot), ("candidate", candidate_snapshot)):
        try:
            payloads.append(normalisation.apply(_decode(snapshot, normalisation)))
        except json.JSONDecodeError as exc:
            return PayloadComparison(False, f"The {flow} snapshot is not valid JSON: {exc}.")
    legacy, candidate = payloads

    if normalisation.digest(legacy) == normalisation.digest(candidate):
        return PayloadComparison(True)

    diff = DeepDiff(
        legacy,
        candidate,
        ignore_order=normalisation.ignore_order,
        report_repetition=normalisation.ignore_order,
    )
    if not diff:
        return PayloadComparison(True)
    return PayloadComparison(False, _describe(diff))


def _decode(snapshot: str, normalisation: Normalisation) -> Any:
    # Decimal keeps every digit of a JSON number; a float would round it.
    parse_float = Decimal if normalisation.decimal_numbers else float
    return json.loads(snapshot, parse_float=parse_float)


def _describe(diff: DeepDiff) -> str:
    lines = []
    for path, change in diff.get("repetition_change", {}).items():
        lines.append(
            f"{path} occurs {change['old_repeat']} times in legacy and "
            f"{change['new_repeat']} times in candidate."
        )
    for line in diff.pretty().splitlines():
        if not line.startswith("Repetition change"):
            lines.append(line)

    text = " ".join(lines[:_DIFF_LINES])
    if len(lines) > _DIFF_LINES:
        text += f" (and {len(lines) - _DIFF_LINES} more differences)"
    return text
