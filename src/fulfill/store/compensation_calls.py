"""Marks of compensation calls to targets that do not deduplicate (``remote_compensation_calls``).

Written before the call leaves and settled with its answer, keyed by the compensation call's own
idempotency key: a try replayed after a crash, or a later try started by the reconciler, finds
the mark and uses its answer (or, without one, reports the outcome as unknown) instead of
sending the undo again. A call refused for certain, or never sent, has its mark cleared, so that
a later try may send it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select, update

from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.records import Sent as Sent
from fulfill.store.db import insert_ignore
from fulfill.store.tables import remote_compensation_calls as table


def _key(tenant_id: str, account_id: str, idempotency_key: str) -> list[Any]:
    return [
        table.c.tenant_id == tenant_id,
        table.c.account_id == account_id,
        table.c.idempotency_key == idempotency_key,
    ]


def get(conn: Connection, tenant_id: str, account_id: str, idempotency_key: str) -> Sent | None:
    row = conn.execute(select(table.c.answer).where(*_key(tenant_id, account_id, idempotency_key))).first()
    if row is None:
        return None
    return Sent(ToolCallOutcome.model_validate(row.answer) if row.answer is not None else None)


def mark(
    conn: Connection,
    *,
    tenant_id: str,
    account_id: str,
    idempotency_key: str,
    action_intent_id: str,
    attempt_count: int,
    tool_name: str,
    object_id: str,
    now: str,
) -> bool:
    """Before sending; False when a mark exists already."""
    return insert_ignore(
        conn,
        table,
        {
            "tenant_id": tenant_id,
            "account_id": account_id,
            "idempotency_key": idempotency_key,
            "action_intent_id": action_intent_id,
            "attempt_count": attempt_count,
            "tool_name": tool_name,
            "object_id": object_id[:256],
            "sent_at": now,
            "answer": None,
        },
    )


def settle(
    conn: Connection, tenant_id: str, account_id: str, idempotency_key: str, answer: ToolCallOutcome
) -> None:
    conn.execute(
        update(table)
        .where(*_key(tenant_id, account_id, idempotency_key))
        .values(answer=answer.model_dump(mode="json"))
    )


def clear(conn: Connection, tenant_id: str, account_id: str, idempotency_key: str) -> None:
    conn.execute(delete(table).where(*_key(tenant_id, account_id, idempotency_key)))


class SqlCompensationCallsRepository:
    """The compensation calls repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, tenant_id: str, account_id: str, idempotency_key: str) -> Sent | None:
        return get(self._conn, tenant_id, account_id, idempotency_key)

    def mark(
        self,
        *,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        action_intent_id: str,
        attempt_count: int,
        tool_name: str,
        object_id: str,
        now: str,
    ) -> bool:
        return mark(
            self._conn,
            tenant_id=tenant_id,
            account_id=account_id,
            idempotency_key=idempotency_key,
            action_intent_id=action_intent_id,
            attempt_count=attempt_count,
            tool_name=tool_name,
            object_id=object_id,
            now=now,
        )

    def settle(self, tenant_id: str, account_id: str, idempotency_key: str, answer: ToolCallOutcome) -> None:
        return settle(self._conn, tenant_id, account_id, idempotency_key, answer)

    def clear(self, tenant_id: str, account_id: str, idempotency_key: str) -> None:
        return clear(self._conn, tenant_id, account_id, idempotency_key)
