"""marks of compensation calls sent to targets that do not deduplicate

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written before a compensation call to a non-deduplicating target leaves, settled with its
    # answer: a replayed or later try finds it and never sends the undo a second time.
    op.create_table(
        "remote_compensation_calls",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("action_intent_id", sa.String(length=128), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("tool_name", sa.String(length=128), nullable=False),
        sa.Column("object_id", sa.String(length=256), nullable=False),
        sa.Column("sent_at", sa.String(length=32), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id", "account_id", "idempotency_key", name=op.f("pk_remote_compensation_calls")
        ),
    )


def downgrade() -> None:
    op.drop_table("remote_compensation_calls")
