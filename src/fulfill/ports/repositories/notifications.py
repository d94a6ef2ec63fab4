"""Tenants' notification channels and the Slack messages posted about intents: the repository port
(``store/notifications.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.notifications import NotificationSettings, SlackMessageRef, StoredNotifications


class NotificationsRepository(Protocol):
    def get_settings(self, tenant_id: str) -> StoredNotifications | None:
        """The tenant's channels; None when they were never written."""
        ...

    def put_settings(
        self,
        tenant_id: str,
        settings: NotificationSettings,
        sealed: dict[str, str],
        *,
        now: str,
        updated_by: str,
    ) -> StoredNotifications:
        """Replace the tenant's channels (settings without secrets, ``sealed`` the secrets)."""
        ...

    def tenants_with_channels(self) -> list[str]:
        """Every tenant with at least one channel configured, sorted."""
        ...

    def all_sealed(self) -> dict[str, dict[str, str]]:
        """Every tenant's sealed secrets (still sealed), by tenant; tenants without any left out."""
        ...

    def reseal(self, tenant_id: str, *, old: dict[str, str], new: dict[str, str]) -> bool:
        """Replace a tenant's sealed secrets only if they are still ``old`` (False: they changed
        meanwhile, or the tenant's channels are gone); settings and revision stay."""
        ...

    def record_slack_message(self, ref: SlackMessageRef) -> bool:
        """Keep where a notice about an intent was posted; the first post stays."""
        ...

    def slack_message(self, tenant_id: str, action_intent_id: str) -> SlackMessageRef | None: ...
