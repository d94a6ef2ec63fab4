"""Execution records: the attempt lock, write-once outcomes, the ledger and signals: the repository port (``store/executions.py`` implements it over SQL)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import (
    ActionOutcomeV1,
    CompensationStatus,
    ExecutionAttempt,
    ExecutionSignal,
    ExecutionStatus,
    LedgerEntry,
)
from fulfill.domain.records import CompensationState
from fulfill.domain.retention import IntentKey


class ExecutionsRepository(Protocol):
    def insert_attempt(self, attempt: ExecutionAttempt, *, deadline_epoch: float) -> bool:
        """Take the execution lock (a QUEUED row). False when the intent already has an attempt."""
        ...

    def get_attempt(
        self, tenant_id: str, account_id: str, action_intent_id: str
    ) -> ExecutionAttempt | None: ...

    def begin_attempt(
        self,
        *,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_id: str,
        started_at: str,
        deadline_epoch: float,
    ) -> ExecutionAttempt | None:
        """QUEUED → RUNNING for the intent's attempt of this id: its budget starts now. The
        RUNNING attempt as stored (no read before nor after); None when the intent has no QUEUED
        attempt of this id (none, another one, or not QUEUED)."""
        ...

    def move_attempt(self, attempt: ExecutionAttempt, *, workflow_id: str, now: str) -> bool:
        """Hand a still active attempt to another workflow (a fork or a restart by the reconciler)."""
        ...

    def touch_attempt(self, attempt: ExecutionAttempt, *, now: str) -> None:
        """Note that the reconciler looked at (and acted on) an active attempt."""
        ...

    def finish_attempt(
        self,
        *,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        status: ExecutionStatus,
        error_class: ErrorClass | None,
        idempotency_key: str | None,
        completed_at: str,
    ) -> bool:
        """QUEUED/RUNNING → terminal, for this attempt only. False when it had already ended."""
        ...

    def start_rerun(
        self, *, previous: ExecutionAttempt, rerun: ExecutionAttempt, deadline_epoch: float
    ) -> bool:
        """Terminal attempt → the next attempt, QUEUED; only if nobody changed it meanwhile."""
        ...

    def active_attempts_unchanged_since(
        self, updated_before: str, limit: int = ...
    ) -> list[tuple[ExecutionAttempt, float]]:
        """QUEUED and RUNNING attempts whose last change is older than ``updated_before``, oldest
        first, with their deadlines: what the reconciler checks."""
        ...

    def attempts_past_budget(self, now_epoch: float) -> dict[str, int]:
        """How many attempts are QUEUED, and how many RUNNING, past their deadline (one indexed count
        per status: ``ix_execution_attempts_active_deadline``)."""
        ...

    def attempts_past_budget_by_tenant(self, now_epoch: float) -> dict[tuple[str, str], int]:
        """The same, by (tenant, status)."""
        ...

    def ambiguous_by_age(self, now_epoch: float) -> dict[str, int]:
        """How many attempts wait AMBIGUOUS, by age bucket (``AMBIGUOUS_AGE_BUCKETS``)."""
        ...

    def oldest_ambiguous_at(self) -> str | None:
        """When the attempt waiting AMBIGUOUS longest became AMBIGUOUS (None: none)."""
        ...

    def intents_with_work_outstanding(self, keys: Collection[IntentKey]) -> set[IntentKey]:
        """Which of these (tenant id, intent id) pairs the engine may still act on: an attempt
        QUEUED, RUNNING or AMBIGUOUS, or a compensation PENDING or FAILED with a next try due."""
        ...

    def get_deadline(self, attempt: ExecutionAttempt) -> float: ...

    def insert_outcome(self, outcome: ActionOutcomeV1) -> bool: ...

    def resolve_ambiguous(self, resolved: ActionOutcomeV1, *, now: str) -> bool:
        """AMBIGUOUS → ``resolved`` (outcome and attempt), only if still AMBIGUOUS (a compare-and-set:
        of two racing resolutions one gets True, the other False)."""
        ...

    def get_outcome(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> ActionOutcomeV1 | None: ...

    def set_compensation(
        self,
        outcome: ActionOutcomeV1,
        status: CompensationStatus,
        *,
        error: str | None,
        now_epoch: float,
        tries: int | None = ...,
        workflow_id: str | None = ...,
        retry_at_epoch: float | None = ...,
    ) -> ActionOutcomeV1:
        """Update the compensation fields: the only part of an outcome that changes after it is written.

        ``tries`` and ``workflow_id`` name the compensation workflow now in charge (kept when None);
        ``retry_at_epoch`` is when a FAILED compensation is tried again (None: not again)."""
        ...

    def compensations_to_check(
        self, *, now_epoch: float, unchanged_before_epoch: float, limit: int = ...
    ) -> list[CompensationState]:
        """FAILED compensations due for another try, and PENDING ones run by a workflow that has not
        changed them since ``unchanged_before_epoch`` (the reconciler checks that workflow)."""
        ...

    def append_ledger(self, entry: LedgerEntry) -> bool:
        """Append once: an entry whose id is already in the ledger is left as it is."""
        ...

    def append_ledger_entries(self, entries: Sequence[LedgerEntry]) -> None:
        """``append_ledger`` of several entries, in their order, in one statement."""
        ...

    def list_ledger(
        self, tenant_id: str, action_intent_id: str, *, newest: int | None = ...
    ) -> list[LedgerEntry]:
        """The entries of one subject, oldest first; ``newest``: only the latest so many, newest first."""
        ...

    def insert_signal(self, signal: ExecutionSignal) -> bool: ...

    def list_signals(self, tenant_id: str, action_intent_id: str) -> Sequence[ExecutionSignal]: ...

    def count_active(self, tenant_id: str, *, most: int) -> int:
        """The tenant's attempts QUEUED or RUNNING (its place in the execution queue's fair order),
        counted up to ``most``: a count that has reached it stops there."""
        ...
