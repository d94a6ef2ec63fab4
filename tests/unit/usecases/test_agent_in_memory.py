"""The agent's use cases on the in-memory store: a proposal is an intent PENDING_APPROVAL with
its proposer; the same key finds the same intent; another key's arguments are refused; another
caller's task is unknown."""

from __future__ import annotations

import pytest

from fulfill.domain.models import ApprovalStatus, ParameterMapping, RegistryEntry
from fulfill.tokens import Principal
from fulfill.usecases import agent
from fulfill.usecases.agent import KeyReused, UnknownTask
from tests.unit.usecases.test_use_cases_in_memory import Context

TOOL = "internal.create_task"
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


def context() -> Context:
    ctx = Context(tool_schemas={TOOL: SCHEMA})
    with ctx.store.write() as uow:
        uow.registry.insert_version(
            RegistryEntry(
                action_type="CREATE_INTERNAL_TASK",
                registry_version=1,
                tool_name=TOOL,
                parameter_mapping={"title": ParameterMapping(tool_param="title", required=True)},
                created_at="2026-01-01T00:00:00Z",
            )
        )
    return ctx


def caller(subject: str = "agent-1", tenant: str = "t1") -> Principal:
    return Principal(subject=subject, tenant_id=tenant, scopes=frozenset({"intents:write"}), claims={})


def test_a_proposal_is_a_pending_intent_and_a_working_task() -> None:
    ctx = context()
    (entry,) = agent.proposable_entries(ctx)
    state, created = agent.propose(ctx, caller(), entry, {"account_id": "acc-1", "title": "x"}, None)
    assert created
    assert state.intent.approval_status is ApprovalStatus.PENDING_APPROVAL
    assert state.intent.proposed_by == "agent-1"
    assert state.outcome.status == "working"
    assert state.ttl_ms > 0


def test_the_same_key_finds_the_same_intent_and_other_arguments_are_refused() -> None:
    ctx = context()
    (entry,) = agent.proposable_entries(ctx)
    key = "k" * 20
    first, created = agent.propose(ctx, caller(), entry, {"account_id": "acc-1", "title": "x"}, key)
    again, created_again = agent.propose(ctx, caller(), entry, {"account_id": "acc-1", "title": "x"}, key)
    assert created
    assert not created_again
    assert again.task_id == first.task_id
    with pytest.raises(KeyReused):
        agent.propose(ctx, caller(), entry, {"account_id": "acc-1", "title": "y"}, key)


def test_another_callers_task_is_unknown_and_the_callers_own_can_be_cancelled() -> None:
    ctx = context()
    (entry,) = agent.proposable_entries(ctx)
    state, _ = agent.propose(ctx, caller(), entry, {"account_id": "acc-1", "title": "x"}, None)
    for stranger in (caller("agent-2"), caller(tenant="t2")):
        with pytest.raises(UnknownTask):
            agent.task_state(ctx, stranger, state.task_id)
        with pytest.raises(UnknownTask):
            agent.cancel_task(ctx, stranger, state.task_id)
    cancelled = agent.cancel_task(ctx, caller(), state.task_id)
    assert cancelled.outcome.status == "cancelled"
