"""A click on a fulfill message in Slack: ``POST /integrations/slack/{tenant_id}/interactions``.

No bearer token: the request is Slack's when its signature (``domain/slack_interactions.py``)
matches the tenant's sealed signing secret within the timestamp window; otherwise 401 and
nothing is read or done. A tenant without Slack (or without a signing secret) is 404.

The clicking Slack user acts as the subject the tenant's ``users`` mapping names (a plain subject
holds ``intents:approve``; ``{subject, scopes}`` those scopes), through the SAME approve and
reject use cases as ``POST /intents/{id}/approve`` and ``/reject``: every rule applies (the
approver scopes of the registry version and of the policy, no self-approval, M-of-N counted per
distinct subject, a repeat counted once), and the last approval needed starts the execution
right away. A Slack user is never an agent. An unmapped user, or a refusal by a rule, changes
nothing and is told why in Slack (an ephemeral reply through the payload's ``response_url``,
seen only by that user). After a decision the message is updated (``chat.update`` at the
``channel`` and ``ts`` kept when it was posted): who decided, or "1 of 2" while more approvals
are needed (the buttons stay until the intent is decided).

:func:`receive_click` decides and answers at once; :func:`tell_slack` (run after the HTTP answer)
sends what Slack should show.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from fulfill.credentials.crypto import SecretsKeyError
from fulfill.domain.models import ActionIntentV1, ApprovalStatus
from fulfill.domain.notifications import (
    SECRET_SLACK_BOT_TOKEN,
    SECRET_SLACK_SIGNING_SECRET,
    approval_needed_notice,
    console_link,
    slack_message,
)
from fulfill.domain.scopes import Scope
from fulfill.domain.slack_interactions import (
    MAX_INTERACTION_BODY,
    NotAClick,
    SlackClick,
    parse_click,
    signature_refusal,
)
from fulfill.tokens import Principal
from fulfill.usecases import intents
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import BadRequest, NotFound, Unauthenticated, Unavailable, UseCaseError
from fulfill.usecases.notifications import channels_of, open_secret, slack_user

log = logging.getLogger(__name__)

SLACK_HOOKS_ORIGIN = ("https", "hooks.slack.com", 443)
REPLY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SlackAnswer:
    """What Slack should show after the click was answered: an ``ephemeral`` note to the clicking
    user (through ``response_url``), and the message ``update`` (``chat.update`` arguments)."""

    tenant_id: str
    ephemeral: str | None = None
    response_url: str | None = None
    update: dict[str, Any] | None = None
    channel: str | None = None
    user_id: str | None = None
    bot_token: str | None = field(default=None, repr=False)
    outcome: str = "ignored"  # "approved" | "approval-counted" | "rejected" | "refused" | "ignored"

    @property
    def tells_slack(self) -> bool:
        return self.ephemeral is not None or (self.update is not None and self.bot_token is not None)


def receive_click(
    rt: UseCaseContext, tenant_id: str, body: bytes, *, timestamp: str | None, signature: str | None
) -> SlackAnswer:
    """Verify Slack's request, then decide as the mapped subject. Raises 404 (no Slack for the
    tenant), 401 (not Slack's signature, or outside the window), 400 (a malformed payload)."""
    stored = channels_of(rt.store, tenant_id)
    slack = stored.settings.slack if stored is not None else None
    if stored is None or slack is None:
        raise NotFound("this tenant has no Slack channel configured", code="SLACK_NOT_CONFIGURED")
    try:
        secret = open_secret(rt.settings, stored, SECRET_SLACK_SIGNING_SECRET)
        bot_token = open_secret(rt.settings, stored, SECRET_SLACK_BOT_TOKEN)
    except SecretsKeyError:
        raise Unavailable(
            "the tenant's Slack secrets do not open with this service's FULFILL_SECRETS_KEY",
            code="SECRETS_KEY_MISMATCH",
        ) from None
    if secret is None:
        raise NotFound("this tenant has no Slack signing secret stored", code="SLACK_NOT_CONFIGURED")
    if len(body) > MAX_INTERACTION_BODY:
        raise Unauthenticated("the request is larger than Slack sends", code="SLACK_SIGNATURE_INVALID")
    refusal = signature_refusal(
        secret, timestamp=timestamp, signature=signature, body=body, now=rt.clock.now()
    )
    if refusal is not None:
        log.warning("Slack interaction refused for tenant %s: %s", tenant_id, refusal)
        raise Unauthenticated(refusal, code="SLACK_SIGNATURE_INVALID")
    try:
        click = parse_click(body)
    except NotAClick as exc:
        raise BadRequest(str(exc), code="SLACK_PAYLOAD_INVALID") from None
    if click is None:
        return SlackAnswer(tenant_id)
    base = SlackAnswer(
        tenant_id,
        response_url=_reply_url(rt, click),
        channel=click.channel,
        user_id=click.user_id,
        bot_token=bot_token,
    )
    mapped = slack_user(slack, click.user_id)
    if mapped is None:
        return _refused(
            base,
            click,
            f"Your Slack user ({click.user_id}) is not mapped to a fulfill approver of this tenant, so "
            "nothing was done. Ask a tenant admin to add it to the Slack channel's users mapping "
            "(PUT /admin/notifications).",
            code="SLACK_USER_NOT_MAPPED",
        )
    principal = Principal(
        subject=mapped.subject, tenant_id=tenant_id, scopes=frozenset(mapped.scopes), is_agent=False
    )
    if not principal.has_scope(Scope.INTENTS_APPROVE.value):
        return _refused(
            base,
            click,
            f"{mapped.subject} (your Slack user's mapping) does not hold {Scope.INTENTS_APPROVE.value}, "
            "so nothing was done.",
            code="MISSING_SCOPE",
        )
    comment = f"in Slack, by user {click.user_id}"
    try:
        if click.decision == "approve":
            change = intents.approve_intent(rt, principal, click.action_intent_id, comment=comment)
        else:
            change = intents.reject_intent(rt, principal, click.action_intent_id, comment=comment)
    except UseCaseError as exc:
        verb = "Approving" if click.decision == "approve" else "Rejecting"
        return _refused(
            base,
            click,
            f"{verb} {click.action_intent_id} as {mapped.subject} was refused: {exc.message}"
            f"{f' ({exc.code})' if exc.code else ''}. Nothing was done.",
            code=exc.code or exc.kind,
        )
    intent = intents.get_intent(rt, principal, click.action_intent_id)
    update = _updated_message(rt, intent, click, decided_by=mapped.subject)
    if click.decision == "reject":
        outcome = "rejected"
    elif change.approval_status is ApprovalStatus.APPROVED:
        outcome = "approved"
    else:
        outcome = "approval-counted"
    log.info(
        "Slack user %s (%s) decided %s on %s: %s",
        click.user_id,
        mapped.subject,
        click.decision,
        click.action_intent_id,
        outcome,
    )
    return SlackAnswer(**{**base.__dict__, "update": update, "outcome": outcome})


def _refused(base: SlackAnswer, click: SlackClick, message: str, *, code: str) -> SlackAnswer:
    log.info(
        "Slack user %s refused on %s of tenant %s: %s",
        click.user_id,
        click.action_intent_id,
        base.tenant_id,
        code,
    )
    return SlackAnswer(**{**base.__dict__, "ephemeral": message, "outcome": "refused"})


def _reply_url(rt: UseCaseContext, click: SlackClick) -> str | None:
    """The payload's ``response_url`` when it is Slack's (``https://hooks.slack.com``) or at the
    origin of ``FULFILL_SLACK_API_URL``: a signed payload still never makes the service POST
    anywhere else."""
    if click.response_url is None:
        return None
    try:
        parts = urlsplit(click.response_url)
        api = urlsplit(rt.settings.slack_api_url)
        origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        api_origin = (api.scheme, api.hostname, api.port or (443 if api.scheme == "https" else 80))
    except ValueError:
        return None
    if origin in (SLACK_HOOKS_ORIGIN, api_origin):
        return click.response_url
    log.warning("a Slack response_url outside Slack's hosts was ignored")
    return None


def _updated_message(
    rt: UseCaseContext, intent: ActionIntentV1, click: SlackClick, *, decided_by: str
) -> dict[str, Any] | None:
    """``chat.update`` arguments for the message about ``intent``: where it was kept when posted
    (else where it was clicked), with the decision, or the approvals counted so far."""
    with rt.store.read() as uow:
        ref = uow.notifications.slack_message(intent.tenant_id, intent.action_intent_id)
    channel = ref.channel if ref is not None else click.channel
    ts = ref.ts if ref is not None else click.message_ts
    if not channel or not ts:
        return None
    notice = approval_needed_notice(intent, occurred_at=intent.created_at)
    link = console_link(rt.settings.public_url, notice.console_path)
    decided: str | None = None
    status = intent.approval_status
    if status is ApprovalStatus.APPROVED:
        approvers = [a.approved_by for a in intent.approvals] or [intent.approved_by or decided_by]
        count = f" ({len(approvers)} of {len(approvers)})" if len(approvers) > 1 else ""
        decided = f"Approved by {', '.join(approvers)}{count}"
    elif status is ApprovalStatus.REJECTED:
        decided = f"Rejected by {decided_by}"
    elif status is ApprovalStatus.PENDING_APPROVAL:
        counted = ", ".join(a.approved_by for a in intent.approvals)
        notice = notice.model_copy(
            update={
                "summary": f"{notice.summary} Approved so far by {counted} ({notice.approvals}); "
                "more approvals are needed."
            }
        )
    else:
        decided = f"{status.value.replace('_', ' ').capitalize()}"
    message = slack_message(notice, channel=channel, link=link, decided=decided)
    return {**message, "ts": ts}


def tell_slack(rt: UseCaseContext, answer: SlackAnswer) -> None:
    """Show the clicking user why nothing was done, and update the message after a decision.
    Run after the click was answered; a failure is logged (the decision stands)."""
    if answer.ephemeral is not None:
        _ephemeral(rt, answer)
    if answer.update is not None and answer.bot_token is not None:
        # Slack's SDK is imported by the first click that needs it, not by every service.
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError, SlackClientError

        client = WebClient(token=answer.bot_token, base_url=rt.settings.slack_api_url, timeout=10)
        update = answer.update
        try:
            client.chat_update(
                channel=update["channel"], ts=update["ts"], text=update["text"], blocks=update["blocks"]
            )
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("updating the Slack message of tenant %s failed: %s", answer.tenant_id, _why(exc))


def _ephemeral(rt: UseCaseContext, answer: SlackAnswer) -> None:
    text = answer.ephemeral or ""
    if answer.response_url is not None:
        try:
            response = httpx.post(
                answer.response_url,
                json={"response_type": "ephemeral", "replace_original": False, "text": text},
                timeout=REPLY_TIMEOUT_SECONDS,
            )
            if response.status_code < 300:
                return
            log.warning("Slack's response_url answered HTTP %d", response.status_code)
        except httpx.HTTPError as exc:
            log.warning("Slack's response_url unreachable: %s", type(exc).__name__)
    if answer.bot_token is None or answer.channel is None or answer.user_id is None:
        return
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError, SlackClientError

    client = WebClient(token=answer.bot_token, base_url=rt.settings.slack_api_url, timeout=10)
    try:
        client.chat_postEphemeral(channel=answer.channel, user=answer.user_id, text=text)
    except (SlackApiError, SlackClientError, OSError) as exc:
        log.warning("telling a Slack user of tenant %s why failed: %s", answer.tenant_id, _why(exc))


def _why(exc: Exception) -> str:
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__
