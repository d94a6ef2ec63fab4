"""email_link_uses: each signed email link opened (a link opens once)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_link_uses",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("link_id", sa.String(length=64), nullable=False),
        sa.Column("action_intent_id", sa.String(length=128), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("used_by", sa.String(length=256), nullable=False),
        sa.Column("used_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "link_id", name="pk_email_link_uses"),
    )


def downgrade() -> None:
    op.drop_table("email_link_uses")
