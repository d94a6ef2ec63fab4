"""Stored gateway targets, the catalog revision, target secrets and remote call marks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select, update

from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.records import RemoteCallMark as RemoteCallMark
from fulfill.domain.targets import GatewayTarget
from fulfill.store.db import insert_ignore
from fulfill.store.tables import gateway_catalog, gateway_target_secrets, gateway_targets, remote_tool_calls

_CATALOG_ROW = "targets"


# --- targets ------------------------------------------------------------------------------------


def get_target(conn: Connection, name: str) -> GatewayTarget | None:
    row = conn.execute(select(gateway_targets.c.document).where(gateway_targets.c.name == name)).first()
    return GatewayTarget.model_validate(row.document) if row else None


def list_targets(conn: Connection) -> list[GatewayTarget]:
    rows = conn.execute(select(gateway_targets.c.document).order_by(gateway_targets.c.name)).all()
    return [GatewayTarget.model_validate(row.document) for row in rows]


def insert_target(conn: Connection, target: GatewayTarget) -> bool:
    """Insert a new target; False when the name is taken."""
    inserted = insert_ignore(conn, gateway_targets, _values(target))
    if inserted:
        _bump_catalog(conn, target.updated_at)
    return inserted


def replace_target(conn: Connection, target: GatewayTarget) -> bool:
    """Store a re-discovered target; False when it no longer exists."""
    values = _values(target)
    del values["name"]
    result = conn.execute(update(gateway_targets).where(gateway_targets.c.name == target.name).values(values))
    if result.rowcount:
        _bump_catalog(conn, target.updated_at)
    return bool(result.rowcount)


def delete_target(conn: Connection, name: str, *, now: str) -> bool:
    result = conn.execute(delete(gateway_targets).where(gateway_targets.c.name == name))
    if result.rowcount:
        _bump_catalog(conn, now)
    return bool(result.rowcount)


def catalog_revision(conn: Connection) -> int:
    value = conn.execute(
        select(gateway_catalog.c.revision).where(gateway_catalog.c.catalog_id == _CATALOG_ROW)
    ).scalar_one_or_none()
    return int(value or 0)


def touch_catalog(conn: Connection, now: str) -> None:
    """Make every process reload its targets (e.g. after a target's secret was stored)."""
    _bump_catalog(conn, now)


def _bump_catalog(conn: Connection, now: str) -> None:
    insert_ignore(conn, gateway_catalog, {"catalog_id": _CATALOG_ROW, "revision": 0, "updated_at": now})
    conn.execute(
        update(gateway_catalog)
        .where(gateway_catalog.c.catalog_id == _CATALOG_ROW)
        .values(revision=gateway_catalog.c.revision + 1, updated_at=now)
    )


def _values(target: GatewayTarget) -> dict[str, Any]:
    return {
        "name": target.name,
        "url": target.url,
        "deduplicates": target.deduplicates,
        "document": target.model_dump(mode="json"),
        "revision": target.revision,
        "created_at": target.created_at,
        "updated_at": target.updated_at,
    }


# --- secrets (only through gateway.target_auth.EncryptedTargetSecrets) -------------------------------


def get_secret(conn: Connection, target_name: str) -> dict[str, str] | None:
    row = conn.execute(
        select(gateway_target_secrets.c.secret).where(gateway_target_secrets.c.target_name == target_name)
    ).first()
    return {str(k): str(v) for k, v in dict(row.secret).items()} if row else None


def put_secret(conn: Connection, target_name: str, secret: dict[str, str], *, now: str) -> None:
    values = {"target_name": target_name, "secret": secret, "updated_at": now}
    if not insert_ignore(conn, gateway_target_secrets, values):
        conn.execute(
            update(gateway_target_secrets)
            .where(gateway_target_secrets.c.target_name == target_name)
            .values(secret=secret, updated_at=now)
        )


def all_secrets(conn: Connection) -> dict[str, dict[str, str]]:
    """Every stored target secret (still sealed), by target name."""
    rows = conn.execute(select(gateway_target_secrets.c.target_name, gateway_target_secrets.c.secret)).all()
    return {row.target_name: dict(row.secret) for row in rows if isinstance(row.secret, dict)}


def reseal_secret(
    conn: Connection, target_name: str, *, old: dict[str, str], new: dict[str, str], now: str
) -> bool:
    """Replace a sealed secret only if it is still the one that was read: the row is locked
    first, so a secret put meanwhile is never overwritten with the old one resealed."""
    row = conn.execute(
        select(gateway_target_secrets.c.secret)
        .where(gateway_target_secrets.c.target_name == target_name)
        .with_for_update()
    ).first()
    if row is None or row.secret != old:
        return False
    conn.execute(
        update(gateway_target_secrets)
        .where(gateway_target_secrets.c.target_name == target_name)
        .values(secret=new, updated_at=now)
    )
    return True


def secret_key_ids_by_target(conn: Connection) -> dict[str, str]:
    """Each target with a stored secret, and the id of the key that sealed it."""
    rows = conn.execute(select(gateway_target_secrets.c.target_name, gateway_target_secrets.c.secret)).all()
    return {
        str(row.target_name): str(row.secret.get("key_id") if isinstance(row.secret, dict) else None)
        for row in rows
    }


def delete_secret(conn: Connection, target_name: str) -> None:
    conn.execute(delete(gateway_target_secrets).where(gateway_target_secrets.c.target_name == target_name))


# --- remote call marks ----------------------------------------------------------------------------


def _mark_key(tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int) -> list[Any]:
    return [
        remote_tool_calls.c.tenant_id == tenant_id,
        remote_tool_calls.c.account_id == account_id,
        remote_tool_calls.c.action_intent_id == action_intent_id,
        remote_tool_calls.c.attempt_count == attempt_count,
    ]


def get_remote_call(
    conn: Connection, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
) -> RemoteCallMark | None:
    row = conn.execute(
        select(remote_tool_calls).where(*_mark_key(tenant_id, account_id, action_intent_id, attempt_count))
    ).first()
    if row is None:
        return None
    answer = ToolCallOutcome.model_validate(row.answer) if row.answer is not None else None
    return RemoteCallMark(row.tool_name, row.idempotency_key, answer)


def mark_remote_call(
    conn: Connection,
    *,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    attempt_count: int,
    tool_name: str,
    idempotency_key: str,
    now: str,
) -> bool:
    """Write the mark before sending; False when one exists already (a call was in flight)."""
    return insert_ignore(
        conn,
        remote_tool_calls,
        {
            "tenant_id": tenant_id,
            "account_id": account_id,
            "action_intent_id": action_intent_id,
            "attempt_count": attempt_count,
            "tool_name": tool_name,
            "idempotency_key": idempotency_key,
            "sent_at": now,
            "answer": None,
        },
    )


def settle_remote_call(
    conn: Connection,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    attempt_count: int,
    answer: ToolCallOutcome,
) -> None:
    conn.execute(
        update(remote_tool_calls)
        .where(*_mark_key(tenant_id, account_id, action_intent_id, attempt_count))
        .values(answer=answer.model_dump(mode="json"))
    )


def clear_remote_call(
    conn: Connection, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
) -> None:
    """The call was not sent (refused before it left): the next try may send it."""
    conn.execute(
        delete(remote_tool_calls).where(*_mark_key(tenant_id, account_id, action_intent_id, attempt_count))
    )


class SqlTargetsRepository:
    """The targets repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get_target(self, name: str) -> GatewayTarget | None:
        return get_target(self._conn, name)

    def list_targets(self) -> list[GatewayTarget]:
        return list_targets(self._conn)

    def insert_target(self, target: GatewayTarget) -> bool:
        return insert_target(self._conn, target)

    def replace_target(self, target: GatewayTarget) -> bool:
        return replace_target(self._conn, target)

    def delete_target(self, name: str, *, now: str) -> bool:
        return delete_target(self._conn, name, now=now)

    def catalog_revision(self) -> int:
        return catalog_revision(self._conn)

    def touch_catalog(self, now: str) -> None:
        return touch_catalog(self._conn, now)

    def get_secret(self, target_name: str) -> dict[str, str] | None:
        return get_secret(self._conn, target_name)

    def put_secret(self, target_name: str, secret: dict[str, str], *, now: str) -> None:
        return put_secret(self._conn, target_name, secret, now=now)

    def all_secrets(self) -> dict[str, dict[str, str]]:
        return all_secrets(self._conn)

    def reseal_secret(self, target_name: str, *, old: dict[str, str], new: dict[str, str], now: str) -> bool:
        return reseal_secret(self._conn, target_name, old=old, new=new, now=now)

    def secret_key_ids_by_target(self) -> dict[str, str]:
        return secret_key_ids_by_target(self._conn)

    def delete_secret(self, target_name: str) -> None:
        return delete_secret(self._conn, target_name)

    def get_remote_call(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> RemoteCallMark | None:
        return get_remote_call(self._conn, tenant_id, account_id, action_intent_id, attempt_count)

    def mark_remote_call(
        self,
        *,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        tool_name: str,
        idempotency_key: str,
        now: str,
    ) -> bool:
        return mark_remote_call(
            self._conn,
            tenant_id=tenant_id,
            account_id=account_id,
            action_intent_id=action_intent_id,
            attempt_count=attempt_count,
            tool_name=tool_name,
            idempotency_key=idempotency_key,
            now=now,
        )

    def settle_remote_call(
        self,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        answer: ToolCallOutcome,
    ) -> None:
        return settle_remote_call(self._conn, tenant_id, account_id, action_intent_id, attempt_count, answer)

    def clear_remote_call(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> None:
        return clear_remote_call(self._conn, tenant_id, account_id, action_intent_id, attempt_count)
