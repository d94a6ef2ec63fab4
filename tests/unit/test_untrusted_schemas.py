"""``domain/schemas.py``: what a target's input schema may contain, and validating against it."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from bench.micro_costs import SDK_TOOL  # what the MCP SDK lists for create_ticket(title, priority)

from fulfill.domain.schemas import (
    MAX_PARAMETER_DEPTH,
    MAX_SCHEMA_DEPTH,
    QUICK_CHECK_BUDGET,
    PatternTimeout,
    UncheckableSchema,
    UntrustedSchema,
    depth_of,
    nodes_of,
    quick_schema_nodes,
    refusal,
    too_deep,
)


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


@pytest.fixture
def listener() -> Any:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(0.1)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                accepted.append(sock.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/x.json", accepted
    done.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    sock.close()


@pytest.mark.parametrize(
    "schema",
    [
        obj(title={"type": "string"}),
        {**obj(title={"$ref": "#/$defs/title"}), "$defs": {"title": {"type": "string"}}},
        # $id-based refs resolve inside the schema
        {
            "$id": "https://tickets.example/create",
            **obj(title={"$ref": "title"}),
            "$defs": {"t": {"$id": "title", "type": "string"}},
        },
        {**obj(title={"$ref": "#name"}), "$defs": {"t": {"$anchor": "name", "type": "string"}}},
        # the bundled meta-schemas are local too
        obj(schema={"$ref": "https://json-schema.org/draft/2020-12/schema"}),
        obj(title={"type": "string", "pattern": "^(a+)+$"}),
        {"type": "object", "patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": False},
    ],
)
def test_schemas_that_stay_inside_themselves_are_accepted(schema: dict[str, Any]) -> None:
    assert refusal(schema) is None


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        (obj(title={"$ref": "http://127.0.0.1:19001/x"}), "$ref outside itself"),
        (obj(title={"$ref": "https://schemas.example/title.json#/x"}), "$ref outside itself"),
        (obj(title={"$ref": "title.json"}), "$ref outside itself"),
        ({"$id": "https://tickets.example/a", **obj(title={"$ref": "b"})}, "$ref outside itself"),
        (obj(title={"$dynamicRef": "https://schemas.example/x#meta"}), "$dynamicRef outside itself"),
        (obj(title={"$ref": "#/$defs/missing"}), "$ref to nothing"),
        (obj(title={"type": "string", "pattern": "(("}), "invalid input schema"),
        (
            {"type": "object", "patternProperties": {"^x": {}}, "unevaluatedProperties": False},
            "patternProperties with unevaluatedProperties",
        ),
    ],
)
def test_schemas_that_reach_outside_or_cannot_be_checked_are_refused(
    schema: dict[str, Any], reason: str
) -> None:
    refused = refusal(schema)
    assert refused is not None
    assert reason in refused


def test_a_schema_nested_too_deep_is_refused_without_recursion() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(5_000):
        schema = {"type": "object", "properties": {"a": schema}}
    assert refusal(schema) == f"input schema nested deeper than {MAX_SCHEMA_DEPTH} levels"


def test_discovery_and_validation_never_open_a_connection(listener: Any) -> None:
    url, accepted = listener
    schema = obj(title={"$ref": url})
    assert refusal(schema) is not None
    with pytest.raises(UncheckableSchema, match="outside itself"):
        UntrustedSchema(schema).errors({"title": "x"})
    time.sleep(0.3)  # a connection, had one been opened, is accepted by now
    assert accepted == []


def test_a_schema_that_refers_to_itself_without_end_is_uncheckable() -> None:
    schema = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
    with pytest.raises(UncheckableSchema, match="without end"):
        UntrustedSchema(schema).errors({"title": "x"})


def test_patterns_are_checked_by_the_bounded_engine() -> None:
    validator = UntrustedSchema(
        {
            **obj(title={"type": "string", "pattern": "^(a+)+$"}),
            "patternProperties": {"^x-": {"type": "integer"}},
            "additionalProperties": False,
        }
    )
    assert validator.errors({"title": "aaa", "x-count": 1}) == []
    failed = {
        error.validator for error in validator.errors({"title": "a" * 40 + "!", "x-count": "1", "y": 1})
    }
    assert failed == {"pattern", "type", "additionalProperties"}


def test_a_pattern_that_takes_too_long_raises_within_the_budget() -> None:
    validator = UntrustedSchema(
        {"type": "array", "items": {"type": "string", "pattern": "^(a|a)+$"}}, pattern_timeout=0.2
    )
    hostile = "a" * 40 + "!"
    started = time.monotonic()
    with pytest.raises(PatternTimeout) as raised:
        validator.errors([hostile] * 20)  # one budget for the whole validation, not one per value
    # Generous: without the budget, one of these values alone takes hours.
    assert time.monotonic() - started < 10
    assert raised.value.value is not None
    assert hostile not in str(raised.value)  # the agent's value is never in the message


def test_depth_counts_objects_and_arrays_without_recursion() -> None:
    assert depth_of("x", limit=5) == 0
    assert depth_of({}, limit=5) == 1
    assert depth_of({"a": [{"b": 1}]}, limit=5) == 3
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert depth_of(value, limit=MAX_PARAMETER_DEPTH) == MAX_PARAMETER_DEPTH + 1
    assert too_deep(value)
    assert not too_deep({"a": {"b": {"c": 1}}})


# --- quick checks: what may run where it is asked -------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "nodes"),
    [
        (SDK_TOOL, 8),  # 3 schemas, 3 "type" values, 1 required name; titles and defaults check nothing
        (True, 1),
        ({}, 1),
        ({"type": "string", "format": "email", "maxLength": 40}, 3),
        ({"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1}, 8),
        ({"type": "array", "prefixItems": [{"type": "integer"}, {"const": {"a": [1, 2]}}]}, 9),
        ({"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}, 5),
        ({"type": "object", "additionalProperties": False}, 3),
    ],
)
def test_schemas_of_plain_keywords_are_quick_and_counted(schema: Any, nodes: int) -> None:
    assert quick_schema_nodes(schema) == nodes


@pytest.mark.parametrize(
    "schema",
    [
        obj(title={"type": "string", "pattern": "^a+$"}),  # a pattern: its engine's budget, off the loop
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        obj(title={"$ref": "#/$defs/title"}) | {"$defs": {"title": {"type": "string"}}},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},  # combinations multiply the walk
        {"type": "object", "not": {"required": ["a"]}},
        {"type": "array", "uniqueItems": True},  # pairwise: quadratic in the value
        {"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}},
        {"type": "object", "dependentRequired": {"a": ["b"]}},
        {"type": "string", "x-vendor": 1},  # a keyword it does not know
        {"type": "object", "properties": ["not", "a", "map"]},
        {"enum": list(range(QUICK_CHECK_BUDGET))},  # too big to check on a loop
        {
            "type": "object",
            "properties": {f"p{i}": {"type": "string"} for i in range(QUICK_CHECK_BUDGET // 2)},
        },
    ],
)
def test_any_other_schema_is_not_quick(schema: Any) -> None:
    assert quick_schema_nodes(schema) is None
    assert not UntrustedSchema(schema).is_quick_for("x")


def test_a_quick_schema_is_quick_only_for_a_value_small_enough_for_it() -> None:
    validator = UntrustedSchema(SDK_TOOL)
    limit = QUICK_CHECK_BUDGET // 8
    assert validator.is_quick_for({"title": "Printer on fire"})
    assert validator.is_quick_for({"title": "x", "tags": ["a"] * (limit - 3)})  # limit - 1 values in all
    assert not validator.is_quick_for({"title": "x", "tags": ["a"] * (limit - 2)})
    # Counting stops past the limit: a huge value costs no more than a small one to refuse.
    assert nodes_of(["a"] * 10_000_000, limit=limit) == limit + 1
    assert nodes_of({"a": [1, {"b": None}]}, limit=10) == 5
    assert nodes_of("x", limit=0) == 1
    # What it answers is the same either way: the check itself does not change.
    assert validator.errors({"priority": "high"}) != []
    assert validator.errors({"title": "x", "tags": ["a"] * limit}) == []
