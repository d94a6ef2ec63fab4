"""``uow.notifications`` in memory (``fulfill.store.notifications``)."""

from __future__ import annotations

from dataclasses import replace

from fulfill.domain.notifications import NotificationSettings, SlackMessageRef, StoredNotifications
from tests.support.memory_store.tables import Tables


class MemoryNotificationsRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def get_settings(self, tenant_id: str) -> StoredNotifications | None:
        stored: StoredNotifications | None = self._t.notifications.get(tenant_id)
        return stored

    def put_settings(
        self,
        tenant_id: str,
        settings: NotificationSettings,
        sealed: dict[str, str],
        *,
        now: str,
        updated_by: str,
    ) -> StoredNotifications:
        previous = self.get_settings(tenant_id)
        stored = StoredNotifications(
            tenant_id=tenant_id,
            settings=NotificationSettings.model_validate(settings.model_dump(mode="json", exclude_none=True)),
            sealed=dict(sealed),
            updated_at=now,
            updated_by=updated_by,
            revision=(previous.revision if previous is not None else 0) + 1,
        )
        self._t.notifications[tenant_id] = stored
        return replace(stored)

    def tenants_with_channels(self) -> list[str]:
        rows: list[StoredNotifications] = list(self._t.notifications.values())
        return sorted(row.tenant_id for row in rows if row.settings.configured())

    def all_sealed(self) -> dict[str, dict[str, str]]:
        rows: list[StoredNotifications] = list(self._t.notifications.values())
        return {row.tenant_id: dict(row.sealed) for row in rows if row.sealed}

    def reseal(self, tenant_id: str, *, old: dict[str, str], new: dict[str, str]) -> bool:
        stored: StoredNotifications | None = self._t.notifications.get(tenant_id)
        if stored is None or stored.sealed != old:
            return False
        self._t.notifications[tenant_id] = replace(stored, sealed=dict(new))
        return True

    def record_slack_message(self, ref: SlackMessageRef) -> bool:
        key = (ref.tenant_id, ref.action_intent_id)
        if key in self._t.slack_messages:
            return False
        self._t.slack_messages[key] = ref
        return True

    def slack_message(self, tenant_id: str, action_intent_id: str) -> SlackMessageRef | None:
        ref: SlackMessageRef | None = self._t.slack_messages.get((tenant_id, action_intent_id))
        return ref
