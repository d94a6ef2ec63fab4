"""Execution records: the attempt lock, write-once outcomes, the ledger and signals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, select, update

from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import (
    ActionOutcomeV1,
    CompensationStatus,
    ExecutionAttempt,
    ExecutionSignal,
    ExecutionStatus,
    LedgerEntry,
)
from fulfill.store.db import insert_ignore
from fulfill.store.tables import execution_attempts, execution_outcomes, execution_signals, ledger_entries

# --- attempts -------------------------------------------------------------------------------


def insert_attempt(conn: Connection, attempt: ExecutionAttempt, *, deadline_epoch: float) -> bool:
    """Take the execution lock. False when the intent already has an attempt."""
    return insert_ignore(
        conn, execution_attempts, {**attempt.model_dump(mode="json"), "deadline_epoch": deadline_epoch}
    )


def _attempt_from_row(row: Row[Any]) -> ExecutionAttempt:
    values = dict(row._mapping)
    values.pop("deadline_epoch", None)
    return ExecutionAttempt.model_validate(values)


def get_attempt(
    conn: Connection, tenant_id: str, account_id: str, action_intent_id: str
) -> ExecutionAttempt | None:
    row = conn.execute(
        select(execution_attempts).where(
            execution_attempts.c.tenant_id == tenant_id,
            execution_attempts.c.account_id == account_id,
            execution_attempts.c.action_intent_id == action_intent_id,
        )
    ).first()
    return _attempt_from_row(row) if row else None


def finish_attempt(
    conn: Connection,
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
    """RUNNING → terminal, for this attempt only. False when it was not RUNNING any more."""
    result = conn.execute(
        update(execution_attempts)
        .where(
            execution_attempts.c.tenant_id == tenant_id,
            execution_attempts.c.account_id == account_id,
            execution_attempts.c.action_intent_id == action_intent_id,
            execution_attempts.c.attempt_count == attempt_count,
            execution_attempts.c.status == ExecutionStatus.RUNNING.value,
        )
        .values(
            status=status.value,
            last_error_class=error_class.value if error_class else None,
            idempotency_key=idempotency_key,
            completed_at=completed_at,
            updated_at=completed_at,
        )
    )
    return result.rowcount == 1


def start_rerun(
    conn: Connection, *, previous: ExecutionAttempt, rerun: ExecutionAttempt, deadline_epoch: float
) -> bool:
    """Terminal attempt → the next attempt, RUNNING; only if nobody changed it meanwhile."""
    values = rerun.model_dump(mode="json", exclude={"tenant_id", "account_id", "action_intent_id"})
    result = conn.execute(
        update(execution_attempts)
        .where(
            execution_attempts.c.tenant_id == previous.tenant_id,
            execution_attempts.c.account_id == previous.account_id,
            execution_attempts.c.action_intent_id == previous.action_intent_id,
            execution_attempts.c.attempt_count == previous.attempt_count,
            execution_attempts.c.status == previous.status.value,
        )
        .values(**values, deadline_epoch=deadline_epoch)
    )
    return result.rowcount == 1


def running_attempts_past_deadline(
    conn: Connection, now_epoch: float, limit: int = 100
) -> list[ExecutionAttempt]:
    rows = conn.execute(
        select(execution_attempts)
        .where(
            execution_attempts.c.status == ExecutionStatus.RUNNING.value,
            execution_attempts.c.deadline_epoch < now_epoch,
        )
        .limit(limit)
    ).all()
    return [_attempt_from_row(row) for row in rows]


def get_deadline(conn: Connection, attempt: ExecutionAttempt) -> float:
    deadline = conn.execute(
        select(execution_attempts.c.deadline_epoch).where(
            execution_attempts.c.tenant_id == attempt.tenant_id,
            execution_attempts.c.account_id == attempt.account_id,
            execution_attempts.c.action_intent_id == attempt.action_intent_id,
        )
    ).scalar_one()
    return float(deadline)


# --- outcomes -------------------------------------------------------------------------------


def insert_outcome(conn: Connection, outcome: ActionOutcomeV1) -> bool:
    return insert_ignore(
        conn,
        execution_outcomes,
        {
            "tenant_id": outcome.tenant_id,
            "account_id": outcome.account_id,
            "action_intent_id": outcome.action_intent_id,
            "attempt_count": outcome.attempt_count,
            "status": outcome.status.value,
            "completed_at": outcome.completed_at,
            "document": outcome.model_dump(mode="json"),
        },
    )


def get_outcome(
    conn: Connection, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
) -> ActionOutcomeV1 | None:
    row = conn.execute(
        select(execution_outcomes.c.document).where(
            execution_outcomes.c.tenant_id == tenant_id,
            execution_outcomes.c.account_id == account_id,
            execution_outcomes.c.action_intent_id == action_intent_id,
            execution_outcomes.c.attempt_count == attempt_count,
        )
    ).first()
    return ActionOutcomeV1.model_validate(row.document) if row else None


def set_compensation(
    conn: Connection, outcome: ActionOutcomeV1, status: CompensationStatus, *, error: str | None
) -> ActionOutcomeV1:
    """Update the compensation fields: the only part of an outcome that changes after it is written."""
    updated = outcome.model_copy(update={"compensation_status": status, "compensation_error": error})
    conn.execute(
        update(execution_outcomes)
        .where(
            execution_outcomes.c.tenant_id == outcome.tenant_id,
            execution_outcomes.c.account_id == outcome.account_id,
            execution_outcomes.c.action_intent_id == outcome.action_intent_id,
            execution_outcomes.c.attempt_count == outcome.attempt_count,
        )
        .values(document=updated.model_dump(mode="json"))
    )
    return updated


# --- ledger ---------------------------------------------------------------------------------


def append_ledger(conn: Connection, entry: LedgerEntry) -> bool:
    """Append once: an entry whose id is already in the ledger is left as it is."""
    return insert_ignore(conn, ledger_entries, entry.model_dump(mode="json"))


def list_ledger(conn: Connection, tenant_id: str, action_intent_id: str) -> list[LedgerEntry]:
    rows = conn.execute(
        select(ledger_entries)
        .where(ledger_entries.c.tenant_id == tenant_id, ledger_entries.c.action_intent_id == action_intent_id)
        .order_by(ledger_entries.c.seq)
    ).all()
    return [LedgerEntry.model_validate({k: v for k, v in row._mapping.items() if k != "seq"}) for row in rows]


# --- signals --------------------------------------------------------------------------------


def insert_signal(conn: Connection, signal: ExecutionSignal) -> bool:
    return insert_ignore(
        conn,
        execution_signals,
        {
            "tenant_id": signal.tenantId,
            "signal_id": signal.signalId,
            "account_id": signal.accountId,
            "action_intent_id": signal.action_intent_id,
            "attempt": signal.attempt,
            "signal_type": signal.signalType,
            "created_at": signal.createdAt,
            "document": signal.model_dump(mode="json"),
        },
    )


def list_signals(conn: Connection, tenant_id: str, action_intent_id: str) -> Sequence[ExecutionSignal]:
    rows = conn.execute(
        select(execution_signals.c.document)
        .where(
            execution_signals.c.tenant_id == tenant_id,
            execution_signals.c.action_intent_id == action_intent_id,
        )
        .order_by(execution_signals.c.attempt)
    ).all()
    return [ExecutionSignal.model_validate(row.document) for row in rows]
