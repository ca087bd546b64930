"""Add proxy_instances: who recorded a run, and their clock offsets.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proxy_instances",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("instance_id", sa.String(64), primary_key=True),
        sa.Column("host_name", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clock_offset_ms", sa.Float(), nullable=True),
        sa.Column("clock_uncertainty_ms", sa.Float(), nullable=True),
        sa.Column("clock_reference", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("proxy_instances")
