"""The in-memory store keeps the semantics the steps rely on: a transaction commits whole or not
at all, a duplicate insert changes nothing, transitions are compare-and-set, an outage is transient."""

from __future__ import annotations

import pytest

from fulfill.domain.models import ApprovalStatus
from fulfill.ports.store import StoreUnavailable
from tests.support.memory_store import MemoryStore
from tests.unit.factories import make_attempt, make_intent


def _insert_then_fail(store: MemoryStore) -> None:
    with store.write() as uow:
        assert uow.intents.insert_intent(make_intent(), "hash")
        raise RuntimeError("rolled back")


def test_a_write_that_raises_leaves_nothing() -> None:
    store = MemoryStore()
    with pytest.raises(RuntimeError):
        _insert_then_fail(store)
    with store.read() as uow:
        assert uow.intents.get_intent("t1", "ai_1") is None


def test_a_duplicate_insert_returns_false_and_keeps_the_first() -> None:
    store = MemoryStore()
    with store.write() as uow:
        assert uow.executions.insert_attempt(make_attempt(attempt_id="first"), deadline_epoch=1.0)
        assert not uow.executions.insert_attempt(make_attempt(attempt_id="second"), deadline_epoch=2.0)
    with store.read() as uow:
        attempt = uow.executions.get_attempt("t1", "acc_1", "ai_1")
    assert attempt is not None
    assert attempt.attempt_id == "first"


def test_a_transition_from_a_stale_state_changes_nothing() -> None:
    store = MemoryStore()
    pending = make_intent(approval_status=ApprovalStatus.PENDING_APPROVAL)
    with store.write() as uow:
        uow.intents.insert_intent(pending, "hash")
        assert uow.intents.transition_approval(pending, to_status=ApprovalStatus.APPROVED, now="t")
        assert uow.intents.transition_approval(pending, to_status=ApprovalStatus.REJECTED, now="t") is None
        intent = uow.intents.get_intent("t1", "ai_1")
    assert intent is not None
    assert intent.approval_status is ApprovalStatus.APPROVED


def test_a_read_sees_only_what_was_committed() -> None:
    store = MemoryStore()
    with store.write() as uow:
        uow.intents.insert_intent(make_intent(), "hash")
        with store.read() as reader:
            assert reader.intents.get_intent("t1", "ai_1") is None


def test_an_outage_is_transient_and_passes() -> None:
    store = MemoryStore()
    store.fail_next(1)
    with pytest.raises(StoreUnavailable) as raised, store.read():
        pass
    assert store.is_transient(raised.value)
    with store.read() as uow:
        assert uow.intents.get_intent("t1", "ai_1") is None
