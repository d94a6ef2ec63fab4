"""What Slack sends when a person clicks a button of a fulfill message, and how it is checked.
Pure: no I/O (``usecases/slack_interactions.py`` acts on it).

Slack POSTs to the app's interaction URL (``POST /integrations/slack/{tenant_id}/interactions``)
a form-encoded body whose ``payload`` field is JSON, signed with the app's signing secret:
``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{X-Slack-Request-Timestamp}:{raw body}">``. A
request is accepted only with a valid signature (compared in constant time) and a timestamp
within :data:`SIGNATURE_WINDOW_SECONDS` of the service's clock (an old request replayed is
refused). A ``block_actions`` payload carries the clicked button: ``action_id`` ``approve`` or
``reject``, ``value`` the ``action_intent_id``, the clicking ``user.id``, and a ``response_url``
to answer that user.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

SIGNATURE_WINDOW_SECONDS = 300  # Slack's advice: refuse a request more than five minutes away
SIGNATURE_VERSION = "v0"
MAX_INTERACTION_BODY = 64 * 1024
DECISIONS = ("approve", "reject")
_INTENT_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` and the hex HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    return f"{SIGNATURE_VERSION}=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def signature_refusal(
    signing_secret: str, *, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """Why a request is not Slack's (None: it is): missing headers, a timestamp outside the
    window, or a signature that does not match (compared in constant time)."""
    if not timestamp or not signature:
        return "the request carries no X-Slack-Request-Timestamp and X-Slack-Signature"
    if not timestamp.isdigit() or len(timestamp) > 12:
        return "X-Slack-Request-Timestamp is not a Unix time"
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
        return (
            f"X-Slack-Request-Timestamp is more than {SIGNATURE_WINDOW_SECONDS} seconds away from "
            "the service's clock (a replayed or delayed request)"
        )
    expected = slack_signature(signing_secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode(errors="replace")):
        return "X-Slack-Signature does not match the tenant's signing secret"
    return None


@dataclass(frozen=True)
class SlackClick:
    """A click on the approve or reject button of a message."""

    user_id: str
    decision: str  # "approve" | "reject"
    action_intent_id: str
    response_url: str | None
    channel: str | None
    message_ts: str | None


class NotAClick(ValueError):
    """The payload is not a click fulfill answers; the message says why."""


def parse_click(body: bytes) -> SlackClick | None:
    """The click in a signed interaction body; None for a payload of another type (acknowledged,
    nothing done); :class:`NotAClick` for a malformed one."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise NotAClick("the body is not form-encoded") from None
    raw = form.get("payload")
    if not raw:
        raise NotAClick("the body has no payload field")
    try:
        payload = json.loads(raw[-1])
    except ValueError:
        raise NotAClick("the payload is not JSON") from None
    if not isinstance(payload, dict):
        raise NotAClick("the payload is not a JSON object")
    if payload.get("type") != "block_actions":
        return None
    user = payload.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        raise NotAClick("the payload names no Slack user")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise NotAClick("the payload carries no action")
    action = actions[0]
    decision = action.get("action_id")
    if decision not in DECISIONS:
        return None
    value = action.get("value")
    if not isinstance(value, str) or not _INTENT_ID.match(value):
        raise NotAClick("the button's value is not an action intent id")
    response_url = payload.get("response_url")
    container = payload.get("container") if isinstance(payload.get("container"), dict) else {}
    channel = container.get("channel_id") if isinstance(container, dict) else None
    message_ts = container.get("message_ts") if isinstance(container, dict) else None
    return SlackClick(
        user_id=user_id,
        decision=str(decision),
        action_intent_id=value,
        response_url=response_url
        if isinstance(response_url, str) and response_url.startswith("http")
        else None,
        channel=channel if isinstance(channel, str) else None,
        message_ts=message_ts if isinstance(message_ts, str) else None,
    )
