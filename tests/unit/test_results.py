from __future__ import annotations

import json
from typing import Any

import pytest
from mcp.types import CallToolResult, TextContent

from fulfill.connectors.base import tool_failure
from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import ExternalObjectRef
from fulfill.gateway.results import outcome_from_call_result

REF = {"system": "CRM", "object_type": "Task", "object_id": "task_1", "object_url": "https://crm/task_1"}


def call(
    text: str | None = None, structured: dict[str, Any] | None = None, is_error: bool = False
) -> CallToolResult:
    content = [] if text is None else [TextContent(type="text", text=text)]
    return CallToolResult(content=content, structured_content=structured, is_error=is_error)


def envelope(inner_text: str, *, is_error: bool | None = None) -> str:
    result: dict[str, Any] = {"content": [{"type": "text", "text": inner_text}]}
    if is_error is not None:
        result["isError"] = is_error
    return json.dumps({"result": result})


# ---------------------------------------------------------------- success


def test_structured_success_with_refs() -> None:
    outcome = outcome_from_call_result(
        call(text="ignored", structured={"success": True, "external_object_refs": [REF]})
    )
    assert outcome.success is True
    assert outcome.error is None
    assert outcome.external_object_refs == [ExternalObjectRef(**REF)]


def test_success_via_json_text_when_structured_is_none() -> None:
    second = {"system": "CALENDAR", "object_type": "Event", "object_id": "ev_1"}
    outcome = outcome_from_call_result(call(text=json.dumps({"external_object_refs": [REF, second]})))
    assert outcome.success is True
    assert outcome.external_object_refs == [ExternalObjectRef(**REF), ExternalObjectRef(**second)]


def test_structured_content_wins_over_text() -> None:
    outcome = outcome_from_call_result(
        call(
            text=json.dumps({"success": False, "error_message": "Unauthorized"}),
            structured={"external_object_refs": [REF]},
        )
    )
    assert outcome.success is True


def test_first_text_block_is_used() -> None:
    result = CallToolResult(
        content=[
            TextContent(type="text", text=json.dumps({"external_object_refs": [REF]})),
            TextContent(type="text", text="not json"),
        ],
        structured_content=None,
        is_error=False,
    )
    assert outcome_from_call_result(result).success is True


def test_double_envelope_with_success_refs_is_success() -> None:
    text = envelope(json.dumps({"success": True, "external_object_refs": [REF]}))
    outcome = outcome_from_call_result(call(text=text))
    assert outcome.success is True
    assert outcome.external_object_refs == [ExternalObjectRef(**REF)]


def test_triple_envelope_is_unwrapped() -> None:
    text = envelope(envelope(json.dumps({"external_object_refs": [REF]})))
    assert outcome_from_call_result(call(text=text)).success is True


# ---------------------------------------------------------------- invalid responses


@pytest.mark.parametrize(
    "result",
    [
        call(structured={"success": True, "external_object_refs": []}),
        call(structured={"success": True}),
        call(structured={"external_object_refs": None}),
        call(structured={"external_object_refs": [{"system": "NOPE", "object_type": "t", "object_id": "1"}]}),
        call(structured={"external_object_refs": [{"system": "CRM", "object_type": "t"}]}),
        call(structured={"external_object_refs": "task_1"}),
        call(text="done!"),
        call(text="[1, 2]"),
        call(text=""),
        call(text=None),
        call(text=json.dumps({"success": True, "external_object_refs": []})),
    ],
)
def test_success_without_valid_refs_is_invalid_tool_response(result: CallToolResult) -> None:
    outcome = outcome_from_call_result(result)
    assert outcome.success is False
    assert outcome.external_object_refs == []
    assert outcome.error is not None
    assert outcome.error.error_code == "INVALID_TOOL_RESPONSE"
    assert outcome.error.error_class is ErrorClass.UNKNOWN
    assert not outcome.error.retryable


# ---------------------------------------------------------------- failures


def test_is_error_structured_keeps_declared_class() -> None:
    outcome = outcome_from_call_result(
        call(
            text="rate limit exceeded",
            structured={
                "error_code": "CRM_QUOTA",
                "error_class": "DOWNSTREAM",
                "error_message": "Unauthorized",
            },
            is_error=True,
        )
    )
    assert outcome.success is False
    assert outcome.error is not None
    assert outcome.error.error_class is ErrorClass.DOWNSTREAM
    assert outcome.error.error_code == "CRM_QUOTA"
    assert outcome.error.error_message == "Unauthorized"


def test_is_error_structured_without_declared_class_is_classified() -> None:
    outcome = outcome_from_call_result(
        call(structured={"error_code": "rate_limit_exceeded", "error_message": "x"}, is_error=True)
    )
    assert outcome.error is not None
    assert outcome.error.error_class is ErrorClass.RATE_LIMIT


def test_is_error_text_only_rate_limit() -> None:
    outcome = outcome_from_call_result(call(text="rate limit exceeded", is_error=True))
    assert outcome.success is False
    assert outcome.error is not None
    assert outcome.error.error_class is ErrorClass.RATE_LIMIT
    assert outcome.error.error_code == "RATE_LIMIT"  # derived, as the reference derives it
    assert outcome.error.error_message == "rate limit exceeded"
    assert outcome.error.retryable


def test_is_error_wins_over_success_payload() -> None:
    outcome = outcome_from_call_result(
        call(structured={"success": True, "external_object_refs": [REF]}, is_error=True)
    )
    assert outcome.success is False
    assert outcome.external_object_refs == []


def test_success_false_without_is_error_is_failure() -> None:
    outcome = outcome_from_call_result(
        call(
            text=json.dumps(
                {"success": False, "error": {"code": "VALIDATION_FAILED", "message": "bad title"}}
            )
        )
    )
    assert outcome.success is False
    assert outcome.error is not None
    assert outcome.error.error_code == "VALIDATION_FAILED"
    assert outcome.error.error_message == "bad title"
    assert outcome.error.error_class is ErrorClass.VALIDATION


def test_double_envelope_failure_is_never_success() -> None:
    text = json.dumps(
        {
            "result": {
                "content": [{"type": "text", "text": '{"success": false, "error_message": "Unauthorized"}'}]
            }
        }
    )
    outcome = outcome_from_call_result(call(text=text))
    assert outcome.success is False
    assert outcome.external_object_refs == []
    assert outcome.error is not None
    assert outcome.error.error_class is ErrorClass.AUTH
    assert outcome.error.error_message == "Unauthorized"


def test_double_envelope_failure_in_structured_content() -> None:
    structured = json.loads(envelope(json.dumps({"success": False, "error_message": "Service Unavailable"})))
    outcome = outcome_from_call_result(call(structured=structured))
    assert outcome.success is False
    assert outcome.error is not None
    assert outcome.error.error_class is ErrorClass.DOWNSTREAM


def test_inner_is_error_without_success_flag_is_failure() -> None:
    text = envelope(json.dumps({"error_message": "request timed out"}), is_error=True)
    outcome = outcome_from_call_result(call(text=text))
    assert outcome.success is False
    assert outcome.error is not None
    assert outcome.error.error_class is ErrorClass.TIMEOUT


def test_failure_without_any_message_gets_placeholder() -> None:
    outcome = outcome_from_call_result(call(is_error=True))
    assert outcome.error is not None
    assert outcome.error.error_message == "the tool reported a failure without a message"
    assert outcome.error.error_code == "UNKNOWN_ERROR"
    assert outcome.error.error_class is ErrorClass.UNKNOWN


def test_failure_message_is_stripped() -> None:
    outcome = outcome_from_call_result(call(text="  Unauthorized \n", is_error=True))
    assert outcome.error is not None
    assert outcome.error.error_message == "Unauthorized"


@pytest.mark.parametrize(
    "result",
    [
        call(text="x" * 5000, is_error=True),
        call(structured={"error_message": "y" * 501}, is_error=True),
        call(text=json.dumps({"success": False, "message": "z" * 10_000})),
    ],
)
def test_long_messages_are_truncated(result: CallToolResult) -> None:
    outcome = outcome_from_call_result(result)
    assert outcome.error is not None
    assert len(outcome.error.error_message) == 500


def test_message_at_limit_is_kept_whole() -> None:
    outcome = outcome_from_call_result(call(text="m" * 500, is_error=True))
    assert outcome.error is not None
    assert outcome.error.error_message == "m" * 500


def test_inner_is_error_wins_over_an_inner_success_flag() -> None:
    inner = json.dumps({"success": True, "external_object_refs": [REF]})
    outcome = outcome_from_call_result(call(text=envelope(inner, is_error=True)))
    assert outcome.success is False


def test_blank_error_message_falls_back_to_the_text() -> None:
    outcome = outcome_from_call_result(
        call(text="upstream throttled the request", structured={"error_message": "   "}, is_error=True)
    )
    assert outcome.error is not None
    assert outcome.error.error_message == "upstream throttled the request"
    assert outcome.error.error_class is ErrorClass.RATE_LIMIT


# ---------------------------------------------------------------- tool errors as fulfill's tools answer them


@pytest.mark.parametrize(
    ("error_class", "code"),
    [
        (ErrorClass.VALIDATION, "VALIDATION_FAILED"),
        (ErrorClass.AUTH, "TOKEN_BINDING_MISMATCH"),
        (ErrorClass.DOWNSTREAM, "STORE_UNAVAILABLE"),
        (ErrorClass.RATE_LIMIT, "SLOW_DOWN"),
    ],
)
def test_a_tool_failure_round_trips_with_its_classification(error_class: ErrorClass, code: str) -> None:
    result = tool_failure(error_class, code, "what went wrong")
    # What a client validates against the tool's output schema is absent; the details are text.
    assert result.is_error is True
    assert result.structured_content is None
    assert json.loads(result.content[0].text) == {
        "success": False,
        "error_code": code,
        "error_class": error_class.value,
        "error_message": "what went wrong",
    }
    outcome = outcome_from_call_result(result)
    assert outcome.success is False
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.error_code) == (error_class, code)
    assert outcome.error.error_message == "what went wrong"


def test_a_tool_failure_survives_the_wire() -> None:
    wire = tool_failure(ErrorClass.DOWNSTREAM, "STORE_UNAVAILABLE", "try again").model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    assert "structuredContent" not in wire
    outcome = outcome_from_call_result(CallToolResult.model_validate(wire))
    assert outcome.error is not None
    assert outcome.error.error_class is ErrorClass.DOWNSTREAM
    assert outcome.error.retryable


def test_is_error_with_schema_valid_structured_content_reads_the_error_from_the_text() -> None:
    """A server that must send structured content on errors sends something its schema accepts; the
    classification is then in the text, and the failure must not turn into a success."""
    text = json.dumps({"error_code": "CRM_QUOTA", "error_class": "RATE_LIMIT", "error_message": "slow down"})
    outcome = outcome_from_call_result(
        call(text=text, structured={"external_object_refs": [REF]}, is_error=True)
    )
    assert outcome.success is False
    assert outcome.external_object_refs == []
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.error_code) == (ErrorClass.RATE_LIMIT, "CRM_QUOTA")
    assert outcome.error.error_message == "slow down"


def test_is_error_json_text_in_an_envelope_is_unwrapped() -> None:
    inner = json.dumps(
        {"error_code": "VALIDATION_FAILED", "error_class": "VALIDATION", "error_message": "no"}
    )
    outcome = outcome_from_call_result(call(text=envelope(inner), is_error=True))
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.error_code) == (
        ErrorClass.VALIDATION,
        "VALIDATION_FAILED",
    )


def test_is_error_with_plain_text_that_is_not_json_is_classified_from_the_text() -> None:
    outcome = outcome_from_call_result(
        call(text="Error executing tool x: 503 Service Unavailable", is_error=True)
    )
    assert outcome.error is not None
    assert outcome.error.error_code == "DOWNSTREAM_ERROR"
    assert outcome.error.error_class is ErrorClass.DOWNSTREAM


@pytest.mark.parametrize(
    ("message", "code", "error_class"),
    [
        # The reference's tool invoker derives these codes from the message (spec §5.4).
        ("authentication failed", "AUTH_FAILED", ErrorClass.AUTH),
        ("unauthorized", "AUTH_FAILED", ErrorClass.AUTH),
        ("rate limit exceeded", "RATE_LIMIT", ErrorClass.RATE_LIMIT),
        ("throttle: slow down", "RATE_LIMIT", ErrorClass.RATE_LIMIT),
        ("validation failed for title", "VALIDATION_ERROR", ErrorClass.VALIDATION),
        ("invalid priority", "VALIDATION_ERROR", ErrorClass.VALIDATION),
        ("upstream timeout", "TIMEOUT", ErrorClass.TIMEOUT),
        ("something odd happened", "UNKNOWN_ERROR", ErrorClass.UNKNOWN),
        # Deliberately better than the reference: case does not matter (the reference would say
        # UNKNOWN_ERROR), and a class it never derives gets its DownstreamError code.
        ("Unauthorized", "AUTH_FAILED", ErrorClass.AUTH),
        ("503 Service Unavailable", "DOWNSTREAM_ERROR", ErrorClass.DOWNSTREAM),
    ],
)
def test_a_failure_without_a_code_gets_the_reference_s_derived_code(
    message: str, code: str, error_class: ErrorClass
) -> None:
    outcome = outcome_from_call_result(call(text=json.dumps({"success": False, "error_message": message})))
    assert outcome.error is not None
    assert (outcome.error.error_code, outcome.error.error_class) == (code, error_class)


def test_a_declared_class_without_a_code_gets_that_class_s_code() -> None:
    text = json.dumps({"success": False, "error_class": "RATE_LIMIT", "error_message": "Quota used up"})
    outcome = outcome_from_call_result(call(text=text, is_error=True))
    assert outcome.error is not None
    assert (outcome.error.error_code, outcome.error.error_class) == ("RATE_LIMIT", ErrorClass.RATE_LIMIT)


def test_refs_in_a_json_string_inside_structured_content_are_found() -> None:
    # The mcp SDK's answer for a ``-> str`` tool returning json.dumps(...): the string twice.
    text = json.dumps({"external_object_refs": [REF]})
    outcome = outcome_from_call_result(call(text=text, structured={"result": text}))
    assert outcome.success is True
    assert outcome.external_object_refs == [ExternalObjectRef(**REF)]


def test_a_failure_in_a_json_string_inside_structured_content_is_a_failure() -> None:
    text = json.dumps({"success": False, "error_code": "NOPE", "error_message": "refused"})
    outcome = outcome_from_call_result(call(text=text, structured={"result": text}))
    assert outcome.success is False
    assert outcome.error is not None
    assert outcome.error.error_message == "refused"


def test_refs_in_the_text_are_found_when_structured_content_has_none() -> None:
    outcome = outcome_from_call_result(
        call(text=json.dumps({"external_object_refs": [REF]}), structured={"result": "done"})
    )
    assert outcome.success is True
