"""The in-memory tables: plain dicts of immutable values, keyed like the SQL tables' primary keys.

A transaction works on a copy of every dict (the values themselves are frozen models or tuples,
never changed in place), so a rollback is dropping the copy and a commit is keeping it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ExecutionAttempt,
    ExecutionSignal,
    LedgerEntry,
    RegistryEntry,
)
from fulfill.domain.records import InternalObject


@dataclass(frozen=True)
class IntentRow:
    intent: ActionIntentV1
    request_hash: str
    execution_status: str
    last_update_at: str


@dataclass(frozen=True)
class AttemptRow:
    attempt: ExecutionAttempt
    deadline_epoch: float


@dataclass(frozen=True)
class OutcomeRow:
    outcome: ActionOutcomeV1
    compensation_tries: int = 0
    compensation_workflow_id: str | None = None
    compensation_retry_epoch: float | None = None
    compensation_updated_epoch: float | None = None


@dataclass(frozen=True)
class DeliveryRow:
    message_id: str
    destination: str
    status: str
    attempts: int
    next_attempt_epoch: float
    lease_owner: str | None = None
    last_error: str | None = None
    delivered_at: str | None = None
    dead_lettered_at: str | None = None


@dataclass(frozen=True)
class MessageRow:
    message_id: str
    topic: str
    tenant_id: str
    payload: dict[str, Any]
    created_at: str


@dataclass
class Tables:
    intents: dict[tuple[str, str], IntentRow] = field(default_factory=dict)
    attempts: dict[tuple[str, str, str], AttemptRow] = field(default_factory=dict)
    outcomes: dict[tuple[str, str, str, int], OutcomeRow] = field(default_factory=dict)
    ledger: dict[str, tuple[int, LedgerEntry]] = field(default_factory=dict)  # entry_id → (seq, entry)
    signals: dict[tuple[str, str], ExecutionSignal] = field(default_factory=dict)
    global_switches: dict[str, Any] = field(default_factory=dict)  # "global" → StoredGlobalConfig
    tenant_switches: dict[str, Any] = field(default_factory=dict)  # tenant → StoredTenantConfig
    registry: dict[tuple[str, int], RegistryEntry] = field(default_factory=dict)
    messages: dict[str, MessageRow] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], DeliveryRow] = field(default_factory=dict)
    notifications: dict[str, Any] = field(default_factory=dict)  # tenant → StoredNotifications
    slack_messages: dict[tuple[str, str], Any] = field(default_factory=dict)  # → SlackMessageRef
    email_link_uses: dict[tuple[str, str], Any] = field(default_factory=dict)  # (tenant, link id) →
    remote_calls: dict[tuple[str, str, str, int], Any] = field(default_factory=dict)  # → RemoteCallMark
    compensation_calls: dict[tuple[str, str, str], Any] = field(default_factory=dict)  # → Sent
    targets: dict[str, Any] = field(default_factory=dict)  # name → GatewayTarget
    # (kind, idempotency key) → the internal connector's task or note, and when it was deleted
    internal_objects: dict[tuple[str, str], tuple[InternalObject, str | None]] = field(default_factory=dict)
    # (owner, policy_id, version) → PolicyVersion; owner is the tenant, or None for the platform
    policies: dict[tuple[str | None, str, int], Any] = field(default_factory=dict)
    catalog_revision: int = 0
    # (tenant, intent) → when its escalation is due: the SQL column escalates_at_epoch (cleared
    # once escalated).
    escalations: dict[tuple[str, str], int] = field(default_factory=dict)

    def copy(self) -> Tables:
        """A copy for one transaction: new dicts holding the same immutable values."""
        return Tables(**{f.name: copy.copy(getattr(self, f.name)) for f in fields(self)})
