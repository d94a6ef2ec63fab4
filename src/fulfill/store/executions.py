"""Execution records: the attempt lock, write-once outcomes, the ledger and signals.

The statements every execution runs (its attempt read, moved to RUNNING and finished, its ledger
entries appended) are built once, with their values bound at execution (``bindparam``), so that
SQLAlchemy finds their compiled form in its cache instead of building, keying and (for a multi-row
insert) compiling them again for each execution.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    TextClause,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import (
    ActionOutcomeV1,
    AttemptStatus,
    CompensationStatus,
    ExecutionAttempt,
    ExecutionSignal,
    ExecutionStatus,
    LedgerEntry,
    ambiguous_age_bounds,
)
from fulfill.domain.records import CompensationState as CompensationState
from fulfill.domain.retention import IntentKey
from fulfill.store.db import insert_ignore
from fulfill.store.tables import (
    execution_attempts,
    execution_outcomes,
    execution_signals,
    is_active_attempt,
    is_ambiguous_attempt,
    ledger_entries,
)

# --- attempts -------------------------------------------------------------------------------


def insert_attempt(conn: Connection, attempt: ExecutionAttempt, *, deadline_epoch: float) -> bool:
    """Take the execution lock (a QUEUED row). False when the intent already has an attempt."""
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
        _get_attempt_statement(),
        {"k_tenant_id": tenant_id, "k_account_id": account_id, "k_action_intent_id": action_intent_id},
    ).first()
    return _attempt_from_row(row) if row else None


@functools.cache
def _get_attempt_statement() -> Any:
    return select(execution_attempts).where(*_attempt_key())


def _attempt_key() -> list[Any]:
    """The intent's attempt row, its key bound at execution (``k_tenant_id``, ``k_account_id``,
    ``k_action_intent_id``)."""
    return [
        execution_attempts.c.tenant_id == bindparam("k_tenant_id"),
        execution_attempts.c.account_id == bindparam("k_account_id"),
        execution_attempts.c.action_intent_id == bindparam("k_action_intent_id"),
    ]


def _this_attempt(attempt: ExecutionAttempt) -> list[Any]:
    return [
        execution_attempts.c.tenant_id == attempt.tenant_id,
        execution_attempts.c.account_id == attempt.account_id,
        execution_attempts.c.action_intent_id == attempt.action_intent_id,
        execution_attempts.c.attempt_id == attempt.attempt_id,
    ]


def begin_attempt(
    conn: Connection,
    *,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    attempt_id: str,
    started_at: str,
    deadline_epoch: float,
) -> ExecutionAttempt | None:
    """QUEUED → RUNNING for the intent's attempt of this id: its budget starts now. The RUNNING
    attempt as stored (``RETURNING``: no read before nor after); None when the intent has no
    QUEUED attempt of this id (none, another one, or not QUEUED)."""
    row = conn.execute(
        _begin_attempt_statement(),
        {
            "k_tenant_id": tenant_id,
            "k_account_id": account_id,
            "k_action_intent_id": action_intent_id,
            "k_attempt_id": attempt_id,
            "v_started_at": started_at,
            "v_deadline_epoch": deadline_epoch,
        },
    ).first()
    return _attempt_from_row(row) if row else None


@functools.cache
def _begin_attempt_statement() -> Any:
    return (
        update(execution_attempts)
        .where(
            *_attempt_key(),
            execution_attempts.c.attempt_id == bindparam("k_attempt_id"),
            execution_attempts.c.status == AttemptStatus.QUEUED.value,
        )
        .values(
            status=AttemptStatus.RUNNING.value,
            started_at=bindparam("v_started_at"),
            updated_at=bindparam("v_started_at"),
            deadline_epoch=bindparam("v_deadline_epoch"),
        )
        .returning(*execution_attempts.c)
    )


def move_attempt(conn: Connection, attempt: ExecutionAttempt, *, workflow_id: str, now: str) -> bool:
    """Hand a still active attempt to another workflow (a fork or a restart by the reconciler)."""
    result = conn.execute(
        update(execution_attempts)
        .where(
            *_this_attempt(attempt),
            execution_attempts.c.workflow_id == attempt.workflow_id,
            is_active_attempt(),
        )
        .values(workflow_id=workflow_id, updated_at=now)
    )
    return result.rowcount == 1


def touch_attempt(conn: Connection, attempt: ExecutionAttempt, *, now: str) -> None:
    """Note that the reconciler looked at (and acted on) an active attempt."""
    conn.execute(
        update(execution_attempts)
        .where(
            *_this_attempt(attempt),
            is_active_attempt(),
        )
        .values(updated_at=now)
    )


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
    """QUEUED/RUNNING → terminal, for this attempt only. False when it had already ended."""
    result = conn.execute(
        _finish_attempt_statement(),
        {
            "k_tenant_id": tenant_id,
            "k_account_id": account_id,
            "k_action_intent_id": action_intent_id,
            "k_attempt_count": attempt_count,
            "v_status": status.value,
            "v_last_error_class": error_class.value if error_class else None,
            "v_idempotency_key": idempotency_key,
            "v_completed_at": completed_at,
        },
    )
    return result.rowcount == 1


@functools.cache
def _finish_attempt_statement() -> Any:
    return (
        update(execution_attempts)
        .where(
            *_attempt_key(),
            execution_attempts.c.attempt_count == bindparam("k_attempt_count"),
            is_active_attempt(),
        )
        .values(
            status=bindparam("v_status"),
            last_error_class=bindparam("v_last_error_class"),
            idempotency_key=bindparam("v_idempotency_key"),
            completed_at=bindparam("v_completed_at"),
            updated_at=bindparam("v_completed_at"),
        )
    )


def start_rerun(
    conn: Connection, *, previous: ExecutionAttempt, rerun: ExecutionAttempt, deadline_epoch: float
) -> bool:
    """Terminal attempt → the next attempt, QUEUED; only if nobody changed it meanwhile."""
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


def active_attempts_unchanged_since(
    conn: Connection, updated_before: str, limit: int = 100
) -> list[tuple[ExecutionAttempt, float]]:
    """QUEUED and RUNNING attempts whose last change is older than ``updated_before``, oldest
    first, with their deadlines: what the reconciler checks."""
    rows = conn.execute(
        select(execution_attempts)
        .where(
            is_active_attempt(),
            execution_attempts.c.updated_at < updated_before,
        )
        .order_by(execution_attempts.c.updated_at)
        .limit(limit)
    ).all()
    return [(_attempt_from_row(row), float(row.deadline_epoch)) for row in rows]


def attempts_past_budget(conn: Connection, now_epoch: float) -> dict[str, int]:
    """How many attempts are QUEUED, and how many RUNNING, past their deadline (one indexed count
    per status: ``ix_execution_attempts_active_deadline``)."""
    rows = conn.execute(
        select(execution_attempts.c.status, func.count())
        .where(
            is_active_attempt(),
            execution_attempts.c.deadline_epoch < now_epoch,
        )
        .group_by(execution_attempts.c.status)
    ).all()
    return {str(status): int(count) for status, count in rows}


def attempts_past_budget_by_tenant(conn: Connection, now_epoch: float) -> dict[tuple[str, str], int]:
    """The same, by (tenant, status)."""
    rows = conn.execute(
        select(execution_attempts.c.tenant_id, execution_attempts.c.status, func.count())
        .where(
            is_active_attempt(),
            execution_attempts.c.deadline_epoch < now_epoch,
        )
        .group_by(execution_attempts.c.tenant_id, execution_attempts.c.status)
    ).all()
    return {(str(tenant), str(status)): int(count) for tenant, status, count in rows}


def ambiguous_by_age(conn: Connection, now_epoch: float) -> dict[str, int]:
    """How many attempts wait AMBIGUOUS, by age bucket (``domain/models.AMBIGUOUS_AGE_BUCKETS``),
    from the time they became AMBIGUOUS (one indexed count per bucket:
    ``ix_execution_attempts_ambiguous_updated``)."""
    counts: dict[str, int] = {}
    for bucket, newer_than, older_than in ambiguous_age_bounds(now_epoch):
        where = [is_ambiguous_attempt()]
        if newer_than is not None:
            where.append(execution_attempts.c.updated_at > newer_than)
        if older_than is not None:
            where.append(execution_attempts.c.updated_at <= older_than)
        counts[bucket] = int(
            conn.execute(select(func.count()).select_from(execution_attempts).where(*where)).scalar_one()
        )
    return counts


def intents_with_work_outstanding(conn: Connection, keys: Collection[IntentKey]) -> set[IntentKey]:
    """Which of these intents (tenant id, intent id) the engine may still act on: an attempt
    QUEUED, RUNNING or AMBIGUOUS, or a compensation PENDING or FAILED with a next try due. What
    the retention pass keeps DBOS's workflows of (``domain/retention.py``). Each part reads its own
    partial or status index; the keys are matched as pairs, so one tenant's busy intent never
    protects (nor exposes) another tenant's intent of the same id."""
    if not keys:
        return set()
    pairs = sorted(keys)
    a, o = execution_attempts, execution_outcomes
    attempts = tuple_(a.c.tenant_id, a.c.action_intent_id).in_(pairs)
    outcomes = tuple_(o.c.tenant_id, o.c.action_intent_id).in_(pairs)
    statement = union(
        select(a.c.tenant_id, a.c.action_intent_id).where(is_active_attempt(), attempts),
        select(a.c.tenant_id, a.c.action_intent_id).where(is_ambiguous_attempt(), attempts),
        select(o.c.tenant_id, o.c.action_intent_id).where(
            o.c.compensation_status == CompensationStatus.PENDING.value, outcomes
        ),
        select(o.c.tenant_id, o.c.action_intent_id).where(
            o.c.compensation_status == CompensationStatus.FAILED.value,
            o.c.compensation_retry_epoch.is_not(None),
            outcomes,
        ),
    )
    return {(str(tenant), str(intent)) for tenant, intent in conn.execute(statement)}


def oldest_ambiguous_at(conn: Connection) -> str | None:
    """When the attempt waiting AMBIGUOUS longest became AMBIGUOUS (None: none); an indexed
    minimum (``ix_execution_attempts_ambiguous_updated``)."""
    value = conn.execute(
        select(func.min(execution_attempts.c.updated_at)).where(is_ambiguous_attempt())
    ).scalar_one()
    return str(value) if value is not None else None


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


def _this_outcome(outcome: ActionOutcomeV1) -> list[Any]:
    return [
        execution_outcomes.c.tenant_id == outcome.tenant_id,
        execution_outcomes.c.account_id == outcome.account_id,
        execution_outcomes.c.action_intent_id == outcome.action_intent_id,
        execution_outcomes.c.attempt_count == outcome.attempt_count,
    ]


def resolve_ambiguous(conn: Connection, resolved: ActionOutcomeV1, *, now: str) -> bool:
    """AMBIGUOUS → the resolved outcome (and its attempt's status), only if both are still
    AMBIGUOUS: of two resolutions racing, exactly one moves them. False for the other."""
    moved = conn.execute(
        update(execution_outcomes)
        .where(*_this_outcome(resolved), execution_outcomes.c.status == AttemptStatus.AMBIGUOUS.value)
        .values(status=resolved.status.value, document=resolved.model_dump(mode="json"))
    )
    if moved.rowcount != 1:
        return False
    conn.execute(
        update(execution_attempts)
        .where(
            execution_attempts.c.tenant_id == resolved.tenant_id,
            execution_attempts.c.account_id == resolved.account_id,
            execution_attempts.c.action_intent_id == resolved.action_intent_id,
            execution_attempts.c.attempt_count == resolved.attempt_count,
            execution_attempts.c.status == AttemptStatus.AMBIGUOUS.value,
        )
        .values(
            status=resolved.status.value,
            last_error_class=resolved.error_class.value if resolved.error_class else None,
            updated_at=now,
        )
    )
    return True


def set_compensation(
    conn: Connection,
    outcome: ActionOutcomeV1,
    status: CompensationStatus,
    *,
    error: str | None,
    now_epoch: float,
    tries: int | None = None,
    workflow_id: str | None = None,
    retry_at_epoch: float | None = None,
) -> ActionOutcomeV1:
    """Update the compensation fields: the only part of an outcome that changes after it is written.

    ``tries`` and ``workflow_id`` name the compensation workflow now in charge (kept when None);
    ``retry_at_epoch`` is when a FAILED compensation is tried again (None: not again).
    """
    updated = outcome.model_copy(update={"compensation_status": status, "compensation_error": error})
    values: dict[str, Any] = {
        "document": updated.model_dump(mode="json"),
        "compensation_status": status.value,
        "compensation_retry_epoch": retry_at_epoch,
        "compensation_updated_epoch": now_epoch,
    }
    if tries is not None:
        values["compensation_tries"] = tries
    if workflow_id is not None:
        values["compensation_workflow_id"] = workflow_id
    conn.execute(update(execution_outcomes).where(*_this_outcome(outcome)).values(**values))
    return updated


def compensations_to_check(
    conn: Connection, *, now_epoch: float, unchanged_before_epoch: float, limit: int = 100
) -> list[CompensationState]:
    """FAILED compensations due for another try, and PENDING ones run by a workflow that has not
    changed them since ``unchanged_before_epoch`` (the reconciler checks that workflow)."""
    o = execution_outcomes
    rows = conn.execute(
        select(o.c.document, o.c.compensation_tries, o.c.compensation_workflow_id)
        .where(
            or_(
                and_(
                    o.c.compensation_status == CompensationStatus.FAILED.value,
                    o.c.compensation_retry_epoch <= now_epoch,
                ),
                and_(
                    o.c.compensation_status == CompensationStatus.PENDING.value,
                    o.c.compensation_workflow_id.is_not(None),
                    o.c.compensation_updated_epoch < unchanged_before_epoch,
                ),
            )
        )
        .limit(limit)
    ).all()
    return [
        CompensationState(
            outcome=ActionOutcomeV1.model_validate(row.document),
            tries=int(row.compensation_tries),
            workflow_id=row.compensation_workflow_id,
        )
        for row in rows
    ]


# --- ledger ---------------------------------------------------------------------------------


def append_ledger(conn: Connection, entry: LedgerEntry) -> bool:
    """Append once: an entry whose id is already in the ledger is left as it is."""
    # No hash and no position: the checkpoint that covers it sets both (store/ledger.py), so that
    # appending costs what it did before the chain and no writer waits for another.
    return insert_ignore(conn, ledger_entries, entry.model_dump(mode="json"))


def append_ledger_entries(conn: Connection, entries: Sequence[LedgerEntry]) -> None:
    """:func:`append_ledger` of several entries, in their order, in one statement (one multi-row
    ``INSERT … ON CONFLICT DO NOTHING``): an entry whose id is already there is left as it is.

    Executed as one statement of its rows in order (SQLAlchemy's "insert many values": an
    ``INSERT … RETURNING`` given a list of rows is sent as one multi-row ``INSERT``), whose
    compiled form is cached; a multi-row ``INSERT`` built with ``values([...])`` cannot be, and
    was compiled again at every append."""
    if not entries:
        return
    rows = [entry.model_dump(mode="json") for entry in entries]
    conn.execute(_append_statement(conn.dialect.name), rows).all()


@functools.cache
def _append_statement(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(ledger_entries).on_conflict_do_nothing().returning(ledger_entries.c.seq)


def list_ledger(
    conn: Connection, tenant_id: str, action_intent_id: str, *, newest: int | None = None
) -> list[LedgerEntry]:
    """The entries of one subject, oldest first; ``newest``: only the latest so many, newest first."""
    query = select(ledger_entries).where(
        ledger_entries.c.tenant_id == tenant_id, ledger_entries.c.action_intent_id == action_intent_id
    )
    if newest is None:
        query = query.order_by(ledger_entries.c.seq)
    else:
        query = query.order_by(ledger_entries.c.seq.desc()).limit(newest)
    rows = conn.execute(query).all()
    return [
        LedgerEntry.model_validate({k: v for k, v in row._mapping.items() if k not in _CHAIN}) for row in rows
    ]


_CHAIN = frozenset({"seq", "entry_hash", "position"})  # the store's and the chain's columns


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


@functools.lru_cache(maxsize=8)
def _count_active_statement(dialect: str, most: int) -> TextClause:
    """A tenant's attempts in flight are the entries of the partial index
    ``ix_execution_attempts_active_tenant`` (tenant, intent) under its id (migration 0025): the
    count reads those, in the index's order, no one else's, and stops at ``most``.

    The order and the limit in the text are what keep every plan on that index. PostgreSQL plans a
    statement it has prepared once for every tenant, from the average tenant; where one tenant's
    backlog is most of the table, a limit without an order (or given as a parameter) looked
    cheapest read from the table's start until that many rows matched, which for a tenant with
    three in flight meant every row of every tenant (6.5 ms against 0.05 ms with 30,000 of
    another's). Read in the index's order, a limit ends the read early and nothing is sorted.
    SQLite, without statistics, would seek the status index and look up every tenant's attempts in
    flight: it is told which index to use."""
    hint = " INDEXED BY ix_execution_attempts_active_tenant" if dialect == "sqlite" else ""
    return text(
        f"SELECT count(*) FROM (SELECT 1 FROM execution_attempts{hint}"  # noqa: S608 (a constant and an int)
        " WHERE status IN ('QUEUED', 'RUNNING') AND tenant_id = :tenant_id"
        f" ORDER BY action_intent_id LIMIT {int(most)}) AS active"
    )


def count_active(conn: Connection, tenant_id: str, *, most: int) -> int:
    """The tenant's attempts QUEUED or RUNNING (its place in the execution queue's fair order),
    counted up to ``most`` (read at every enqueue): its cost follows the tenant's own attempts in
    flight, and stops there however large its backlog."""
    if most < 1:
        raise ValueError(f"most must be at least 1, not {most}")
    statement = _count_active_statement(conn.dialect.name, most)
    return int(conn.execute(statement, {"tenant_id": tenant_id}).scalar_one())


class SqlExecutionsRepository:
    """The executions repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert_attempt(self, attempt: ExecutionAttempt, *, deadline_epoch: float) -> bool:
        return insert_attempt(self._conn, attempt, deadline_epoch=deadline_epoch)

    def get_attempt(self, tenant_id: str, account_id: str, action_intent_id: str) -> ExecutionAttempt | None:
        return get_attempt(self._conn, tenant_id, account_id, action_intent_id)

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
        return begin_attempt(
            self._conn,
            tenant_id=tenant_id,
            account_id=account_id,
            action_intent_id=action_intent_id,
            attempt_id=attempt_id,
            started_at=started_at,
            deadline_epoch=deadline_epoch,
        )

    def move_attempt(self, attempt: ExecutionAttempt, *, workflow_id: str, now: str) -> bool:
        return move_attempt(self._conn, attempt, workflow_id=workflow_id, now=now)

    def touch_attempt(self, attempt: ExecutionAttempt, *, now: str) -> None:
        return touch_attempt(self._conn, attempt, now=now)

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
        return finish_attempt(
            self._conn,
            tenant_id=tenant_id,
            account_id=account_id,
            action_intent_id=action_intent_id,
            attempt_count=attempt_count,
            status=status,
            error_class=error_class,
            idempotency_key=idempotency_key,
            completed_at=completed_at,
        )

    def start_rerun(
        self, *, previous: ExecutionAttempt, rerun: ExecutionAttempt, deadline_epoch: float
    ) -> bool:
        return start_rerun(self._conn, previous=previous, rerun=rerun, deadline_epoch=deadline_epoch)

    def active_attempts_unchanged_since(
        self, updated_before: str, limit: int = 100
    ) -> list[tuple[ExecutionAttempt, float]]:
        return active_attempts_unchanged_since(self._conn, updated_before, limit)

    def attempts_past_budget(self, now_epoch: float) -> dict[str, int]:
        return attempts_past_budget(self._conn, now_epoch)

    def attempts_past_budget_by_tenant(self, now_epoch: float) -> dict[tuple[str, str], int]:
        return attempts_past_budget_by_tenant(self._conn, now_epoch)

    def ambiguous_by_age(self, now_epoch: float) -> dict[str, int]:
        return ambiguous_by_age(self._conn, now_epoch)

    def intents_with_work_outstanding(self, keys: Collection[IntentKey]) -> set[IntentKey]:
        return intents_with_work_outstanding(self._conn, keys)

    def oldest_ambiguous_at(self) -> str | None:
        return oldest_ambiguous_at(self._conn)

    def get_deadline(self, attempt: ExecutionAttempt) -> float:
        return get_deadline(self._conn, attempt)

    def insert_outcome(self, outcome: ActionOutcomeV1) -> bool:
        return insert_outcome(self._conn, outcome)

    def get_outcome(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> ActionOutcomeV1 | None:
        return get_outcome(self._conn, tenant_id, account_id, action_intent_id, attempt_count)

    def resolve_ambiguous(self, resolved: ActionOutcomeV1, *, now: str) -> bool:
        return resolve_ambiguous(self._conn, resolved, now=now)

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
        return set_compensation(
            self._conn,
            outcome,
            status,
            error=error,
            now_epoch=now_epoch,
            tries=tries,
            workflow_id=workflow_id,
            retry_at_epoch=retry_at_epoch,
        )

    def compensations_to_check(
        self, *, now_epoch: float, unchanged_before_epoch: float, limit: int = 100
    ) -> list[CompensationState]:
        return compensations_to_check(
            self._conn, now_epoch=now_epoch, unchanged_before_epoch=unchanged_before_epoch, limit=limit
        )

    def append_ledger(self, entry: LedgerEntry) -> bool:
        return append_ledger(self._conn, entry)

    def append_ledger_entries(self, entries: Sequence[LedgerEntry]) -> None:
        return append_ledger_entries(self._conn, entries)

    def list_ledger(
        self, tenant_id: str, action_intent_id: str, *, newest: int | None = None
    ) -> list[LedgerEntry]:
        return list_ledger(self._conn, tenant_id, action_intent_id, newest=newest)

    def insert_signal(self, signal: ExecutionSignal) -> bool:
        return insert_signal(self._conn, signal)

    def list_signals(self, tenant_id: str, action_intent_id: str) -> Sequence[ExecutionSignal]:
        return list_signals(self._conn, tenant_id, action_intent_id)

    def count_active(self, tenant_id: str, *, most: int) -> int:
        return count_active(self._conn, tenant_id, most=most)
