"""Reconcile probes' lookups (``domain/probes.py``), by the namespace of the tool that wrote.

The in-process connectors look their own writes up (``internal``: its table; ``crm``: the
Salesforce marker field). A gateway target looks a write up with the ``lookup_tool`` of its
registration, called through the gateway like any tool (the same token binding, schema check,
timeout, response-size limit and egress rules), with the idempotency key as its one argument.

The answer a lookup tool gives:

- found: a success naming the objects the write created (``external_object_refs``, each with
  ``object_type`` and ``object_id``, the shape of any tool's success);
- not found: a tool error (``isError``) with ``error_code`` ``NOT_FOUND``;

anything else (another error, a timeout, a lost answer, a success without usable refs, an answer
too large) is inconclusive, never "absent".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fulfill.domain.errors import TARGET_CODE_PREFIX
from fulfill.domain.mapping import with_trusted_arguments
from fulfill.domain.ports import ActionLookup, ToolCallOutcome, ToolGateway
from fulfill.domain.probes import LOOKUP_NOT_FOUND, Absent, Found, Inconclusive, ProbeResult, Undeclared
from fulfill.domain.targets import gateway_tool_name, namespace_of
from fulfill.gateway.targets import TargetCatalog
from fulfill.logging_setup import describe_failure

log = logging.getLogger(__name__)


class ActionLookups:
    """:class:`ActionLookup` for every tool the gateway serves."""

    def __init__(
        self,
        connectors: Mapping[str, ActionLookup],
        catalog: TargetCatalog | None,
        gateway: ToolGateway,
    ) -> None:
        self._connectors = dict(connectors)
        self._catalog = catalog
        self._gateway = gateway

    def lookup(
        self,
        *,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        tool_name: str,
        idempotency_key: str,
        timeout_seconds: float,
    ) -> ProbeResult:
        namespace = namespace_of(tool_name)
        try:
            connector = self._connectors.get(namespace)
            if connector is not None:
                return connector.lookup(
                    tenant_id=tenant_id,
                    account_id=account_id,
                    action_intent_id=action_intent_id,
                    tool_name=tool_name,
                    idempotency_key=idempotency_key,
                    timeout_seconds=timeout_seconds,
                )
            endpoint = self._catalog.snapshot().endpoints.get(namespace) if self._catalog else None
            if endpoint is None:
                return Undeclared(f"no connector or gateway target serves {tool_name} now")
            if endpoint.lookup_tool is None:
                return Undeclared(f"the gateway target {namespace} declares no lookup_tool")
            answer = self._gateway.call_tool(
                tenant_id=tenant_id,
                tool_name=gateway_tool_name(namespace, endpoint.lookup_tool),
                arguments=with_trusted_arguments(
                    {},
                    tenant_id=tenant_id,
                    account_id=account_id,
                    action_intent_id=action_intent_id,
                    idempotency_key=idempotency_key,
                ),
                timeout_seconds=timeout_seconds,
            )
        except Exception as exc:
            log.warning("the lookup of %s failed: %s", tool_name, describe_failure(exc))
            return Inconclusive(f"the lookup failed: {type(exc).__name__}")
        return probe_result_of(answer)


def probe_result_of(answer: ToolCallOutcome) -> ProbeResult:
    """A lookup tool's answer, read in the shape it must give (see the module's docstring)."""
    if answer.success:
        if answer.refs_note is not None or not answer.external_object_refs:
            return Inconclusive("the lookup answered a success without external_object_refs")
        return Found(tuple(answer.external_object_refs))
    error = answer.error
    # A target's codes come back namespaced (domain/errors.target_error): TARGET:NOT_FOUND.
    if error is not None and error.error_code == f"{TARGET_CODE_PREFIX}{LOOKUP_NOT_FOUND}":
        return Absent()
    if error is None:
        return Inconclusive("the lookup failed without a classified error")
    return Inconclusive(f"{error.error_code}: {error.error_message[:200]}")
