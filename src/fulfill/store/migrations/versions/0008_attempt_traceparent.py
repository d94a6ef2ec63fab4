"""the W3C trace context of each execution attempt (tracing)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The traceparent of the request that accepted the attempt: its workflow's spans descend from
    # it. Attempts taken before this revision have none (their workflows start their own trace).
    with op.batch_alter_table("execution_attempts") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("execution_attempts") as batch:
        batch.drop_column("traceparent")
