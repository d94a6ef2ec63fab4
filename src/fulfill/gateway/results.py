"""Reading a ``tools/call`` answer: success with external refs, or a classified failure.

Nested envelopes (a JSON text that itself holds ``result.content[].text``) are unwrapped to the
innermost payload *before* success is decided, so a failure can never hide inside a success
(reference spec §13 item 12). A classification the tool declares itself is kept (item 13).
A tool error's details are read from its structured content when that describes the error, and
otherwise from its JSON text, which is where fulfill's own tools put them.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.types import CallToolResult, TextContent
from pydantic import TypeAdapter, ValidationError

from fulfill.domain.errors import ErrorClass, ExecutionError, make_error
from fulfill.domain.models import ExternalObjectRef
from fulfill.domain.ports import ToolCallOutcome

_REFS = TypeAdapter(list[ExternalObjectRef])
_MAX_MESSAGE = 500
# A plain-text answer's excerpt, put on the timeline (the gateway adds it to the success it
# normalises a remote target's answer to): at most this many UTF-8 bytes.
ANSWER_EXCERPT_KEY = "answer_excerpt"
PLAIN_ANSWER_EXCERPT_BYTES = 2048
# Why an answer's refs are the gateway's fallback ref to the call itself (the timeline says it,
# so that refs a tool meant to send but put where nobody reads them are not lost without a word).
REFS_NOTE_KEY = "refs_note"
_ERROR_KEYS = ("error_code", "error_class", "error_message", "error", "code", "message")


def call_payload(result: CallToolResult) -> dict[str, Any] | None:
    """The answer's innermost JSON object, where its refs or its verdict are: the structured
    content, a JSON object in a string inside it, or the JSON text (see :func:`_payload`)."""
    structured = _unwrap(result.structured_content) if result.structured_content is not None else None
    return _payload(structured, _unwrap(_json_object(first_text(result))))


def _payload(structured: dict[str, Any] | None, from_text: dict[str, Any] | None) -> dict[str, Any] | None:
    """Structured content that states refs or a verdict wins; else a JSON object in its ``result``
    string (what the ``mcp`` SDK sends for a ``-> str`` tool that returns ``json.dumps(...)``:
    ``{"result": "<that JSON>"}``); else a JSON text that states them; else whatever there is."""
    if structured is None:
        return from_text
    if _states_something(structured):
        return structured
    inner = structured.get("result")
    if isinstance(inner, str):
        parsed = _unwrap(_json_object(inner))
        if parsed is not None and _states_something(parsed):
            return parsed
    if from_text is not None and _states_something(from_text):
        return from_text
    return structured


def _states_something(payload: dict[str, Any]) -> bool:
    return "external_object_refs" in payload or "success" in payload


def outcome_from_call_result(result: CallToolResult) -> ToolCallOutcome:
    text = first_text(result)
    from_text = _unwrap(_json_object(text))
    structured = _unwrap(result.structured_content) if result.structured_content is not None else None
    payload = _payload(structured, from_text)
    if result.is_error or (payload is not None and payload.get("success") is False):
        return ToolCallOutcome(success=False, error=_error_from(_error_details(structured, from_text), text))
    if payload is None:
        return _invalid("the tool answered without a JSON result")
    try:
        refs = _REFS.validate_python(payload.get("external_object_refs"))
    except ValidationError:
        return _invalid("the tool answered without valid external_object_refs")
    if not refs:
        return _invalid("a successful tool call must return at least one external object ref")
    said = payload.get(ANSWER_EXCERPT_KEY)
    note = payload.get(REFS_NOTE_KEY)
    return ToolCallOutcome(
        success=True,
        external_object_refs=refs,
        answer_excerpt=excerpt(said, PLAIN_ANSWER_EXCERPT_BYTES) if isinstance(said, str) else None,
        refs_note=excerpt(note, PLAIN_ANSWER_EXCERPT_BYTES) if isinstance(note, str) else None,
    )


def excerpt(text: str, max_bytes: int) -> str:
    """The start of ``text``, at most ``max_bytes`` UTF-8 bytes (never a broken character)."""
    return text.encode("utf-8", "ignore")[:max_bytes].decode("utf-8", "ignore")


def target_error_details(result: CallToolResult) -> tuple[str | None, str, str | None]:
    """A failed answer's ``(error_code, error_message, error_class)`` as it stated them, read like
    :func:`outcome_from_call_result` reads them (unbounded: ``domain/errors.target_error`` bounds
    them)."""
    text = first_text(result)
    structured = _unwrap(result.structured_content) if result.structured_content is not None else None
    return _details(_error_details(structured, _unwrap(_json_object(text))), text)


def _invalid(message: str) -> ToolCallOutcome:
    return ToolCallOutcome(
        success=False,
        error=ExecutionError(
            error_class=ErrorClass.UNKNOWN, error_code="INVALID_TOOL_RESPONSE", error_message=message
        ),
    )


def plain_text(result: CallToolResult) -> str | None:
    """The answer's text when it is plain text (not blank, not a JSON object), else None."""
    text = first_text(result)
    if text is None or not text.strip() or _json_object(text) is not None:
        return None
    return text


def first_text(result: CallToolResult) -> str | None:
    for block in result.content:
        if isinstance(block, TextContent):
            return block.text
    return None


def _json_object(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _unwrap(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    for _ in range(3):
        if payload is None:
            return None
        inner = payload.get("result")
        if not isinstance(inner, dict) or not isinstance(inner.get("content"), list):
            return payload
        texts = [block.get("text") for block in inner["content"] if isinstance(block, dict)]
        nested = next((_json_object(t) for t in texts if isinstance(t, str) and _json_object(t)), None)
        if nested is None:
            return payload
        if inner.get("isError") is True:
            nested = {**nested, "success": False}
        payload = nested
    return payload


def _error_details(
    structured: dict[str, Any] | None, from_text: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Where a failure's details are: structured content when it describes the error, else the JSON
    text. Tool errors usually carry no structured content (a tool's output schema describes its
    success), or structured content that fits that schema, and put their classification in the text.
    """
    for candidate in (structured, from_text):
        if candidate is not None and any(key in candidate for key in _ERROR_KEYS):
            return candidate
    return structured if structured is not None else from_text


def _error_from(payload: dict[str, Any] | None, text: str | None) -> ExecutionError:
    code, message, declared = _details(payload, text)
    message = message.strip()[:_MAX_MESSAGE] or "the tool reported a failure without a message"
    # No code from the tool: derived from the class, as the reference derives it (AUTH_FAILED, ...).
    return make_error(code, message, declared_class=declared)


def _details(payload: dict[str, Any] | None, text: str | None) -> tuple[str | None, str, str | None]:
    details: dict[str, Any] = payload or {}
    nested = details.get("error")
    if isinstance(nested, dict):
        details = {**details, **nested}
    message = _first_str(details, "error_message", "message", "error") or text or ""
    return _first_str(details, "error_code", "code"), message, _first_str(details, "error_class")


def _first_str(values: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = values.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None
