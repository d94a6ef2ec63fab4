"""intent proposer: who proposed each intent, and where it came in

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: intents stored before this revision have no recorded proposer (the self-approval
    # rule then does not apply to them; the agent rule does).
    with op.batch_alter_table("action_intents") as batch:
        batch.add_column(sa.Column("proposed_by", sa.Text(), nullable=True))
        batch.add_column(sa.Column("proposed_via", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("action_intents") as batch:
        batch.drop_column("proposed_via")
        batch.drop_column("proposed_by")
