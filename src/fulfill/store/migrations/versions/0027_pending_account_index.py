"""pending intents by account: the approvals page of one account reads that account's only

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 20:10:00

The approvals page filtered by an account (the console's account filter, or a token limited to
some accounts) had no index of pending intents by account: it read the tenant's pending intents
newest first until a page of the account's was found, and its count read them all, so an
account with a few pending intents in a tenant with thousands paid for the thousands on every
view. ``ix_action_intents_pending_account`` holds the pending intents by tenant, account and
creation time, partial as the other three of the page (migration 0026): an intent leaves it when
it is decided.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

PENDING = "approval_status = 'PENDING_APPROVAL'"


def upgrade() -> None:
    op.create_index(
        "ix_action_intents_pending_account",
        "action_intents",
        ["tenant_id", "account_id", "created_at", "action_intent_id"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_action_intents_pending_account", table_name="action_intents")
