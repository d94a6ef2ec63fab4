"""ledger chain: each entry's hash and position, and the signed checkpoints of each tenant's ledger

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: entries appended before this revision get their hash from their first checkpoint,
    # and every entry gets its position from the checkpoint that covers it.
    op.add_column("ledger_entries", sa.Column("entry_hash", sa.String(64), nullable=True))
    op.add_column("ledger_entries", sa.Column("position", sa.BigInteger(), nullable=True))
    op.create_index(
        "ux_ledger_entries_tenant_position", "ledger_entries", ["tenant_id", "position"], unique=True
    )
    op.create_index(
        "ix_ledger_entries_unchecked",
        "ledger_entries",
        ["tenant_id", "seq"],
        sqlite_where=sa.text("position IS NULL"),
        postgresql_where=sa.text("position IS NULL"),
    )
    op.create_table(
        "ledger_checkpoints",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("first_position", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("leaves", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "number"),
    )


def downgrade() -> None:
    op.drop_table("ledger_checkpoints")
    op.drop_index("ix_ledger_entries_unchecked", table_name="ledger_entries")
    op.drop_index("ux_ledger_entries_tenant_position", table_name="ledger_entries")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("position")
        batch.drop_column("entry_hash")
