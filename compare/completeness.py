"""Reconcile a run against the storefront's own list of orders.

The storefront's export (CSV or JSON) lists the orders it created. An order
in it that reached neither flow, or only one, means evidence is missing:
the proxy never saw it, or the mirror or a flow lost it.

Accepted exports:

- CSV with a header row; the key column is `--orders-export-key`, or else
  the first of `id`, `order_id`, `Id`, `Name`, `name`;
- JSON: a list of order objects or of plain ids, or an object with an
  `orders` list (the shape of Shopify's Admin API), keyed the same way.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compare.classes import HANDLED_CLASSES, OrderClass
from compare.verdict import KeySample

__all__ = ["OrderExportError", "Reconciliation", "load_order_export"]

KEY_COLUMNS = ("id", "order_id", "Id", "Name", "name")


class OrderExportError(ValueError):
    """The storefront's order export can't be read."""


def load_order_export(path: Path, key: str | None = None) -> set[str]:
    """Return the order keys in a CSV or JSON export of the storefront's orders.

    Raises OrderExportError, naming the file and the problem, for a file
    that can't be read, is not UTF-8, is not valid CSV or JSON, or lists no orders.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OrderExportError(f"Can't read the order export {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OrderExportError(
            f"Can't read the order export {path}: it is not UTF-8 text (byte {data[exc.start]:#04x} "
            f"at offset {exc.start}). Export it as UTF-8 CSV or JSON."
        ) from exc

    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        keys = _json_keys(path, text, key)
    else:
        keys = _csv_keys(path, text, key)
    if not keys:
        raise OrderExportError(f"The order export {path} lists no orders.")
    return keys


def _csv_keys(path: Path, text: str, key: str | None) -> set[str]:
    # strict: an unclosed quote raises instead of swallowing the rest of the
    # file into one field, which would drop every order after it.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        columns = reader.fieldnames or []
        column = key or next((name for name in KEY_COLUMNS if name in columns), None)
        if column is None or column not in columns:
            raise OrderExportError(
                f"The order export {path} has no key column {key or ' or '.join(KEY_COLUMNS)!r}; "
                f"its columns are {', '.join(columns) or 'none'}. Pass --orders-export-key COLUMN."
            )
        # Shopify's CSV export repeats the order's row once per line item.
        return {row[column].strip() for row in reader if (row.get(column) or "").strip()}
    except csv.Error as exc:
        raise OrderExportError(
            f"The order export {path} is not valid CSV on line {reader.line_num}: {exc}. "
            "Check for an unclosed quote."
        ) from exc


def _json_keys(path: Path, text: str, key: str | None) -> set[str]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OrderExportError(f"The order export {path} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise OrderExportError(f"The order export {path} is JSON nested too deeply to read.") from exc
    except ValueError as exc:  # an integer of more than 4300 digits
        raise OrderExportError(f"The order export {path} is not valid JSON: {exc}") from exc
    if isinstance(document, dict):
        document = document.get("orders")
    if not isinstance(document, list):
        raise OrderExportError(
            f"The order export {path} must be a JSON list of orders or an object with an "
            "'orders' list.")
    return {_json_key(path, item, key) for item in document}


def _json_key(path: Path, item: Any, key: str | None) -> str:
    if isinstance(item, str | int) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, dict):
        names = (key,) if key else KEY_COLUMNS
        for name in names:
            value = item.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
    raise OrderExportError(
        f"An order in the export {path} has no key field {key or ' or '.join(KEY_COLUMNS)!r}: "
        f"{json.dumps(item)[:120]}. Pass --orders-export-key FIELD."
    )


@dataclass
class Reconciliation:
    """Storefront orders by which flows they reached."""

    expected: set[str]
    both: int = 0
    only_legacy: KeySample = field(default_factory=KeySample)
    only_candidate: KeySample = field(default_factory=KeySample)
    neither: KeySample = field(default_factory=KeySample)
    unreconciled: KeySample = field(default_factory=KeySample)
    # Keys of the export not yet met in the run. Those left at the end
    # reached neither flow.
    unseen: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.unseen = set(self.expected)

    def add(self, order_key: str, legacy: OrderClass, candidate: OrderClass) -> None:
        if order_key not in self.unseen:
            return
        self.unseen.discard(order_key)
        in_legacy = legacy in HANDLED_CLASSES
        in_candidate = candidate in HANDLED_CLASSES
        if in_legacy and in_candidate:
            self.both += 1
            return
        if in_legacy:
            self.only_legacy.add(order_key)
        elif in_candidate:
            self.only_candidate.add(order_key)
        else:
            self.neither.add(order_key)
        self.unreconciled.add(order_key)

    def finish(self) -> None:
        """Count the export's orders that no event of the run named."""
        for order_key in sorted(self.unseen):
            self.neither.add(order_key)
            self.unreconciled.add(order_key)
        self.unseen = set()

    def figures(self) -> dict[str, Any]:
        return {
            "expected": len(self.expected),
            "both": self.both,
            "only_legacy": self.only_legacy.count,
            "only_candidate": self.only_candidate.count,
            "neither": self.neither.count,
            "examples": {
                "only_legacy": list(self.only_legacy.keys),
                "only_candidate": list(self.only_candidate.keys),
                "neither": list(self.neither.keys),
            },
        }
