"""connector credentials (encrypted) and external write reservations

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connector_credentials",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("connector", sa.String(length=32), nullable=False),
        sa.Column("credential_type", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=256), nullable=False),
        sa.Column("username", sa.String(length=256), nullable=True),
        sa.Column("login_url", sa.String(length=512), nullable=True),
        sa.Column("audience", sa.String(length=512), nullable=True),
        sa.Column("secret_ciphertext", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("secret_fields", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.Column("rotated_at", sa.String(length=32), nullable=True),
        sa.Column("refresh_token_rotated_at", sa.String(length=32), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("refresh_lease_owner", sa.String(length=64), nullable=True),
        sa.Column("refresh_lease_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id", "account_id", "connector", name=op.f("pk_connector_credentials")
        ),
    )
    op.create_table(
        "external_writes",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("connector", sa.String(length=32), nullable=False),
        sa.Column("tool_name", sa.String(length=128), nullable=False),
        sa.Column("action_intent_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until_epoch", sa.Float(), nullable=True),
        sa.Column("object_type", sa.String(length=64), nullable=True),
        sa.Column("object_id", sa.String(length=64), nullable=True),
        sa.Column("object_url", sa.Text(), nullable=True),
        sa.Column("previous_values", sa.JSON(), nullable=True),
        sa.Column("written_values", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.Column("committed_at", sa.String(length=32), nullable=True),
        sa.Column("compensated_at", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id", "account_id", "idempotency_key", name=op.f("pk_external_writes")
        ),
    )


def downgrade() -> None:
    op.drop_table("external_writes")
    op.drop_table("connector_credentials")
