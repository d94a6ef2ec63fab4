"""The MCP tool gateway: an ``MCPServer`` served over Streamable HTTP at ``/mcp``.

Only the engine calls it: every request needs one of the engine's service tokens (issuer
``fulfill-service``, scope ``gateway:invoke``); user tokens are refused (401) whatever their
scopes. Before a ``tools/call`` reaches a connector, the gateway checks, and answers with a tool
error (``isError``, a JSON text ``{error_code, error_class, error_message}``) when a check fails:

* the tool exists;
* the arguments satisfy the tool's input schema (the message names fields, never echoes values);
* the arguments ``tenant_id``, ``account_id``, ``action_intent_id`` and ``idempotency_key`` are
  the ones the token was minted for (the token binding; the message names the fields that differ,
  never their values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from fulfill import __version__
from fulfill.connectors.base import ConnectorTool, tool_failure
from fulfill.domain.errors import ErrorClass
from fulfill.tokens import GATEWAY_SCOPE, SERVICE_BINDING_CLAIMS, TokenError, TokenVerifier


class GatewayTokenVerifier:
    """Adapts fulfill's service-token verification to the MCP SDK's ``TokenVerifier`` protocol.

    Only service tokens pass; anything else (a user token, an expired or forged token, a service
    token without its binding claims) is ``None``, which the SDK answers with 401.
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            principal = self._verifier.verify_service(token)  # HS256 only: no network, no blocking
        except TokenError:
            return None
        expires = principal.claims.get("exp")
        return AccessToken(
            token=token,
            client_id=principal.subject,
            scopes=sorted(principal.scopes),
            subject=principal.subject,
            expires_at=int(expires) if isinstance(expires, int | float) else None,
            claims={**principal.claims, "tenant_id": principal.tenant_id},
        )


class ToolCallGuard:
    """Server middleware that vets every ``tools/call`` before a connector sees it."""

    def __init__(self, server: MCPServer) -> None:
        self._server = server
        self._validators: dict[str, jsonschema.Draft202012Validator] | None = None

    async def _validator_for(self, name: object) -> jsonschema.Draft202012Validator | None:
        if self._validators is None:
            self._validators = {
                tool.name: jsonschema.Draft202012Validator(tool.input_schema)
                for tool in await self._server.list_tools()
            }
        return self._validators.get(name) if isinstance(name, str) else None

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not isinstance(ctx.params, Mapping):
            return await call_next(ctx)
        name = ctx.params.get("name")
        arguments = ctx.params.get("arguments") or {}
        validator = await self._validator_for(name)
        if validator is None:
            return tool_failure(ErrorClass.VALIDATION, "TOOL_NOT_FOUND", f"unknown tool: {str(name)[:128]}")
        if not isinstance(arguments, Mapping):
            return tool_failure(
                ErrorClass.VALIDATION, "INVALID_TOOL_ARGUMENTS", "arguments must be an object"
            )
        problems = {_describe(error) for error in validator.iter_errors(dict(arguments))}
        if problems:
            return tool_failure(
                ErrorClass.VALIDATION, "INVALID_TOOL_ARGUMENTS", "; ".join(sorted(problems)[:10])
            )
        mismatched = _binding_mismatches(arguments)
        if mismatched:
            return tool_failure(
                ErrorClass.AUTH,
                "TOKEN_BINDING_MISMATCH",
                f"the tool call's {', '.join(mismatched)} differ(s) from what its token was issued for",
            )
        return await call_next(ctx)


def _binding_mismatches(arguments: Mapping[str, Any]) -> list[str]:
    """The trusted arguments that are not the ones the call's service token is bound to."""
    token = get_access_token()
    claims = (token.claims or {}) if token else {}
    return [
        name
        for name in SERVICE_BINDING_CLAIMS
        if not isinstance(claims.get(name), str) or arguments.get(name) != claims[name]
    ]


def _describe(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path) or "arguments"
    if error.validator == "required":
        required = error.validator_value if isinstance(error.validator_value, list) else []
        present = error.instance if isinstance(error.instance, dict) else {}
        missing = [str(field) for field in required if field not in present]
        return f"missing required argument(s): {', '.join(missing)}"
    if error.validator == "additionalProperties":
        return f"{path}: unexpected argument"
    if error.validator == "type":
        return f"{path}: must be of type {error.validator_value}"
    return f"{path}: fails '{error.validator}'"


def build_gateway(verifier: TokenVerifier, tools: list[ConnectorTool], *, public_url: str) -> MCPServer:
    server: MCPServer = MCPServer(
        "fulfill-gateway",
        version=__version__,
        instructions=(
            "Executes approved actions for the fulfill engine. Every call is bound to the tenant, "
            "account, intent and idempotency key of its service token."
        ),
        token_verifier=GatewayTokenVerifier(verifier),
        auth=AuthSettings(issuer_url=public_url, resource_server_url=None, required_scopes=[GATEWAY_SCOPE]),
        log_level="WARNING",
    )
    for tool in tools:
        server.add_tool(tool.fn, name=tool.name, description=tool.description, structured_output=True)
    server.middleware.append(ToolCallGuard(server))
    return server


def gateway_asgi_app(server: MCPServer) -> Starlette:
    """The ASGI app serving ``/mcp``; its session manager must run in the host app's lifespan.

    Stateless Streamable HTTP with JSON responses: any worker can answer any call, no session
    affinity. The bearer token, not the Host header, is the protection, so DNS-rebinding checks
    are off (they would reject every non-localhost deployment).
    """
    return server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
