"""Slack's request signature and click payloads, and the email links' tokens (pure)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from fulfill.domain.email_links import LinkRefused, link_key, new_link, read_link, sign_link
from fulfill.domain.slack_interactions import NotAClick, parse_click, signature_refusal, slack_signature
from tests.support.slack_server import block_actions_payload, signed_interaction
from tests.support.slack_server import slack_signature as slacks_own

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_700_000_000.0


def test_the_signature_is_slacks_v0() -> None:
    body = b"payload=%7B%7D"
    assert slack_signature(SECRET, "1700000000", body) == slacks_own(SECRET, "1700000000", body)
    assert slack_signature(SECRET, "1700000000", body).startswith("v0=")


def test_a_signed_request_within_the_window_is_accepted() -> None:
    body, headers = signed_interaction(SECRET, {"type": "block_actions"}, timestamp=int(NOW) - 299)
    refusal = signature_refusal(
        SECRET,
        timestamp=headers["X-Slack-Request-Timestamp"],
        signature=headers["X-Slack-Signature"],
        body=body,
        now=NOW,
    )
    assert refusal is None


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "why"),
    [
        (None, "v0=00", b"x", "carries no"),
        ("1700000000", None, b"x", "carries no"),
        ("-5", "v0=00", b"x", "not a Unix time"),
        ("17e8", "v0=00", b"x", "not a Unix time"),
        (str(int(NOW) - 301), "SIGNED", b"x", "seconds away"),
        (str(int(NOW) + 301), "SIGNED", b"x", "seconds away"),
        (str(int(NOW)), "v0=" + "0" * 64, b"x", "does not match"),
        (str(int(NOW)), "SIGNED", b"y", "does not match"),  # the body changed after signing
        (str(int(NOW)), "v0=\u00e9", b"x", "does not match"),
    ],
)
def test_a_request_not_slacks_is_refused(
    timestamp: str | None, signature: str | None, body: bytes, why: str
) -> None:
    if signature == "SIGNED":
        signature = slack_signature(SECRET, str(timestamp), b"x")
    refusal = signature_refusal(SECRET, timestamp=timestamp, signature=signature, body=body, now=NOW)
    assert refusal is not None
    assert why in refusal


def _body(payload: object) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def test_a_click_is_read_from_the_payload() -> None:
    payload = block_actions_payload(user_id="U0ALICE", action_id="reject", value="ai_1", message_ts="1.2")
    click = parse_click(_body(payload))
    assert click is not None
    assert (click.user_id, click.decision, click.action_intent_id) == ("U0ALICE", "reject", "ai_1")
    assert (click.channel, click.message_ts) == ("C0APPROVALS", "1.2")
    assert click.response_url == payload["response_url"]


def test_other_payloads_are_ignored() -> None:
    payload = block_actions_payload(user_id="U0ALICE", action_id="approve", value="ai_1")
    assert parse_click(_body({**payload, "type": "view_submission"})) is None
    other = {**payload, "actions": [{**payload["actions"][0], "action_id": "something_else"}]}
    assert parse_click(_body(other)) is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"other=1",
        b"payload=not-json",
        _body([1]),
        _body({"type": "block_actions", "user": {"id": "not a user"}, "actions": []}),
        _body({"type": "block_actions", "user": {"id": "U0ALICE"}, "actions": []}),
        _body(
            {
                "type": "block_actions",
                "user": {"id": "U0ALICE"},
                "actions": [{"action_id": "approve", "value": "bad id with spaces"}],
            }
        ),
    ],
)
def test_a_malformed_payload_is_refused(body: bytes) -> None:
    with pytest.raises(NotAClick):
        parse_click(body)


# --- email links ----------------------------------------------------------------------------------


def _token(now: float = NOW, intent_expires_at: float | None = None) -> str:
    link = new_link(
        tenant_id="t1",
        action_intent_id="ai_1",
        recipient="a@example.com",
        now=now,
        intent_expires_at=intent_expires_at,
    )
    return sign_link(link_key("secret"), link)


def test_a_link_reads_back_until_it_expires() -> None:
    token = _token()
    link = read_link(link_key("secret"), token, now=NOW + 10)
    assert not isinstance(link, LinkRefused)
    assert (link.tenant_id, link.action_intent_id, link.recipient) == ("t1", "ai_1", "a@example.com")
    assert link.expires_at_epoch == int(NOW) + 3 * 86_400
    expired = read_link(link_key("secret"), token, now=link.expires_at_epoch)
    assert isinstance(expired, LinkRefused)
    assert expired.status == 410
    # The intent's own expiry, when sooner, ends the link too.
    sooner = read_link(link_key("secret"), _token(intent_expires_at=NOW + 60), now=NOW + 61)
    assert isinstance(sooner, LinkRefused)
    assert sooner.status == 410


def test_a_changed_or_foreign_link_is_refused() -> None:
    token = _token()
    body, signature = token.split(".")
    for forged in (
        f"{body}x.{signature}",
        f"{body}.{signature[:-1]}A" if not signature.endswith("A") else f"{body}.{signature[:-1]}B",
        body,
        "",
        "a.b.c",
    ):
        refused = read_link(link_key("secret"), forged, now=NOW)
        assert isinstance(refused, LinkRefused), forged
        assert refused.status == 403
    other_key = read_link(link_key("another secret"), token, now=NOW)
    assert isinstance(other_key, LinkRefused)
    assert other_key.status == 403
