"""The notification channels' settings, the notices and how each channel shows them (pure), and
the SMTP URL setting."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from fulfill.config import Settings, parse_smtp_url
from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, StoredSwitches, SwitchSettings
from fulfill.domain.models import ApprovalRule
from fulfill.domain.notifications import (
    MAX_PARAMETERS_SHOWN,
    MAX_VALUE_CHARS,
    NoticeKind,
    NotificationSettings,
    approval_escalated_notice,
    approval_needed_notice,
    console_link,
    destinations_of,
    email_message,
    kill_switch_notice,
    parse_destination,
    slack_message,
    webhook_body,
)
from fulfill.domain.outbox import destination_kind
from tests.unit.factories import make_intent

LINK = "https://fulfill.example.com/console/executions/ai_1"


def _pending(**fields: Any) -> Any:
    return make_intent(
        approval_status="PENDING_APPROVAL", approved_by=None, approval_timestamp=None, **fields
    )


def _actions(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [block for block in message["blocks"] if block["type"] == "actions"]


def test_an_approval_message_has_the_facts_and_both_buttons() -> None:
    intent = _pending(
        proposed_by="agent-7",
        risk_class="HIGH",
        approval_rule=ApprovalRule(
            policy_id="pol_1", policy_name="Two people for HIGH", approvals_required=2
        ),
    )
    notice = approval_needed_notice(intent, occurred_at="2026-12-05T00:00:00Z")
    message = slack_message(notice, channel="C0APPROVALS", link=LINK)
    assert message["channel"] == "C0APPROVALS"
    (actions,) = _actions(message)
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("approve", intent.action_intent_id),
        ("reject", intent.action_intent_id),
    ]
    text = json.dumps(message["blocks"])
    for fact in (
        intent.action_type,
        intent.account_id,
        "HIGH",
        "agent-7",
        "Two people for HIGH",
        "0 of 2",
        LINK,
    ):
        assert fact in text, fact
    # Readable without colour: every fact is labelled in words, buttons say what they do.
    assert "*Risk:*" in text
    assert {e["text"]["text"] for e in actions["elements"]} == {"Approve", "Reject"}


def test_an_escalation_has_buttons_and_other_notices_have_none() -> None:
    intent = _pending(escalated_at="2026-12-05T01:00:00Z")
    escalated = approval_escalated_notice(intent, occurred_at="2026-12-05T01:00:00Z")
    assert len(_actions(slack_message(escalated, channel="C0A", link=None))) == 1
    switches = StoredSwitches(GLOBAL_SCOPE, SwitchSettings(stopped=True), revision=4)
    notice = kill_switch_notice("t1", switches, changed_by="ops", occurred_at="2026-12-05T00:00:00Z")
    assert _actions(slack_message(notice, channel="C0A", link=None)) == []
    assert "STOPPED" in notice.summary
    assert notice.kind is NoticeKind.KILL_SWITCH_CHANGED


def test_parameters_are_bounded_and_escaped() -> None:
    parameters = {f"p{n:02d}": "v" for n in range(MAX_PARAMETERS_SHOWN + 5)}
    parameters["p00"] = "<!channel> " + "y" * 1000
    notice = approval_needed_notice(_pending(parameters=parameters), occurred_at="2026-12-05T00:00:00Z")
    text = json.dumps(slack_message(notice, channel="C0A", link=None)["blocks"], ensure_ascii=False)
    assert "5 more not shown" in text
    assert "y" * MAX_VALUE_CHARS not in text
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
    assert f"p{MAX_PARAMETERS_SHOWN + 4:02d}" not in text


def test_email_names_the_intent_in_its_subject_and_carries_the_link() -> None:
    intent = _pending(action_intent_id="ai_mail")
    subject, body = email_message(
        approval_needed_notice(intent, occurred_at="2026-12-05T00:00:00Z"), link=LINK
    )
    assert "ai_mail" in subject
    assert "\n" not in subject
    assert LINK in body
    assert intent.action_type in body
    _subject, without = email_message(approval_needed_notice(intent, occurred_at="x"), link=None)
    assert "console" not in without.lower()


def test_webhook_body_and_links() -> None:
    notice = approval_needed_notice(_pending(), occurred_at="2026-12-05T00:00:00Z")
    body = webhook_body(notice, link=LINK)
    assert body["type"] == "APPROVAL_NEEDED"
    assert body["console_url"] == LINK
    assert "console_url" not in webhook_body(notice, link=None)
    assert console_link("", "/console/x") is None
    assert console_link("https://f.example.com/", "/console/x") == "https://f.example.com/console/x"


@pytest.mark.parametrize(
    "body",
    [
        {"slack": {"channel": "general"}},
        {"slack": {"channel": "C0A", "bot_token": "xoxp-1"}},
        {"slack": {"channel": "C0A", "users": {"alice": "alice"}}},
        {"slack": {"channel": "C0A", "users": {"U0A": {"subject": "a", "role": "x"}}}},
        {"email": {"to": []}},
        {"email": {"to": ["a@b.c\r\nBcc: x@y.z"]}},
        {"webhooks": [{"url": "file:///etc/passwd", "secret": "s" * 16}]},
        {"webhooks": [{"url": "https://a.example.com", "secret": "short"}]},
        {"webhooks": [{"url": "https://a.example.com", "secret": "s" * 16}] * 2},
        {"webhooks": [{"url": f"https://h{n}.example.com", "secret": "s" * 16} for n in range(11)]},
        {"pagerduty": {}},
    ],
)
def test_malformed_settings_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        NotificationSettings.model_validate(body)


def test_destinations_one_per_channel_and_back() -> None:
    settings = NotificationSettings.model_validate(
        {
            "slack": {
                "channel": "C0A",
                "users": {"U0A": "alice", "U0B": {"subject": "bob", "scopes": ["admin"]}},
            },
            "email": {"to": ["a@example.com"]},
            "webhooks": [{"url": "https://a.example.com"}, {"url": "http://b.example.com:8080/x"}],
        }
    )
    destinations = destinations_of("t:1", settings, email_ready=True)
    assert destinations == ["slack:t:1", "email:t:1", "notify:t:1:0", "notify:t:1:1"]
    assert destinations_of("t:1", settings, email_ready=False) == [
        "slack:t:1",
        "notify:t:1:0",
        "notify:t:1:1",
    ]
    assert [destination_kind(d) for d in destinations] == [
        "slack",
        "email",
        "notify_webhook",
        "notify_webhook",
    ]
    last = parse_destination("notify:t:1:1")
    assert last is not None
    assert (last.tenant_id, last.index) == ("t:1", 1)
    assert parse_destination("https://hooks.example.com") is None
    assert destination_kind("https://hooks.example.com") == "webhook"


def test_a_notice_is_one_message_per_key() -> None:
    intent = _pending()
    first = approval_needed_notice(intent, occurred_at="2026-12-05T00:00:00Z")
    again = approval_needed_notice(intent, occurred_at="2026-12-05T00:00:09Z")
    assert first.message_id() == again.message_id()
    tenant = KillSwitchScope.of_tenant("t1")
    one = kill_switch_notice("t1", StoredSwitches(tenant, revision=1), changed_by="a", occurred_at="x")
    two = kill_switch_notice("t1", StoredSwitches(tenant, revision=2), changed_by="a", occurred_at="x")
    assert one.message_id() != two.message_id()


def test_smtp_urls() -> None:
    plain = parse_smtp_url("smtp://127.0.0.1:2525")
    assert (plain.host, plain.port, plain.tls, plain.starttls, plain.username) == (
        "127.0.0.1",
        2525,
        False,
        False,
        None,
    )
    tls = parse_smtp_url("smtps://mailer:p%40ss@mail.example.com")
    assert (tls.port, tls.tls, tls.username, tls.password) == (465, True, "mailer", "p@ss")
    assert parse_smtp_url("smtp://mail.example.com:587?starttls=true").starttls
    for bad in ("http://mail.example.com", "smtp://", "smtps://h?starttls=true", "smtp://h?auth=x"):
        with pytest.raises(ValueError, match="FULFILL_SMTP_URL"):
            parse_smtp_url(bad)


def test_the_smtp_password_is_redacted_and_never_quoted() -> None:
    settings = Settings(smtp_url="smtps://mailer:s3cret-pass@mail.example.com")
    assert "s3cret-pass" in settings.log_secrets
    assert "s3cret-pass" not in repr(settings)
    with pytest.raises(ValidationError) as raised:
        Settings(smtp_url="ftp://mailer:s3cret-pass@mail.example.com")
    assert "s3cret-pass" not in str(raised.value)
    with pytest.raises(ValidationError):
        Settings(public_url="javascript:alert(1)")


def test_the_message_after_a_decision_has_no_buttons_and_says_who_decided() -> None:
    notice = approval_needed_notice(_pending(), occurred_at="2026-12-05T00:00:00Z")
    decided = slack_message(notice, channel="C0A", link=LINK, decided="Approved by <alice>")
    assert _actions(decided) == []
    text = json.dumps(decided["blocks"])
    assert "Approved by &lt;alice&gt;" in text
    assert LINK in text
    assert "Approved by <alice>" in decided["text"]
