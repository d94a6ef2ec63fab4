from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fulfill.domain.errors import ErrorClass
from fulfill.domain.mapping import (
    TRUSTED_ARGUMENTS,
    MappingError,
    map_parameters,
    with_trusted_arguments,
)
from fulfill.domain.models import ParameterMapping, Transform


def rule(
    tool_param: str, transform: Transform = Transform.PASSTHROUGH, required: bool = False
) -> ParameterMapping:
    return ParameterMapping.model_validate(
        {"toolParam": tool_param, "transform": transform, "required": required}
    )


@pytest.mark.parametrize(
    ("transform", "value", "expected"),
    [
        (Transform.PASSTHROUGH, "mIxEd Case", "mIxEd Case"),
        (Transform.UPPERCASE, "mIxEd Case", "MIXED CASE"),
        (Transform.LOWERCASE, "mIxEd Case", "mixed case"),
        (Transform.CAPITALIZE, "mIxEd Case", "Mixed case"),
        (Transform.CAPITALIZE, "hello", "Hello"),
        (Transform.CAPITALIZE, "", ""),
        (Transform.UPPERCASE, "", ""),
        (Transform.CAPITALIZE, "é", "É"),
        (Transform.LOWERCASE, "ÄÖÜ", "äöü"),
    ],
)
def test_string_transforms(transform: Transform, value: str, expected: str) -> None:
    assert map_parameters({"p": value}, {"p": rule("out", transform)}) == {"out": expected}


@pytest.mark.parametrize("value", [5, 1.5, True, ["a"], {"k": "v"}])
def test_passthrough_keeps_non_strings(value: Any) -> None:
    result = map_parameters({"p": value}, {"p": rule("p")})
    assert result == {"p": value}
    assert result["p"] is value


@pytest.mark.parametrize("transform", [Transform.UPPERCASE, Transform.LOWERCASE, Transform.CAPITALIZE])
@pytest.mark.parametrize("value", [5, 1.5, True, ["a"], {"k": "v"}])
def test_transform_on_non_string_is_invalid_parameter_type(transform: Transform, value: Any) -> None:
    with pytest.raises(MappingError) as info:
        map_parameters({"count": value}, {"count": rule("n", transform)})
    error = info.value.error
    assert error.error_code == "INVALID_PARAMETER_TYPE"
    assert error.error_class is ErrorClass.VALIDATION
    assert "count" in error.error_message
    assert transform.value in error.error_message
    assert not error.retryable


@pytest.mark.parametrize("transform", list(Transform))
def test_none_is_present_and_passes_every_transform_unchanged(transform: Transform) -> None:
    assert map_parameters({"p": None}, {"p": rule("out", transform, required=True)}) == {"out": None}


def test_required_missing_raises_missing_required_parameter() -> None:
    mapping = {"title": rule("title", required=True), "body": rule("body")}
    with pytest.raises(MappingError) as info:
        map_parameters({"body": "b"}, mapping)
    error = info.value.error
    assert error.error_code == "MISSING_REQUIRED_PARAMETER"
    assert error.error_class is ErrorClass.VALIDATION
    assert "'title'" in error.error_message
    assert info.value.args == (error,)


def test_optional_missing_is_omitted() -> None:
    mapping = {"title": rule("title", required=True), "body": rule("body")}
    result = map_parameters({"title": "t"}, mapping)
    assert result == {"title": "t"}
    assert "body" not in result


def test_unmapped_parameters_are_dropped() -> None:
    result = map_parameters({"title": "t", "secret": "s", "tenant_id": "evil"}, {"title": rule("title")})
    assert result == {"title": "t"}


def test_renaming_via_tool_param() -> None:
    mapping = {"title": rule("subject", Transform.UPPERCASE), "note": rule("body")}
    assert map_parameters({"title": "hi", "note": "n"}, mapping) == {"subject": "HI", "body": "n"}


def test_empty_mapping_gives_empty_arguments() -> None:
    assert map_parameters({"a": 1}, {}) == {}


def test_parameters_are_not_mutated() -> None:
    parameters = {"title": "abc", "extra": 1}
    map_parameters(parameters, {"title": rule("title", Transform.UPPERCASE)})
    assert parameters == {"title": "abc", "extra": 1}


def test_parameter_mapping_accepts_both_spellings() -> None:
    by_alias = ParameterMapping.model_validate({"toolParam": "x", "transform": "UPPERCASE", "required": True})
    by_name = ParameterMapping.model_validate({"tool_param": "x", "transform": "UPPERCASE", "required": True})
    assert by_alias == by_name
    assert by_alias.tool_param == "x"
    assert by_alias.transform is Transform.UPPERCASE
    assert by_alias.required is True


def test_parameter_mapping_defaults_and_serialises_by_alias() -> None:
    mapping = ParameterMapping.model_validate({"toolParam": "x"})
    assert mapping.transform is Transform.PASSTHROUGH
    assert mapping.required is False
    assert mapping.model_dump() == {"toolParam": "x", "transform": "PASSTHROUGH", "required": False}


@pytest.mark.parametrize(
    "payload",
    [{}, {"toolParam": ""}, {"toolParam": "x", "unknown": 1}, {"toolParam": "x", "transform": "TITLE"}],
)
def test_parameter_mapping_rejects_invalid(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ParameterMapping.model_validate(payload)


def test_trusted_arguments_override_mapped_values() -> None:
    mapped = {
        "title": "t",
        "tenant_id": "evil-tenant",
        "account_id": "evil-account",
        "action_intent_id": "evil-intent",
        "idempotency_key": "evil-key",
    }
    result = with_trusted_arguments(
        mapped, tenant_id="t1", account_id="acc_1", action_intent_id="ai_1", idempotency_key="k1"
    )
    assert result == {
        "title": "t",
        "tenant_id": "t1",
        "account_id": "acc_1",
        "action_intent_id": "ai_1",
        "idempotency_key": "k1",
    }
    assert mapped["tenant_id"] == "evil-tenant"  # the input is not mutated


def test_trusted_arguments_added_when_absent() -> None:
    result = with_trusted_arguments(
        {}, tenant_id="t1", account_id="acc_1", action_intent_id="ai_1", idempotency_key="k1"
    )
    assert set(result) == set(TRUSTED_ARGUMENTS)


def test_mapping_cannot_smuggle_trusted_argument() -> None:
    mapped = map_parameters({"who": "evil"}, {"who": rule("tenant_id")})
    result = with_trusted_arguments(
        mapped, tenant_id="t1", account_id="acc_1", action_intent_id="ai_1", idempotency_key="k1"
    )
    assert result["tenant_id"] == "t1"
