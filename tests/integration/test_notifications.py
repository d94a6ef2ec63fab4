"""Notifications of what needs a person, end to end: a tenant admin configures its channels
(``/admin/notifications``, secrets sealed and never shown), and a proposal, a kill switch change
(the tenant's or the global one) reaches a local Slack-compatible API, a local SMTP server and a
local webhook on 127.0.0.1 through the outbox: retried, dead-lettered, each tenant only its own."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.domain.notifications import SlackMessageRef
from fulfill.domain.scopes import Scope
from fulfill.store import notifications as stored_notifications
from tests.support import plain_http
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import WebhookSink, wait_for
from tests.support.salesforce import SECRETS_KEY
from tests.support.slack_server import SlackServer
from tests.support.smtp_server import SmtpServer

BOT_TOKEN = "xoxb-1111-2222-good"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
HOOK_SECRET = "tenant-webhook-secret-0123456789"
PUBLIC_URL = "https://fulfill.example.com"
MAX_ATTEMPTS = 3


class World:
    def __init__(self, harness: Harness, slack: SlackServer, smtp: SmtpServer) -> None:
        self.harness = harness
        self.slack = slack
        self.smtp = smtp


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    slack = SlackServer(tokens=(BOT_TOKEN,), channels=("C0APPROVALS", "C0OTHER"))
    smtp = SmtpServer()
    harness = Harness(
        make_settings(
            tmp_path_factory.mktemp("notifications"),
            secrets_key=SECRETS_KEY,
            slack_api_url=slack.api_url,
            smtp_url=smtp.url,
            smtp_from="fulfill@example.com",
            public_url=PUBLIC_URL,
            gateway_egress_allow=["127.0.0.1"],
            outbox_max_attempts=MAX_ATTEMPTS,
            outbox_backoff_base_seconds=0.05,
            outbox_backoff_max_seconds=0.2,
        )
    ).start()
    try:
        yield World(harness, slack, smtp)
    finally:
        harness.stop()
        slack.close()
        smtp.close()


def _slack(channel: str = "C0APPROVALS", **extra: Any) -> dict[str, Any]:
    return {
        "bot_token": BOT_TOKEN,
        "signing_secret": SIGNING_SECRET,
        "channel": channel,
        "users": {"U0ALICE": "alice@example.com", "U0BOB": {"subject": "bob", "scopes": ["intents:approve"]}},
        **extra,
    }


def _put(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.put("/admin/notifications", json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _messages_about(slack: SlackServer, intent_id: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages() if intent_id in json.dumps(m)]


def _dead_letters(client: httpx.Client, tenant: str) -> list[dict[str, Any]]:
    answer = client.get(f"/admin/tenants/{tenant}/outbox/dead-letters")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["dead_letters"])


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    lowered = {k.lower(): v for k, v in headers.items()}
    expected = hmac.new(
        secret.encode(), lowered["x-fulfill-timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(lowered["x-fulfill-signature"], f"sha256={expected}")


# --- settings --------------------------------------------------------------------------------------


def test_get_shows_the_channels_and_never_a_secret(world: World) -> None:
    hook = WebhookSink()
    try:
        with world.harness.client("t-settings") as client:
            assert client.get("/admin/notifications").json()["slack"] is None
            body = {
                "slack": _slack(),
                "email": {"to": ["approvers@example.com"]},
                "webhooks": [{"url": hook.url, "secret": HOOK_SECRET}],
            }
            put = _put(client, body)
            got = client.get("/admin/notifications")
            assert got.status_code == 200
            assert got.json() == put
            shown = got.json()
            assert shown["slack"]["channel"] == "C0APPROVALS"
            assert shown["slack"]["bot_token_set"] is True
            assert shown["slack"]["signing_secret_set"] is True
            assert shown["slack"]["users"]["U0ALICE"] == "alice@example.com"
            assert shown["webhooks"] == [{"url": hook.url, "secret_set": True}]
            assert shown["email"] == {"to": ["approvers@example.com"]}
            assert shown["revision"] == 1
            assert shown["updated_by"]
            for secret in (BOT_TOKEN, SIGNING_SECRET, HOOK_SECRET):
                assert secret not in got.text
                assert secret not in json.dumps(put)
            # At rest: sealed, not in clear.
            with world.harness.db.read() as conn:
                stored = stored_notifications.get_settings(conn, "t-settings")
            assert stored is not None
            raw = json.dumps({"settings": stored.settings.model_dump(mode="json"), "sealed": stored.sealed})
            for secret in (BOT_TOKEN, SIGNING_SECRET, HOOK_SECRET):
                assert secret not in raw
            # A PUT without the secrets keeps the stored ones; a missing channel is turned off.
            kept = _put(client, {"slack": {"channel": "C0OTHER"}, "webhooks": [{"url": hook.url}]})
            assert kept["slack"]["bot_token_set"] is True
            assert kept["slack"]["channel"] == "C0OTHER"
            assert kept["webhooks"] == [{"url": hook.url, "secret_set": True}]
            assert kept["email"] is None
            assert kept["revision"] == 2
            off = _put(client, {})
            assert off["slack"] is None
            assert off["webhooks"] == []
            assert off["email"] is None
            # Nothing stored to keep: the secret is required.
            missing = client.put("/admin/notifications", json={"webhooks": [{"url": hook.url}]})
            assert missing.status_code == 422
            assert missing.json()["code"] == "NOTIFICATION_SECRET_REQUIRED"
    finally:
        hook.close()


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"slack": _slack(channel="#approvals")}, "channel"),
        ({"slack": {**_slack(), "bot_token": "xoxp-user-token"}}, "bot_token"),
        ({"slack": {**_slack(), "users": {"U0ALICE": {"subject": ""}}}}, "users"),
        ({"email": {"to": ["not an address"]}}, "to"),
        ({"webhooks": [{"url": "ftp://hooks.example.com/x", "secret": HOOK_SECRET}]}, "url"),
        ({"webhooks": [{"url": "https://user:pw@hooks.example.com/x", "secret": HOOK_SECRET}]}, "url"),
        (
            {"webhooks": [{"url": f"https://h{n}.example.com/", "secret": HOOK_SECRET} for n in range(11)]},
            "webhooks",
        ),
        ({"teams": {}}, "teams"),
    ],
)
def test_a_malformed_body_is_a_422_naming_the_field(world: World, body: dict[str, Any], where: str) -> None:
    with world.harness.client("t-malformed") as client:
        answer = client.put("/admin/notifications", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert where in answer.text
    for secret in (BOT_TOKEN, SIGNING_SECRET, HOOK_SECRET):
        assert secret not in answer.text


def test_tenant_isolation_and_scope(world: World) -> None:
    harness = world.harness
    hook = WebhookSink()
    try:
        with harness.client("t-iso-a") as a, harness.client("t-iso-b") as b:
            _put(a, {"webhooks": [{"url": hook.url, "secret": HOOK_SECRET}]})
            # Another tenant's admin sees and changes only its own.
            assert b.get("/admin/notifications").json()["webhooks"] == []
            _put(b, {})
            assert a.get("/admin/notifications").json()["webhooks"] == [{"url": hook.url, "secret_set": True}]
            # A proposal of tenant b reaches none of a's channels.
            b_intent = harness.create_intent(b)["action_intent_id"]
            a_intent = harness.create_intent(a)["action_intent_id"]
            wait_for(lambda: any(a_intent.encode() in d.body for d in hook.deliveries))
            assert not any(b_intent.encode() in d.body for d in hook.deliveries)
        # Without the admin scope: 403, for reading and for writing; no token: 401.
        scopes = [s.value for s in Scope if s not in (Scope.ADMIN,)]
        with harness.client("t-iso-a", scopes=scopes) as weak:
            assert weak.get("/admin/notifications").status_code == 403
            assert weak.put("/admin/notifications", json={}).status_code == 403
        assert plain_http.get(f"{harness.url}/admin/notifications").status_code == 401
        with harness.client("t-iso-a") as a:
            assert a.get("/admin/notifications").json()["webhooks"] == [{"url": hook.url, "secret_set": True}]
    finally:
        hook.close()


# --- delivery -------------------------------------------------------------------------------------


def test_a_proposal_posts_a_slack_message_with_both_buttons(world: World) -> None:
    harness, slack = world.harness, world.slack
    with harness.client("t-slack") as client:
        _put(client, {"slack": _slack()})
        intent = harness.create_intent(client, parameters={"title": "Call the customer", "notes": "x" * 500})
    intent_id = intent["action_intent_id"]
    proposed = time.monotonic()
    message = wait_for(lambda: _messages_about(slack, intent_id), interval=0.01)[0]
    print(f"\nthe Slack message arrived {time.monotonic() - proposed:.3f} s after POST /intents answered")
    assert message["channel"] == "C0APPROVALS"
    assert "Approval needed" in message["text"]
    blocks = message["blocks"]
    actions = [b for b in blocks if b["type"] == "actions"]
    assert len(actions) == 1
    buttons = {e["action_id"]: e for e in actions[0]["elements"]}
    assert set(buttons) == {"approve", "reject"}
    assert buttons["approve"]["value"] == intent_id
    assert buttons["reject"]["value"] == intent_id
    assert all(e["type"] == "button" for e in buttons.values())
    text = json.dumps(blocks, ensure_ascii=False)
    for fact in ("CREATE_INTERNAL_TASK", "acc-1", "Call the customer", intent["proposed_by"], "Risk"):
        assert fact in text, fact
    # The long parameter is cut, and the link opens the intent in the console.
    assert "x" * 300 not in text
    assert "…" in text
    assert f"{PUBLIC_URL}/console/executions/{intent_id}" in text

    # Where it was posted is kept (to update the message after a decision), right after Slack answers.
    def kept() -> SlackMessageRef | None:
        with harness.db.read() as conn:
            return stored_notifications.slack_message(conn, "t-slack", intent_id)

    ref = wait_for(kept)
    posted = next(call for call in slack.calls if intent_id in json.dumps(call.arguments))
    assert ref is not None
    assert (ref.channel, ref.ts) == ("C0APPROVALS", posted.ts)
    assert posted.token == BOT_TOKEN


def test_a_slack_refusal_is_retried_then_dead_lettered_with_slacks_error(world: World) -> None:
    harness, slack = world.harness, world.slack
    with harness.client("t-slack-refused") as client:
        _put(client, {"slack": _slack(channel="C0GONE")})  # a channel the server does not know
        intent_id = harness.create_intent(client)["action_intent_id"]
        letters = wait_for(lambda: _dead_letters(client, "t-slack-refused"))
    assert letters[0]["destination_kind"] == "slack"
    assert letters[0]["attempts"] == MAX_ATTEMPTS
    assert letters[0]["last_error"] == "slack refused: channel_not_found"
    assert letters[0]["topic"] == "NOTICE_APPROVAL_NEEDED"
    assert not _messages_about(slack, intent_id)


def test_slack_invalid_auth_then_recovers_once_redelivered(world: World) -> None:
    harness, slack = world.harness, world.slack
    with harness.client("t-slack-auth") as client:
        _put(client, {"slack": {**_slack(), "bot_token": "xoxb-revoked-token"}})
        intent_id = harness.create_intent(client)["action_intent_id"]
        letters = wait_for(lambda: _dead_letters(client, "t-slack-auth"))
        assert letters[0]["last_error"] == "slack refused: invalid_auth"
        # A new token, and the dead letter redelivered: the message arrives.
        _put(client, {"slack": {**_slack(), "bot_token": BOT_TOKEN}})
        answer = client.post("/admin/tenants/t-slack-auth/outbox/dead-letters/redeliver", json={})
        assert answer.status_code == 200
        assert answer.json()["redelivered"]
    wait_for(lambda: _messages_about(slack, intent_id))


def test_slack_rate_limit_waits_for_retry_after(world: World) -> None:
    harness, slack = world.harness, world.slack
    with harness.client("t-slack-429") as client:
        _put(client, {"slack": _slack()})
        slack.rate_limit_next(retry_after=2)
        started = time.monotonic()
        intent_id = harness.create_intent(client)["action_intent_id"]
        wait_for(lambda: _messages_about(slack, intent_id))
    waited = time.monotonic() - started
    assert ("chat.postMessage", "ratelimited") in slack.refused
    # The backoff alone would have tried again after 0.05 s; Retry-After said 2 s.
    assert waited >= 1.9, waited


def test_an_email_arrives_naming_the_intent(world: World) -> None:
    harness, smtp = world.harness, world.smtp
    with harness.client("t-email") as client:
        _put(client, {"email": {"to": ["approvers@example.com", "second@example.com"]}})
        intent_id = harness.create_intent(client)["action_intent_id"]

    def arrived() -> list[Any]:
        return [m for m in smtp.messages if intent_id in str(m.message["Subject"])]

    # One message per recipient (each with its own single-use link).
    both = wait_for(lambda: arrived() if len(arrived()) == 2 else None)
    assert sorted(r.rcpt_tos[0] for r in both) == ["approvers@example.com", "second@example.com"]
    assert all(len(r.rcpt_tos) == 1 and r.message["To"] == r.rcpt_tos[0] for r in both)
    received = both[0]
    assert received.mail_from == "fulfill@example.com"
    message = received.message
    assert intent_id in message["Subject"]
    assert "Approval needed" in message["Subject"]
    assert message["X-Fulfill-Intent-Id"] == intent_id
    body = message.get_content()
    assert "CREATE_INTERNAL_TASK" in body
    assert "acc-1" in body
    assert f"{PUBLIC_URL}/console/open?link=" in body


def test_a_webhook_is_signed_with_the_tenants_secret_and_retried(world: World) -> None:
    harness = world.harness
    hook = WebhookSink(refuse=1)
    try:
        with harness.client("t-hook") as client:
            _put(client, {"webhooks": [{"url": hook.url, "secret": HOOK_SECRET}]})
            intent_id = harness.create_intent(client)["action_intent_id"]
        wait_for(lambda: hook.deliveries)
        assert hook.refused == 1
        delivery = hook.deliveries[0]
        assert _verify(HOOK_SECRET, delivery.headers, delivery.body)
        assert not _verify(
            harness.settings.webhook_secret or "other-secret-000", delivery.headers, delivery.body
        )
        body = json.loads(delivery.body)
        assert body["type"] == "APPROVAL_NEEDED"
        assert body["action_intent_id"] == intent_id
        assert body["tenant_id"] == "t-hook"
        assert body["console_url"] == f"{PUBLIC_URL}/console/executions/{intent_id}"
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        assert headers["x-fulfill-event-type"] == "APPROVAL_NEEDED"
        assert headers["x-fulfill-event-id"].startswith("ntc_")
    finally:
        hook.close()


def test_a_webhook_refusing_every_try_is_dead_lettered(world: World) -> None:
    harness = world.harness
    hook = WebhookSink(refuse=1000)
    try:
        with harness.client("t-hook-dead") as client:
            _put(client, {"webhooks": [{"url": hook.url, "secret": HOOK_SECRET}]})
            harness.create_intent(client)
            letters = wait_for(lambda: _dead_letters(client, "t-hook-dead"))
        assert letters[0]["destination_kind"] == "notify_webhook"
        assert letters[0]["destination"] is None  # a tenant admin sees the kind only
        assert letters[0]["attempts"] == MAX_ATTEMPTS == hook.refused
        assert letters[0]["last_error"] == "webhook answered HTTP 500"
    finally:
        hook.close()


def test_kill_switch_changes_are_notified(world: World) -> None:
    harness = world.harness
    mine, other = WebhookSink(), WebhookSink()
    try:
        with harness.client("t-switch") as client, harness.client("t-switch-2") as second:
            _put(client, {"webhooks": [{"url": mine.url, "secret": HOOK_SECRET}]})
            _put(second, {"webhooks": [{"url": other.url, "secret": HOOK_SECRET}]})
            answer = client.put(
                "/admin/tenants/t-switch/execution",
                json={"execution_enabled": False, "disabled_action_types": []},
            )
            assert answer.status_code == 200

            def kinds(sink: WebhookSink) -> list[dict[str, Any]]:
                bodies = [json.loads(d.body) for d in list(sink.deliveries)]
                return [b for b in bodies if b["type"] == "KILL_SWITCH_CHANGED"]

            tenant_notice = wait_for(lambda: kinds(mine))[0]
            assert "STOPPED" in tenant_notice["summary"]
            assert tenant_notice["tenant_id"] == "t-switch"
            assert tenant_notice["console_url"] == f"{PUBLIC_URL}/console/kill-switches"
            time.sleep(0.5)
            assert kinds(other) == []  # another tenant's switch is not its business
            # The global switch: every tenant with a channel hears of it.
            for stop in (True, False):
                body = {"global_stop": stop, "disabled_action_types": []}
                assert client.put("/admin/kill-switches", json=body).status_code == 200
            wait_for(lambda: len(kinds(other)) == 2 and len(kinds(mine)) == 3)
            assert any("global kill switch is now STOPPED" in b["summary"] for b in kinds(other))
            client.put(
                "/admin/tenants/t-switch/execution",
                json={"execution_enabled": True, "disabled_action_types": []},
            )
    finally:
        mine.close()
        other.close()


# --- the command line: both operators ---------------------------------------------------------------


def test_the_cli_sets_and_shows_channels_through_the_api_and_on_the_database(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = world.harness.settings
    monkeypatch.setenv("FULFILL_JWT_SECRET", settings.jwt_secret)
    monkeypatch.setenv("FULFILL_SECRETS_KEY", SECRETS_KEY)
    monkeypatch.setenv("FULFILL_SMTP_URL", world.smtp.url)
    monkeypatch.delenv("FULFILL_URL", raising=False)
    monkeypatch.delenv("FULFILL_TOKEN", raising=False)
    channels = tmp_path / "channels.json"
    channels.write_text(json.dumps({"slack": _slack(), "email": {"to": ["ops@example.com"]}}))
    runner = CliRunner()
    via_api = ["--tenant", "t-cli", "--url", world.harness.url]
    via_db = ["--tenant", "t-cli", "--db", settings.database_url]

    result = runner.invoke(app, ["notifications", "set", "--file", str(channels), *via_api])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["slack"]["bot_token_set"] is True
    for secret in (BOT_TOKEN, SIGNING_SECRET):
        assert secret not in result.output
    shown = runner.invoke(app, ["notifications", "show", *via_db])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == json.loads(result.stdout)

    # On the database: a file without the secrets keeps them; the API reads back the same.
    channels.write_text(json.dumps({"slack": {"channel": "C0OTHER"}}))
    changed = runner.invoke(app, ["notifications", "set", "--file", str(channels), *via_db])
    assert changed.exit_code == 0, changed.output
    from_api = runner.invoke(app, ["notifications", "show", *via_api])
    view = json.loads(from_api.stdout)
    assert view == json.loads(changed.stdout)
    assert view["slack"]["channel"] == "C0OTHER"
    assert view["slack"]["bot_token_set"] is True
    assert view["email"] is None
    assert view["updated_by"] == "fulfill-cli (database)"

    # A malformed file is refused without quoting it.
    channels.write_text(json.dumps({"slack": {**_slack(), "channel": "#general"}}))
    refused = runner.invoke(app, ["notifications", "set", "--file", str(channels), *via_api])
    assert refused.exit_code == 2
    assert "slack.channel" in refused.output
    assert BOT_TOKEN not in refused.output
