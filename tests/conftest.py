"""Fixtures shared by every suite."""

from __future__ import annotations

import uuid

import pytest

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def postgres_url():
    """A PostgreSQL ledger URL in a schema of its own, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy import text

    engine = sqlalchemy.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        connection = engine.connect()
    except sqlalchemy.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc.__class__.__name__}")
    schema = "cutover_test_" + uuid.uuid4().hex[:8]
    with connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        connection.commit()
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            connection.commit()
        engine.dispose()
