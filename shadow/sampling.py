"""Deterministic sampling of orders by a hash of the order key.

Every webhook and every tap event of one order gets the same decision, in
every proxy instance and on every run, so a sampled order is seen whole in
both flows and an unsampled one not at all.
"""

from __future__ import annotations

import hashlib

__all__ = ["in_sample", "parse_fraction"]


def in_sample(order_key: str, fraction: float) -> bool:
    """Return True when `order_key` falls in the first `fraction` of the hash space."""
    if fraction >= 1.0:
        return True
    digest = hashlib.sha256(order_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def parse_fraction(value: object) -> float:
    """Parse 0.1, "0.1" or "10%" into a fraction in (0, 1]; raise ValueError otherwise."""
    text = str(value).strip()
    try:
        fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction <= 1:
        raise ValueError(
            f"sample must be a fraction above 0 and at most 1, or a percentage such as '10%', "
            f"but got {value!r}"
        )
    return fraction
