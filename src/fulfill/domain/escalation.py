"""Escalation of an approval (a policy's ``on_expiry: ESCALATE``): which intents are due, what an
escalated intent is, and the event that announces it. Pure; ``engine/escalation.py`` applies it.

An intent under an ESCALATE rule has two windows: the first ends at ``escalates_at_epoch`` (the
expiry it would have had), the second at ``expires_at_epoch`` (the first end plus the policy's
``extend_seconds``, fixed when the intent was created). When the first window ends while the
intent still waits for approval, it is escalated exactly once: ``escalated_at`` is set, the ledger
records ``APPROVAL_ESCALATED`` and the second approver group (``escalate_to_scopes``) is told; from
then on holders of those scopes may approve it too, until the extended end, when it expires.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fulfill.domain.expiry import is_expired
from fulfill.domain.models import ActionIntentV1, ApprovalStatus, ExpiryAction

ESCALATION_TOPIC = "APPROVAL_ESCALATED"
EVENT_SOURCE = "fulfill"


def escalation_due(intent: ActionIntentV1, now_epoch: float) -> bool:
    """True when the intent's first approval window has ended and it has not been escalated yet:
    still waiting for approval, under an ESCALATE rule, not escalated, and not expired (an intent
    whose extended end has passed too, say after a long outage, just expires: nobody is asked to
    approve what can no longer be approved)."""
    rule = intent.approval_rule
    return (
        rule is not None
        and rule.on_expiry is ExpiryAction.ESCALATE
        and intent.approval_status is ApprovalStatus.PENDING_APPROVAL
        and intent.escalates_at_epoch is not None
        and intent.escalates_at_epoch <= now_epoch
        and intent.escalated_at is None
        and not is_expired(intent.expires_at_epoch, now_epoch)
    )


def select_due(intents: Iterable[ActionIntentV1], now_epoch: float) -> list[ActionIntentV1]:
    """The intents of ``intents`` whose escalation is due, the longest overdue first."""
    due = [intent for intent in intents if escalation_due(intent, now_epoch)]
    due.sort(key=lambda intent: (intent.escalates_at_epoch or 0, intent.tenant_id, intent.action_intent_id))
    return due


def escalated(intent: ActionIntentV1, *, now: str) -> ActionIntentV1:
    """The intent once escalated at ``now`` (an ISO timestamp)."""
    return intent.model_copy(update={"escalated_at": now, "updated_at": now})


def intent_console_url(public_url: str, intent: ActionIntentV1) -> str | None:
    """The console page of the intent under the service's public URL; None without one."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/console/executions/{intent.action_intent_id}"


def escalation_message(intent: ActionIntentV1, *, console_url: str | None) -> dict[str, Any]:
    """The event announcing an escalated intent (the outbox message, and an event bus's detail):
    the envelope of the service's events (``eventType``, ``source``, ``payload``, ``traceId``,
    ``tenantId``, ``ts``) with what the second approver group needs to act."""
    rule = intent.approval_rule
    assert rule is not None
    assert intent.escalated_at is not None
    payload: dict[str, Any] = {
        "tenant_id": intent.tenant_id,
        "account_id": intent.account_id,
        "action_intent_id": intent.action_intent_id,
        "action_type": intent.action_type,
        "policy_id": rule.policy_id,
        "policy_version": rule.policy_version,
        "escalate_to_scopes": list(rule.escalate_to_scopes),
        "escalated_at": intent.escalated_at,
        "expires_at": intent.expires_at,
    }
    if console_url is not None:
        payload["console_url"] = console_url
    return {
        "eventType": ESCALATION_TOPIC,
        "source": EVENT_SOURCE,
        "payload": payload,
        "traceId": intent.trace_id,
        "tenantId": intent.tenant_id,
        "ts": intent.escalated_at,
    }


def escalation_message_id(intent: ActionIntentV1) -> str:
    """The outbox message id: one escalation per intent, so writing it twice stores it once."""
    return f"escalation:{intent.tenant_id}/{intent.action_intent_id}"
