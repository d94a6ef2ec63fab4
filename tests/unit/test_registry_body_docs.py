"""The registry body and the import of an approved intent explain themselves in the OpenAPI
document (its schemas are these models'), not only in docs/ARCHITECTURE.md."""

from __future__ import annotations

from typing import Any

from fulfill.usecases.intents import Approval, CreateIntent
from fulfill.usecases.registry import RegistryDraft


def _described(schema: dict[str, Any], model: str) -> dict[str, str]:
    properties = schema["properties"]
    missing = sorted(name for name, prop in properties.items() if not prop.get("description"))
    assert not missing, f"{model} fields without a description: {missing}"
    return {name: prop["description"] for name, prop in properties.items()}


def test_every_registry_field_is_described() -> None:
    schema = RegistryDraft.model_json_schema()
    described = _described(schema, "RegistryDraft")
    assert "AUTOMATIC" in described["compensation_strategy"]
    assert "object_id" in described["compensation_tool_name"]  # how a remote undo tool is called
    assert "own" in described["compensation_tool_name"]  # its own idempotency key
    assert "MINIMAL" in described["risk_class"]
    mapping = _described(schema["$defs"]["ParameterMapping"], "ParameterMapping")
    assert "CAPITALIZE" in mapping["transform"]


def test_the_import_of_an_approved_intent_is_described() -> None:
    approval = CreateIntent.model_json_schema()["properties"]["approval"]
    assert "intents:approve" in approval["description"]
    _described(Approval.model_json_schema(), "Approval")
