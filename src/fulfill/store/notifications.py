"""Stored notification channels of each tenant (secrets sealed), and where Slack messages about
intents were posted. See ``domain/notifications.py``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from fulfill.domain.notifications import NotificationSettings, SlackMessageRef, StoredNotifications
from fulfill.store.db import insert_ignore
from fulfill.store.tables import slack_messages, tenant_notifications

# Read by every intent's creation (its proposal notice): built once, the tenant bound at execution.
_GET_SETTINGS = select(tenant_notifications).where(
    tenant_notifications.c.tenant_id == bindparam("k_tenant_id")
)


def get_settings(conn: Connection, tenant_id: str) -> StoredNotifications | None:
    """The tenant's channels; None when they were never written."""
    row = conn.execute(_GET_SETTINGS, {"k_tenant_id": tenant_id}).first()
    return None if row is None else _stored(row)


def put_settings(
    conn: Connection,
    tenant_id: str,
    settings: NotificationSettings,
    sealed: dict[str, str],
    *,
    now: str,
    updated_by: str,
) -> StoredNotifications:
    """Replace the tenant's channels atomically (one upsert, ``revision`` + 1); what was stored."""
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "settings": settings.model_dump(mode="json", exclude_none=True),
        "sealed": dict(sealed),
        "updated_at": now,
        "updated_by": updated_by,
    }
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(tenant_notifications).values(**values, revision=1)
    changes: dict[str, Any] = {name: statement.excluded[name] for name in values if name != "tenant_id"}
    changes["revision"] = tenant_notifications.c.revision + 1
    row = conn.execute(
        statement.on_conflict_do_update(
            index_elements=[tenant_notifications.c.tenant_id], set_=changes
        ).returning(tenant_notifications)
    ).one()
    return _stored(row)


def tenants_with_channels(conn: Connection) -> list[str]:
    """Every tenant with at least one channel configured, sorted."""
    rows = conn.execute(select(tenant_notifications.c.tenant_id, tenant_notifications.c.settings)).all()
    return sorted(
        str(row.tenant_id) for row in rows if NotificationSettings.model_validate(row.settings).configured()
    )


def all_sealed(conn: Connection) -> dict[str, dict[str, str]]:
    """Every tenant's sealed secrets (still sealed), by tenant; tenants without any left out."""
    rows = conn.execute(select(tenant_notifications.c.tenant_id, tenant_notifications.c.sealed)).all()
    return {
        str(row.tenant_id): {str(name): str(value) for name, value in row.sealed.items()}
        for row in rows
        if isinstance(row.sealed, dict) and row.sealed
    }


def reseal(conn: Connection, tenant_id: str, *, old: dict[str, str], new: dict[str, str]) -> bool:
    """Replace a tenant's sealed secrets only if they are still the ones that were read: the row
    is locked first, so channels put meanwhile are never overwritten with the old secrets
    resealed. The settings, ``revision`` and ``updated_*`` stay: the secrets did not change."""
    row = conn.execute(
        select(tenant_notifications.c.sealed)
        .where(tenant_notifications.c.tenant_id == tenant_id)
        .with_for_update()
    ).first()
    if row is None or dict(row.sealed or {}) != old:
        return False
    conn.execute(
        update(tenant_notifications)
        .where(tenant_notifications.c.tenant_id == tenant_id)
        .values(sealed=dict(new))
    )
    return True


def record_slack_message(conn: Connection, ref: SlackMessageRef) -> bool:
    """Keep where a notice about an intent was posted; the first post stays (False: one was kept)."""
    return insert_ignore(
        conn,
        slack_messages,
        {
            "tenant_id": ref.tenant_id,
            "action_intent_id": ref.action_intent_id,
            "channel": ref.channel,
            "ts": ref.ts,
            "posted_at": ref.posted_at,
        },
    )


def slack_message(conn: Connection, tenant_id: str, action_intent_id: str) -> SlackMessageRef | None:
    row = conn.execute(
        select(slack_messages).where(
            slack_messages.c.tenant_id == tenant_id, slack_messages.c.action_intent_id == action_intent_id
        )
    ).first()
    if row is None:
        return None
    return SlackMessageRef(
        tenant_id=row.tenant_id,
        action_intent_id=row.action_intent_id,
        channel=row.channel,
        ts=row.ts,
        posted_at=row.posted_at,
    )


def _stored(row: Any) -> StoredNotifications:
    return StoredNotifications(
        tenant_id=row.tenant_id,
        settings=NotificationSettings.model_validate(row.settings),
        sealed={str(name): str(value) for name, value in (row.sealed or {}).items()},
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        revision=row.revision,
    )


class SqlNotificationsRepository:
    """The notifications repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get_settings(self, tenant_id: str) -> StoredNotifications | None:
        return get_settings(self._conn, tenant_id)

    def put_settings(
        self,
        tenant_id: str,
        settings: NotificationSettings,
        sealed: dict[str, str],
        *,
        now: str,
        updated_by: str,
    ) -> StoredNotifications:
        return put_settings(self._conn, tenant_id, settings, sealed, now=now, updated_by=updated_by)

    def tenants_with_channels(self) -> list[str]:
        return tenants_with_channels(self._conn)

    def all_sealed(self) -> dict[str, dict[str, str]]:
        return all_sealed(self._conn)

    def reseal(self, tenant_id: str, *, old: dict[str, str], new: dict[str, str]) -> bool:
        return reseal(self._conn, tenant_id, old=old, new=new)

    def record_slack_message(self, ref: SlackMessageRef) -> bool:
        return record_slack_message(self._conn, ref)

    def slack_message(self, tenant_id: str, action_intent_id: str) -> SlackMessageRef | None:
        return slack_message(self._conn, tenant_id, action_intent_id)
