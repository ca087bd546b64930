"""A PostgreSQL schema of its own for one benchmark run, dropped afterwards.

The benchmarks use the server at 127.0.0.1:5432 (trust authentication,
database `test`) that the tests use, and leave nothing behind in it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """Create a fresh schema and yield a ledger URL that writes into it."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    schema = "cutover_bench_" + uuid.uuid4().hex[:8]
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
