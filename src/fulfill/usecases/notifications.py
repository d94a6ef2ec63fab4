"""A tenant's notification channels (``GET/PUT /admin/notifications``, ``fulfill notifications``),
and the one seam that notifies: :func:`enqueue_notices`.

Settings. The tenant is always the caller's (the token's; from the command line the ``--tenant``
of an operator who can reach the database). The secrets (Slack's ``bot_token`` and
``signing_secret``, each webhook's ``secret``) are sealed with ``FULFILL_SECRETS_KEY`` like
connector credentials and never leave again: the answer says ``bot_token_set`` and the like. A
PUT that carries a secret on a service without that key is a 409 naming it. A PUT may leave a
secret out to keep the stored one (Slack's, or the webhook's of the same URL).

Notifying. :func:`enqueue_notices` writes one outbox message for the notice, with one delivery
per configured channel (``slack:<tenant>``, ``email:<tenant>``, ``notify:<tenant>:<n>``), in the
caller's transaction: the notice is sent if and only if what it tells was committed. The outbox
relay delivers each one (``engine/notify.py``), retried with backoff and dead-lettered as any
other delivery, each channel on a lane of its own.

What the Slack interaction endpoint (``POST /integrations/slack/{tenant_id}/interactions``) needs
from here: :func:`channels_of` (the stored settings), :func:`open_secret` with
:data:`SECRET_SLACK_SIGNING_SECRET` (to verify a request) and :data:`SECRET_SLACK_BOT_TOKEN` (to
update the message), :func:`slack_user` (the mapping of a Slack user to a subject and scopes),
``uow.notifications.slack_message`` (the ``channel`` and ``ts`` where the message about an intent
was posted) and ``domain.notifications.slack_message(notice, ..., decided="Approved by …")`` (the
message after a decision, for ``chat.update`` with ``slack_sdk.WebClient(token,
base_url=FULFILL_SLACK_API_URL)``). ``tests/support/slack_server.py`` answers ``chat.update`` and
signs interaction callbacks as Slack does (``signed_interaction``, ``block_actions_payload``).
"""

from __future__ import annotations

import logging
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from fulfill.credentials.crypto import SecretBox
from fulfill.domain.killswitch import StoredSwitches
from fulfill.domain.models import ActionIntentV1, ApprovalStatus
from fulfill.domain.notifications import (
    SECRET_SLACK_BOT_TOKEN,
    SECRET_SLACK_SIGNING_SECRET,
    Notice,
    NotificationSettings,
    SlackSettings,
    SlackUser,
    StoredNotifications,
    approval_needed_notice,
    destinations_of,
    kill_switch_notice,
    secret_associated_data,
    webhook_secret_name,
)
from fulfill.domain.scopes import Scope
from fulfill.domain.time import epoch_from_iso
from fulfill.ports.store import Store, UnitOfWork
from fulfill.usecases.errors import Conflict, Invalid

log = logging.getLogger(__name__)

__all__ = [
    "SECRET_SLACK_BOT_TOKEN",
    "SECRET_SLACK_SIGNING_SECRET",
    "NoticeSettings",
    "NotificationsView",
    "channels_of",
    "enqueue_kill_switch_notices",
    "enqueue_notices",
    "enqueue_proposal_notice",
    "get_notifications",
    "open_secret",
    "put_notifications",
    "slack_user",
]


class NoticeSettings(Protocol):
    """The settings :func:`enqueue_notices` reads (``fulfill.config.Settings`` has them)."""

    @property
    def smtp_url(self) -> SecretStr: ...


class SecretsSettings(Protocol):
    @property
    def secrets_key(self) -> SecretStr: ...


class PutSettings(Protocol):
    @property
    def secrets_key(self) -> SecretStr: ...
    @property
    def smtp_url(self) -> SecretStr: ...


# --- the answers -----------------------------------------------------------------------------


class SlackView(BaseModel):
    channel: str
    users: dict[str, str | SlackUser]
    bot_token_set: bool
    signing_secret_set: bool


class WebhookView(BaseModel):
    url: str
    secret_set: bool


class EmailView(BaseModel):
    to: list[str]


class NotificationsView(BaseModel):
    """``GET/PUT /admin/notifications``: the channels without a secret."""

    model_config = ConfigDict(extra="forbid")

    slack: SlackView | None = None
    email: EmailView | None = None
    webhooks: list[WebhookView] = Field(default_factory=list)
    revision: int = 0
    updated_at: str | None = None
    updated_by: str | None = None

    @classmethod
    def of(cls, stored: StoredNotifications | None) -> NotificationsView:
        if stored is None:
            return cls()
        settings = stored.settings
        slack = None
        if settings.slack is not None:
            slack = SlackView(
                channel=settings.slack.channel,
                users=dict(settings.slack.users),
                bot_token_set=SECRET_SLACK_BOT_TOKEN in stored.sealed,
                signing_secret_set=SECRET_SLACK_SIGNING_SECRET in stored.sealed,
            )
        return cls(
            slack=slack,
            email=EmailView(to=list(settings.email.to)) if settings.email is not None else None,
            webhooks=[
                WebhookView(url=hook.url, secret_set=webhook_secret_name(hook.url) in stored.sealed)
                for hook in settings.webhooks
            ],
            revision=stored.revision,
            updated_at=stored.updated_at,
            updated_by=stored.updated_by,
        )


# --- reading and writing the settings ----------------------------------------------------------


def secret_box(settings: SecretsSettings) -> SecretBox:
    return SecretBox.from_setting(settings.secrets_key.get_secret_value())


def channels_of(store: Store, tenant_id: str) -> StoredNotifications | None:
    with store.read() as uow:
        return uow.notifications.get_settings(tenant_id)


def get_notifications(store: Store, tenant_id: str) -> NotificationsView:
    return NotificationsView.of(channels_of(store, tenant_id))


def put_notifications(
    store: Store,
    settings: PutSettings,
    tenant_id: str,
    body: NotificationSettings,
    *,
    now: str,
    updated_by: str,
) -> NotificationsView:
    """Replace the tenant's channels with ``body`` (a missing channel is turned off)."""
    if body.email is not None and not settings.smtp_url.get_secret_value():
        raise Conflict(
            "FULFILL_SMTP_URL is not set: this service sends no email, so an email channel cannot be "
            "configured",
            code="SMTP_NOT_CONFIGURED",
        )
    box = secret_box(settings)
    given: dict[str, str] = {}
    if body.slack is not None:
        for name, value in (
            (SECRET_SLACK_BOT_TOKEN, body.slack.bot_token),
            (SECRET_SLACK_SIGNING_SECRET, body.slack.signing_secret),
        ):
            if value is not None:
                given[name] = value
    for hook in body.webhooks:
        if hook.secret is not None:
            given[webhook_secret_name(hook.url)] = hook.secret
    if given and not box.configured:
        raise Conflict(
            "FULFILL_SECRETS_KEY is not set: this service cannot store the channels' secrets "
            f"({', '.join(sorted(_field_of(name) for name in given))})",
            code="SECRETS_KEY_NOT_CONFIGURED",
        )
    with store.write() as uow:
        previous = uow.notifications.get_settings(tenant_id)
        kept = previous.sealed if previous is not None else {}
        sealed: dict[str, str] = {}
        for name in _wanted_secrets(body):
            if name in given:
                sealed[name] = box.seal(given[name].encode(), secret_associated_data(tenant_id, name))
            elif name in kept:
                sealed[name] = kept[name]
            else:
                raise Invalid(
                    f"{_field_of(name)} is required (none is stored to keep)",
                    code="NOTIFICATION_SECRET_REQUIRED",
                )
        stored = uow.notifications.put_settings(
            tenant_id, _without_secrets(body), sealed, now=now, updated_by=updated_by
        )
    return NotificationsView.of(stored)


def _wanted_secrets(body: NotificationSettings) -> list[str]:
    names = [SECRET_SLACK_BOT_TOKEN, SECRET_SLACK_SIGNING_SECRET] if body.slack is not None else []
    return names + [webhook_secret_name(hook.url) for hook in body.webhooks]


def _field_of(name: str) -> str:
    """The body's field a secret's name stands for (never its value)."""
    if name.startswith("webhook:"):
        return f"the secret of webhook {name[len('webhook:') :]}"
    return name


def _without_secrets(body: NotificationSettings) -> NotificationSettings:
    slack = body.slack.model_copy(update={"bot_token": None, "signing_secret": None}) if body.slack else None
    hooks = [hook.model_copy(update={"secret": None}) for hook in body.webhooks]
    return body.model_copy(update={"slack": slack, "webhooks": hooks})


def open_secret(settings: SecretsSettings, stored: StoredNotifications, name: str) -> str | None:
    """A stored secret in clear (None when none is stored); ``SecretsKeyError`` when the
    configured key does not open it. Never log what it returns."""
    sealed = stored.sealed.get(name)
    if sealed is None:
        return None
    return secret_box(settings).open(sealed, secret_associated_data(stored.tenant_id, name)).decode()


def rekey_secrets(store: Store, settings: SecretsSettings) -> int:
    """Seal every tenant's channel secrets with the first key of ``FULFILL_SECRETS_KEY`` (after a
    key rotation, as ``fulfill credentials rekey`` does for connector credentials); returns how
    many secrets changed. Each tenant is written in a transaction of its own, and only if its
    secrets are still the ones that were read (channels put meanwhile stay as they were put).
    ``SecretsKeyError`` when a secret was sealed with a key no longer configured."""
    box = secret_box(settings)
    with store.read() as uow:
        stored = uow.notifications.all_sealed()
    changed = 0
    for tenant_id, sealed in sorted(stored.items()):
        stale = [name for name, value in sealed.items() if _sealed_by(value) != box.primary_key_id]
        if not stale:
            continue
        resealed = dict(sealed)
        for name in stale:
            opened = box.open(sealed[name], secret_associated_data(tenant_id, name))
            resealed[name] = box.seal(opened, secret_associated_data(tenant_id, name))
        with store.write() as uow:
            if uow.notifications.reseal(tenant_id, old=sealed, new=resealed):
                changed += len(stale)
    return changed


def _sealed_by(sealed: str) -> str:
    """The id of the key a sealed value names (``v1.{key_id}.…``); "" when it names none."""
    parts = sealed.split(".", 2)
    return parts[1] if len(parts) == 3 else ""


def slack_user(slack: SlackSettings, user_id: str) -> SlackUser | None:
    """Who a Slack user acts as: a mapping to a plain subject holds ``intents:approve`` of the
    tenant; ``{subject, scopes}`` holds those scopes (``intents:approve`` when none are named).
    None: the user is not mapped."""
    mapped = slack.users.get(user_id)
    if mapped is None:
        return None
    if isinstance(mapped, str):
        return SlackUser(subject=mapped, scopes=[Scope.INTENTS_APPROVE.value])
    if not mapped.scopes:
        return mapped.model_copy(update={"scopes": [Scope.INTENTS_APPROVE.value]})
    return mapped


# --- notifying: in the caller's transaction --------------------------------------------------------


def enqueue_notices(uow: UnitOfWork, settings: NoticeSettings, notice: Notice) -> list[str]:
    """Put ``notice`` in the outbox for each channel its tenant has configured, in the caller's
    transaction; returns the destinations ([] when the tenant has none, or the notice was already
    queued). Email only when the service has SMTP (``FULFILL_SMTP_URL``)."""
    stored = uow.notifications.get_settings(notice.tenant_id)
    if stored is None or not stored.settings.configured():
        return []
    email_ready = bool(settings.smtp_url.get_secret_value())
    if stored.settings.email is not None and not email_ready:
        log.warning(
            "tenant %s has an email channel but FULFILL_SMTP_URL is not set: no email", notice.tenant_id
        )
    destinations = destinations_of(notice.tenant_id, stored.settings, email_ready=email_ready)
    now_epoch = epoch_from_iso(notice.occurred_at)
    queued = uow.outbox.enqueue(
        message_id=notice.message_id(),
        topic=notice.topic,
        tenant_id=notice.tenant_id,
        payload=notice.model_dump(mode="json"),
        destinations=destinations,
        now=notice.occurred_at,
        now_epoch=now_epoch,
    )
    return destinations if queued else []


def enqueue_proposal_notice(uow: UnitOfWork, settings: NoticeSettings, intent: ActionIntentV1) -> None:
    """``APPROVAL_NEEDED`` for an intent stored PENDING_APPROVAL (nothing for any other status)."""
    if intent.approval_status is ApprovalStatus.PENDING_APPROVAL:
        enqueue_notices(uow, settings, approval_needed_notice(intent, occurred_at=intent.created_at))


def enqueue_kill_switch_notices(
    uow: UnitOfWork, settings: NoticeSettings, switches: StoredSwitches, *, changed_by: str, now: str
) -> None:
    """``KILL_SWITCH_CHANGED``: a tenant's switches to that tenant, the global ones to every tenant
    with a channel configured."""
    tenants = (
        uow.notifications.tenants_with_channels()
        if switches.scope.tenant_id is None
        else [switches.scope.tenant_id]
    )
    for tenant_id in tenants:
        enqueue_notices(
            uow, settings, kill_switch_notice(tenant_id, switches, changed_by=changed_by, occurred_at=now)
        )
