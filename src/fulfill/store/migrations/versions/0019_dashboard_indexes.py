"""dashboard indexes: outcomes, ledger entries and intents by time, per tenant

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 00:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# (name, table, columns): what the console's dashboard filters by (store/dashboard.py).
INDEXES = [
    ("ix_execution_outcomes_tenant_completed", "execution_outcomes", ["tenant_id", "completed_at"]),
    ("ix_execution_outcomes_completed", "execution_outcomes", ["completed_at"]),
    ("ix_execution_outcomes_tenant_compensation", "execution_outcomes", ["tenant_id", "compensation_status"]),
    ("ix_ledger_entries_event_tenant_timestamp", "ledger_entries", ["event_type", "tenant_id", "timestamp"]),
    ("ix_action_intents_tenant_updated", "action_intents", ["tenant_id", "updated_at"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
