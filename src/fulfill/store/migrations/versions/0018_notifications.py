"""notifications: each tenant's channels (secrets sealed), and where Slack messages were posted

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
# The last revision: whatever comes after 0016 (0017) goes before this one.
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_notifications",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("sealed", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_notifications"),
    )
    op.create_table(
        "slack_messages",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("action_intent_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.String(length=64), nullable=False),
        sa.Column("posted_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "action_intent_id", name="pk_slack_messages"),
    )


def downgrade() -> None:
    op.drop_table("slack_messages")
    op.drop_table("tenant_notifications")
