"""The step chain in memory: an in-memory store, a fake gateway, an open connector gate, a clock
that moves only when told, and a driver that runs one execution's steps as the workflow would
(without DBOS). Fast enough to run every branch in milliseconds."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import (
    DuplicateExecution,
    ExecutionRequest,
    ExecutionStopped,
    OutcomeDraft,
    RecordedOutcome,
    ToolCall,
    outcome_from_tool_result,
    request_for,
)
from fulfill.domain.flowcontrol import CallResult, WaitReason
from fulfill.domain.models import ActionIntentV1, ExternalObjectRef, RegistryEntry
from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.time import iso_from_epoch
from fulfill.engine import steps
from fulfill.engine.flow import WaitExpired
from fulfill.engine.intake import take_execution_lock
from fulfill.engine.steps import StepDeps
from fulfill.engine.steps.deps import WaitingReads
from fulfill.usecases.registry import DEFAULT_ENTRIES
from tests.support.memory_store import MemoryStore

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FixedClock:
    """The service clock, moved only by :meth:`advance` (and by the steps' pauses)."""

    def __init__(self, now: float = START) -> None:
        self.epoch = now

    def now(self) -> float:
        return self.epoch

    def now_iso(self) -> str:
        return iso_from_epoch(self.epoch)

    def advance(self, seconds: float) -> None:
        self.epoch += seconds


@dataclass
class SentToolCall:
    tenant_id: str
    tool_name: str
    arguments: dict[str, Any]
    timeout_seconds: float


class FakeGateway:
    """Answers every ``tools/call`` in process. By default it writes one object per idempotency
    key (a repeated key answers with the same object: the connectors deduplicate), so
    ``objects`` says what was written. ``answers`` (a queue) or ``answer`` replace that."""

    def __init__(self) -> None:
        self.calls: list[SentToolCall] = []
        self.objects: dict[str, str] = {}  # idempotency key → object id
        self.answers: list[ToolCallOutcome | BaseException] = []
        self.answer: Callable[[SentToolCall], ToolCallOutcome] | None = None
        self.before_answer: Callable[[], None] | None = None  # e.g. the process "crashes" here

    def call_tool(
        self,
        *,
        tenant_id: str,
        tool_name: str,
        arguments: dict[str, Any],
        timeout_seconds: float,
        on_send: Callable[[], None] | None = None,
    ) -> ToolCallOutcome:
        if on_send is not None:
            on_send()
        call = SentToolCall(tenant_id, tool_name, dict(arguments), timeout_seconds)
        self.calls.append(call)
        if self.before_answer is not None:
            self.before_answer()
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer
        if self.answer is not None:
            return self.answer(call)
        key = str(arguments.get("idempotency_key", ""))
        object_id = self.objects.setdefault(key, "task_" + hashlib.sha256(key.encode()).hexdigest()[:12])
        return ToolCallOutcome(
            success=True,
            external_object_refs=[
                ExternalObjectRef(system="INTERNAL", object_type="task", object_id=object_id)
            ],
        )


def failure(error_class: ErrorClass, code: str) -> ToolCallOutcome:
    """A tool's failed answer (its class decides whether the step is tried again)."""
    return ToolCallOutcome(
        success=False,
        error=ExecutionError(error_class=error_class, error_code=code, error_message=code.lower()),
    )


class OpenPermit:
    def __init__(self, gate: OpenGate, *, waited: bool) -> None:
        self.waited = waited
        self._gate = gate

    def sent(self) -> None:
        self._gate.sent += 1

    def finish(self, result: CallResult) -> None:
        self._gate.results.append(result)

    def __enter__(self) -> OpenPermit:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if len(self._gate.results) < self._gate.admitted:
            self._gate.results.append(CallResult.NOT_MADE)


class OpenGate:
    """A connector gate that admits at once; ``closed_for`` makes it wait (running ``recheck``
    once, as the real gate does about once a second) and ``expire`` makes it give up."""

    def __init__(self) -> None:
        self.admitted = 0
        self.sent = 0
        self.results: list[CallResult] = []
        self.waits = False
        self.expire: WaitReason | None = None
        self.on_wait: Callable[[], None] | None = None
        self.views: list[object | None] = []  # the gate view each admission was handed

    def admit(
        self,
        connector: str,
        *,
        tenant_id: str,
        deadline: float,
        lease_seconds: float,
        recheck: Callable[[], None] | None = None,
        view: object | None = None,
    ) -> OpenPermit:
        self.views.append(view)
        if self.waits or self.expire is not None:
            if self.on_wait is not None:
                self.on_wait()
            if recheck is not None:
                recheck()
            if self.expire is not None:
                raise WaitExpired(connector, self.expire)
        self.admitted += 1
        return OpenPermit(self, waited=self.waits)


@dataclass
class Settings:
    """The settings the steps read (``StepSettings``), with values a fast test wants."""

    global_execution_stop: bool = False
    gateway_call_timeout_seconds: float = 10.0
    rate_limit_backoff_seconds: float = 5.0
    retry_backoff_base_seconds: float = 0.0
    signal_destinations: list[str] = field(default_factory=lambda: ["fulfill-engine-test"])
    metrics_tenant_labels: bool = False
    circuit_cooldown_seconds: float = 30.0
    compensation_max_tries: int = 5
    compensation_retry_base_seconds: float = 30.0
    smtp_url: SecretStr = field(default_factory=lambda: SecretStr(""))


@dataclass
class World:
    """Everything one test's steps talk to, and what they did."""

    store: MemoryStore = field(default_factory=MemoryStore)
    clock: FixedClock = field(default_factory=FixedClock)
    gateway: FakeGateway = field(default_factory=FakeGateway)
    gate: OpenGate = field(default_factory=OpenGate)
    settings: Settings = field(default_factory=Settings)
    confirm: set[str] = field(default_factory=set)  # tools whose calls must never be sent twice
    pauses: list[float] = field(default_factory=list)
    wakeups: int = 0
    # What waiting calls re-read, shared between them (None: each reads its own).
    waiting_reads: WaitingReads | None = None

    def __post_init__(self) -> None:
        now = self.clock.now_iso()
        with self.store.write() as uow:
            for fields in DEFAULT_ENTRIES:
                uow.registry.insert_version(
                    RegistryEntry.model_validate({**fields, "registry_version": 1, "created_at": now})
                )

    @property
    def deps(self) -> StepDeps:
        return StepDeps(
            store=self.store,
            clock=self.clock,
            gateway=self.gateway,
            gate=self.gate,
            settings=self.settings,
            needs_confirmation=lambda tool_name: tool_name in self.confirm,
            wake_outbox=self._wake,
            sleep=self._pause,
            waiting_reads=self.waiting_reads,
        )

    def _wake(self) -> None:
        self.wakeups += 1

    def _pause(self, seconds: float) -> None:
        """The steps' pauses pass on the test's clock, not the wall clock."""
        self.pauses.append(seconds)
        self.clock.advance(seconds)

    def add_intent(self, intent: ActionIntentV1) -> ActionIntentV1:
        with self.store.write() as uow:
            assert uow.intents.insert_intent(intent, "hash")
        return intent

    def accept(self, intent: ActionIntentV1) -> ExecutionRequest:
        """Take the execution lock as intake does: the QUEUED attempt; StartExecution's input."""
        with self.store.write() as uow:
            lock = take_execution_lock(uow, intent, self.clock.now())
        assert lock.taken
        return request_for(lock.attempt)


class Crash(BaseException):
    """The process stops here (a ``BaseException``: no step catches it, as no step survives a crash)."""


def run_chain(deps: StepDeps, request: ExecutionRequest) -> RecordedOutcome | DuplicateExecution:
    """One execution as ``engine/workflow.execute_intent`` runs it, without DBOS: PrepareToolCall,
    InvokeTool retried on a retryable failure (``retry_count`` more tries), RecordOutcome."""
    try:
        call = steps.prepare_tool_call(deps, request)
        if isinstance(call, DuplicateExecution):
            return call
        draft = invoke_with_retries(deps, call)
    except ExecutionStopped as stop:
        draft = stop.draft
    return steps.record_outcome(deps, draft)


def invoke_with_retries(deps: StepDeps, call: ToolCall) -> OutcomeDraft:
    """InvokeTool under the workflow's one retry layer: the last retryable failure's draft once
    the tries are spent."""
    last: steps.RetryableToolFailure | None = None
    for _ in range(call.retry_count + 1):
        try:
            return outcome_from_tool_result(steps.invoke_tool(deps, call))
        except steps.RetryableToolFailure as failure:
            last = failure
        except ExecutionStopped as stop:
            return stop.draft
    assert last is not None
    return last.draft


@contextmanager
def crashing(gateway: FakeGateway) -> Iterator[None]:
    """The next tool call leaves, and the process stops before its answer comes back."""

    def crash() -> None:
        gateway.before_answer = None
        raise Crash

    gateway.before_answer = crash
    try:
        yield
    finally:
        gateway.before_answer = None
