"""Which of DBOS's finished workflows the retention pass may delete (``domain/retention.py``): the
intent read back from a workflow's id, and the decision."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fulfill.domain.execution import CompensationRequest, execution_workflow_id
from fulfill.domain.retention import (
    COMPENSATION_WORKFLOW,
    EXECUTION_WORKFLOW,
    FinishedWorkflow,
    deletable,
    intents_of,
    owners,
)

CUTOFF = 1_900_000_000.0
identifiers = st.from_regex(r"[A-Za-z0-9_.:@-]{1,40}", fullmatch=True)


def _finished(
    workflow_id: str, *, name: str = EXECUTION_WORKFLOW, status: str = "SUCCESS", at: float = CUTOFF - 1
) -> FinishedWorkflow:
    return FinishedWorkflow(workflow_id=workflow_id, name=name, status=status, updated_at_epoch=at)


@pytest.mark.parametrize(
    ("workflow_id", "name", "expected"),
    [
        ("exec-t1/ai_1", EXECUTION_WORKFLOW, {("t1", "ai_1")}),
        ("exec-t1/ai_1-r3", EXECUTION_WORKFLOW, {("t1", "ai_1-r3"), ("t1", "ai_1")}),
        ("exec-t1/ai_1~2", EXECUTION_WORKFLOW, {("t1", "ai_1")}),
        ("exec-t1/ai_1-r2~10", EXECUTION_WORKFLOW, {("t1", "ai_1-r2"), ("t1", "ai_1")}),
        ("compensate-t1/ai_1-a2-c3", COMPENSATION_WORKFLOW, {("t1", "ai_1")}),
        ("compensate-t1/ai-a1-c1-a1-c2", COMPENSATION_WORKFLOW, {("t1", "ai-a1-c1")}),
    ],
)
def test_a_workflow_names_its_intent(workflow_id: str, name: str, expected: set[tuple[str, str]]) -> None:
    assert owners(workflow_id, name) == expected


@pytest.mark.parametrize(
    ("workflow_id", "name"),
    [
        ("exec-t1/ai_1", "someone.elses_workflow"),  # not one of fulfill's workflows
        ("compensate-t1/ai_1-a1-c1", EXECUTION_WORKFLOW),  # an id of the other kind
        ("exec-t1/ai_1", COMPENSATION_WORKFLOW),
        ("exec-t1", EXECUTION_WORKFLOW),  # no intent
        ("exec-t1/a/b", EXECUTION_WORKFLOW),  # not an identifier
        ("exec-t1/ai_1~x", EXECUTION_WORKFLOW),
        ("compensate-t1/ai_1-a1", COMPENSATION_WORKFLOW),  # no try
        ("a-uuid-dbos-made-up", EXECUTION_WORKFLOW),
    ],
)
def test_a_workflow_it_cannot_read_belongs_to_no_intent(workflow_id: str, name: str) -> None:
    assert owners(workflow_id, name) == frozenset()


@given(tenant=identifiers, intent=identifiers, attempt=st.integers(1, 10_000), fork=st.integers(0, 12))
def test_an_execution_workflow_always_names_its_own_intent(
    tenant: str, intent: str, attempt: int, fork: int
) -> None:
    """Whatever the ids, the true intent is among those read back: a busy intent always protects
    its workflows, forks and reruns included."""
    workflow_id = execution_workflow_id(tenant, intent, attempt) + (f"~{fork}" if fork else "")
    assert (tenant, intent) in owners(workflow_id, EXECUTION_WORKFLOW)


@given(tenant=identifiers, intent=identifiers, attempt=st.integers(1, 10_000), tries=st.integers(1, 100))
def test_a_compensation_workflow_names_exactly_its_intent(
    tenant: str, intent: str, attempt: int, tries: int
) -> None:
    request = CompensationRequest(
        tenant_id=tenant, account_id="acc", action_intent_id=intent, attempt_count=attempt, try_number=tries
    )
    assert owners(request.workflow_id, COMPENSATION_WORKFLOW) == {(tenant, intent)}


def test_only_finished_old_workflows_of_intents_at_rest_are_chosen() -> None:
    workflows = [
        _finished("exec-t1/done"),
        _finished("exec-t1/failed", status="ERROR"),
        _finished("exec-t1/cancelled", status="CANCELLED"),
        _finished("exec-t1/gave_up", status="MAX_RECOVERY_ATTEMPTS_EXCEEDED"),
        _finished("compensate-t1/done-a1-c1", name=COMPENSATION_WORKFLOW),
        _finished("exec-t1/running", status="PENDING"),
        _finished("exec-t1/queued", status="ENQUEUED"),
        _finished("exec-t1/recent", at=CUTOFF + 1),
        _finished("exec-t1/busy"),
        _finished("exec-t1/busy-r2"),  # a rerun of the busy intent
        _finished("exec-t1/busy~1"),  # a fork of it
        _finished("compensate-t1/busy-a1-c2", name=COMPENSATION_WORKFLOW),
        _finished("exec-t2/busy"),  # another tenant's intent of the same id, at rest
        _finished("exec-t1/x", name="other.workflow"),
    ]
    chosen = deletable(workflows, busy={("t1", "busy")}, cutoff_epoch=CUTOFF)
    assert chosen == [
        "exec-t1/done",
        "exec-t1/failed",
        "exec-t1/cancelled",
        "exec-t1/gave_up",
        "compensate-t1/done-a1-c1",
        "exec-t2/busy",
    ]


def test_an_intent_id_that_looks_like_a_rerun_keeps_the_workflow_if_either_reading_is_busy() -> None:
    """``exec-t1/ai-r2`` is the first attempt of intent ``ai-r2`` or the second of ``ai``: kept
    while either has work outstanding."""
    workflow = _finished("exec-t1/ai-r2")
    assert deletable([workflow], busy={("t1", "ai")}, cutoff_epoch=CUTOFF) == []
    assert deletable([workflow], busy={("t1", "ai-r2")}, cutoff_epoch=CUTOFF) == []
    assert deletable([workflow], busy={("t1", "other")}, cutoff_epoch=CUTOFF) == ["exec-t1/ai-r2"]


def test_the_store_is_asked_about_every_intent_a_batch_may_belong_to() -> None:
    workflows = [
        _finished("exec-t1/ai-r2"),
        _finished("compensate-t2/b-a1-c1", name=COMPENSATION_WORKFLOW),
        _finished("not-ours", name="other.workflow"),
    ]
    assert intents_of(workflows) == {("t1", "ai-r2"), ("t1", "ai"), ("t2", "b")}
