"""Fixtures of the fault suite."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request) -> str:
    """A fresh ledger URL: a SQLite file, then a PostgreSQL schema of its own."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
