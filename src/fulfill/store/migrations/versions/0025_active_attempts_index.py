"""active attempts index: a tenant's attempts in flight, found without reading anyone else's

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 17:00:00

Every execution that goes to the queue is ranked among its tenant's attempts QUEUED or RUNNING
(``store/executions.py count_active``, the queue's fair order). On SQLite that count sought the
status index and looked up every attempt in flight, of every tenant, to keep its tenant's: one
tenant's backlog of 30,000 made each approval of every other tenant count 30,000 rows. On
PostgreSQL the planner chose the primary key's tenant prefix and read the tenant's whole history.

``ix_execution_attempts_active_tenant`` holds one small entry per attempt in flight (partial:
``status IN ('QUEUED', 'RUNNING')``, as the count names it, so both backends can use it), keyed by
tenant, then intent: the count reads its own tenant's attempts in flight, in the index's order up
to its limit, and nothing else. A finished attempt leaves it, so it stays as small as what is in
flight.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

# The same text as the count's condition (store/executions.py _is_active): SQLite uses a partial
# index only for a query whose WHERE contains the index's condition as it is written.
ACTIVE = "status IN ('QUEUED', 'RUNNING')"


def upgrade() -> None:
    op.create_index(
        "ix_execution_attempts_active_tenant",
        "execution_attempts",
        ["tenant_id", "action_intent_id"],
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("ix_execution_attempts_active_tenant", table_name="execution_attempts")
