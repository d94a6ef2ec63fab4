"""fair share of connectors between tenants: who waits, whose call, per-tenant caps

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Whose call each admitted call is: the round robin and the per-tenant caps count by tenant.
    with op.batch_alter_table("connector_calls") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(length=128), nullable=True))
    # A tenant's own cap on a connector, on top of the connector's shared limits.
    op.create_table(
        "connector_tenant_limits",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("rate_per_second", sa.Float(), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("name", "tenant_id", name="pk_connector_tenant_limits"),
    )
    # The calls waiting for each connector, of every process (leased by the process that waits).
    op.create_table(
        "connector_waiters",
        sa.Column("waiter_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("since_epoch", sa.Float(), nullable=False),
        sa.Column("lease_until_epoch", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("waiter_id", name="pk_connector_waiters"),
    )
    op.create_index("ix_connector_waiters_name_since_epoch", "connector_waiters", ["name", "since_epoch"])


def downgrade() -> None:
    op.drop_index("ix_connector_waiters_name_since_epoch", table_name="connector_waiters")
    op.drop_table("connector_waiters")
    op.drop_table("connector_tenant_limits")
    with op.batch_alter_table("connector_calls") as batch:
        batch.drop_column("tenant_id")
