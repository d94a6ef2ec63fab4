"""What a connector gives the gateway: named tools with typed inputs and structured outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import ExternalObjectRef


class ToolSuccess(BaseModel):
    """Every successful tool call returns at least one reference to what it touched."""

    model_config = ConfigDict(extra="allow")

    external_object_refs: list[ExternalObjectRef] = Field(min_length=1)


@dataclass(frozen=True)
class ConnectorTool:
    name: str
    description: str
    fn: Callable[..., Any]
    compensates: str | None = None  # the tool whose writes this one undoes


def tool_success(refs: list[ExternalObjectRef], **extra: Any) -> CallToolResult:
    payload = {"external_object_refs": [ref.model_dump(exclude_none=True) for ref in refs], **extra}
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(payload))], structured_content=payload
    )


def tool_failure(error_class: ErrorClass, error_code: str, error_message: str) -> CallToolResult:
    """A tool error: ``isError`` with the classification as JSON text, and no structured content.

    Structured content is what a tool's output schema describes (the success shape); clients
    validate it even on errors (the TypeScript SDK and MCP Inspector fail the whole call when it
    does not match), so an error carries its details where every client reads them: the text.
    """
    payload = {
        "success": False,
        "error_code": error_code,
        "error_class": error_class.value,
        "error_message": error_message,
    }
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(payload))], is_error=True)
