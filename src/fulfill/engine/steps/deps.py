"""What the steps need, handed to them: one :class:`StepDeps`, resolved once per workflow.

The workflow (``engine/workflow.py``) builds it from the process's runtime and passes it to each
step; a test builds its own (an in-memory store, a fake gateway, an open gate) and calls the step
functions directly, without DBOS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from pydantic import SecretStr

from fulfill.domain.flowcontrol import CallResult
from fulfill.domain.models import ApprovalStatus, GlobalExecutionConfig, TenantExecutionConfig
from fulfill.domain.ports import Clock, ToolGateway
from fulfill.ports.repositories.connectors import GateView
from fulfill.ports.store import Store


class StepSettings(Protocol):
    """The settings the steps read (``fulfill.config.Settings`` has them all)."""

    @property
    def global_execution_stop(self) -> bool: ...
    @property
    def gateway_call_timeout_seconds(self) -> float: ...
    @property
    def rate_limit_backoff_seconds(self) -> float: ...
    @property
    def retry_backoff_base_seconds(self) -> float: ...
    @property
    def signal_destinations(self) -> list[str]: ...
    @property
    def metrics_tenant_labels(self) -> bool: ...
    @property
    def circuit_cooldown_seconds(self) -> float: ...
    @property
    def compensation_max_tries(self) -> int: ...
    @property
    def compensation_retry_base_seconds(self) -> float: ...
    @property
    def smtp_url(self) -> SecretStr: ...


class GatePermit(Protocol):
    """One call admitted by its connector's gate; a ``with`` block finishes it as not made if the
    block ends without :meth:`finish`."""

    @property
    def waited(self) -> bool: ...

    def sent(self) -> None: ...

    def finish(self, result: CallResult) -> None: ...

    def __enter__(self) -> GatePermit: ...

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None: ...


class ConnectorGate(Protocol):
    """Each connector's gate: rate, concurrency, circuit breaker (``engine/flow.FlowControl``)."""

    def admit(
        self,
        connector: str,
        *,
        tenant_id: str,
        deadline: float,
        lease_seconds: float,
        recheck: Callable[[], None] | None = None,
        view: GateView | None = None,
    ) -> GatePermit:
        """Wait until the call may start, at the latest until ``deadline`` (then
        ``engine.flow.WaitExpired``); ``recheck`` runs while it waits and may raise to stop.
        ``view``: the connector's gate view as the caller just read it (None: the gate reads it)."""
        ...


class WaitingReads(Protocol):
    """The switches and an intent's approval status as a call waiting at its gate re-reads them,
    one read shared by every waiting call of the process (``engine/waiting_reads``)."""

    def read(
        self, tenant_id: str, action_intent_id: str
    ) -> tuple[tuple[GlobalExecutionConfig, TenantExecutionConfig] | None, ApprovalStatus | None] | None:
        """The switches and the intent's approval status, or None: the call reads its own."""
        ...


def _never_confirm(_tool_name: str) -> bool:
    return False


def _no_wakeup() -> None:
    return None


@dataclass(frozen=True)
class StepDeps:
    store: Store
    clock: Clock
    gateway: ToolGateway
    gate: ConnectorGate
    settings: StepSettings
    # True for a tool whose call must never be sent twice (a gateway target that does not
    # deduplicate): the call is marked before it is sent (``engine/steps/sent_calls.py``).
    needs_confirmation: Callable[[str], bool] = _never_confirm
    # Tells the outbox relay to deliver now instead of at its next poll.
    wake_outbox: Callable[[], None] = _no_wakeup
    # How the steps pause between tries (a test passes one that does not wait).
    sleep: Callable[[float], None] = field(default=time.sleep)
    # What calls waiting at a gate re-read once a second, read once for all of them (None: each
    # waiting call reads its own).
    waiting_reads: WaitingReads | None = None
