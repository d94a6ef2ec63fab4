"""console sessions kept on the server; an index for the approvals page

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per console sign-in. The cookie holds only a random id; the row is found by its
    # hash and holds the bearer sealed with a key derived from that id, so neither a copy of the
    # table nor a copy of the cookie alone is a token for the API. Logout sets revoked_epoch.
    op.create_table(
        "console_sessions",
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("sealed_token", sa.Text(), nullable=False),
        sa.Column("created_epoch", sa.Float(), nullable=False),
        sa.Column("expires_epoch", sa.Float(), nullable=False),
        sa.Column("revoked_epoch", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("session_hash", name="pk_console_sessions"),
    )
    op.create_index("ix_console_sessions_expires_epoch", "console_sessions", ["expires_epoch"])
    # The approvals page: a tenant's intents waiting for approval, by creation time, paged.
    op.create_index(
        "ix_action_intents_pending",
        "action_intents",
        ["tenant_id", "approval_status", "created_at", "action_intent_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_action_intents_pending", table_name="action_intents")
    op.drop_index("ix_console_sessions_expires_epoch", table_name="console_sessions")
    op.drop_table("console_sessions")
