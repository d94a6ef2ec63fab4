"""Migration 0020 on a database with intents (SQLite, and PostgreSQL on its pass): the deciding
policy's id becomes a column, filled for the intents still waiting for approval, and goes away
again on downgrade."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from fulfill.domain.models import ApprovalRule, ApprovalStatus
from fulfill.store.db import Database
from fulfill.store.migrate import alembic_config
from tests.support import postgres
from tests.support.harness import fresh_database_url
from tests.unit.factories import make_intent

_INTENTS = sa.table(
    "action_intents",
    sa.column("tenant_id", sa.String()),
    sa.column("account_id", sa.String()),
    sa.column("action_intent_id", sa.String()),
    sa.column("action_type", sa.String()),
    sa.column("approval_status", sa.String()),
    sa.column("registry_version", sa.Integer()),
    sa.column("expires_at_epoch", sa.BigInteger()),
    sa.column("request_hash", sa.String()),
    sa.column("document", sa.JSON()),
    sa.column("created_at", sa.String()),
    sa.column("updated_at", sa.String()),
)


def _row(intent_id: str, status: ApprovalStatus, policy_id: str | None) -> dict[str, object]:
    intent = make_intent(
        action_intent_id=intent_id,
        approval_status=status,
        approval_rule=ApprovalRule(policy_id=policy_id) if policy_id else None,
    )
    return {
        "tenant_id": intent.tenant_id,
        "account_id": intent.account_id,
        "action_intent_id": intent_id,
        "action_type": intent.action_type,
        "approval_status": status.value,
        "registry_version": 1,
        "expires_at_epoch": intent.expires_at_epoch,
        "request_hash": "h",
        "document": intent.model_dump(mode="json"),
        "created_at": intent.created_at,
        "updated_at": intent.updated_at,
    }


def test_0020_fills_the_policy_id_of_waiting_intents_and_downgrades(tmp_path: Path) -> None:
    database = Database(fresh_database_url(tmp_path))
    config = alembic_config(database)
    try:
        command.upgrade(config, "0019")
        with database.write() as conn:
            conn.execute(
                sa.insert(_INTENTS),
                [
                    _row("ai_waiting_policy", ApprovalStatus.PENDING_APPROVAL, "pol_routine01"),
                    _row("ai_waiting_default", ApprovalStatus.PENDING_APPROVAL, None),
                    _row("ai_approved_policy", ApprovalStatus.APPROVED, "pol_routine01"),
                ],
            )
        command.upgrade(config, "0020")
        with database.read() as conn:
            rows = dict(
                conn.execute(sa.text("SELECT action_intent_id, policy_id FROM action_intents")).tuples().all()
            )
            indexes = {index["name"] for index in sa.inspect(conn).get_indexes("action_intents")}
        assert rows == {
            "ai_waiting_policy": "pol_routine01",
            "ai_waiting_default": None,
            "ai_approved_policy": None,  # decided already: the queue never lists it
        }
        assert {"ix_action_intents_pending_proposer", "ix_action_intents_pending_policy"} <= indexes
        command.downgrade(config, "0019")
        with database.read() as conn:
            columns = {column["name"] for column in sa.inspect(conn).get_columns("action_intents")}
        assert "policy_id" not in columns
    finally:
        database.dispose()
        if postgres.is_postgres_url(database.url):
            postgres.drop_database(database.url)
