"""outbox deliveries can be dead-lettered (status DEAD_LETTER, and when)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A delivery refused FULFILL_OUTBOX_MAX_ATTEMPTS times ends DEAD_LETTER (the status column
    # takes the new value as it is); this records when, for the listing and the runbook.
    with op.batch_alter_table("outbox_deliveries") as batch:
        batch.add_column(sa.Column("dead_lettered_at", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_deliveries") as batch:
        batch.drop_column("dead_lettered_at")
