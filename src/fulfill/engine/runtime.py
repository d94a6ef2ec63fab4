"""The process's collaborators, installed once at start-up.

A DBOS workflow is started by name from a queue, so it cannot be handed its collaborators; it
reads them from here, once, when it starts (``engine/workflow.step_deps``), and passes its steps
only what they need (``engine/steps/deps.StepDeps``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fulfill.config import Settings
from fulfill.domain.flowcontrol import connector_of
from fulfill.domain.ports import ActionLookup, Clock, ToolGateway
from fulfill.domain.probes import ProbeResult, Undeclared
from fulfill.engine.direct_start import DirectStarts
from fulfill.engine.flow import FlowControl
from fulfill.engine.waiting_reads import SharedWaitingReads
from fulfill.ports.store import Store


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    gateway: ToolGateway
    store: Store
    # Input JSON schema of every tool the gateway serves, by tool name (gateway targets' included).
    tool_schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # True for a tool whose call must never be sent twice: a gateway target's that does not
    # deduplicate on the idempotency key. InvokeTool marks such a call before sending it.
    needs_confirmation: Callable[[str], bool] = field(default=lambda _tool_name: False)
    # Set to make the outbox relay deliver now instead of at its next poll.
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)
    # Reconcile probes look an AMBIGUOUS execution's write up at its target (engine/probes.py).
    lookup: ActionLookup = field(default_factory=lambda: NoLookups())
    # This process's free worker slots, when it runs workers and starts executions directly
    # (``engine/direct_start.py``); None: every execution goes through the queue.
    direct_starts: DirectStarts | None = None
    # Every tool call passes its connector's gate: rate, concurrency, circuit breaker.
    flow: FlowControl = field(init=False)
    # What the calls waiting at a gate re-read once a second, read once for all of them.
    waiting_reads: SharedWaitingReads = field(init=False)

    def __post_init__(self) -> None:
        self.flow = FlowControl(self.store, self.settings, self.clock)
        self.waiting_reads = SharedWaitingReads(self.store)

    def connector_names(self) -> set[str]:
        """Every connector (and remote target) whose tools this process's gateway serves."""
        return {connector_of(tool) for tool in self.tool_schemas}


class NoLookups:
    """No target declares a lookup: every AMBIGUOUS execution waits for a person."""

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
        return Undeclared()


_current: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def installed() -> Runtime | None:
    """The installed runtime, or None before the service starts it (or in a test without one)."""
    return _current


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("the fulfill runtime is not installed; start the service first")
    return _current
