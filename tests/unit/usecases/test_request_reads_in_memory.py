"""What a creation and an approval read, now in fewer transactions: the approval's kill-switch
warning is read with the intent (still only advice: switches that cannot be read never fail the
approval), and a tool's schema validator is kept per schema (a tool whose schema changes is
checked against its new schema)."""

from __future__ import annotations

from typing import Any

import pytest

from fulfill.domain.execution import ExecutionRequest
from fulfill.domain.killswitch import KillSwitchScope, SwitchSettings
from fulfill.domain.models import ApprovalStatus, ExecutionAttempt
from fulfill.usecases import admin, intents
from fulfill.usecases.errors import Invalid
from tests.support.memory_store.killswitches import MemoryKillSwitchesRepository
from tests.unit.usecases.test_policy_decisions_in_memory import (
    SCHEMA,
    TOOL,
    body,
    context,
    person,
    policy,
    started,
)

__all__ = ["started"]  # the fixture, used by name


def _pending(ctx: Any) -> str:
    intent, created = intents.create_intent(ctx, person("ada"), body())
    assert created
    assert intent.approval_status is ApprovalStatus.PENDING_APPROVAL
    return intent.action_intent_id


def test_an_approval_whose_kill_switches_cannot_be_read_is_accepted_and_says_so(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context()
    intent_id = _pending(ctx)

    def unreadable(self: object, tenant_id: str) -> Any:
        raise RuntimeError("the switches' table is unreadable")

    monkeypatch.setattr(MemoryKillSwitchesRepository, "get_global_and_tenant", unreadable)
    change = intents.approve_intent(ctx, person("bob"), intent_id)
    assert change.approval_status is ApprovalStatus.APPROVED
    assert [attempt.action_intent_id for attempt, _taken, _request in started] == [intent_id]
    [warning] = change.warnings
    assert warning.startswith("the kill switches could not be read")


def test_a_switch_that_is_on_is_named_when_the_approval_completes_only(
    started: list[tuple[ExecutionAttempt, bool, ExecutionRequest]],
) -> None:
    ctx = context(policy("pol_twoneeded", "REQUIRE_APPROVAL", approvals_required=2))
    intent_id = _pending(ctx)
    admin.write_switches(
        ctx, KillSwitchScope.of_tenant("t1"), SwitchSettings(stopped=True), changed_by="root"
    )
    first = intents.approve_intent(ctx, person("bob"), intent_id)
    assert (first.approval_status, first.warnings, started) == (ApprovalStatus.PENDING_APPROVAL, [], [])
    second = intents.approve_intent(ctx, person("carol"), intent_id)
    assert second.approval_status is ApprovalStatus.APPROVED
    [warning] = second.warnings
    assert warning.startswith("kill switch ")
    assert f"POST /intents/{intent_id}/rerun" in warning
    # Repeating the approval of an approved intent answers its state, with no warning and no start.
    assert intents.approve_intent(ctx, person("carol"), intent_id).warnings == []
    assert len(started) == 1


def test_a_tool_whose_input_schema_changes_is_checked_against_the_new_one() -> None:
    ctx = context()
    assert intents.create_intent(ctx, person(), body(parameters={"title": "x"}))[1]
    ctx.tool_schemas = {TOOL: {**SCHEMA, "properties": {"title": {"type": "integer"}}}}
    with pytest.raises(Invalid) as refused:
        intents.create_intent(ctx, person(), body(parameters={"title": "x"}))
    assert refused.value.code == "INVALID_PARAMETERS"
    assert intents.create_intent(ctx, person(), body(parameters={"title": 7}))[1]
    ctx.tool_schemas = {TOOL: SCHEMA}  # and back
    assert intents.create_intent(ctx, person(), body(parameters={"title": "x"}))[1]
