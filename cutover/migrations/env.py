"""Alembic environment: migrate the connection that `open_ledger` passes in."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "The cutover migrations run from cutover.ledger.open_ledger, which passes its "
        "connection; open the ledger with open_ledger(url) instead of the alembic command."
    )

# Batch mode lets SQLite, which can't alter most column definitions, copy
# the table instead.
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
