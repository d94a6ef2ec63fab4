"""The hash of the exact action an approval approved.

An approval is bound to what it approved: the action type, the pinned registry version (so the
same parameters mapped by another version are another action), the canonical parameters, the
account, the intent and tenant it belongs to (an approval never carries over to another intent),
and the expiry. It is recorded with each approval and on the intent when it becomes APPROVED; the
workflow recomputes it from the intent it is about to execute, right before the tool call, and
refuses (FAILED ``APPROVAL_MISMATCH``) when it differs: whatever changed the intent after it was
approved, the approved action is the only one that runs.

Lowercase hex SHA-256 of the canonical JSON (domain/idempotency.py) of those fields, prefixed by
the scheme's version so that a later change of what is hashed can never collide with this one.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from fulfill.domain.idempotency import canonical_json

SCHEME = "v1"


class HashedAction(Protocol):
    """What the hash covers (an ActionIntentV1 has all of it)."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def action_intent_id(self) -> str: ...
    @property
    def action_type(self) -> str: ...
    @property
    def registry_version(self) -> int: ...
    @property
    def parameters(self) -> dict[str, Any]: ...
    @property
    def expires_at_epoch(self) -> int: ...


def action_hash(action: HashedAction) -> str:
    """``v1:`` followed by the SHA-256 of the action's canonical JSON."""
    document = {
        "scheme": SCHEME,
        "tenant_id": action.tenant_id,
        "account_id": action.account_id,
        "action_intent_id": action.action_intent_id,
        "action_type": action.action_type,
        "registry_version": action.registry_version,
        "parameters": action.parameters,
        "expires_at_epoch": action.expires_at_epoch,
    }
    return f"{SCHEME}:{hashlib.sha256(canonical_json(document).encode()).hexdigest()}"
