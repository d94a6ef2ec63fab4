"""The internal connector's tasks and notes: created once per idempotency key, deleted softly (a
compensation that deletes what is already gone changes nothing)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, select, update

from fulfill.domain.records import InternalObject
from fulfill.store.db import insert_ignore
from fulfill.store.tables import internal_notes, internal_tasks

__all__ = [
    "InternalObject",
    "SqlInternalObjectsRepository",
    "create_once",
    "delete",
    "find_by_key",
    "restore",
]

_TABLES: dict[str, Table] = {"task": internal_tasks, "note": internal_notes}


def _table(kind: str) -> Table:
    try:
        return _TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown internal object kind '{kind}' (known: task, note)") from None


def create_once(
    conn: Connection,
    kind: str,
    *,
    object_id: str,
    tenant_id: str,
    account_id: str,
    idempotency_key: str,
    action_intent_id: str,
    created_at: str,
    fields: dict[str, str | None],
) -> InternalObject:
    """Insert the object unless its idempotency key is taken; either way, the object stored under
    that key (which may belong to another owner, or be deleted: the caller decides). Only a key
    already taken costs a second statement, to read what is stored under it."""
    table = _table(kind)
    inserted = insert_ignore(
        conn,
        table,
        {
            "tenant_id": tenant_id,
            "account_id": account_id,
            f"{kind}_id": object_id,
            "idempotency_key": idempotency_key,
            "action_intent_id": action_intent_id,
            "created_at": created_at,
            **fields,
        },
    )
    if inserted:
        return InternalObject(
            kind=kind, object_id=object_id, tenant_id=tenant_id, account_id=account_id, deleted=False
        )
    row = conn.execute(select(table).where(table.c.idempotency_key == idempotency_key)).one()
    return _object(kind, row._mapping)


def find_by_key(conn: Connection, kind: str, idempotency_key: str) -> InternalObject | None:
    """The object stored under the idempotency key (any owner, deleted or not), or None."""
    table = _table(kind)
    row = conn.execute(select(table).where(table.c.idempotency_key == idempotency_key)).first()
    return _object(kind, row._mapping) if row is not None else None


def restore(conn: Connection, kind: str, idempotency_key: str) -> None:
    """Undelete the object stored under the key (a create repeated after its compensation)."""
    table = _table(kind)
    conn.execute(update(table).where(table.c.idempotency_key == idempotency_key).values(deleted_at=None))


def delete(conn: Connection, kind: str, *, tenant_id: str, account_id: str, object_id: str, now: str) -> bool:
    """Mark the owner's object deleted; True when this call deleted it (False: gone already, or not theirs)."""
    table = _table(kind)
    result = conn.execute(
        update(table)
        .where(
            table.c.tenant_id == tenant_id,
            table.c.account_id == account_id,
            table.c[f"{kind}_id"] == object_id,
            table.c.deleted_at.is_(None),
        )
        .values(deleted_at=now)
    )
    return bool(result.rowcount)


def _object(kind: str, row: Any) -> InternalObject:
    return InternalObject(
        kind=kind,
        object_id=row[f"{kind}_id"],
        tenant_id=row["tenant_id"],
        account_id=row["account_id"],
        deleted=row["deleted_at"] is not None,
    )


class SqlInternalObjectsRepository:
    """The internal objects repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def find_by_key(self, kind: str, idempotency_key: str) -> InternalObject | None:
        return find_by_key(self._conn, kind, idempotency_key)

    def create_once(
        self,
        kind: str,
        *,
        object_id: str,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        action_intent_id: str,
        created_at: str,
        fields: dict[str, str | None],
    ) -> InternalObject:
        return create_once(
            self._conn,
            kind,
            object_id=object_id,
            tenant_id=tenant_id,
            account_id=account_id,
            idempotency_key=idempotency_key,
            action_intent_id=action_intent_id,
            created_at=created_at,
            fields=fields,
        )

    def restore(self, kind: str, idempotency_key: str) -> None:
        return restore(self._conn, kind, idempotency_key)

    def delete(self, kind: str, *, tenant_id: str, account_id: str, object_id: str, now: str) -> bool:
        return delete(
            self._conn, kind, tenant_id=tenant_id, account_id=account_id, object_id=object_id, now=now
        )
