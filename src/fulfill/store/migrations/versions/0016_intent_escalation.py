"""intent escalation: when a pending intent's first approval window ends (ESCALATE policies)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and empty for every stored intent: only intents created under an ESCALATE policy
    # (none before this revision) have a first approval window that ends in an escalation.
    with op.batch_alter_table("action_intents") as batch:
        batch.add_column(sa.Column("escalates_at_epoch", sa.BigInteger(), nullable=True))
        batch.create_index("ix_action_intents_escalation", ["approval_status", "escalates_at_epoch"])


def downgrade() -> None:
    with op.batch_alter_table("action_intents") as batch:
        batch.drop_index("ix_action_intents_escalation")
        batch.drop_column("escalates_at_epoch")
