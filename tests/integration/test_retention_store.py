"""What the retention pass asks fulfill's store (``store/executions.intents_with_work_outstanding``):
which intents the engine may still act on. Only those keep DBOS's workflows; everything else may
lose them. Matched as (tenant, intent) pairs, so another tenant's intent of the same id neither
protects nor exposes one. SQLite, and PostgreSQL on its pass."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fulfill.domain.models import AttemptStatus, CompensationStatus, ExecutionStatus
from fulfill.store import executions
from fulfill.store.db import Database
from tests.support.harness import fresh_database
from tests.support.plans import last_statement_plan
from tests.unit.factories import make_attempt, make_outcome

NOW = 1_900_000_000.0
ATTEMPTS = {
    "queued": AttemptStatus.QUEUED,
    "running": AttemptStatus.RUNNING,
    "ambiguous": AttemptStatus.AMBIGUOUS,
    "succeeded": AttemptStatus.SUCCEEDED,
    "failed": AttemptStatus.FAILED,
    "cancelled": AttemptStatus.CANCELLED,
    "expired": AttemptStatus.EXPIRED,
    # Cancelled after their write: their compensation's state decides.
    "undo_pending": AttemptStatus.CANCELLED,
    "undo_retry": AttemptStatus.CANCELLED,
    "undo_abandoned": AttemptStatus.CANCELLED,
    "undo_done": AttemptStatus.CANCELLED,
}
# compensation status, next try
COMPENSATIONS = {
    "undo_pending": (CompensationStatus.PENDING, None),
    "undo_retry": (CompensationStatus.FAILED, NOW + 60),
    "undo_abandoned": (CompensationStatus.FAILED, None),
    "undo_done": (CompensationStatus.COMPLETED, None),
}
OUTSTANDING_WORK_INDEXES = (
    "ix_execution_attempts_active_tenant",
    "ix_execution_attempts_active_updated",
    "ix_execution_attempts_active_deadline",
    "ix_execution_attempts_ambiguous_updated",
    "ix_execution_outcomes_compensation",
    "ix_execution_outcomes_tenant_compensation",
)
BUSY = {"queued", "running", "ambiguous", "undo_pending", "undo_retry"}


def _write(
    db: Database,
    tenant: str,
    attempts: dict[str, AttemptStatus],
    compensations: dict[str, tuple[CompensationStatus, float | None]],
) -> None:
    with db.write() as conn:
        for intent, status in attempts.items():
            attempt = make_attempt(
                tenant_id=tenant,
                action_intent_id=intent,
                attempt_id=f"att_{intent}",
                workflow_id=f"exec-{tenant}/{intent}",
                status=status,
            )
            assert executions.insert_attempt(conn, attempt, deadline_epoch=NOW)
            if intent not in compensations:
                continue
            outcome = make_outcome(
                tenant_id=tenant, action_intent_id=intent, status=ExecutionStatus.CANCELLED
            )
            assert executions.insert_outcome(conn, outcome)
            status_, retry_at = compensations[intent]
            executions.set_compensation(
                conn,
                outcome,
                status_,
                error=None,
                now_epoch=NOW,
                tries=1,
                workflow_id="w",
                retry_at_epoch=retry_at,
            )


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as db:
        _write(db, "t1", ATTEMPTS, COMPENSATIONS)
        # Another tenant: the same intent ids, every one at rest.
        _write(db, "t2", dict.fromkeys(ATTEMPTS, AttemptStatus.SUCCEEDED), {})
        yield db


def test_only_intents_the_engine_may_still_act_on_are_busy(database: Database) -> None:
    keys = {(tenant, intent) for tenant in ("t1", "t2") for intent in ATTEMPTS}
    keys |= {("t1", "never_seen"), ("t3", "queued")}
    with database.read() as conn:
        busy = executions.intents_with_work_outstanding(conn, keys)
    assert busy == {("t1", intent) for intent in BUSY}


def test_another_tenants_busy_intent_of_the_same_id_protects_nothing(database: Database) -> None:
    with database.read() as conn:
        assert (
            executions.intents_with_work_outstanding(conn, {("t2", "queued"), ("t2", "undo_retry")}) == set()
        )
        assert executions.intents_with_work_outstanding(conn, set()) == set()


def test_the_question_reads_only_indexes_of_work_outstanding(database: Database) -> None:
    """Each part reads an index that holds only what it asks about (attempts in flight, AMBIGUOUS
    ones, compensations by status), never every attempt or outcome: its cost follows the work in
    flight, not the history a deployment keeps."""
    plan = last_statement_plan(
        database, lambda conn: executions.intents_with_work_outstanding(conn, {("t1", "queued"), ("t2", "x")})
    )
    tables = ("execution_attempts", "execution_outcomes")
    scans = ("SCAN ", "SEARCH ", " Scan ")  # SQLite's and PostgreSQL's words for reading a table
    reads = [
        line for line in plan.splitlines() if any(t in line for t in tables) and any(w in line for w in scans)
    ]
    assert len(reads) == 4, plan
    for read in reads:
        assert any(index in read for index in OUTSTANDING_WORK_INDEXES), plan
