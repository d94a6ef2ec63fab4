"""ledger append indexes: an appended entry no longer goes into the position and event-type indexes

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 06:00:00

Every execution appends about four ledger entries, and each append wrote into all six of the
table's indexes. Two of them gain nothing from most appends:

- ``ux_ledger_entries_tenant_position`` (unique per tenant): an entry is appended without a
  position (its checkpoint sets it), so every append added a NULL key that no query reads. It
  becomes partial, ``WHERE position IS NOT NULL``: the same uniqueness (NULLs never collided),
  the same range scans (a comparison on ``position`` implies it is not NULL, on both backends).
- ``ix_ledger_entries_event_tenant_timestamp``: the dashboard reads it for two event types only
  (failed tries of a tool call, unknown outcomes). It becomes one small partial index per event
  type, on ``(tenant_id, timestamp)``, which an ordinary append never touches.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# (index name, event type): the dashboard's queries name the type as a literal (store/dashboard.py).
EVENT_INDEXES = [
    ("ix_ledger_entries_failed_tries", "TOOL_CALL_TRY_FAILED"),
    ("ix_ledger_entries_unknown_outcomes", "OUTCOME_UNKNOWN"),
]


def upgrade() -> None:
    op.drop_index("ux_ledger_entries_tenant_position", table_name="ledger_entries")
    op.create_index(
        "ux_ledger_entries_tenant_position",
        "ledger_entries",
        ["tenant_id", "position"],
        unique=True,
        sqlite_where=sa.text("position IS NOT NULL"),
        postgresql_where=sa.text("position IS NOT NULL"),
    )
    op.drop_index("ix_ledger_entries_event_tenant_timestamp", table_name="ledger_entries")
    for name, event_type in EVENT_INDEXES:
        op.create_index(
            name,
            "ledger_entries",
            ["tenant_id", "timestamp"],
            sqlite_where=sa.text(f"event_type = '{event_type}'"),
            postgresql_where=sa.text(f"event_type = '{event_type}'"),
        )


def downgrade() -> None:
    for name, _ in reversed(EVENT_INDEXES):
        op.drop_index(name, table_name="ledger_entries")
    op.create_index(
        "ix_ledger_entries_event_tenant_timestamp", "ledger_entries", ["event_type", "tenant_id", "timestamp"]
    )
    op.drop_index("ux_ledger_entries_tenant_position", table_name="ledger_entries")
    op.create_index(
        "ux_ledger_entries_tenant_position", "ledger_entries", ["tenant_id", "position"], unique=True
    )
