"""kill-switch revisions; outbox lease owners

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every write of a kill-switch row increments its revision (0 = never written): clients see
    # which write they are looking at.
    for table in ("global_execution_config", "tenant_execution_config"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
        op.execute(f"UPDATE {table} SET revision = 1")  # noqa: S608 - table names are constants
    # The relay that holds a delivery's lease: only the owner may renew it or settle the delivery.
    with op.batch_alter_table("outbox_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_deliveries", schema=None) as batch_op:
        batch_op.drop_column("lease_owner")
    for table in ("tenant_execution_config", "global_execution_config"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("revision")
