"""Notifications of what needs a person: a tenant's channels, what is notified, and how each channel
shows it. Pure: no I/O (the outbox relay sends, ``engine/notify.py``).

A tenant's channels (``GET/PUT /admin/notifications``):

    {"slack": {"bot_token": "xoxb-…", "signing_secret": "…", "channel": "C0APPROVALS",
               "users": {"U0ALICE": "alice@example.com"}},
     "email": {"to": ["approvers@example.com"]},
     "webhooks": [{"url": "https://hooks.example.com/fulfill", "secret": "…"}]}

Any subset; a missing key turns that channel off. The secrets (Slack's ``bot_token`` and
``signing_secret``, each webhook's ``secret``) are sealed at rest and never shown again: a GET shows
``bot_token_set: true`` and the like. A PUT may leave a secret out to keep the stored one (the same
Slack channel settings, or a webhook of the same URL).

What is notified is a :class:`Notice`; the outbox carries it (its JSON) to one destination per
configured channel: ``slack:<tenant>``, ``email:<tenant>``, ``notify:<tenant>:<n>`` (the n-th
webhook). The message is rendered when it is sent, from the notice and the channel's settings of
that moment.

Slack messages (Block Kit) of an approval carry two buttons, ``action_id`` ``approve`` and
``reject``, whose ``value`` is the ``action_intent_id``: what the interaction endpoint
(``POST /integrations/slack/{tenant_id}/interactions``) receives when a person clicks one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from fulfill.domain.killswitch import StoredSwitches
from fulfill.domain.models import ActionIntentV1

# --- the channels' settings ----------------------------------------------------------------------

MAX_WEBHOOKS = 10
MAX_EMAIL_RECIPIENTS = 20
MAX_SLACK_USERS = 1000
MAX_APPROVER_SCOPES = 20

SlackChannelId = Annotated[str, StringConstraints(pattern=r"^[CGD][A-Z0-9]{2,30}$")]
SlackUserId = Annotated[str, StringConstraints(pattern=r"^[UW][A-Z0-9]{2,30}$")]
# A bot token (``xoxb-``); the tests' local Slack server checks the same prefix.
SlackBotToken = Annotated[str, StringConstraints(pattern=r"^xoxb-[A-Za-z0-9-]{1,250}$")]
SlackSigningSecret = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{16,128}$")]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
ScopeName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z:_-]*$")]
# An address with one @, no spaces or angle brackets, and a dotted domain: what SMTP's RCPT takes
# without quoting (the header is never built from anything else).
EmailAddress = Annotated[
    str,
    StringConstraints(
        max_length=254, pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
    ),
]
WebhookSecret = Annotated[str, StringConstraints(min_length=16, max_length=256, pattern=r"^[\x21-\x7e]+$")]
MAX_URL_LENGTH = 2048


class SlackUser(BaseModel):
    """A Slack user who acts as a fulfill ``subject`` with these scopes (default: ``intents:approve``)."""

    model_config = ConfigDict(extra="forbid")

    subject: Subject
    scopes: list[ScopeName] = Field(default_factory=list, max_length=MAX_APPROVER_SCOPES)


class SlackSettings(BaseModel):
    """The Slack channel. ``bot_token``/``signing_secret`` None in a PUT: keep the stored ones."""

    model_config = ConfigDict(extra="forbid")

    bot_token: SlackBotToken | None = None
    signing_secret: SlackSigningSecret | None = None
    channel: SlackChannelId
    # Slack user id → a subject (who acts with ``intents:approve``), or {subject, scopes}.
    users: dict[SlackUserId, Subject | SlackUser] = Field(default_factory=dict, max_length=MAX_SLACK_USERS)


class EmailSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[EmailAddress] = Field(min_length=1, max_length=MAX_EMAIL_RECIPIENTS)


class WebhookSettings(BaseModel):
    """A webhook: an ``http``/``https`` URL without credentials; ``secret`` signs each POST (None in
    a PUT: keep the stored secret of the webhook with this URL)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL_LENGTH)
    secret: WebhookSecret | None = None

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        refusal = webhook_url_refusal(value)
        if refusal is not None:
            raise ValueError(refusal)
        return value


class NotificationSettings(BaseModel):
    """The body of ``PUT /admin/notifications``: any subset of the channels."""

    model_config = ConfigDict(extra="forbid")

    slack: SlackSettings | None = None
    email: EmailSettings | None = None
    webhooks: list[WebhookSettings] = Field(default_factory=list, max_length=MAX_WEBHOOKS)

    @field_validator("webhooks")
    @classmethod
    def _distinct_urls(cls, value: list[WebhookSettings]) -> list[WebhookSettings]:
        urls = [hook.url for hook in value]
        if len(set(urls)) != len(urls):
            raise ValueError("each webhook URL may appear once")
        return value

    def configured(self) -> bool:
        return self.slack is not None or self.email is not None or bool(self.webhooks)


def webhook_url_refusal(url: str) -> str | None:
    """Why a webhook URL is refused (None: it is not): http(s) only, a host, no credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "a webhook URL must be http or https"
    if not parts.hostname:
        return "a webhook URL must name a host"
    if parts.username is not None or parts.password is not None:
        return "a webhook URL must not carry credentials (the secret signs each request)"
    if port == 0:
        return "a webhook URL must not name port 0"
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        return "a webhook URL must not contain spaces or control characters"
    return None


# --- what the store keeps: the settings with each secret sealed -----------------------------------

SECRET_SLACK_BOT_TOKEN = "slack.bot_token"  # noqa: S105 - the name of a field, not a secret
SECRET_SLACK_SIGNING_SECRET = "slack.signing_secret"  # noqa: S105


def webhook_secret_name(url: str) -> str:
    return f"webhook:{url}"


def secret_associated_data(tenant_id: str, name: str) -> bytes:
    """What a sealed secret is bound to: its tenant and its field (a copy elsewhere does not open)."""
    return f"fulfill-notifications:{tenant_id}:{name}".encode()


@dataclass(frozen=True)
class StoredNotifications:
    """A tenant's channels as stored: ``settings`` without secrets, ``sealed`` the secrets by name
    (:data:`SECRET_SLACK_BOT_TOKEN`, :data:`SECRET_SLACK_SIGNING_SECRET`, :func:`webhook_secret_name`)."""

    tenant_id: str
    settings: NotificationSettings
    sealed: dict[str, str] = field(default_factory=dict)
    updated_at: str | None = None
    updated_by: str | None = None
    revision: int = 0


@dataclass(frozen=True)
class SlackMessageRef:
    """Where a notice about an intent was posted in Slack (to update it after a decision)."""

    tenant_id: str
    action_intent_id: str
    channel: str
    ts: str
    posted_at: str


# --- what is notified ---------------------------------------------------------------------------


class NoticeKind(StrEnum):
    APPROVAL_NEEDED = "APPROVAL_NEEDED"
    APPROVAL_ESCALATED = "APPROVAL_ESCALATED"
    EXECUTION_NEEDS_PERSON = "EXECUTION_NEEDS_PERSON"
    KILL_SWITCH_CHANGED = "KILL_SWITCH_CHANGED"


DECISION_KINDS = frozenset({NoticeKind.APPROVAL_NEEDED, NoticeKind.APPROVAL_ESCALATED})
# The outbox's topic of a notice's message (labels of fulfill_outbox_deliveries_total).
NOTICE_TOPICS = tuple(f"NOTICE_{kind.value}" for kind in NoticeKind)

MAX_PARAMETERS_SHOWN = 12  # the parameters a message lists, at most
MAX_VALUE_CHARS = 200  # one parameter's value, at most, as shown
MAX_SUMMARY_CHARS = 500


class Notice(BaseModel):
    """Something a person should act on or know, in one tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: NoticeKind
    tenant_id: str
    # What makes it one notice: the same key again is the same message (never sent twice).
    key: str = Field(min_length=1, max_length=512)
    summary: str = Field(max_length=MAX_SUMMARY_CHARS)
    occurred_at: str
    action_intent_id: str | None = None
    account_id: str | None = None
    action_type: str | None = None
    parameters: dict[str, Any] | None = None
    risk_class: str | None = None
    proposed_by: str | None = None
    policy_id: str | None = None
    policy_name: str | None = None
    approvals: str | None = None  # "1 of 2"
    expires_at: str | None = None
    console_path: str | None = None  # under FULFILL_PUBLIC_URL, e.g. /console/executions/{id}

    @property
    def topic(self) -> str:
        return f"NOTICE_{self.kind.value}"

    def message_id(self) -> str:
        digest = hashlib.sha256(f"{self.tenant_id}\x00{self.kind.value}\x00{self.key}".encode()).hexdigest()
        return f"ntc_{digest[:40]}"


def intent_console_path(action_intent_id: str) -> str:
    return f"/console/executions/{quote(action_intent_id, safe='')}"


KILL_SWITCH_CONSOLE_PATH = "/console/kill-switches"


def console_link(public_url: str, path: str | None) -> str | None:
    """The absolute link to a console page; None without ``FULFILL_PUBLIC_URL`` (links left out)."""
    if not public_url or not path:
        return None
    return public_url.rstrip("/") + path


# --- outbox destinations of the channels ------------------------------------------------------

SLACK_PREFIX = "slack:"
EMAIL_PREFIX = "email:"
NOTIFY_WEBHOOK_PREFIX = "notify:"


@dataclass(frozen=True)
class ChannelDestination:
    kind: str  # "slack" | "email" | "notify_webhook"
    tenant_id: str
    index: int = 0  # the n-th webhook


def destinations_of(tenant_id: str, settings: NotificationSettings, *, email_ready: bool) -> list[str]:
    """One outbox destination per configured channel (email only when the service has SMTP)."""
    destinations: list[str] = []
    if settings.slack is not None:
        destinations.append(f"{SLACK_PREFIX}{tenant_id}")
    if settings.email is not None and email_ready:
        destinations.append(f"{EMAIL_PREFIX}{tenant_id}")
    destinations.extend(f"{NOTIFY_WEBHOOK_PREFIX}{tenant_id}:{n}" for n in range(len(settings.webhooks)))
    return destinations


def parse_destination(destination: str) -> ChannelDestination | None:
    """The channel an outbox destination names; None for any other destination."""
    if destination.startswith(SLACK_PREFIX):
        return ChannelDestination("slack", destination[len(SLACK_PREFIX) :])
    if destination.startswith(EMAIL_PREFIX):
        return ChannelDestination("email", destination[len(EMAIL_PREFIX) :])
    if destination.startswith(NOTIFY_WEBHOOK_PREFIX):
        tenant_id, _, index = destination[len(NOTIFY_WEBHOOK_PREFIX) :].rpartition(":")
        if tenant_id and index.isdigit():
            return ChannelDestination("notify_webhook", tenant_id, int(index))
    return None


# --- rendering (the same facts in every channel; readable without colour) ---------------------


def _shown_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def shown_parameters(parameters: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The parameters as (name, value) lines, sorted by name, at most :data:`MAX_PARAMETERS_SHOWN`
    (then a last line says how many more), each value cut at :data:`MAX_VALUE_CHARS`."""
    if not parameters:
        return []
    names = sorted(parameters)
    lines = [
        (_shown_value(name)[:64], _shown_value(parameters[name])) for name in names[:MAX_PARAMETERS_SHOWN]
    ]
    if len(names) > MAX_PARAMETERS_SHOWN:
        lines.append(("…", f"{len(names) - MAX_PARAMETERS_SHOWN} more not shown"))
    return lines


_TITLES = {
    NoticeKind.APPROVAL_NEEDED: "Approval needed",
    NoticeKind.APPROVAL_ESCALATED: "Approval escalated",
    NoticeKind.EXECUTION_NEEDS_PERSON: "An execution needs a person",
    NoticeKind.KILL_SWITCH_CHANGED: "Kill switch changed",
}


def title_of(notice: Notice) -> str:
    return _TITLES[notice.kind]


def facts_of(notice: Notice) -> list[tuple[str, str]]:
    """The notice's labelled facts, in the order every channel shows them."""
    facts: list[tuple[str, str]] = []
    for label, value in (
        ("Action", notice.action_type),
        ("Intent", notice.action_intent_id),
        ("Account", notice.account_id),
        ("Risk", notice.risk_class),
        ("Proposed by", notice.proposed_by),
        ("Policy", notice.policy_name or notice.policy_id),
        ("Approvals", notice.approvals),
        ("Expires", notice.expires_at),
    ):
        if value:
            facts.append((label, _shown_value(value)))
    return facts


def _mrkdwn(text: str) -> str:
    """Text as Slack shows it literally (``&``, ``<``, ``>`` escaped as Slack asks)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(
    notice: Notice, *, channel: str, link: str | None, decided: str | None = None
) -> dict[str, Any]:
    """``chat.postMessage`` arguments: ``channel``, a plain ``text`` fallback, and Block Kit
    ``blocks``; an approval (needed or escalated) ends with the approve and reject buttons.

    ``decided`` (e.g. ``"Approved by alice@example.com"``): the message after a decision, for
    ``chat.update`` (with the posted ``ts``): the same facts, the buttons replaced by that line."""
    title = title_of(notice)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(notice.summary)}},
    ]
    facts = facts_of(notice)
    if facts:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{label}:*\n{_mrkdwn(value)}"} for label, value in facts[:10]
                ],
            }
        )
    parameters = shown_parameters(notice.parameters)
    if parameters:
        lines = "\n".join(f"• {_mrkdwn(name)}: {_mrkdwn(value)}" for name, value in parameters)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Parameters:*\n{lines}"[:3000]}}
        )
    if link is not None:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open in the console>"}]}
        )
    if decided is not None:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{_mrkdwn(decided[:500])}*"}})
    elif notice.kind in DECISION_KINDS and notice.action_intent_id:
        blocks.append(
            {
                "type": "actions",
                "block_id": "fulfill_decision",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "approve",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": notice.action_intent_id,
                    },
                    {
                        "type": "button",
                        "action_id": "reject",
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "value": notice.action_intent_id,
                    },
                ],
            }
        )
    fallback = f"{title}: {notice.summary}" if decided is None else f"{title}: {decided}"
    return {"channel": channel, "text": fallback[:3000], "blocks": blocks}


def email_message(notice: Notice, *, link: str | None) -> tuple[str, str]:
    """(subject, plain-text body). The subject names the ``action_intent_id`` when there is one."""
    title = title_of(notice)
    subject = f"[fulfill] {title}"
    if notice.action_intent_id:
        subject += f": {notice.action_intent_id}"
        if notice.action_type:
            subject += f" ({notice.action_type})"
    subject = re.sub(r"[\r\n]+", " ", subject)[:250]
    lines = [title, "", notice.summary, ""]
    lines += [f"{label}: {value}" for label, value in facts_of(notice)]
    parameters = shown_parameters(notice.parameters)
    if parameters:
        lines += ["", "Parameters:"] + [f"  {name}: {value}" for name, value in parameters]
    if link is not None:
        lines += ["", f"Open in the console: {link}"]
    lines += ["", f"Tenant: {notice.tenant_id}", f"At: {notice.occurred_at}"]
    return subject, "\n".join(lines) + "\n"


def webhook_body(notice: Notice, *, link: str | None) -> dict[str, Any]:
    """The JSON a notification webhook receives."""
    body: dict[str, Any] = {
        "type": notice.kind.value,
        "tenant_id": notice.tenant_id,
        "title": title_of(notice),
        "summary": notice.summary,
        "occurred_at": notice.occurred_at,
    }
    for name in (
        "action_intent_id",
        "account_id",
        "action_type",
        "parameters",
        "risk_class",
        "proposed_by",
        "policy_id",
        "policy_name",
        "approvals",
        "expires_at",
    ):
        value = getattr(notice, name)
        if value is not None:
            body[name] = value
    if link is not None:
        body["console_url"] = link
    return body


# --- notices of the service's events --------------------------------------------------------------


def intent_notice(
    kind: NoticeKind, intent: ActionIntentV1, *, occurred_at: str, summary: str, key: str | None = None
) -> Notice:
    """A notice about one intent, with the facts a person decides on."""
    rule = intent.approval_rule
    approvals = None
    if rule is not None and rule.approvals_required > 1:
        approvals = f"{len(intent.approvals)} of {rule.approvals_required}"
    return Notice(
        kind=kind,
        tenant_id=intent.tenant_id,
        key=key or intent.action_intent_id,
        summary=summary[:MAX_SUMMARY_CHARS],
        occurred_at=occurred_at,
        action_intent_id=intent.action_intent_id,
        account_id=intent.account_id,
        action_type=intent.action_type,
        parameters=intent.parameters,
        risk_class=intent.risk_class.value if intent.risk_class is not None else None,
        proposed_by=intent.proposed_by,
        policy_id=rule.policy_id if rule is not None else None,
        policy_name=rule.policy_name if rule is not None else None,
        approvals=approvals,
        expires_at=intent.expires_at,
        console_path=intent_console_path(intent.action_intent_id),
    )


def approval_needed_notice(intent: ActionIntentV1, *, occurred_at: str) -> Notice:
    who = f" proposed by {intent.proposed_by}" if intent.proposed_by else ""
    return intent_notice(
        NoticeKind.APPROVAL_NEEDED,
        intent,
        occurred_at=occurred_at,
        summary=f"{intent.action_type} on account {intent.account_id}{who} waits for approval.",
    )


def approval_escalated_notice(intent: ActionIntentV1, *, occurred_at: str) -> Notice:
    rule = intent.approval_rule
    scopes = ", ".join(rule.escalate_to_scopes) if rule is not None and rule.escalate_to_scopes else ""
    to = f" to {scopes}" if scopes else ""
    return intent_notice(
        NoticeKind.APPROVAL_ESCALATED,
        intent,
        occurred_at=occurred_at,
        summary=f"{intent.action_type} on account {intent.account_id} was not approved in time and is "
        f"escalated{to}; it now expires at {intent.expires_at}.",
        key=f"{intent.action_intent_id}:escalated:{intent.escalated_at or occurred_at}",
    )


def needs_person_notice(
    *,
    tenant_id: str,
    action_intent_id: str,
    account_id: str,
    action_type: str,
    attempt: int,
    reason: str,
    occurred_at: str,
    what: str,
) -> Notice:
    """An execution a person must act on (``what``: e.g. ``compensation-abandoned``), once per
    intent, attempt and ``what``."""
    return Notice(
        kind=NoticeKind.EXECUTION_NEEDS_PERSON,
        tenant_id=tenant_id,
        key=f"{action_intent_id}:a{attempt}:{what}",
        summary=reason[:MAX_SUMMARY_CHARS],
        occurred_at=occurred_at,
        action_intent_id=action_intent_id,
        account_id=account_id,
        action_type=action_type,
        console_path=intent_console_path(action_intent_id),
    )


def kill_switch_notice(
    tenant_id: str, switches: StoredSwitches, *, changed_by: str, occurred_at: str
) -> Notice:
    """A kill switch change, told to ``tenant_id`` (the switches' own tenant, or each tenant for the
    global ones); once per scope and revision."""
    settings = switches.settings
    where = "The global kill switch" if switches.scope.is_global else "This tenant's kill switch"
    state = "STOPPED: no execution starts" if settings.stopped else "running"
    types = ", ".join(settings.disabled_action_types) or "none"
    summary = f"{where} is now {state}. Disabled action types: {types}. Changed by {changed_by}."
    return Notice(
        kind=NoticeKind.KILL_SWITCH_CHANGED,
        tenant_id=tenant_id,
        key=f"{switches.scope.name}:{switches.revision}",
        summary=summary[:MAX_SUMMARY_CHARS],
        occurred_at=occurred_at,
        console_path=KILL_SWITCH_CONSOLE_PATH,
    )
