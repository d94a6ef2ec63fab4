"""executor heartbeats: live workers recover the workflows of lost ones

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per worker: its last beat (database clock) and who is recovering it, if anyone.
    op.create_table(
        "executor_heartbeats",
        sa.Column("executor_id", sa.String(length=128), nullable=False),
        sa.Column("last_beat_epoch", sa.Float(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claimed_until_epoch", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("executor_id", name="pk_executor_heartbeats"),
    )


def downgrade() -> None:
    op.drop_table("executor_heartbeats")
