"""Pure rules of remote targets: what a remote tool receives, how its answer is read, names."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
import pytest
from pydantic import TypeAdapter, ValidationError

from fulfill.domain.errors import DERIVED_CODES, ErrorClass, classify, target_error
from fulfill.domain.ledger import unknown_outcome_entry
from fulfill.domain.mapping import arguments_for_tool, with_trusted_arguments
from fulfill.domain.models import ActionOutcomeV1, ExecutionStatus, ExternalObjectRef, ToolName
from fulfill.domain.targets import remote_timeout_seconds
from fulfill.gateway.remote import MAX_SKIPPED_TOOLS, _specs, normalized_answer
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
        "error": {"error_class": "RATE_LIMIT", "error_code": "TARGET:QUOTA", "error_message": "slow down"},
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


def test_a_target_error_code_is_namespaced_and_never_one_of_fulfills_own() -> None:
    own = {
        "KILL_SWITCH_ENABLED",
        "UNKNOWN_OUTCOME",
        "TARGET_TIMEOUT",
        "EGRESS_REFUSED",
        "TOKEN_BINDING_MISMATCH",
    }
    for code in own:
        error = _normalized(_answer({"error_code": code, "error_message": "m"}, is_error=True))["error"]
        assert error["error_code"] == f"TARGET:{code}"
    # A class the target declared is kept (one of the six); a code's meaning still classifies.
    assert target_error("KILL_SWITCH_ENABLED", "stopped").error_class is ErrorClass.VALIDATION
    assert target_error("x", "m", declared_class="RATE_LIMIT").error_class is ErrorClass.RATE_LIMIT
    assert target_error("x", "m", declared_class="NOT_A_CLASS" * 1000).error_class is ErrorClass.UNKNOWN
    # Cleaned to A-Z 0-9 _ and bounded; nothing usable left: the code derived from the class.
    assert target_error("quota exceeded!", "m").error_code == "TARGET:QUOTA_EXCEEDED"
    assert target_error("A" * 500_000, "m").error_code == "TARGET:" + "A" * 64
    assert target_error("é-☃", "m").error_code == DERIVED_CODES[ErrorClass.UNKNOWN]
    assert target_error(None, "rate limit hit").error_code == "RATE_LIMIT"


def test_a_target_error_message_is_bounded_and_printable() -> None:
    error = target_error("X", "line\n\x00\x1b[31mred\u202e" * 100_000)
    assert len(error.error_message) <= 500
    assert error.error_message.startswith("line [31mred line")
    assert all(ch.isprintable() for ch in error.error_message)
    assert target_error("X", "\x00\n ").error_message == "the target reported a failure without a message"


def test_a_listing_names_at_most_a_bounded_number_of_skipped_tools() -> None:
    listed = [types.Tool(name=f"bad name {n}", input_schema={"type": "object"}) for n in range(87_181)]
    listed += [types.Tool(name="ok", input_schema={"type": "object"})]
    found = _specs("tickets", listed)
    assert [spec.name for spec in found.tools] == ["tickets.ok"]
    assert len(found.skipped) == MAX_SKIPPED_TOOLS + 1
    assert found.skipped[0] == "bad name 0 (name not usable)"
    assert found.skipped[-1] == f"... and {87_181 - MAX_SKIPPED_TOOLS} more tool(s) skipped"
    many = [types.Tool(name=f"t{n}", input_schema={"type": "object"}) for n in range(1000)]
    crowded = _specs("tickets", many)
    assert len(crowded.tools) == 200
    assert len(crowded.skipped) == MAX_SKIPPED_TOOLS + 1
    assert crowded.skipped[0] == "t200 (more than 200 tools)"


def test_a_plain_text_answer_keeps_a_bounded_excerpt() -> None:
    assert _normalized(_answer(text="comment added"))["answer_excerpt"] == "comment added"
    # The SDK's structured ``{"result": text}`` of a tool returning a string changes nothing.
    wrapped = types.CallToolResult(
        content=[types.TextContent(type="text", text="done")], structured_content={"result": "done"}
    )
    assert _normalized(wrapped)["answer_excerpt"] == "done"
    long = _normalized(_answer(text="é" * 5000))["answer_excerpt"]
    assert long == "é" * 1024  # 2048 bytes, never half a character
    assert "answer_excerpt" not in _normalized(_answer({"id": "T-1"}))
    assert "answer_excerpt" not in _normalized(_answer(text="   "))
