"""What the engine needs from the outside world, as protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.errors import ExecutionError
from fulfill.domain.models import ExternalObjectRef
from fulfill.domain.probes import ProbeResult


class ToolCallOutcome(BaseModel):
    """The answer of one tool call: success with refs, or a classified error."""

    model_config = ConfigDict(frozen=True)

    success: bool
    external_object_refs: list[ExternalObjectRef] = Field(default_factory=list)
    error: ExecutionError | None = None
    # What a plain-text answer said (bounded; gateway/results.py): the timeline keeps it.
    answer_excerpt: str | None = None
    # Why the refs are a fallback ref to the call itself (the answer named none usable).
    refs_note: str | None = None


class ToolGateway(Protocol):
    def call_tool(
        self,
        *,
        tenant_id: str,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        on_send: Callable[[], None] | None = None,
    ) -> ToolCallOutcome:
        """One ``tools/call``. ``on_send`` runs (on any thread; it must not block) at the moment the
        call itself leaves, after any session set-up: flow control counts the call from then."""
        ...


class Clock(Protocol):
    def now(self) -> float: ...

    def now_iso(self) -> str: ...


class ActionLookup(Protocol):
    """Looks an action up at its target by its idempotency key (``domain/probes.py``)."""

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
        """Found with refs, Absent, Inconclusive (never raises for a target's failure), or
        Undeclared when the tool's target declares no lookup."""
        ...
