"""The approvals queue a person works through: intents waiting for approval, filtered, counted and
paged, so that no number of newer proposals can hide an older one; and decisions on a selected set
of them at once.

Pages are keyset pages (after the creation time and id of the previous page's last row), newest
or oldest first; the cursor is opaque to the caller and checked when it comes back.

A decision on several intents is that many decisions: each goes through the same approve or reject
use case as a single one (its own transaction and ledger entry, every approval rule applied to it),
and each is reported: a refused one with its code and reason, while the others proceed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from fulfill.domain.models import ActionIntentV1, ApprovalStatus
from fulfill.domain.policies import POLICY_ID_PATTERN
from fulfill.domain.records import PendingFilter
from fulfill.domain.time import iso_from_epoch
from fulfill.tokens import Principal
from fulfill.usecases import intents
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import Invalid, UseCaseError

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
MAX_DECIDED_AT_ONCE = 100  # intents approved or rejected in one request
_POLICY_ID = re.compile(POLICY_ID_PATTERN)
_SUBJECT_LENGTH = 255
_ACTION_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_TIMESTAMP = re.compile(r"^[0-9T:.+Z-]{1,32}$")  # a stored created_at


@dataclass(frozen=True)
class PendingQuery:
    """What the person asked for; every field optional."""

    action_type: str | None = None
    account_id: str | None = None
    min_age_seconds: int | None = None  # proposed at least this long ago
    proposed_by: str | None = None  # the proposer's subject, exactly
    policy_id: str | None = None  # the ENFORCE policy that decides the approval
    oldest_first: bool = False
    cursor: str | None = None
    limit: int = PAGE_SIZE


@dataclass(frozen=True)
class PendingPage:
    intents: list[ActionIntentV1]
    total: int  # how many match the filters, on every page
    next_cursor: str | None  # None: this is the last page


def encode_cursor(intent: ActionIntentV1) -> str:
    raw = json.dumps([intent.created_at, intent.action_intent_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, intent_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise Invalid("the page cursor is not one this service gave", code="INVALID_CURSOR") from None
    if not (isinstance(created_at, str) and _TIMESTAMP.match(created_at)) or not (
        isinstance(intent_id, str) and _ACCOUNT.match(intent_id)
    ):
        raise Invalid("the page cursor is not one this service gave", code="INVALID_CURSOR")
    return created_at, intent_id


def page_pending(rt: UseCaseContext, principal: Principal, query: PendingQuery) -> PendingPage:
    """One page of the token's tenant's intents waiting for approval (expired ones included),
    only of the accounts the token may access, and how many match in all."""
    if query.action_type is not None and not _ACTION_TYPE.match(query.action_type):
        raise Invalid("an action type is written in capitals, digits and '_'", code="INVALID_ACTION_TYPE")
    if query.account_id is not None and not _ACCOUNT.match(query.account_id):
        raise Invalid(
            "an account id is letters, digits, '_', '.', ':', '@' or '-'", code="INVALID_ACCOUNT_ID"
        )
    if query.proposed_by is not None and not (
        0 < len(query.proposed_by) <= _SUBJECT_LENGTH and query.proposed_by.isprintable()
    ):
        raise Invalid(
            f"a proposer is a subject of 1 to {_SUBJECT_LENGTH} printable characters",
            code="INVALID_PROPOSER",
        )
    if query.policy_id is not None and not _POLICY_ID.match(query.policy_id):
        raise Invalid("a policy id is 'pol_' then 8 to 64 letters or digits", code="INVALID_POLICY_ID")
    if query.min_age_seconds is not None and query.min_age_seconds < 0:
        raise Invalid("an age is zero or more seconds", code="INVALID_AGE")
    if not 1 <= query.limit <= MAX_PAGE_SIZE:
        raise Invalid(f"a page has 1 to {MAX_PAGE_SIZE} intents", code="INVALID_LIMIT")
    after = decode_cursor(query.cursor) if query.cursor else None
    wanted = PendingFilter(
        account_ids=principal.account_ids,
        account_id=query.account_id,
        action_type=query.action_type,
        proposed_by=query.proposed_by,
        policy_id=query.policy_id,
        created_before=(
            iso_from_epoch(rt.clock.now() - query.min_age_seconds) if query.min_age_seconds else None
        ),
    )
    with rt.store.read() as uow:
        rows, more = uow.intents.page_pending_approval(
            tenant_id=principal.tenant_id,
            wanted=wanted,
            oldest_first=query.oldest_first,
            after=after,
            limit=query.limit,
        )
        total = uow.intents.count_pending_approval(tenant_id=principal.tenant_id, wanted=wanted)
    return PendingPage(rows, total, encode_cursor(rows[-1]) if more and rows else None)


class BulkDecision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class Decided:
    """What became of one intent of a decision on several: its approval status when the decision
    was accepted, else the refusal's code and reason (and nothing changed for it)."""

    action_intent_id: str
    approval_status: ApprovalStatus | None = None
    approvals_given: int | None = None  # an M-of-N intent still waiting: approvals so far
    approvals_required: int | None = None
    code: str | None = None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.code is None


def decide_many(
    rt: UseCaseContext,
    principal: Principal,
    action_intent_ids: Sequence[str],
    decision: BulkDecision,
    *,
    comment: str | None = None,
) -> list[Decided]:
    """Approve or reject each of the given intents (at most ``MAX_DECIDED_AT_ONCE``; a repeated id
    counts once), one after the other, through the same use case as a single decision: the
    approver rules (agent tokens, self-approval, approver scopes, M-of-N), the kill switches and
    expiry apply to each. Parameters are never edited here. An id the token's tenant and accounts do
    not have is reported NOT_FOUND, like any other refusal; the others proceed."""
    wanted = list(dict.fromkeys(action_intent_ids))
    if not wanted:
        raise Invalid("select at least one intent", code="NOTHING_SELECTED")
    if len(wanted) > MAX_DECIDED_AT_ONCE:
        raise Invalid(
            f"at most {MAX_DECIDED_AT_ONCE} intents are decided at once ({len(wanted)} were given)",
            code="TOO_MANY_SELECTED",
        )
    results: list[Decided] = []
    for intent_id in wanted:
        if not isinstance(intent_id, str) or not _ACCOUNT.match(intent_id):
            results.append(Decided(str(intent_id)[:128], code="NOT_FOUND", reason="no such intent"))
            continue
        try:
            if decision is BulkDecision.APPROVE:
                change = intents.approve_intent(rt, principal, intent_id, comment=comment)
            else:
                change = intents.reject_intent(rt, principal, intent_id, comment=comment)
        except UseCaseError as exc:
            code = exc.code or exc.kind.upper().replace("-", "_")
            results.append(Decided(intent_id, code=code, reason=exc.message))
            continue
        waiting = change.approval_status is ApprovalStatus.PENDING_APPROVAL
        results.append(
            Decided(
                intent_id,
                approval_status=change.approval_status,
                approvals_given=len(change.approvals or []) if waiting else None,
                approvals_required=change.approvals_required if waiting else None,
            )
        )
    return results
