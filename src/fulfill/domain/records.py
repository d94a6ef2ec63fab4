"""Records the store hands out: what a repository returns besides the domain's own models.

They live in ``domain`` so that the engine, the use cases and the connectors can read them
without importing the store; the store modules re-export them under their old names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fulfill.domain.credentials import CredentialType
from fulfill.domain.external_writes import ReservationKind, WriteStatus
from fulfill.domain.flowcontrol import ConnectorLimits
from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ExecutionAttempt,
    GlobalExecutionConfig,
    TenantExecutionConfig,
)
from fulfill.domain.ports import ToolCallOutcome

# --- calls to targets that do not deduplicate ----------------------------------------------------


class Sent:
    """A compensation call that was (maybe) sent; ``answer`` None while (or if never) known."""

    def __init__(self, answer: ToolCallOutcome | None) -> None:
        self.answer = answer


class RemoteCallMark:
    """A call to a non-deduplicating target that was (maybe) sent; ``answer`` once known."""

    def __init__(self, tool_name: str, idempotency_key: str, answer: ToolCallOutcome | None) -> None:
        self.tool_name = tool_name
        self.idempotency_key = idempotency_key
        self.answer = answer


# --- connectors' flow control --------------------------------------------------------------------


@dataclass(frozen=True)
class StoredLimits:
    limits: ConnectorLimits
    updated_at: str | None = None  # None: never set
    revision: int = 0


@dataclass(frozen=True)
class TenantCap:
    name: str
    tenant_id: str
    cap: ConnectorLimits
    updated_at: str
    updated_by: str
    revision: int


# --- console sessions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSession:
    tenant_id: str
    subject: str
    sealed_token: str
    expires_epoch: float


# --- executions and intents ----------------------------------------------------------------------


@dataclass(frozen=True)
class CompensationState:
    outcome: ActionOutcomeV1
    tries: int
    workflow_id: str | None


@dataclass(frozen=True)
class ListedExecution:
    intent: ActionIntentV1
    attempt: ExecutionAttempt | None
    outcome: ActionOutcomeV1 | None
    last_update_at: str


@dataclass(frozen=True)
class PendingFilter:
    """Which of a tenant's intents waiting for approval: None means any."""

    account_ids: frozenset[str] | None = None  # the token's accounts (None: all)
    account_id: str | None = None
    action_type: str | None = None
    created_before: str | None = None  # ISO timestamp: proposed before this moment
    proposed_by: str | None = None  # the proposer's subject
    policy_id: str | None = None  # the ENFORCE policy that decides its approval


# --- kill switches -------------------------------------------------------------------------------


class StoredGlobalConfig(GlobalExecutionConfig):
    """The global switches as stored: ``revision`` counts the writes (0 = never written)."""

    revision: int = 0


class StoredTenantConfig(TenantExecutionConfig):
    """A tenant's switches as stored: ``revision`` counts the writes (0 = never written)."""

    revision: int = 0


@dataclass(frozen=True)
class TenantSwitchSummary:
    """Every tenant's stored switches, summed up: who is stopped, how many types are disabled."""

    stopped_tenants: list[str]
    disabled_action_types: int


# --- the outbox ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    message_id: str
    destination: str
    topic: str
    tenant_id: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    destination: str
    topic: str
    tenant_id: str
    attempts: int
    last_error: str | None
    created_at: str
    dead_lettered_at: str | None


# --- connector credentials -----------------------------------------------------------------------


@dataclass(frozen=True)
class SealedCredential:
    """One stored credential, its secrets still sealed (``credentials/vault.py`` opens them)."""

    tenant_id: str
    account_id: str  # "" = every account of the tenant
    connector: str
    credential_type: CredentialType
    client_id: str
    username: str | None
    login_url: str | None
    audience: str | None
    secret_ciphertext: str = field(repr=False)
    key_id: str
    secret_fields: str  # which secrets are sealed, comma-separated
    created_at: str
    updated_at: str
    rotated_at: str | None
    refresh_token_rotated_at: str | None
    revision: int
    refresh_lease_owner: str | None
    refresh_lease_until: float | None


# --- reservations of external writes -------------------------------------------------------------

Reservation = ReservationKind  # what a reservation found: fresh, taken_over, committed, busy


@dataclass(frozen=True)
class ExternalWrite:
    """A reserved (``PENDING``) or done (``COMMITTED``) write to an external system."""

    tenant_id: str
    account_id: str
    idempotency_key: str
    connector: str
    tool_name: str
    action_intent_id: str
    status: WriteStatus
    lease_owner: str | None
    lease_until_epoch: float | None
    object_type: str | None
    object_id: str | None
    object_url: str | None
    previous_values: dict[str, Any] | None
    written_values: dict[str, Any] | None
    created_at: str
    updated_at: str
    committed_at: str | None
    compensated_at: str | None


# --- the internal connector's tasks and notes --------------------------------------------------


@dataclass(frozen=True)
class InternalObject:
    """A task or note of the internal connector, as stored under its idempotency key."""

    kind: str  # "task" or "note"
    object_id: str
    tenant_id: str
    account_id: str
    deleted: bool
