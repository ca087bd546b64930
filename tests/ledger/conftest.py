"""Fixtures for the ledger suites: one ledger per backend."""

from __future__ import annotations

import pytest

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def ledger_url(request) -> str:
    """A fresh ledger URL: a SQLite file, then a PostgreSQL schema of its own."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
