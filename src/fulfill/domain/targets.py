"""Remote MCP servers as gateway targets: names, stored shape, and the rules of a remote call.

A target named ``tickets`` exposes each remote tool ``create_ticket`` on the gateway as
``tickets.create_ticket``. What a target stores here is never secret: its credentials (a bearer
token, an OAuth client secret) live behind ``TargetSecrets`` (``gateway/target_auth.py``).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

TargetName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
# What MCP allows in a tool name, short enough that "{target}.{tool}" fits a registry tool name.
REMOTE_TOOL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,94}$")

# The request ``_meta`` keys the engine sets on every tools/call. The gateway forwards the
# idempotency key (the one bound to the call's token) to remote targets; the timeout tells the
# gateway how long the engine waits, so that it answers, classified, before the engine gives up.
IDEMPOTENCY_META_KEY = "io.fulfill/idempotency-key"
TIMEOUT_META_KEY = "io.fulfill/timeout-ms"

UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME"
MAX_TOOLS_PER_TARGET = 200
MAX_SCHEMA_BYTES = 64 * 1024
MAX_DESCRIPTION = 1024


class TargetAuthType(StrEnum):
    NONE = "none"
    BEARER = "bearer"
    OAUTH_CLIENT_CREDENTIALS = "oauth_client_credentials"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetAuthView(_Model):
    """A target's authentication without its secret: what responses and logs may show."""

    type: TargetAuthType = TargetAuthType.NONE
    token_url: str | None = None
    client_id: str | None = None
    scope: str | None = None
    audience: str | None = None


class RemoteToolSpec(_Model):
    """One remote tool as the gateway exposes it."""

    name: str  # on the gateway: "{target}.{remote_name}"
    remote_name: str  # on the remote server
    description: str | None = None
    input_schema: dict[str, Any]


class GatewayTarget(_Model):
    """A remote MCP server registered as a target, as stored (no secret)."""

    name: str
    url: str
    auth: TargetAuthView
    deduplicates: bool = False
    # The remote tool that looks a write up by its idempotency key (reconcile probes,
    # ``domain/probes.py``): called with ``{"idempotency_key": key}``; None: no lookup declared.
    lookup_tool: str | None = None
    tools: list[RemoteToolSpec] = Field(default_factory=list)
    skipped_tools: list[str] = Field(default_factory=list)
    revision: int = 1
    created_at: str
    updated_at: str
    synced_at: str


def gateway_tool_name(target: str, remote_name: str) -> str:
    return f"{target}.{remote_name}"


def namespace_of(tool_name: str) -> str:
    return tool_name.split(".", 1)[0]


def remote_timeout_seconds(engine_timeout_seconds: float) -> float:
    """How long the gateway waits for a remote answer when the engine waits ``engine_timeout``:
    enough shorter that the gateway's classified answer (an outcome unknown, say) reaches the
    engine before the engine's own timeout would turn it into a plain, retryable timeout."""
    return max(0.05, min(engine_timeout_seconds - 0.5, engine_timeout_seconds * 0.9))
