"""A click in Slack decides, over a real service (SQLite, and PostgreSQL on its pass): the local
Slack-compatible server receives the proposal's message, a click signed as Slack signs it
(``tests/support/slack_server.py``) approves or rejects through the same rules as the API, the
execution runs at once, and the message is updated. Anything not Slack's (bad or stale
signature) is a 401 and changes nothing; a click the rules refuse changes nothing and the user is
told why, in Slack."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from fulfill.domain.models import ActionIntentV1
from fulfill.store import executions as ledger_store
from fulfill.store import intents as intent_store
from fulfill.store import notifications as stored_notifications
from tests.support import plain_http
from tests.support.harness import ALL_SCOPES, Harness, make_settings
from tests.support.http_doubles import WebhookSink, wait_for
from tests.support.salesforce import SECRETS_KEY
from tests.support.slack_server import SlackServer, block_actions_payload, signed_interaction

BOT_TOKEN = "xoxb-1111-2222-interactions"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PUBLIC_URL = "https://fulfill.example.com"
PROPOSER = "pat@acme.example"
APPROVER_SCOPE = "approvers:crm"
USERS: dict[str, Any] = {
    "U0ALICE": "alice@acme.example",
    "U0BOB": {"subject": "bob@acme.example", "scopes": ["intents:approve"]},
    "U0CAROL": {"subject": "carol@acme.example", "scopes": ["intents:approve", APPROVER_SCOPE]},
    "U0PAT": PROPOSER,  # the proposer's own Slack user
    "U0READER": {"subject": "reader@acme.example", "scopes": ["intents:read"]},
}


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackServer]:
    server = SlackServer(tokens=(BOT_TOKEN,))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, slack: SlackServer) -> Iterator[Harness]:
    started = Harness(
        make_settings(
            tmp_path_factory.mktemp("slack-interactions"),
            secrets_key=SECRETS_KEY,
            slack_api_url=slack.api_url,
            public_url=PUBLIC_URL,
        )
    ).start()
    try:
        yield started
    finally:
        started.stop()


class Tenant:
    """One test's tenant, with Slack configured, on the module's service."""

    def __init__(self, harness: Harness, slack: SlackServer, *, users: dict[str, Any] | None = None) -> None:
        self.harness = harness
        self.slack = slack
        self.id = f"sl{uuid.uuid4().hex[:10]}"
        body = {
            "slack": {
                "bot_token": BOT_TOKEN,
                "signing_secret": SIGNING_SECRET,
                "channel": "C0APPROVALS",
                "users": USERS if users is None else users,
            }
        }
        with self.client(PROPOSER) as admin:
            answer = admin.put("/admin/notifications", json=body)
        assert answer.status_code == 200, answer.text

    def client(self, subject: str) -> httpx.Client:
        return self.harness.client(self.id, ALL_SCOPES, subject=subject)

    def policy(self, **rule: Any) -> None:
        body = {
            "name": "internal tasks need approvers",
            "match": {"action_types": ["CREATE_INTERNAL_TASK"]},
            "decision": "REQUIRE_APPROVAL",
            **rule,
        }
        with self.client("admin@acme.example") as admin:
            created = admin.post("/admin/policies", json=body)
        assert created.status_code == 201, created.text

    def propose(self) -> tuple[str, str]:
        """A new pending intent proposed by PROPOSER, and the ``ts`` of its Slack message."""
        with self.client(PROPOSER) as proposer:
            intent_id = str(self.harness.create_intent(proposer)["action_intent_id"])
        posted = wait_for(lambda: self._posted(intent_id), interval=0.01)
        # The channel and ts are kept right after Slack answers (to update the message).
        wait_for(lambda: self._kept(intent_id))
        return intent_id, posted

    def _posted(self, intent_id: str) -> str | None:
        for call in list(self.slack.calls):
            if call.method == "chat.postMessage" and intent_id in json.dumps(call.arguments):
                return call.ts
        return None

    def _kept(self, intent_id: str) -> bool:
        with self.harness.db.read() as conn:
            return stored_notifications.slack_message(conn, self.id, intent_id) is not None

    def click(
        self,
        user_id: str,
        intent_id: str,
        action: str = "approve",
        *,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
        tenant: str | None = None,
        ts: str = "1700000000.000001",
    ) -> tuple[httpx.Response, str]:
        """Slack's POST for ``user_id`` clicking ``action``; the answer and the click's response_url."""
        response_url = f"{self.slack.url}/actions/{uuid.uuid4().hex}"
        payload = block_actions_payload(
            user_id=user_id, action_id=action, value=intent_id, message_ts=ts, response_url=response_url
        )
        body, headers = signed_interaction(secret, payload, timestamp=timestamp)
        answer = httpx.post(
            f"{self.harness.url}/integrations/slack/{tenant or self.id}/interactions",
            content=body,
            headers=headers,
            timeout=30.0,
        )
        return answer, response_url

    def stored(self, intent_id: str) -> ActionIntentV1:
        with self.harness.db.read() as conn:
            intent = intent_store.get_intent(conn, self.id, intent_id)
        assert intent is not None
        return intent

    def ledger(self, intent_id: str, event_type: str) -> list[Any]:
        with self.harness.db.read() as conn:
            entries = ledger_store.list_ledger(conn, self.id, intent_id)
        return [e for e in entries if e.event_type == event_type]

    def updates(self, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages("chat.update") if m.get("ts") == ts]

    def told(self, response_url: str) -> str:
        """What the clicking user was told (an ephemeral reply through the response_url)."""
        path = response_url.removeprefix(self.slack.url)

        def reply() -> dict[str, Any] | None:
            for entry in list(self.slack.responses):
                if entry.get("_path") == path:
                    return entry
            return None

        entry = wait_for(reply)
        assert entry["response_type"] == "ephemeral"
        assert entry["replace_original"] is False
        return str(entry["text"])


def _text(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks", []), ensure_ascii=False) + str(message.get("text", ""))


def _buttons(message: dict[str, Any]) -> list[str]:
    return [
        element["action_id"]
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


def _nothing_ran(tenant: Tenant, intent_id: str) -> None:
    stored = tenant.stored(intent_id)
    assert stored.approval_status.value == "PENDING_APPROVAL"
    assert stored.approvals == []
    assert tenant.harness.outcome_rows(intent_id) == 0
    assert tenant.harness.task_rows(intent_id) == 0
    assert tenant.ledger(intent_id, "ACTION_APPROVED") == []


# --- a click decides ----------------------------------------------------------------------------


def test_a_signed_click_approves_and_the_intent_runs(harness: Harness, slack: SlackServer) -> None:
    tenant = Tenant(harness, slack)
    intent_id, ts = tenant.propose()
    started = time.monotonic()
    answer, _ = tenant.click("U0ALICE", intent_id)
    assert answer.status_code == 200, answer.text
    assert answer.content == b""
    print(f"\nthe click was answered in {time.monotonic() - started:.3f} s")
    # Decided in the answer's transaction: approved by the mapped subject, the execution started.
    stored = tenant.stored(intent_id)
    assert stored.approval_status.value == "APPROVED"
    assert stored.approved_by == "alice@acme.example"
    approved = tenant.ledger(intent_id, "ACTION_APPROVED")
    assert len(approved) == 1
    assert "U0ALICE" in json.dumps(approved[0].model_dump(mode="json"))  # which Slack user clicked
    with tenant.client(PROPOSER) as client:
        status = harness.wait_terminal(client, intent_id)
    assert status["status"] == "SUCCEEDED"
    print(f"the intent SUCCEEDED {time.monotonic() - started:.3f} s after the click")
    assert harness.task_rows(intent_id) == 1
    # The message is updated where it was posted: who decided, no buttons any more.
    update = wait_for(lambda: tenant.updates(ts))[0]
    assert update["channel"] == "C0APPROVALS"
    assert "Approved by alice@acme.example" in _text(update)
    assert _buttons(update) == []
    assert f"{PUBLIC_URL}/console/executions/{intent_id}" in _text(update)


def test_a_signed_click_rejects(harness: Harness, slack: SlackServer) -> None:
    tenant = Tenant(harness, slack)
    intent_id, ts = tenant.propose()
    answer, _ = tenant.click("U0BOB", intent_id, "reject")
    assert answer.status_code == 200, answer.text
    stored = tenant.stored(intent_id)
    assert stored.approval_status.value == "REJECTED"
    rejected = tenant.ledger(intent_id, "INTENT_REJECTED")
    assert len(rejected) == 1
    update = wait_for(lambda: tenant.updates(ts))[0]
    assert "Rejected by bob@acme.example" in _text(update)
    assert _buttons(update) == []
    assert harness.outcome_rows(intent_id) == 0


def test_a_duplicate_click_approves_once(harness: Harness, slack: SlackServer) -> None:
    tenant = Tenant(harness, slack)
    intent_id, _ = tenant.propose()
    first, _ = tenant.click("U0ALICE", intent_id)
    again, _ = tenant.click("U0ALICE", intent_id)  # Slack retries, or a second click
    other, _ = tenant.click("U0BOB", intent_id)  # a colleague clicks too late
    assert (first.status_code, again.status_code, other.status_code) == (200, 200, 200)
    with tenant.client(PROPOSER) as client:
        assert harness.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    stored = tenant.stored(intent_id)
    assert stored.approved_by == "alice@acme.example"
    assert len(tenant.ledger(intent_id, "ACTION_APPROVED")) == 1
    assert harness.task_rows(intent_id) == 1
    assert harness.outcome_rows(intent_id) == 1


def test_concurrent_clicks_of_two_people_on_two_of_n_start_one_execution(
    harness: Harness, slack: SlackServer
) -> None:
    tenant = Tenant(harness, slack)
    tenant.policy(approvals_required=2)
    intent_id, _ = tenant.propose()
    users = ["U0ALICE", "U0BOB"] * 5
    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        answers = list(pool.map(lambda user: tenant.click(user, intent_id)[0], users))
    assert [a.status_code for a in answers] == [200] * len(users)
    with tenant.client(PROPOSER) as client:
        assert harness.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    stored = tenant.stored(intent_id)
    assert sorted(a.approved_by for a in stored.approvals) == ["alice@acme.example", "bob@acme.example"]
    assert len(tenant.ledger(intent_id, "APPROVAL_RECORDED")) == 1
    assert len(tenant.ledger(intent_id, "ACTION_APPROVED")) == 1
    assert harness.task_rows(intent_id) == 1


def test_two_of_n_needs_two_different_slack_users(harness: Harness, slack: SlackServer) -> None:
    tenant = Tenant(harness, slack)
    tenant.policy(approvals_required=2)
    intent_id, ts = tenant.propose()
    first, _ = tenant.click("U0ALICE", intent_id)
    assert first.status_code == 200
    assert tenant.stored(intent_id).approval_status.value == "PENDING_APPROVAL"
    # The message says "1 of 2" and keeps its buttons for the second approver.
    partial = wait_for(lambda: tenant.updates(ts))[0]
    assert "1 of 2" in _text(partial)
    assert "alice@acme.example" in _text(partial)
    assert _buttons(partial) == ["approve", "reject"]
    # The same Slack user again counts once.
    repeat, _ = tenant.click("U0ALICE", intent_id)
    assert repeat.status_code == 200
    stored = tenant.stored(intent_id)
    assert stored.approval_status.value == "PENDING_APPROVAL"
    assert [a.approved_by for a in stored.approvals] == ["alice@acme.example"]
    assert harness.outcome_rows(intent_id) == 0
    # A second person completes it, and it runs.
    second, _ = tenant.click("U0BOB", intent_id)
    assert second.status_code == 200
    stored = tenant.stored(intent_id)
    assert stored.approval_status.value == "APPROVED"
    assert sorted(a.approved_by for a in stored.approvals) == ["alice@acme.example", "bob@acme.example"]
    with tenant.client(PROPOSER) as client:
        assert harness.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    done = wait_for(lambda: [u for u in tenant.updates(ts) if not _buttons(u)])[0]
    assert "Approved by alice@acme.example, bob@acme.example (2 of 2)" in _text(done)


# --- refused: not Slack's ----------------------------------------------------------------------


def test_a_bad_signature_is_a_401_and_nothing_runs(harness: Harness, slack: SlackServer) -> None:
    tenant = Tenant(harness, slack)
    intent_id, _ = tenant.propose()
    answer, _ = tenant.click("U0ALICE", intent_id, secret="another-apps-signing-secret-0000")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "SLACK_SIGNATURE_INVALID"
    assert "signing secret" in answer.json()["detail"]
    # A body changed after signing: the signature does not match either.
    payload = block_actions_payload(user_id="U0ALICE", action_id="approve", value="other")
    body, headers = signed_interaction(SIGNING_SECRET, payload)
    tampered = body.replace(b"other", intent_id.encode())
    answer = plain_http.post(
        f"{harness.url}/integrations/slack/{tenant.id}/interactions", content=tampered, headers=headers
    )
    assert answer.status_code == 401
    # No headers at all.
    answer = plain_http.post(
        f"{harness.url}/integrations/slack/{tenant.id}/interactions",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 401
    _nothing_ran(tenant, intent_id)


def test_a_stale_timestamp_is_a_401_and_nothing_runs(harness: Harness, slack: SlackServer) -> None:
    tenant = Tenant(harness, slack)
    intent_id, _ = tenant.propose()
    # Clear of the 300 s window on both sides, whatever time passes between signing and checking.
    for skew in (-320, 320, -3600):
        answer, _ = tenant.click("U0ALICE", intent_id, timestamp=int(time.time()) + skew)
        assert answer.status_code == 401, skew
        assert answer.json()["code"] == "SLACK_SIGNATURE_INVALID"
        assert "seconds away" in answer.json()["detail"]
    _nothing_ran(tenant, intent_id)


def test_an_unknown_tenant_or_one_without_slack_is_a_404(harness: Harness, slack: SlackServer) -> None:
    tenant = Tenant(harness, slack)
    intent_id, _ = tenant.propose()
    answer, _ = tenant.click("U0ALICE", intent_id, tenant="no-such-tenant")
    assert answer.status_code == 404
    assert answer.json()["code"] == "SLACK_NOT_CONFIGURED"
    # Slack turned off: the same signed click is a 404 too.
    with tenant.client(PROPOSER) as admin:
        assert admin.put("/admin/notifications", json={}).status_code == 200
    answer, _ = tenant.click("U0ALICE", intent_id)
    assert answer.status_code == 404
    _nothing_ran(tenant, intent_id)


def test_another_tenants_signing_secret_does_not_reach_this_tenant(
    harness: Harness, slack: SlackServer
) -> None:
    """A tenant admin who knows their own signing secret cannot sign a click for another tenant,
    nor decide another tenant's intent through their own tenant's URL."""
    victim = Tenant(harness, slack)
    intent_id, _ = victim.propose()
    attacker = Tenant(harness, slack)
    with attacker.client(PROPOSER) as admin:
        body = {
            "slack": {
                "bot_token": BOT_TOKEN,
                "signing_secret": "attackerssecret0123456789",
                "channel": "C0APPROVALS",
                "users": {"U0ALICE": "alice@acme.example"},
            }
        }
        assert admin.put("/admin/notifications", json=body).status_code == 200
    answer, _ = victim.click("U0ALICE", intent_id, secret="attackerssecret0123456789")
    assert answer.status_code == 401
    answer, told = attacker.click("U0ALICE", intent_id, secret="attackerssecret0123456789")
    assert answer.status_code == 200
    assert "not found" in attacker.told(told)
    _nothing_ran(victim, intent_id)


# --- refused by a rule: nothing runs, and the user is told why --------------------------------


def test_an_unmapped_slack_user_is_refused_and_told_why(harness: Harness, slack: SlackServer) -> None:
    tenant = Tenant(harness, slack)
    intent_id, ts = tenant.propose()
    answer, response_url = tenant.click("U0STRANGER", intent_id)
    assert answer.status_code == 200
    told = tenant.told(response_url)
    assert "U0STRANGER" in told
    assert "not mapped" in told
    _nothing_ran(tenant, intent_id)
    assert tenant.updates(ts) == []


def _ephemerals(slack: SlackServer, user_id: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages("chat.postEphemeral") if m.get("user") == user_id]


def _click_without_response_url(tenant: Tenant, user_id: str, intent_id: str, ts: str) -> httpx.Response:
    payload = block_actions_payload(
        user_id=user_id, action_id="approve", value=intent_id, message_ts=ts, response_url=None
    )
    body, headers = signed_interaction(SIGNING_SECRET, payload)
    return httpx.post(
        f"{tenant.harness.url}/integrations/slack/{tenant.id}/interactions",
        content=body,
        headers=headers,
        timeout=30.0,
    )


def test_without_a_response_url_the_refusal_is_an_ephemeral_message_to_that_user(
    harness: Harness, slack: SlackServer
) -> None:
    tenant = Tenant(harness, slack)
    intent_id, ts = tenant.propose()
    answer = _click_without_response_url(tenant, "U0STRANGER", intent_id, ts)
    assert answer.status_code == 200, answer.text
    told = wait_for(lambda: _ephemerals(slack, "U0STRANGER"))
    assert len(told) == 1
    assert told[0]["channel"] == "C0APPROVALS"
    assert "U0STRANGER" in told[0]["text"]
    assert "not mapped" in told[0]["text"]
    call = next(c for c in slack.calls if c.method == "chat.postEphemeral" and c.arguments is told[0])
    assert call.token == BOT_TOKEN
    _nothing_ran(tenant, intent_id)
    assert tenant.updates(ts) == []


def test_a_response_url_outside_slack_is_never_called_and_the_refusal_goes_ephemeral(
    harness: Harness, slack: SlackServer
) -> None:
    tenant = Tenant(harness, slack)
    intent_id, ts = tenant.propose()
    elsewhere = WebhookSink()
    try:
        payload = block_actions_payload(
            user_id="U0PAT", action_id="approve", value=intent_id, message_ts=ts, response_url=elsewhere.url
        )
        body, headers = signed_interaction(SIGNING_SECRET, payload)
        answer = plain_http.post(
            f"{harness.url}/integrations/slack/{tenant.id}/interactions", content=body, headers=headers
        )
        assert answer.status_code == 200, answer.text
        told = wait_for(lambda: _ephemerals(slack, "U0PAT"))
        assert elsewhere.deliveries == []
    finally:
        elsewhere.close()
    assert len(told) == 1
    assert "own" in told[0]["text"] or "propos" in told[0]["text"]
    _nothing_ran(tenant, intent_id)


def test_the_local_slack_server_refuses_an_ephemeral_message_slack_would_refuse() -> None:
    server = SlackServer(tokens=(BOT_TOKEN,), members=("U0ALICE",))
    try:
        client = WebClient(token=BOT_TOKEN, base_url=server.api_url)
        sent = client.chat_postEphemeral(channel="C0APPROVALS", user="U0ALICE", text="only you")
        assert sent["ok"] is True
        assert sent["message_ts"]
        for arguments, error in (
            ({"channel": "C0APPROVALS", "user": "U0BOB", "text": "x"}, "user_not_in_channel"),
            ({"channel": "C0NOWHERE", "user": "U0ALICE", "text": "x"}, "channel_not_found"),
            ({"channel": "C0APPROVALS", "user": "U0ALICE"}, "no_text"),
        ):
            with pytest.raises(SlackApiError) as refused:
                client.api_call("chat.postEphemeral", json=arguments)
            assert refused.value.response["error"] == error
        with pytest.raises(SlackApiError) as unauthorised:
            WebClient(token="xoxb-wrong", base_url=server.api_url).chat_postEphemeral(
                channel="C0APPROVALS", user="U0ALICE", text="x"
            )
        assert unauthorised.value.response["error"] == "invalid_auth"
        assert [c.method for c in server.calls] == ["chat.postEphemeral"]
    finally:
        server.close()


def test_a_self_approval_from_slack_is_refused(harness: Harness, slack: SlackServer) -> None:
    tenant = Tenant(harness, slack)
    intent_id, ts = tenant.propose()
    answer, response_url = tenant.click("U0PAT", intent_id)  # the proposer's own Slack user
    assert answer.status_code == 200
    assert "SELF_APPROVAL" in tenant.told(response_url)
    _nothing_ran(tenant, intent_id)
    assert tenant.updates(ts) == []


def test_a_slack_user_lacking_the_policys_approver_scope_is_refused(
    harness: Harness, slack: SlackServer
) -> None:
    tenant = Tenant(harness, slack)
    tenant.policy(approver_scopes=[APPROVER_SCOPE])
    intent_id, _ = tenant.propose()
    answer, response_url = tenant.click("U0ALICE", intent_id)  # intents:approve only
    assert answer.status_code == 200
    told = tenant.told(response_url)
    assert "MISSING_APPROVAL_SCOPE" in told
    assert APPROVER_SCOPE in told
    _nothing_ran(tenant, intent_id)
    # A mapping without intents:approve at all is refused too.
    answer, response_url = tenant.click("U0READER", intent_id)
    assert answer.status_code == 200
    assert "intents:approve" in tenant.told(response_url)
    _nothing_ran(tenant, intent_id)
    # The user whose mapping holds the policy's scope approves.
    answer, _ = tenant.click("U0CAROL", intent_id)
    assert answer.status_code == 200
    assert tenant.stored(intent_id).approved_by == "carol@acme.example"


def test_a_payload_of_another_kind_is_acknowledged_and_does_nothing(
    harness: Harness, slack: SlackServer
) -> None:
    tenant = Tenant(harness, slack)
    intent_id, _ = tenant.propose()
    payload = block_actions_payload(user_id="U0ALICE", action_id="approve", value=intent_id)
    payload["type"] = "view_submission"
    body, headers = signed_interaction(SIGNING_SECRET, payload)
    url = f"{harness.url}/integrations/slack/{tenant.id}/interactions"
    assert plain_http.post(url, content=body, headers=headers).status_code == 200
    # Signed but malformed: a 400 problem, never a 500.
    body, headers = signed_interaction(SIGNING_SECRET, {"type": "block_actions", "user": {}})
    answer = plain_http.post(url, content=body, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["code"] == "SLACK_PAYLOAD_INVALID"
    _nothing_ran(tenant, intent_id)
