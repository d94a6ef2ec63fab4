"""The priority the engine gives an execution that goes to the queue: its rank among its tenant's
attempts in flight, counted up to the queue's last rank (``engine/workflow.py _fair_priority``,
``domain/fairness.py MAX_QUEUE_PRIORITY``): a tenant's backlog beyond that shares the last rank,
and another tenant's backlog does not move anyone's rank."""

from __future__ import annotations

from fulfill.domain.fairness import MAX_QUEUE_PRIORITY
from fulfill.domain.models import AttemptStatus
from fulfill.engine.workflow import _fair_priority
from tests.support.memory_store import MemoryStore
from tests.unit.factories import make_tenant_attempts


def _in_flight(store: MemoryStore, tenant_id: str, count: int, status: AttemptStatus) -> None:
    with store.write() as uow:
        for attempt in make_tenant_attempts(tenant_id, [status] * count):
            assert uow.executions.insert_attempt(attempt, deadline_epoch=1e10)


def test_a_backlog_beyond_the_last_rank_shares_it_and_moves_no_other_tenants_rank() -> None:
    store = MemoryStore()
    _in_flight(store, "greedy", MAX_QUEUE_PRIORITY + 5, AttemptStatus.QUEUED)
    _in_flight(store, "small", 2, AttemptStatus.RUNNING)
    assert MAX_QUEUE_PRIORITY == 1_000
    assert _fair_priority(store, "greedy") == MAX_QUEUE_PRIORITY
    assert _fair_priority(store, "small") == 2
    assert _fair_priority(store, "newcomer") == 1
