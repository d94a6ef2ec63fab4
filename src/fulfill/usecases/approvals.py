"""The approvals queue a person works through: intents waiting for approval, filtered, counted and
paged, so that no number of newer proposals can hide an older one.

Pages are keyset pages (after the creation time and id of the previous page's last row), newest
or oldest first; the cursor is opaque to the caller and checked when it comes back.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from fulfill.domain.models import ActionIntentV1
from fulfill.domain.records import PendingFilter
from fulfill.domain.time import iso_from_epoch
from fulfill.tokens import Principal
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import Invalid

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
_ACTION_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_TIMESTAMP = re.compile(r"^[0-9T:.+Z-]{1,32}$")  # a stored created_at


@dataclass(frozen=True)
class PendingQuery:
    """What the person asked for; every field optional."""

    action_type: str | None = None
    account_id: str | None = None
    min_age_seconds: int | None = None  # proposed at least this long ago
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
    if query.min_age_seconds is not None and query.min_age_seconds < 0:
        raise Invalid("an age is zero or more seconds", code="INVALID_AGE")
    if not 1 <= query.limit <= MAX_PAGE_SIZE:
        raise Invalid(f"a page has 1 to {MAX_PAGE_SIZE} intents", code="INVALID_LIMIT")
    after = decode_cursor(query.cursor) if query.cursor else None
    wanted = PendingFilter(
        account_ids=principal.account_ids,
        account_id=query.account_id,
        action_type=query.action_type,
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
