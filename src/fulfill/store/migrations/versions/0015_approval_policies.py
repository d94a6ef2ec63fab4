"""approval policies: per tenant and for the platform, every version kept

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_policies",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("policy_id", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.Column("deleted_at", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("owner", "policy_id", "version", name="pk_approval_policies"),
    )
    op.create_index(
        "ix_approval_policies_current",
        "approval_policies",
        ["owner", "is_current", "priority", "policy_id"],
    )
    # A policy's simulation reads a tenant's most recent intents.
    op.create_index(
        "ix_action_intents_tenant_recent", "action_intents", ["tenant_id", "created_at", "action_intent_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_action_intents_tenant_recent", table_name="action_intents")
    op.drop_index("ix_approval_policies_current", table_name="approval_policies")
    op.drop_table("approval_policies")
