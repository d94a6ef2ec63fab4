"""connector limits, circuit breakers and admitted calls (flow control)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each connector's (or remote target's) limits, shared by every process; no row: no limits.
    op.create_table(
        "connector_limits",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("rate_per_second", sa.Float(), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("name", name="pk_connector_limits"),
    )
    # Its circuit breaker; admissions lock this row, one at a time per connector.
    op.create_table(
        "connector_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("circuit_state", sa.String(length=16), nullable=False, server_default="CLOSED"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("window_started_epoch", sa.Float(), nullable=True),
        sa.Column("opened_epoch", sa.Float(), nullable=True),
        sa.Column("probe_call_id", sa.String(length=64), nullable=True),
        sa.Column("probe_until_epoch", sa.Float(), nullable=True),
        sa.Column("updated_epoch", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_connector_state"),
    )
    # Calls admitted to a gated connector: the rate window and the calls in flight.
    op.create_table(
        "connector_calls",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("admitted_epoch", sa.Float(), nullable=False),
        sa.Column("dispatched_epoch", sa.Float(), nullable=True),
        sa.Column("lease_until_epoch", sa.Float(), nullable=False),
        sa.Column("finished_epoch", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("call_id", name="pk_connector_calls"),
    )
    op.create_index(
        "ix_connector_calls_name_dispatched_epoch", "connector_calls", ["name", "dispatched_epoch"]
    )
    op.create_index("ix_connector_calls_name_finished_epoch", "connector_calls", ["name", "finished_epoch"])


def downgrade() -> None:
    op.drop_index("ix_connector_calls_name_finished_epoch", table_name="connector_calls")
    op.drop_index("ix_connector_calls_name_dispatched_epoch", table_name="connector_calls")
    op.drop_table("connector_calls")
    op.drop_table("connector_state")
    op.drop_table("connector_limits")
