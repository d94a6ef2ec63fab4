"""attempt sweep indexes: the indexes the sweeps and gauges of attempts read hold only those attempts

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 04:00:00

The reconciler's sweep, the gauges of attempts past their budget and of AMBIGUOUS ones, the
probes' due list and the dashboard read attempts in flight (QUEUED or RUNNING) or AMBIGUOUS only,
through two whole indexes, ``(status, deadline_epoch)`` and ``(status, updated_at)``, that held
every attempt ever made. On PostgreSQL each attempt's last change (to SUCCEEDED, FAILED, ...)
wrote an entry in both: an update that changes an indexed column writes the row's new version into
every index of the table.

They become partial, as ``ix_execution_attempts_active_tenant`` (migration 0025):
``ix_execution_attempts_active_deadline`` ``(status, deadline_epoch)`` and
``ix_execution_attempts_active_updated`` ``(status, updated_at)`` for the attempts in flight, and
``ix_execution_attempts_ambiguous_updated`` ``(updated_at)`` for the AMBIGUOUS ones: as small as
what is in flight or waits, and a finished attempt leaves them. Their queries name the statuses
as written here (``store/tables.py is_active_attempt``, ``is_ambiguous_attempt``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('QUEUED', 'RUNNING')"
AMBIGUOUS = "status = 'AMBIGUOUS'"

# (name, columns, condition)
PARTIAL = [
    ("ix_execution_attempts_active_deadline", ["status", "deadline_epoch"], ACTIVE),
    ("ix_execution_attempts_active_updated", ["status", "updated_at"], ACTIVE),
    ("ix_execution_attempts_ambiguous_updated", ["updated_at"], AMBIGUOUS),
]
WHOLE = [
    ("ix_execution_attempts_status_deadline", ["status", "deadline_epoch"]),
    ("ix_execution_attempts_status_updated", ["status", "updated_at"]),
]


def upgrade() -> None:
    for name, _ in WHOLE:
        op.drop_index(name, table_name="execution_attempts")
    for name, columns, condition in PARTIAL:
        op.create_index(
            name,
            "execution_attempts",
            columns,
            sqlite_where=sa.text(condition),
            postgresql_where=sa.text(condition),
        )


def downgrade() -> None:
    for name, _, _ in reversed(PARTIAL):
        op.drop_index(name, table_name="execution_attempts")
    for name, columns in WHOLE:
        op.create_index(name, "execution_attempts", columns)
