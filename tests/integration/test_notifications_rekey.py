"""``fulfill credentials rekey`` reseals the notification channels' secrets too (Slack's bot token
and signing secret, each webhook's secret): after a key rotation, a service that holds only the
new key posts to Slack and verifies Slack's clicks (SQLite, and PostgreSQL on its pass)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.credentials.crypto import SecretBox, SecretsKeyError
from fulfill.domain.notifications import (
    SECRET_SLACK_BOT_TOKEN,
    SECRET_SLACK_SIGNING_SECRET,
    NotificationSettings,
    StoredNotifications,
    webhook_secret_name,
)
from fulfill.store import notifications as stored_notifications
from fulfill.store.sql_store import SqlStore
from fulfill.usecases.notifications import open_secret, put_notifications, rekey_secrets
from tests.support.harness import ALL_SCOPES, Harness, make_settings
from tests.support.http_doubles import wait_for
from tests.support.salesforce import OTHER_SECRETS_KEY, SECRETS_KEY
from tests.support.slack_server import SlackServer, block_actions_payload, signed_interaction

BOT_TOKEN = "xoxb-1111-2222-rekeyed"
SIGNING_SECRET = "5e1b7c0d9a8f4e3d2c1b0a9f8e7d6c5b"
HOOK_URL = "https://hooks.example.com/fulfill"
HOOK_SECRET = "rekeyed-webhook-secret-0123456789"
PROPOSER = "pat@acme.example"
NOW = "2026-01-01T00:00:00Z"


class Keys:
    """Settings that carry one ``FULFILL_SECRETS_KEY`` value (what the use cases read)."""

    def __init__(self, value: str) -> None:
        self.secrets_key = SecretStr(value)
        self.smtp_url = SecretStr("")


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackServer]:
    server = SlackServer(tokens=(BOT_TOKEN,))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, slack: SlackServer) -> Iterator[Harness]:
    """A service that holds only the NEW key: what runs once a rotation is over."""
    started = Harness(
        make_settings(
            tmp_path_factory.mktemp("notifications-rekey"),
            secrets_key=OTHER_SECRETS_KEY,
            slack_api_url=slack.api_url,
            public_url="https://fulfill.example.com",
        )
    ).start()
    try:
        yield started
    finally:
        started.stop()


def _channels(tenant: str) -> NotificationSettings:
    return NotificationSettings.model_validate(
        {
            "slack": {
                "bot_token": BOT_TOKEN,
                "signing_secret": SIGNING_SECRET,
                "channel": "C0APPROVALS",
                "users": {"U0ALICE": "alice@acme.example"},
            },
            "webhooks": [{"url": HOOK_URL, "secret": HOOK_SECRET}],
        }
    )


def _sealed_with_the_old_key(harness: Harness) -> str:
    """A tenant whose channels were put while the OLD key sealed."""
    tenant = f"rk{uuid.uuid4().hex[:10]}"
    put_notifications(
        SqlStore(harness.db), Keys(SECRETS_KEY), tenant, _channels(tenant), now=NOW, updated_by="admin"
    )
    return tenant


def _stored(harness: Harness, tenant: str) -> StoredNotifications:
    with harness.db.read() as conn:
        stored = stored_notifications.get_settings(conn, tenant)
    assert stored is not None
    return stored


def _rekey(harness: Harness, monkeypatch: pytest.MonkeyPatch, keys: str) -> str:
    monkeypatch.setenv("FULFILL_DATABASE_URL", harness.settings.database_url)
    monkeypatch.setenv("FULFILL_SECRETS_KEY", keys)
    result = CliRunner().invoke(app, ["credentials", "rekey"])
    assert result.exit_code == 0, result.output
    return result.output


def test_rekey_reseals_every_channel_secret_and_the_service_works_with_the_new_key_alone(
    harness: Harness, slack: SlackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = _sealed_with_the_old_key(harness)
    before = _stored(harness, tenant)
    new_only = Keys(OTHER_SECRETS_KEY)
    with pytest.raises(SecretsKeyError, match="does not hold"):
        open_secret(new_only, before, SECRET_SLACK_BOT_TOKEN)

    output = _rekey(harness, monkeypatch, f"{OTHER_SECRETS_KEY},{SECRETS_KEY}")
    assert "1 credential(s)" not in output  # none stored here
    assert "0 credential(s) and 0 gateway target secret(s) re-encrypted" in output
    assert "3 notification channel secret(s) re-encrypted" in output

    after = _stored(harness, tenant)
    new_key_id = SecretBox.from_setting(OTHER_SECRETS_KEY).primary_key_id
    assert sorted(after.sealed) == sorted(before.sealed)
    assert all(value.split(".")[1] == new_key_id for value in after.sealed.values())
    assert open_secret(new_only, after, SECRET_SLACK_BOT_TOKEN) == BOT_TOKEN
    assert open_secret(new_only, after, SECRET_SLACK_SIGNING_SECRET) == SIGNING_SECRET
    assert open_secret(new_only, after, webhook_secret_name(HOOK_URL)) == HOOK_SECRET
    # The channels themselves did not change.
    assert (after.settings, after.revision, after.updated_by) == (before.settings, before.revision, "admin")
    with pytest.raises(SecretsKeyError):
        open_secret(Keys(SECRETS_KEY), after, SECRET_SLACK_BOT_TOKEN)
    # Run again: nothing left to reseal.
    again = _rekey(harness, monkeypatch, f"{OTHER_SECRETS_KEY},{SECRETS_KEY}")
    assert "0 notification channel secret(s) re-encrypted" in again

    # The service, holding only the new key, posts with the bot token and verifies a click.
    with harness.client(tenant, ALL_SCOPES, subject=PROPOSER) as proposer:
        intent_id = str(harness.create_intent(proposer)["action_intent_id"])

    def posted() -> str | None:
        for call in list(slack.calls):
            if call.method == "chat.postMessage" and intent_id in json.dumps(call.arguments):
                return call.ts
        return None

    ts = wait_for(posted)
    payload = block_actions_payload(
        user_id="U0ALICE",
        action_id="approve",
        value=intent_id,
        message_ts=ts,
        response_url=f"{slack.url}/actions/{uuid.uuid4().hex}",
    )
    body, headers = signed_interaction(SIGNING_SECRET, payload)
    answer = httpx.post(
        f"{harness.url}/integrations/slack/{tenant}/interactions", content=body, headers=headers, timeout=30.0
    )
    assert answer.status_code == 200, answer.text

    def approved() -> dict[str, Any] | None:
        with harness.client(tenant, ALL_SCOPES) as reader:
            got = reader.get(f"/intents/{intent_id}")
        shown: dict[str, Any] = got.json()
        return shown if shown.get("approval_status") == "APPROVED" else None

    assert wait_for(approved)["approval_status"] == "APPROVED"


def test_rekey_never_overwrites_channels_put_meanwhile(harness: Harness) -> None:
    tenant = _sealed_with_the_old_key(harness)
    read = _stored(harness, tenant).sealed
    # The tenant's admin puts new secrets (with the new key) while a rekey is on its way.
    put_notifications(
        SqlStore(harness.db),
        Keys(f"{OTHER_SECRETS_KEY},{SECRETS_KEY}"),
        tenant,
        _channels(tenant),
        now=NOW,
        updated_by="admin",
    )
    written = _stored(harness, tenant).sealed
    with harness.db.write() as conn:
        assert not stored_notifications.reseal(conn, tenant, old=read, new=read)
    assert _stored(harness, tenant).sealed == written
    with harness.db.write() as conn:
        assert not stored_notifications.reseal(conn, "no-such-tenant", old=read, new=read)


def test_rekey_without_the_old_key_fails_and_changes_nothing(harness: Harness) -> None:
    tenant = _sealed_with_the_old_key(harness)
    before = _stored(harness, tenant)
    with pytest.raises(SecretsKeyError, match="does not hold"):
        rekey_secrets(SqlStore(harness.db), Keys(OTHER_SECRETS_KEY))
    assert _stored(harness, tenant).sealed == before.sealed
