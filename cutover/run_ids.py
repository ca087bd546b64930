"""Run ids: sortable by start time, unique enough for one team's runs."""

from __future__ import annotations

import secrets
import time

__all__ = ["new_run_id"]


def new_run_id() -> str:
    """Return an id such as 20261204-203015-9f3a (local start time, 16 random bits)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
