"""approvals queue filters: the deciding policy of each intent as a column, and indexes to filter
a tenant's pending intents by proposer or by policy

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_PENDING = "PENDING_APPROVAL"


def upgrade() -> None:
    # Nullable: intents decided by the default rule (no policy) have none.
    with op.batch_alter_table("action_intents") as batch:
        batch.add_column(sa.Column("policy_id", sa.String(length=80), nullable=True))
    # The column is for the approvals queue: fill it for the intents still waiting (the others
    # keep it in their document, where the status and the timeline read it).
    intents = sa.table(
        "action_intents",
        sa.column("tenant_id", sa.String()),
        sa.column("action_intent_id", sa.String()),
        sa.column("approval_status", sa.String()),
        sa.column("document", sa.JSON()),
        sa.column("policy_id", sa.String()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(intents.c.tenant_id, intents.c.action_intent_id, intents.c.document).where(
            intents.c.approval_status == _PENDING
        )
    ).all()
    for row in rows:
        document = row.document if isinstance(row.document, dict) else {}
        rule = document.get("approval_rule") or {}
        policy_id = rule.get("policy_id") if isinstance(rule, dict) else None
        if policy_id:
            conn.execute(
                sa.update(intents)
                .where(
                    intents.c.tenant_id == row.tenant_id,
                    intents.c.action_intent_id == row.action_intent_id,
                )
                .values(policy_id=policy_id)
            )
    op.create_index(
        "ix_action_intents_pending_proposer",
        "action_intents",
        ["tenant_id", "approval_status", "proposed_by", "created_at", "action_intent_id"],
    )
    op.create_index(
        "ix_action_intents_pending_policy",
        "action_intents",
        ["tenant_id", "approval_status", "policy_id", "created_at", "action_intent_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_action_intents_pending_policy", table_name="action_intents")
    op.drop_index("ix_action_intents_pending_proposer", table_name="action_intents")
    with op.batch_alter_table("action_intents") as batch:
        batch.drop_column("policy_id")
