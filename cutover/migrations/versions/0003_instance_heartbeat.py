"""Add the heartbeat and clean-stop columns to proxy_instances.

A proxy instance writes `heartbeat_unix_s` while it records and
`stopped_unix_s` once its last events are stored, so a report can tell a clean stop from
a killed or crashed instance and bound the events that instance may have
lost with `max_unwritten_events`.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("proxy_instances") as batch:
        batch.add_column(sa.Column("heartbeat_unix_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("stopped_unix_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("max_unwritten_events", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("missing_before_restart", sa.BigInteger(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("proxy_instances") as batch:
        batch.drop_column("missing_before_restart")
        batch.drop_column("max_unwritten_events")
        batch.drop_column("stopped_unix_s")
        batch.drop_column("heartbeat_unix_s")
