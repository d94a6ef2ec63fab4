"""Notification settings on a service that cannot keep secrets or send email (409s), and a
tenant's webhook to a private address, refused unless FULFILL_GATEWAY_EGRESS_ALLOW names it. Each
test runs its own service (one at a time: a process runs one engine)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.integration.test_notifications import (
    BOT_TOKEN,
    HOOK_SECRET,
    SIGNING_SECRET,
    _dead_letters,
    _put,
    _slack,
)
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import WebhookSink, wait_for
from tests.support.salesforce import SECRETS_KEY


def test_a_put_with_secrets_needs_the_secrets_key(tmp_path: Path) -> None:
    harness = Harness(make_settings(tmp_path)).start()
    try:
        with harness.client("t1") as client:
            answer = client.put("/admin/notifications", json={"slack": _slack()})
            assert answer.status_code == 409, answer.text
            assert answer.json()["code"] == "SECRETS_KEY_NOT_CONFIGURED"
            assert "FULFILL_SECRETS_KEY" in answer.json()["detail"]
            assert BOT_TOKEN not in answer.text
            assert SIGNING_SECRET not in answer.text
            # No SMTP on this service: an email channel is refused too.
            email = client.put("/admin/notifications", json={"email": {"to": ["a@example.com"]}})
            assert email.status_code == 409
            assert email.json()["code"] == "SMTP_NOT_CONFIGURED"
            assert client.get("/admin/notifications").json()["slack"] is None
    finally:
        harness.stop()


def test_a_webhook_to_a_private_address_is_refused_unless_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hook = WebhookSink()
    harness = Harness(
        make_settings(
            tmp_path, secrets_key=SECRETS_KEY, outbox_max_attempts=1, outbox_backoff_base_seconds=0.05
        )
    ).start()
    try:
        with harness.client("t1") as client:
            _put(client, {"webhooks": [{"url": hook.url, "secret": HOOK_SECRET}]})
            harness.create_intent(client)
            letters = wait_for(lambda: _dead_letters(client, "t1"))
        # Channels without FULFILL_PUBLIC_URL: the start says the notices carry no link.
        with caplog.at_level(logging.WARNING, logger="fulfill.service"):
            harness.service.prepare_database()
        assert "FULFILL_PUBLIC_URL is not set" in caplog.text
        assert letters[0]["last_error"].startswith("webhook address refused: 127.0.0.1 resolves to a")
        assert "FULFILL_GATEWAY_EGRESS_ALLOW" in letters[0]["last_error"]
        assert hook.deliveries == []
        assert hook.refused == 0
    finally:
        harness.stop()
        hook.close()
