"""Stored connector credentials: one row per (tenant, account, connector), secrets sealed.

This module only moves rows; sealing and opening the secrets is ``credentials/vault.py``'s job.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, delete, func, or_, select, update

from fulfill.domain.credentials import TENANT_WIDE
from fulfill.domain.records import SealedCredential as SealedCredential
from fulfill.store.db import insert_ignore
from fulfill.store.tables import connector_credentials as table


def _key(tenant_id: str, account_id: str, connector: str) -> Any:
    return (
        (table.c.tenant_id == tenant_id)
        & (table.c.account_id == account_id)
        & (table.c.connector == connector)
    )


def _record(row: Row[Any]) -> SealedCredential:
    return SealedCredential(**row._asdict())


def get(
    conn: Connection, tenant_id: str, account_id: str, connector: str, *, for_update: bool = False
) -> SealedCredential | None:
    query = select(table).where(_key(tenant_id, account_id, connector))
    row = conn.execute(query.with_for_update() if for_update else query).first()
    return None if row is None else _record(row)


def resolve(conn: Connection, tenant_id: str, account_id: str, connector: str) -> SealedCredential | None:
    """The account's own credential, else the tenant-wide one, else None."""
    rows = conn.execute(
        select(table).where(
            table.c.tenant_id == tenant_id,
            table.c.connector == connector,
            or_(table.c.account_id == account_id, table.c.account_id == TENANT_WIDE),
        )
    ).all()
    own = [row for row in rows if row.account_id == account_id and account_id != TENANT_WIDE]
    row = own[0] if own else next(iter(rows), None)
    return None if row is None else _record(row)


def list_for_tenant(conn: Connection, tenant_id: str, connector: str | None = None) -> list[SealedCredential]:
    query = select(table).where(table.c.tenant_id == tenant_id)
    if connector is not None:
        query = query.where(table.c.connector == connector)
    return [_record(row) for row in conn.execute(query.order_by(table.c.connector, table.c.account_id))]


def put(conn: Connection, values: dict[str, Any], *, now: str) -> tuple[SealedCredential, bool]:
    """Create or replace one credential; True when it was created. A replacement keeps
    ``created_at`` and counts one more ``revision``."""
    tenant_id, account_id, connector = values["tenant_id"], values["account_id"], values["connector"]
    created = insert_ignore(conn, table, {**values, "created_at": now, "updated_at": now, "revision": 1})
    if not created:
        conn.execute(
            update(table)
            .where(_key(tenant_id, account_id, connector))
            .values(
                **{k: v for k, v in values.items() if k not in ("tenant_id", "account_id", "connector")},
                updated_at=now,
                rotated_at=now,
                refresh_token_rotated_at=None,
                refresh_lease_owner=None,
                refresh_lease_until=None,
                revision=table.c.revision + 1,
            )
        )
    row = get(conn, tenant_id, account_id, connector)
    assert row is not None
    return row, created


def replace_secret(
    conn: Connection,
    tenant_id: str,
    account_id: str,
    connector: str,
    *,
    ciphertext: str,
    key_id: str,
    secret_fields: str,
    now: str,
) -> bool:
    """An admin's new secrets: one more ``revision`` (cached access tokens of the old one go)."""
    result = conn.execute(
        update(table)
        .where(_key(tenant_id, account_id, connector))
        .values(
            secret_ciphertext=ciphertext,
            key_id=key_id,
            secret_fields=secret_fields,
            updated_at=now,
            rotated_at=now,
            refresh_token_rotated_at=None,
            revision=table.c.revision + 1,
        )
    )
    return bool(result.rowcount)


def store_server_rotation(
    conn: Connection,
    tenant_id: str,
    account_id: str,
    connector: str,
    *,
    ciphertext: str,
    key_id: str,
    now: str,
    lease_owner: str,
) -> bool:
    """The refresh token the OAuth server issued in exchange for the stored one, written by the
    holder of the refresh lease only. The ``revision`` stays: the credential is the same one."""
    result = conn.execute(
        update(table)
        .where(_key(tenant_id, account_id, connector), table.c.refresh_lease_owner == lease_owner)
        .values(secret_ciphertext=ciphertext, key_id=key_id, refresh_token_rotated_at=now)
    )
    return bool(result.rowcount)


def reseal(
    conn: Connection, tenant_id: str, account_id: str, connector: str, *, old: str, new: str, key_id: str
) -> bool:
    """The same secrets sealed with another key (only if nobody changed them meanwhile)."""
    result = conn.execute(
        update(table)
        .where(_key(tenant_id, account_id, connector), table.c.secret_ciphertext == old)
        .values(secret_ciphertext=new, key_id=key_id)
    )
    return bool(result.rowcount)


def remove(conn: Connection, tenant_id: str, account_id: str, connector: str) -> bool:
    return bool(conn.execute(delete(table).where(_key(tenant_id, account_id, connector))).rowcount)


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def key_ids_in_use(conn: Connection) -> set[str]:
    return {str(value) for value in conn.execute(select(table.c.key_id).distinct()).scalars()}


def all_rows(conn: Connection) -> list[SealedCredential]:
    return [_record(row) for row in conn.execute(select(table))]


def take_refresh_lease(
    conn: Connection, tenant_id: str, account_id: str, connector: str, *, owner: str, now: float, until: float
) -> bool:
    """Become the one exchanging this credential's refresh token, unless someone else holds a
    lease that has not run out."""
    result = conn.execute(
        update(table)
        .where(
            _key(tenant_id, account_id, connector),
            or_(
                table.c.refresh_lease_owner.is_(None),
                table.c.refresh_lease_owner == owner,
                table.c.refresh_lease_until < now,
            ),
        )
        .values(refresh_lease_owner=owner, refresh_lease_until=until)
    )
    return bool(result.rowcount)


def release_refresh_lease(
    conn: Connection, tenant_id: str, account_id: str, connector: str, owner: str
) -> None:
    conn.execute(
        update(table)
        .where(_key(tenant_id, account_id, connector), table.c.refresh_lease_owner == owner)
        .values(refresh_lease_owner=None, refresh_lease_until=None)
    )


class SqlCredentialsRepository:
    """The credentials repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(
        self, tenant_id: str, account_id: str, connector: str, *, for_update: bool = False
    ) -> SealedCredential | None:
        return get(self._conn, tenant_id, account_id, connector, for_update=for_update)

    def resolve(self, tenant_id: str, account_id: str, connector: str) -> SealedCredential | None:
        return resolve(self._conn, tenant_id, account_id, connector)

    def list_for_tenant(self, tenant_id: str, connector: str | None = None) -> list[SealedCredential]:
        return list_for_tenant(self._conn, tenant_id, connector)

    def put(self, values: dict[str, Any], *, now: str) -> tuple[SealedCredential, bool]:
        return put(self._conn, values, now=now)

    def replace_secret(
        self,
        tenant_id: str,
        account_id: str,
        connector: str,
        *,
        ciphertext: str,
        key_id: str,
        secret_fields: str,
        now: str,
    ) -> bool:
        return replace_secret(
            self._conn,
            tenant_id,
            account_id,
            connector,
            ciphertext=ciphertext,
            key_id=key_id,
            secret_fields=secret_fields,
            now=now,
        )

    def store_server_rotation(
        self,
        tenant_id: str,
        account_id: str,
        connector: str,
        *,
        ciphertext: str,
        key_id: str,
        now: str,
        lease_owner: str,
    ) -> bool:
        return store_server_rotation(
            self._conn,
            tenant_id,
            account_id,
            connector,
            ciphertext=ciphertext,
            key_id=key_id,
            now=now,
            lease_owner=lease_owner,
        )

    def reseal(
        self, tenant_id: str, account_id: str, connector: str, *, old: str, new: str, key_id: str
    ) -> bool:
        return reseal(self._conn, tenant_id, account_id, connector, old=old, new=new, key_id=key_id)

    def remove(self, tenant_id: str, account_id: str, connector: str) -> bool:
        return remove(self._conn, tenant_id, account_id, connector)

    def count(self) -> int:
        return count(self._conn)

    def key_ids_in_use(self) -> set[str]:
        return key_ids_in_use(self._conn)

    def all_rows(self) -> list[SealedCredential]:
        return all_rows(self._conn)

    def take_refresh_lease(
        self, tenant_id: str, account_id: str, connector: str, *, owner: str, now: float, until: float
    ) -> bool:
        return take_refresh_lease(
            self._conn, tenant_id, account_id, connector, owner=owner, now=now, until=until
        )

    def release_refresh_lease(self, tenant_id: str, account_id: str, connector: str, owner: str) -> None:
        return release_refresh_lease(self._conn, tenant_id, account_id, connector, owner)
