"""intent ids and ledger ids unique per tenant; queued attempts; compensation retries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An intent id is unique within its tenant (the primary key), not across tenants: another
    # tenant's id must not answer 409 (an existence oracle).
    with op.batch_alter_table("action_intents", schema=None) as batch_op:
        batch_op.drop_constraint("uq_action_intents_action_intent_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_action_intents_tenant_id_action_intent_id", ["tenant_id", "action_intent_id"]
        )
    # Ledger entry ids are deterministic per intent, so per tenant too.
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_ledger_entries_entry_id", type_="unique")
        batch_op.create_unique_constraint("uq_ledger_entries_tenant_id_entry_id", ["tenant_id", "entry_id"])
    # The reconciler looks at QUEUED and RUNNING attempts by their last change.
    with op.batch_alter_table("execution_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_execution_attempts_status_updated", ["status", "updated_at"], unique=False)
    # Compensation state as columns, so that the reconciler can find what to retry.
    with op.batch_alter_table("execution_outcomes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("compensation_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("compensation_tries", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("compensation_retry_epoch", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("compensation_workflow_id", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("compensation_updated_epoch", sa.Float(), nullable=True))
        batch_op.create_index(
            "ix_execution_outcomes_compensation", ["compensation_status", "compensation_retry_epoch"]
        )


def downgrade() -> None:
    with op.batch_alter_table("execution_outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_execution_outcomes_compensation")
        for column in (
            "compensation_updated_epoch",
            "compensation_workflow_id",
            "compensation_retry_epoch",
            "compensation_tries",
            "compensation_status",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("execution_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_execution_attempts_status_updated")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_ledger_entries_tenant_id_entry_id", type_="unique")
        batch_op.create_unique_constraint("uq_ledger_entries_entry_id", ["entry_id"])
    with op.batch_alter_table("action_intents", schema=None) as batch_op:
        batch_op.drop_constraint("uq_action_intents_tenant_id_action_intent_id", type_="unique")
        batch_op.create_unique_constraint("uq_action_intents_action_intent_id", ["action_intent_id"])
