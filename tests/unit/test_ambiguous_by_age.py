"""``ambiguous_by_age`` and ``oldest_ambiguous_at`` on the in-memory store: AMBIGUOUS attempts counted
in their age bucket, and the oldest one's age."""

from __future__ import annotations

from fulfill.domain.models import AttemptStatus, ExecutionAttempt
from fulfill.domain.time import iso_from_epoch
from tests.support.memory_store import MemoryStore

NOW = 1_800_000_000.0


def _attempt(intent_id: str, status: AttemptStatus, age: float) -> ExecutionAttempt:
    at = iso_from_epoch(NOW - age)
    return ExecutionAttempt(
        tenant_id="t1",
        account_id="acc-1",
        action_intent_id=intent_id,
        attempt_count=1,
        attempt_id=f"attempt-{intent_id}",
        workflow_id=f"exec-t1/{intent_id}",
        status=status,
        trace_id="trace",
        started_at=at,
        updated_at=at,
    )


def test_each_ambiguous_attempt_counts_in_its_bucket_and_nothing_else_counts() -> None:
    store = MemoryStore()
    with store.write() as uow:
        for intent_id, status, age in [
            ("a", AttemptStatus.AMBIGUOUS, 10),
            ("b", AttemptStatus.AMBIGUOUS, 3599),
            ("c", AttemptStatus.AMBIGUOUS, 3600),
            ("d", AttemptStatus.AMBIGUOUS, 2 * 86_400),
            ("e", AttemptStatus.FAILED, 2 * 86_400),
            ("f", AttemptStatus.RUNNING, 10),
        ]:
            assert uow.executions.insert_attempt(_attempt(intent_id, status, age), deadline_epoch=NOW)
    with store.read() as uow:
        assert uow.executions.ambiguous_by_age(NOW) == {"under_1h": 2, "1h_to_24h": 1, "over_24h": 1}


def test_the_oldest_ambiguous_attempt_is_the_one_waiting_longest_and_none_without_any() -> None:
    store = MemoryStore()
    with store.read() as uow:
        assert uow.executions.oldest_ambiguous_at() is None
    with store.write() as uow:
        for intent_id, status, age in [
            ("a", AttemptStatus.AMBIGUOUS, 10),
            ("b", AttemptStatus.AMBIGUOUS, 5000),
            ("e", AttemptStatus.FAILED, 9000),
            ("f", AttemptStatus.RUNNING, 9000),
        ]:
            assert uow.executions.insert_attempt(_attempt(intent_id, status, age), deadline_epoch=NOW)
    with store.read() as uow:
        assert uow.executions.oldest_ambiguous_at() == iso_from_epoch(NOW - 5000)
