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
from dataclasses import dataclass
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


# How much of a hash an error message shows (the scheme and 12 hex digits: enough to tell two
# hashes apart, and to find the full ones in the ledger).
PREFIX_LENGTH = len(SCHEME) + 1 + 12


class BoundAction(HashedAction, Protocol):
    """An intent as the workflow re-reads it: the action, and the hash its approval recorded."""

    @property
    def action_hash(self) -> str | None: ...


@dataclass(frozen=True)
class Verified:
    """The action is the approved one. ``action_hash`` None: the intent was approved before
    approvals recorded a hash, so there is nothing to compare it with (it is not checked)."""

    action_hash: str | None


@dataclass(frozen=True)
class Mismatch:
    """The action about to run is not the one approved: it must not run."""

    approved: str
    actual: str

    @property
    def message(self) -> str:
        return (
            f"the action about to run (hash {prefix(self.actual)}…) is not the one approved "
            f"(hash {prefix(self.approved)}…): its parameters, registry version, account or expiry "
            "changed after the approval; the tool was not called"
        )


def prefix(hashed: str) -> str:
    """The start of a hash, as messages show it."""
    return hashed[:PREFIX_LENGTH]


def verify(intent: BoundAction, *, sending: str | None = None) -> Verified | Mismatch:
    """Is what is about to run the action that was approved?

    The hash is recomputed from ``intent`` (as it is now) and compared with the one its approval
    recorded; ``sending``, when given, is the hash of the action the tool call was built from
    (its arguments were mapped from the intent as it was then, not from the one re-read now, so
    that hash must be the approved one too). An intent without a recorded hash is not checked.
    """
    approved = intent.action_hash
    if approved is None:
        return Verified(action_hash=None)
    actual = action_hash(intent)
    if actual != approved:
        return Mismatch(approved=approved, actual=actual)
    if sending is not None and sending != approved:
        return Mismatch(approved=approved, actual=sending)
    return Verified(action_hash=approved)
