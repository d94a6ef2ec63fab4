"""``uow.executions`` in memory (``fulfill.store.executions``): the attempt lock, write-once
outcomes, the append-once ledger and signals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import (
    ACTIVE_ATTEMPT_STATUSES,
    ActionOutcomeV1,
    AttemptStatus,
    CompensationStatus,
    ExecutionAttempt,
    ExecutionSignal,
    ExecutionStatus,
    LedgerEntry,
    ambiguous_age_bounds,
)
from fulfill.domain.records import CompensationState
from tests.support.memory_store.tables import AttemptRow, OutcomeRow, Tables


def _key(attempt: ExecutionAttempt) -> tuple[str, str, str]:
    return (attempt.tenant_id, attempt.account_id, attempt.action_intent_id)


class MemoryExecutionsRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    # --- attempts ---------------------------------------------------------------------------

    def insert_attempt(self, attempt: ExecutionAttempt, *, deadline_epoch: float) -> bool:
        if _key(attempt) in self._t.attempts:
            return False
        self._t.attempts[_key(attempt)] = AttemptRow(attempt, deadline_epoch)
        return True

    def get_attempt(self, tenant_id: str, account_id: str, action_intent_id: str) -> ExecutionAttempt | None:
        row = self._t.attempts.get((tenant_id, account_id, action_intent_id))
        return row.attempt if row else None

    def _this(self, attempt: ExecutionAttempt) -> AttemptRow | None:
        row = self._t.attempts.get(_key(attempt))
        return row if row is not None and row.attempt.attempt_id == attempt.attempt_id else None

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
        key = (tenant_id, account_id, action_intent_id)
        row = self._t.attempts.get(key)
        if (
            row is None
            or row.attempt.attempt_id != attempt_id
            or row.attempt.status is not AttemptStatus.QUEUED
        ):
            return None
        running = row.attempt.model_copy(
            update={"status": AttemptStatus.RUNNING, "started_at": started_at, "updated_at": started_at}
        )
        self._t.attempts[key] = AttemptRow(running, deadline_epoch)
        return running

    def move_attempt(self, attempt: ExecutionAttempt, *, workflow_id: str, now: str) -> bool:
        row = self._this(attempt)
        if (
            row is None
            or row.attempt.workflow_id != attempt.workflow_id
            or row.attempt.status not in ACTIVE_ATTEMPT_STATUSES
        ):
            return False
        moved = row.attempt.model_copy(update={"workflow_id": workflow_id, "updated_at": now})
        self._t.attempts[_key(attempt)] = replace(row, attempt=moved)
        return True

    def touch_attempt(self, attempt: ExecutionAttempt, *, now: str) -> None:
        row = self._this(attempt)
        if row is not None and row.attempt.status in ACTIVE_ATTEMPT_STATUSES:
            self._t.attempts[_key(attempt)] = replace(
                row, attempt=row.attempt.model_copy(update={"updated_at": now})
            )

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
        key = (tenant_id, account_id, action_intent_id)
        row = self._t.attempts.get(key)
        if (
            row is None
            or row.attempt.attempt_count != attempt_count
            or row.attempt.status not in ACTIVE_ATTEMPT_STATUSES
        ):
            return False
        finished = row.attempt.model_copy(
            update={
                "status": AttemptStatus(status.value),
                "last_error_class": error_class,
                "idempotency_key": idempotency_key,
                "completed_at": completed_at,
                "updated_at": completed_at,
            }
        )
        self._t.attempts[key] = replace(row, attempt=finished)
        return True

    def start_rerun(
        self, *, previous: ExecutionAttempt, rerun: ExecutionAttempt, deadline_epoch: float
    ) -> bool:
        row = self._t.attempts.get(_key(previous))
        if (
            row is None
            or row.attempt.attempt_count != previous.attempt_count
            or row.attempt.status is not previous.status
        ):
            return False
        self._t.attempts[_key(previous)] = AttemptRow(rerun, deadline_epoch)
        return True

    def active_attempts_unchanged_since(
        self, updated_before: str, limit: int = 100
    ) -> list[tuple[ExecutionAttempt, float]]:
        rows = sorted(
            (
                row
                for row in self._t.attempts.values()
                if row.attempt.status in ACTIVE_ATTEMPT_STATUSES and row.attempt.updated_at < updated_before
            ),
            key=lambda row: row.attempt.updated_at,
        )
        return [(row.attempt, row.deadline_epoch) for row in rows[:limit]]

    def attempts_past_budget(self, now_epoch: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._t.attempts.values():
            if row.attempt.status in ACTIVE_ATTEMPT_STATUSES and row.deadline_epoch < now_epoch:
                counts[row.attempt.status.value] = counts.get(row.attempt.status.value, 0) + 1
        return counts

    def attempts_past_budget_by_tenant(self, now_epoch: float) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for row in self._t.attempts.values():
            if row.attempt.status in ACTIVE_ATTEMPT_STATUSES and row.deadline_epoch < now_epoch:
                key = (row.attempt.tenant_id, row.attempt.status.value)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def get_deadline(self, attempt: ExecutionAttempt) -> float:
        return self._t.attempts[_key(attempt)].deadline_epoch

    # --- outcomes ---------------------------------------------------------------------------

    def ambiguous_by_age(self, now_epoch: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for bucket, newer_than, older_than in ambiguous_age_bounds(now_epoch):
            counts[bucket] = sum(
                1
                for row in self._t.attempts.values()
                if row.attempt.status is AttemptStatus.AMBIGUOUS
                and (newer_than is None or row.attempt.updated_at > newer_than)
                and (older_than is None or row.attempt.updated_at <= older_than)
            )
        return counts

    def oldest_ambiguous_at(self) -> str | None:
        return min(
            (
                row.attempt.updated_at
                for row in self._t.attempts.values()
                if row.attempt.status is AttemptStatus.AMBIGUOUS
            ),
            default=None,
        )

    def insert_outcome(self, outcome: ActionOutcomeV1) -> bool:
        key = (outcome.tenant_id, outcome.account_id, outcome.action_intent_id, outcome.attempt_count)
        if key in self._t.outcomes:
            return False
        self._t.outcomes[key] = OutcomeRow(outcome)
        return True

    def get_outcome(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> ActionOutcomeV1 | None:
        row = self._t.outcomes.get((tenant_id, account_id, action_intent_id, attempt_count))
        return row.outcome if row else None

    def resolve_ambiguous(self, resolved: ActionOutcomeV1, *, now: str) -> bool:
        key = (resolved.tenant_id, resolved.account_id, resolved.action_intent_id, resolved.attempt_count)
        row = self._t.outcomes.get(key)
        if row is None or row.outcome.status is not ExecutionStatus.AMBIGUOUS:
            return False
        self._t.outcomes[key] = replace(row, outcome=resolved)
        attempt = self._t.attempts.get(key[:3])
        if (
            attempt is not None
            and attempt.attempt.attempt_count == resolved.attempt_count
            and attempt.attempt.status is AttemptStatus.AMBIGUOUS
        ):
            moved = attempt.attempt.model_copy(
                update={
                    "status": AttemptStatus(resolved.status.value),
                    "last_error_class": resolved.error_class,
                    "updated_at": now,
                }
            )
            self._t.attempts[key[:3]] = replace(attempt, attempt=moved)
        return True

    def set_compensation(
        self,
        outcome: ActionOutcomeV1,
        status: CompensationStatus,
        *,
        error: str | None,
        now_epoch: float,
        tries: int | None = None,
        workflow_id: str | None = None,
        retry_at_epoch: float | None = None,
    ) -> ActionOutcomeV1:
        updated = outcome.model_copy(update={"compensation_status": status, "compensation_error": error})
        key = (outcome.tenant_id, outcome.account_id, outcome.action_intent_id, outcome.attempt_count)
        row = self._t.outcomes.get(key)
        if row is not None:
            self._t.outcomes[key] = OutcomeRow(
                updated,
                compensation_tries=tries if tries is not None else row.compensation_tries,
                compensation_workflow_id=workflow_id
                if workflow_id is not None
                else row.compensation_workflow_id,
                compensation_retry_epoch=retry_at_epoch,
                compensation_updated_epoch=now_epoch,
            )
        return updated

    def compensations_to_check(
        self, *, now_epoch: float, unchanged_before_epoch: float, limit: int = 100
    ) -> list[CompensationState]:
        due = [
            CompensationState(row.outcome, row.compensation_tries, row.compensation_workflow_id)
            for row in self._t.outcomes.values()
            if (
                row.outcome.compensation_status is CompensationStatus.FAILED
                and row.compensation_retry_epoch is not None
                and row.compensation_retry_epoch <= now_epoch
            )
            or (
                row.outcome.compensation_status is CompensationStatus.PENDING
                and row.compensation_workflow_id is not None
                and (row.compensation_updated_epoch or 0.0) < unchanged_before_epoch
            )
        ]
        return due[:limit]

    # --- ledger and signals ------------------------------------------------------------------

    def append_ledger(self, entry: LedgerEntry) -> bool:
        if entry.entry_id in self._t.ledger:
            return False
        self._t.ledger[entry.entry_id] = (len(self._t.ledger), entry)
        return True

    def append_ledger_entries(self, entries: Sequence[LedgerEntry]) -> None:
        for entry in entries:
            self.append_ledger(entry)

    def list_ledger(
        self, tenant_id: str, action_intent_id: str, *, newest: int | None = None
    ) -> list[LedgerEntry]:
        entries = [
            entry
            for _, entry in sorted(self._t.ledger.values(), key=lambda item: item[0])
            if entry.tenant_id == tenant_id and entry.action_intent_id == action_intent_id
        ]
        return entries if newest is None else list(reversed(entries))[:newest]

    def insert_signal(self, signal: ExecutionSignal) -> bool:
        key = (signal.tenantId, signal.signalId)
        if key in self._t.signals:
            return False
        self._t.signals[key] = signal
        return True

    def list_signals(self, tenant_id: str, action_intent_id: str) -> Sequence[ExecutionSignal]:
        signals = [
            signal
            for (tenant, _), signal in self._t.signals.items()
            if tenant == tenant_id and signal.action_intent_id == action_intent_id
        ]
        return sorted(signals, key=lambda signal: signal.attempt)

    def count_active(self, tenant_id: str, *, most: int) -> int:
        if most < 1:
            raise ValueError(f"most must be at least 1, not {most}")
        active = sum(
            1
            for row in self._t.attempts.values()
            if row.attempt.tenant_id == tenant_id
            and row.attempt.status in (AttemptStatus.QUEUED, AttemptStatus.RUNNING)
        )
        return min(active, most)
