"""Reservations of external writes: reserve → call → commit, keyed by the idempotency key.

A connector inserts the row (``PENDING``, with a lease naming its owner) *before* it writes to the
external system, and marks it ``COMMITTED`` with the written object afterwards. A later call with
the same key finds:

* ``COMMITTED``: the write happened; it returns the recorded object and writes nothing;
* ``PENDING`` with a live lease: another call is writing right now ("busy");
* ``PENDING`` with a lease that ran out (its owner crashed, or lost the answer to a timeout or a
  dropped connection): it takes the reservation over ("taken_over") and must look the object up
  in the external system before it writes again: the earlier write may have happened.

A write the external system refused for certain (a 4xx answer) releases a fresh reservation
(deletes it), so that the next try starts clean.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, delete, select, update

from fulfill.domain.records import ExternalWrite as ExternalWrite
from fulfill.domain.records import Reservation as Reservation
from fulfill.store.db import insert_ignore
from fulfill.store.tables import external_writes as table

PENDING = "PENDING"
COMMITTED = "COMMITTED"


def _key(tenant_id: str, account_id: str, idempotency_key: str) -> Any:
    return (
        (table.c.tenant_id == tenant_id)
        & (table.c.account_id == account_id)
        & (table.c.idempotency_key == idempotency_key)
    )


def _record(row: Row[Any]) -> ExternalWrite:
    return ExternalWrite(**row._asdict())


def get(conn: Connection, tenant_id: str, account_id: str, idempotency_key: str) -> ExternalWrite | None:
    row = conn.execute(select(table).where(_key(tenant_id, account_id, idempotency_key))).first()
    return None if row is None else _record(row)


def reserve(
    conn: Connection,
    *,
    tenant_id: str,
    account_id: str,
    idempotency_key: str,
    connector: str,
    tool_name: str,
    action_intent_id: str,
    owner: str,
    now: float,
    now_iso: str,
    lease_seconds: float,
) -> tuple[Reservation, ExternalWrite]:
    inserted = insert_ignore(
        conn,
        table,
        {
            "tenant_id": tenant_id,
            "account_id": account_id,
            "idempotency_key": idempotency_key,
            "connector": connector,
            "tool_name": tool_name,
            "action_intent_id": action_intent_id,
            "status": PENDING,
            "lease_owner": owner,
            "lease_until_epoch": now + lease_seconds,
            "created_at": now_iso,
            "updated_at": now_iso,
        },
    )
    row = get(conn, tenant_id, account_id, idempotency_key)
    assert row is not None
    if inserted:
        return "fresh", row
    if row.status == COMMITTED:
        return "committed", row
    if row.lease_until_epoch is not None and row.lease_until_epoch > now and row.lease_owner != owner:
        return "busy", row
    taken = conn.execute(
        update(table)
        .where(
            _key(tenant_id, account_id, idempotency_key),
            table.c.status == PENDING,
            table.c.lease_owner.is_(row.lease_owner)
            if row.lease_owner is None
            else table.c.lease_owner == row.lease_owner,
        )
        .values(lease_owner=owner, lease_until_epoch=now + lease_seconds, updated_at=now_iso)
    ).rowcount
    row = get(conn, tenant_id, account_id, idempotency_key)
    assert row is not None
    return ("taken_over" if taken else "busy"), row


def renew(
    conn: Connection, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str, until: float
) -> bool:
    """Extend this owner's lease; False when it is no longer the owner."""
    return bool(
        conn.execute(
            update(table)
            .where(
                _key(tenant_id, account_id, idempotency_key),
                table.c.status == PENDING,
                table.c.lease_owner == owner,
            )
            .values(lease_until_epoch=until)
        ).rowcount
    )


def record_values(
    conn: Connection,
    tenant_id: str,
    account_id: str,
    idempotency_key: str,
    *,
    owner: str,
    previous: dict[str, Any],
    written: dict[str, Any],
) -> bool:
    """An update's values before and after, recorded before it writes (once: never overwritten)."""
    return bool(
        conn.execute(
            update(table)
            .where(
                _key(tenant_id, account_id, idempotency_key),
                table.c.status == PENDING,
                table.c.lease_owner == owner,
                table.c.previous_values.is_(None),
            )
            .values(previous_values=previous, written_values=written)
        ).rowcount
    )


def commit(
    conn: Connection,
    tenant_id: str,
    account_id: str,
    idempotency_key: str,
    *,
    object_type: str,
    object_id: str,
    object_url: str | None,
    now_iso: str,
) -> ExternalWrite:
    """Record the written object (the first commit wins) and return the row as stored."""
    conn.execute(
        update(table)
        .where(_key(tenant_id, account_id, idempotency_key), table.c.status == PENDING)
        .values(
            status=COMMITTED,
            object_type=object_type,
            object_id=object_id,
            object_url=object_url,
            lease_owner=None,
            lease_until_epoch=None,
            committed_at=now_iso,
            updated_at=now_iso,
        )
    )
    row = get(conn, tenant_id, account_id, idempotency_key)
    assert row is not None
    return row


def release(conn: Connection, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str) -> None:
    """Drop a reservation whose write certainly did not happen."""
    conn.execute(
        delete(table).where(
            _key(tenant_id, account_id, idempotency_key),
            table.c.status == PENDING,
            table.c.lease_owner == owner,
        )
    )


def expire(conn: Connection, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str) -> None:
    """End this owner's lease now: the write's result is unknown, the next call looks it up."""
    conn.execute(
        update(table)
        .where(
            _key(tenant_id, account_id, idempotency_key),
            table.c.status == PENDING,
            table.c.lease_owner == owner,
        )
        .values(lease_until_epoch=0.0)
    )


def mark_compensated(
    conn: Connection, tenant_id: str, account_id: str, idempotency_key: str, *, now_iso: str
) -> None:
    conn.execute(
        update(table)
        .where(_key(tenant_id, account_id, idempotency_key), table.c.status == COMMITTED)
        .values(compensated_at=now_iso, updated_at=now_iso)
    )


def committed_write_of(
    conn: Connection,
    tenant_id: str,
    account_id: str,
    *,
    action_intent_id: str,
    tool_name: str,
    object_id: str,
) -> ExternalWrite | None:
    """The committed write of ``object_id`` by one intent's ``tool_name``, found by what a
    compensation call carries: its own idempotency key is not the write's (it is derived from it)."""
    row = conn.execute(
        select(table)
        .where(
            table.c.tenant_id == tenant_id,
            table.c.account_id == account_id,
            table.c.action_intent_id == action_intent_id,
            table.c.tool_name == tool_name,
            table.c.object_id == object_id,
            table.c.status == COMMITTED,
        )
        .order_by(table.c.committed_at.desc())
        .limit(1)
    ).first()
    return None if row is None else _record(row)


class SqlExternalWritesRepository:
    """The external writes repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, tenant_id: str, account_id: str, idempotency_key: str) -> ExternalWrite | None:
        return get(self._conn, tenant_id, account_id, idempotency_key)

    def reserve(
        self,
        *,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        connector: str,
        tool_name: str,
        action_intent_id: str,
        owner: str,
        now: float,
        now_iso: str,
        lease_seconds: float,
    ) -> tuple[Reservation, ExternalWrite]:
        return reserve(
            self._conn,
            tenant_id=tenant_id,
            account_id=account_id,
            idempotency_key=idempotency_key,
            connector=connector,
            tool_name=tool_name,
            action_intent_id=action_intent_id,
            owner=owner,
            now=now,
            now_iso=now_iso,
            lease_seconds=lease_seconds,
        )

    def renew(
        self, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str, until: float
    ) -> bool:
        return renew(self._conn, tenant_id, account_id, idempotency_key, owner=owner, until=until)

    def record_values(
        self,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        *,
        owner: str,
        previous: dict[str, Any],
        written: dict[str, Any],
    ) -> bool:
        return record_values(
            self._conn,
            tenant_id,
            account_id,
            idempotency_key,
            owner=owner,
            previous=previous,
            written=written,
        )

    def commit(
        self,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        *,
        object_type: str,
        object_id: str,
        object_url: str | None,
        now_iso: str,
    ) -> ExternalWrite:
        return commit(
            self._conn,
            tenant_id,
            account_id,
            idempotency_key,
            object_type=object_type,
            object_id=object_id,
            object_url=object_url,
            now_iso=now_iso,
        )

    def release(self, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str) -> None:
        return release(self._conn, tenant_id, account_id, idempotency_key, owner=owner)

    def expire(self, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str) -> None:
        return expire(self._conn, tenant_id, account_id, idempotency_key, owner=owner)

    def mark_compensated(
        self, tenant_id: str, account_id: str, idempotency_key: str, *, now_iso: str
    ) -> None:
        return mark_compensated(self._conn, tenant_id, account_id, idempotency_key, now_iso=now_iso)

    def committed_write_of(
        self, tenant_id: str, account_id: str, *, action_intent_id: str, tool_name: str, object_id: str
    ) -> ExternalWrite | None:
        return committed_write_of(
            self._conn,
            tenant_id,
            account_id,
            action_intent_id=action_intent_id,
            tool_name=tool_name,
            object_id=object_id,
        )
