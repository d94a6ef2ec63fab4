"""Pure rules of remote targets: what a remote tool receives, how its answer is read, names."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
import pytest
from pydantic import TypeAdapter, ValidationError

from fulfill.domain.errors import ErrorClass, classify
from fulfill.domain.ledger import unknown_outcome_entry
from fulfill.domain.mapping import arguments_for_tool, with_trusted_arguments
from fulfill.domain.models import ActionOutcomeV1, ExecutionStatus, ExternalObjectRef, ToolName
from fulfill.domain.targets import remote_timeout_seconds
from fulfill.gateway.remote import _specs, normalized_answer
from fulfill.gateway.results import outcome_from_call_result

TRUSTED = with_trusted_arguments(
    {"title": "x"}, tenant_id="t1", account_id="a1", action_intent_id="ai_1", idempotency_key="k" * 64
)


def test_a_tool_receives_only_the_trusted_arguments_its_schema_declares() -> None:
    assert arguments_for_tool(TRUSTED, {"type": "object", "properties": {"title": {}}}) == {"title": "x"}
    declared = {"type": "object", "properties": {"title": {}, "account_id": {}}}
    assert arguments_for_tool(TRUSTED, declared) == {"title": "x", "account_id": "a1"}
    internal = {"properties": {key: {} for key in ["title", *TRUSTED]}}
    assert arguments_for_tool(TRUSTED, internal) == TRUSTED
    assert arguments_for_tool(TRUSTED, {"type": "object"}) == {"title": "x"}


def test_the_gateway_answers_the_engine_before_the_engine_gives_up() -> None:
    for engine in (0.2, 1.0, 3.0, 10.0, 300.0):
        assert 0 < remote_timeout_seconds(engine) < engine
    assert remote_timeout_seconds(10.0) == 9.0
    assert remote_timeout_seconds(3.0) == 2.5


def test_tool_names_of_remote_targets_and_refs_to_their_objects() -> None:
    names = TypeAdapter(ToolName)
    for ok in (
        "tickets.create_ticket",
        "tickets.createTicket",
        "crm.contacts-v2.create",
        "internal.create_task",
    ):
        assert names.validate_python(ok) == ok
    for bad in ("Tickets.create", "tickets", "tickets.", ".create", "tickets.-x", "tickets.a b"):
        with pytest.raises(ValidationError):
            names.validate_python(bad)
    ref = ExternalObjectRef(system="MCP:tickets", object_type="Ticket", object_id="T-1")
    assert ref.system == "MCP:tickets"
    for bad_system in ("MCP:Tickets", "TICKETS", "MCP:", "mcp:tickets"):
        with pytest.raises(ValidationError):
            ExternalObjectRef(system=bad_system, object_type="Ticket", object_id="T-1")


def _answer(
    payload: Any = None, *, text: str | None = None, is_error: bool = False, structured: bool = True
) -> types.CallToolResult:
    body = text if text is not None else json.dumps(payload)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=body)],
        structured_content=payload if structured and isinstance(payload, dict) else None,
        is_error=is_error,
    )


def _normalized(result: types.CallToolResult) -> dict[str, Any]:
    answer = normalized_answer(result, target="tickets", tool="create_ticket", idempotency_key="key-1")
    outcome = outcome_from_call_result(answer)
    return outcome.model_dump(mode="json", exclude_none=True)


def test_refs_from_a_target_name_the_target_and_keep_only_web_urls() -> None:
    returned = {
        "external_object_refs": [
            {"system": "TICKETS", "object_type": "Ticket", "object_id": "T-1", "object_url": "https://t/1"},
            {"system": "CRM", "object_type": "Note", "object_id": 7, "object_url": "javascript:alert(1)"},
            {"object_type": "", "object_id": "skipped"},
            "not a ref",
        ]
    }
    assert _normalized(_answer(returned))["external_object_refs"] == [
        {"system": "MCP:tickets", "object_type": "Ticket", "object_id": "T-1", "object_url": "https://t/1"},
        {"system": "MCP:tickets", "object_type": "Note", "object_id": "7"},
    ]
    assert _normalized(_answer(returned, structured=False))["success"] is True


@pytest.mark.parametrize(
    ("result", "object_id"),
    [
        (_answer(text="ticket created"), "key-1"),
        (_answer({"id": "T-42", "title": "x"}), "T-42"),
        (_answer({"id": 42}, structured=False), "42"),
        (_answer({"id": True}), "key-1"),
        (_answer({"external_object_refs": []}), "key-1"),
    ],
)
def test_an_answer_without_refs_gets_one_ref_to_the_call(
    result: types.CallToolResult, object_id: str
) -> None:
    assert _normalized(result)["external_object_refs"] == [
        {"system": "MCP:tickets", "object_type": "create_ticket", "object_id": object_id}
    ]


def test_failures_of_a_target_stay_failures_with_their_declared_class() -> None:
    declared = _normalized(
        _answer(
            {"error_code": "QUOTA", "error_class": "RATE_LIMIT", "error_message": "slow down"}, is_error=True
        )
    )
    assert declared == {
        "success": False,
        "external_object_refs": [],
        "error": {"error_class": "RATE_LIMIT", "error_code": "QUOTA", "error_message": "slow down"},
    }
    plain = _normalized(_answer(text="priority must be low, normal or high", is_error=True))
    assert plain["success"] is False
    assert plain["error"]["error_code"] == "UNKNOWN_ERROR"  # the reference's derived code
    assert _normalized(_answer({"success": False, "error": "invalid title"}))["success"] is False


def test_discovery_keeps_usable_tools_and_says_which_it_skipped() -> None:
    def tool(name: str, schema: dict[str, Any] | None = None) -> types.Tool:
        return types.Tool(name=name, description=" d " * 1000, input_schema=schema or {"type": "object"})

    found = _specs(
        "tickets",
        [
            tool("create_ticket"),
            tool("createTicket"),
            tool("bad name"),
            tool("create_ticket"),  # twice
            tool("scalar", {"type": "string"}),
            tool("broken", {"type": "object", "properties": {"a": {"type": 5}}}),
            tool("huge", {"type": "object", "description": "x" * 70_000}),
        ],
    )
    assert [spec.name for spec in found.tools] == ["tickets.create_ticket", "tickets.createTicket"]
    assert found.tools[0].remote_name == "create_ticket"
    assert len(found.tools[0].description or "") <= 1024
    assert found.skipped == [
        "bad name (name not usable)",
        "create_ticket (listed twice)",
        "scalar (input schema is not an object)",
        "broken (invalid input schema)",
        "huge (input schema too large)",
    ]


def test_an_unknown_outcome_is_never_retried_and_asks_a_person_to_check() -> None:
    assert classify(error_code="UNKNOWN_OUTCOME") is ErrorClass.UNKNOWN
    outcome = ActionOutcomeV1(
        tenant_id="t1",
        account_id="a1",
        action_intent_id="ai_1",
        attempt_count=1,
        status=ExecutionStatus.FAILED,
        error_code="UNKNOWN_OUTCOME",
        error_class=ErrorClass.UNKNOWN,
        error_message="lost",
        tool_name="tickets.create_ticket",
        idempotency_key="k" * 64,
        tool_run_ref="r",
        started_at="2026-01-01T00:00:00.000Z",
        completed_at="2026-01-01T00:00:01.000Z",
        trace_id="tr",
    )
    entry = unknown_outcome_entry(outcome)
    assert entry.entry_id == "ai_1#1#OUTCOME_UNKNOWN"
    assert entry.data["target"] == "tickets"
    assert entry.data["remote_tool"] == "create_ticket"
    assert entry.data["idempotency_key"] == "k" * 64
    assert "check the target" in entry.data["action"]
