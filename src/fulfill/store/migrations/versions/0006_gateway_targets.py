"""gateway targets (remote MCP servers), their secrets, the catalog revision, remote call marks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_targets",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("deduplicates", sa.Boolean(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_gateway_targets")),
    )
    catalog = op.create_table(
        "gateway_catalog",
        sa.Column("catalog_id", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("catalog_id", name=op.f("pk_gateway_catalog")),
    )
    op.bulk_insert(catalog, [{"catalog_id": "targets", "revision": 0, "updated_at": ""}])
    # Plain JSON: the stand-in for the encrypted credential store (FULFILL_SECRETS_KEY).
    op.create_table(
        "gateway_target_secrets",
        sa.Column("target_name", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("target_name", name=op.f("pk_gateway_target_secrets")),
    )
    op.create_table(
        "remote_tool_calls",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("action_intent_id", sa.String(length=128), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("tool_name", sa.String(length=128), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.String(length=32), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "account_id",
            "action_intent_id",
            "attempt_count",
            name=op.f("pk_remote_tool_calls"),
        ),
    )


def downgrade() -> None:
    op.drop_table("remote_tool_calls")
    op.drop_table("gateway_target_secrets")
    op.drop_table("gateway_catalog")
    op.drop_table("gateway_targets")
