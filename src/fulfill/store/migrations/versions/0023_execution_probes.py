"""execution probes: the backoff of each AMBIGUOUS attempt's reconcile probes

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "execution_probes",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("action_intent_id", sa.String(128), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("probes", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_probe_epoch", sa.Float(), nullable=False),
        sa.Column("last_result", sa.String(16), nullable=True),
        sa.Column("last_reason", sa.String(500), nullable=True),
        sa.Column("resent", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "account_id", "action_intent_id", "attempt_count", name="pk_execution_probes"
        ),
    )


def downgrade() -> None:
    op.drop_table("execution_probes")
