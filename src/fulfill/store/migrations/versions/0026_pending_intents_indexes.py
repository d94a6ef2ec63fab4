"""pending intents indexes: the four indexes that serve intents waiting for approval hold only those

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 18:30:00

The approvals page (``ix_action_intents_pending`` and its proposer and policy filters) and the
escalation sweep (``ix_action_intents_escalation``) read intents waiting for approval only, yet
every intent ever proposed stayed in all four. On PostgreSQL each later write to a decided
intent (its approval, its execution's start and its end) went into them too: an update that
changes an indexed column writes the row's new version into every index of the table.

Each becomes partial, ``approval_status = 'PENDING_APPROVAL'`` (the status leaves the keys): as
small as what waits, and an intent leaves them when it is decided. Their queries name the status
as written here (``store/tables.py is_pending_approval``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

PENDING = "approval_status = 'PENDING_APPROVAL'"

# (name, columns before, columns after)
INDEXES = [
    (
        "ix_action_intents_pending",
        ["tenant_id", "approval_status", "created_at", "action_intent_id"],
        ["tenant_id", "created_at", "action_intent_id"],
    ),
    (
        "ix_action_intents_pending_proposer",
        ["tenant_id", "approval_status", "proposed_by", "created_at", "action_intent_id"],
        ["tenant_id", "proposed_by", "created_at", "action_intent_id"],
    ),
    (
        "ix_action_intents_pending_policy",
        ["tenant_id", "approval_status", "policy_id", "created_at", "action_intent_id"],
        ["tenant_id", "policy_id", "created_at", "action_intent_id"],
    ),
    (
        "ix_action_intents_escalation",
        ["approval_status", "escalates_at_epoch"],
        ["escalates_at_epoch", "action_intent_id"],
    ),
]


def upgrade() -> None:
    for name, _, columns in INDEXES:
        op.drop_index(name, table_name="action_intents")
        op.create_index(
            name,
            "action_intents",
            columns,
            sqlite_where=sa.text(PENDING),
            postgresql_where=sa.text(PENDING),
        )


def downgrade() -> None:
    for name, columns, _ in reversed(INDEXES):
        op.drop_index(name, table_name="action_intents")
        op.create_index(name, "action_intents", columns)
