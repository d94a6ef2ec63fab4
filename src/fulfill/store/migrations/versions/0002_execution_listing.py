"""execution listing columns on action_intents

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("action_intents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("execution_status", sa.String(length=16), nullable=False, server_default="PENDING")
        )
        batch_op.add_column(
            sa.Column("last_update_at", sa.String(length=32), nullable=False, server_default="")
        )
    # Backfill from what already exists: the attempt's status, else the intent's approval.
    op.execute(
        """
        UPDATE action_intents SET
          execution_status = COALESCE(
            (SELECT a.status FROM execution_attempts a
              WHERE a.tenant_id = action_intents.tenant_id AND a.account_id = action_intents.account_id
                AND a.action_intent_id = action_intents.action_intent_id),
            CASE WHEN approval_status IN ('REJECTED', 'CANCELLED') THEN 'CANCELLED' ELSE 'PENDING' END),
          last_update_at = COALESCE(
            (SELECT a.updated_at FROM execution_attempts a
              WHERE a.tenant_id = action_intents.tenant_id AND a.account_id = action_intents.account_id
                AND a.action_intent_id = action_intents.action_intent_id AND a.updated_at > action_intents.updated_at),
            updated_at)
        """
    )
    with op.batch_alter_table("action_intents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_action_intents_account_recent",
            ["tenant_id", "account_id", "last_update_at", "action_intent_id"],
        )
        batch_op.create_index(
            "ix_action_intents_account_status_recent",
            ["tenant_id", "account_id", "execution_status", "last_update_at", "action_intent_id"],
        )
    with op.batch_alter_table("execution_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_execution_attempts_account_updated")


def downgrade() -> None:
    with op.batch_alter_table("execution_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_execution_attempts_account_updated",
            ["tenant_id", "account_id", "updated_at", "action_intent_id"],
        )
    with op.batch_alter_table("action_intents", schema=None) as batch_op:
        batch_op.drop_index("ix_action_intents_account_status_recent")
        batch_op.drop_index("ix_action_intents_account_recent")
        batch_op.drop_column("last_update_at")
        batch_op.drop_column("execution_status")
