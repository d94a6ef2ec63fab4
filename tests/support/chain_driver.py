"""Runs the execution workflow's steps one at a time, in-process, without the workflow engine.

The driver plays the part DBOS plays in production, and no more: it starts at most one run per
workflow id (a repeated start is a no-op, like an enqueue under an existing id), it hands each
step the previous step's checkpointed output (through JSON, as a checkpoint would), it retries
InvokeTool on a retryable failure within the intent's ``retry_count``, and a crash is a step that
ran (and wrote what it wrote) but whose result was never checkpointed: the next ``step`` runs it
again. Between any two steps a test may do anything else (approve, cancel, flip a switch, rerun).

The sequencing mirrors ``engine/workflow.execute_intent`` and ``_invoke``: PrepareToolCall, then
InvokeTool (or straight to RecordOutcome on a stop), then RecordOutcome; a recorded outcome whose
write was cancelled meanwhile requests compensation.

The steps get a :class:`StepDeps` (``engine/steps/deps.py``) and the use cases a context, both
over one store: the in-memory one (``tests/support/memory_store``) by default, or the SQL adapter
on a throw-away SQLite file (the same semantics, proven by running the same moves on both).
The service parts around the steps are test doubles: a clock only the test moves, a tool gateway
that deduplicates on the idempotency key like every connector must (DESIGN §3.3) and records every
call it receives, and a connector gate that always admits (flow control has its own tests).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from fulfill.config import Settings
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import (
    CompensationRequest,
    DuplicateExecution,
    ExecutionRequest,
    ExecutionStopped,
    OutcomeDraft,
    RecordedOutcome,
    ToolCall,
    ToolResult,
    outcome_from_step_failure,
    outcome_from_tool_result,
)
from fulfill.domain.models import (
    ActionOutcomeV1,
    ExecutionAttempt,
    ExecutionSignal,
    ExternalObjectRef,
    LedgerEntry,
)
from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.time import iso_from_epoch
from fulfill.engine import intake, steps
from fulfill.engine.steps import StepDeps
from fulfill.ports.store import Store
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from fulfill.usecases.registry import seed_default_registry
from tests.support.memory_store import MemoryStore

M = TypeVar("M", bound=BaseModel)

# The default registry's two internal tools, as the gateway would describe them.
TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "internal.create_task": {
        "type": "object",
        "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
        "required": ["title"],
    },
    "internal.create_note": {
        "type": "object",
        "properties": {"content": {"type": "string"}},
        "required": ["content"],
    },
}
# A tool whose calls must never be sent twice (a gateway target that does not deduplicate): the
# steps mark such a call before it leaves and settle it with its answer (the sent-call protocol).
CONFIRMED_TOOLS = frozenset({"internal.create_note"})


def through_json(value: M, model: type[M]) -> M:
    """What the next step receives: the previous output, serialised and validated again."""
    return model.model_validate_json(value.model_dump_json())


class ManualClock:
    """The service clock, moved only by the test (each reading advances it by a millisecond, so
    that timestamps stay ordered the way they are in a running service)."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        self._now += 0.001
        return self._now

    def now_iso(self) -> str:
        return iso_from_epoch(self.now())

    def advance(self, seconds: float) -> None:
        self._now += seconds


class Answer(Enum):
    """What the gateway answers to the next call."""

    SUCCESS = "success"
    TRANSIENT = "transient"  # retryable: the workflow's one retry layer tries again
    PERMANENT = "permanent"  # a business failure: the execution ends FAILED


class ProcessCrash(BaseException):
    """The process died: raised through a step like a kill -9 would end it (no ``except
    Exception`` catches it), after the call has left."""


@dataclass(frozen=True)
class SentCall:
    """One ``tools/call`` the gateway received."""

    sequence: int
    tenant_id: str
    action_intent_id: str
    tool_name: str
    idempotency_key: str
    answer: Answer
    # True when a stop (a kill switch on, or the intent cancelled) had been committed before
    # the call left: DESIGN §3.5 says this never happens.
    after_stop: bool


class RecordingGateway:
    """A tool gateway whose connector deduplicates on the idempotency key (reserve → call →
    commit, DESIGN §3.3): the first successful call of a key writes one object, and any later
    call of that key is answered with it (whatever answer was queued: a committed key is never
    tried again). ``stop_observed`` tells, at the moment a call leaves, whether a stop that
    applies to it had been committed."""

    def __init__(self, stop_observed: Callable[[str, str], bool]) -> None:
        self._stop_observed = stop_observed
        self.answers: list[Answer] = []  # the next new calls' answers, in order; then SUCCESS
        self.crash_after_send = False  # the next call is made, then the process dies
        self.calls: list[SentCall] = []
        self.writes: dict[str, ExternalObjectRef] = {}  # idempotency key → the object written

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
        key = str(arguments["idempotency_key"])
        intent_id = str(arguments["action_intent_id"])
        if key in self.writes:
            # Committed under this key: the connector answers a repeat with what it wrote.
            answer = Answer.SUCCESS
        else:
            answer = self.answers.pop(0) if self.answers else Answer.SUCCESS
        self.calls.append(
            SentCall(
                sequence=len(self.calls),
                tenant_id=tenant_id,
                action_intent_id=intent_id,
                tool_name=tool_name,
                idempotency_key=key,
                answer=answer,
                after_stop=self._stop_observed(tenant_id, intent_id),
            )
        )
        if answer is Answer.SUCCESS:
            ref = self.writes.setdefault(
                key,
                ExternalObjectRef(
                    system="INTERNAL",
                    object_type=tool_name.split(".", 1)[1],
                    object_id=f"obj-{len(self.writes)}",
                ),
            )
        if self.crash_after_send:
            self.crash_after_send = False
            raise ProcessCrash(tool_name)
        if answer is Answer.SUCCESS:
            return ToolCallOutcome(success=True, external_object_refs=[ref])
        retryable = answer is Answer.TRANSIENT
        return ToolCallOutcome(
            success=False,
            error=ExecutionError(
                error_class=ErrorClass.DOWNSTREAM if retryable else ErrorClass.VALIDATION,
                error_code="DOWNSTREAM_UNAVAILABLE" if retryable else "REJECTED_BY_TARGET",
                error_message="the target answered with an error",
            ),
        )


class _Admitted:
    """A permit of the open gate: nothing to wait for, nothing to count."""

    waited = False

    def sent(self) -> None:
        return None

    def finish(self, result: object) -> None:
        return None

    def __enter__(self) -> _Admitted:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class OpenGate:
    """The connector gate, always open (rate, concurrency and circuit have their own tests)."""

    def admit(self, connector: str, **_: object) -> _Admitted:
        return _Admitted()


class Phase(Enum):
    PREPARE = "PrepareToolCall"
    INVOKE = "InvokeTool"
    RECORD = "RecordOutcome"
    DONE = "done"


@dataclass
class WorkflowRun:
    """One workflow: its input, the checkpoint of its last finished step, where it stands."""

    request: ExecutionRequest
    phase: Phase = Phase.PREPARE
    call: ToolCall | None = None
    draft: OutcomeDraft | None = None
    tries: int = 0  # InvokeTool's failed tries in this run of the step's retry loop
    result: str | None = None  # DUPLICATE_IGNORED or the recorded status
    recorded: RecordedOutcome | None = None
    compensation: CompensationRequest | None = None
    crashes: int = 0
    # Exceptions no step classified (the workflow turns them into a FAILED outcome; a test
    # wants to know).
    unexpected: list[BaseException] = field(default_factory=list)

    @property
    def workflow_id(self) -> str:
        return self.request.workflow_id

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def duplicate(self) -> bool:
        return self.result == "DUPLICATE_IGNORED"


class ChainDriver:
    """The workflow engine's part, played step by step (see the module's docstring)."""

    def __init__(self, deps: StepDeps) -> None:
        self.deps = deps
        self.runs: dict[str, WorkflowRun] = {}  # by workflow id, in the order they were started

    # --- starting ------------------------------------------------------------------------------

    def start(self, request: ExecutionRequest, *, priority: int | None = None) -> None:
        """Enqueue a workflow under its id: a repeat is a no-op, as DBOS makes it. (``priority``,
        the queue's fair order, is not modelled: the driver runs what a test tells it to.)"""
        if request.workflow_id not in self.runs:
            self.runs[request.workflow_id] = WorkflowRun(through_json(request, ExecutionRequest))

    def start_queued(self, attempt: ExecutionAttempt, **extra: Any) -> None:
        """What the outbox relay (a rerun) or the reconciler does for a QUEUED attempt."""
        self.start(intake.request_for(attempt, **extra))

    def active(self) -> list[WorkflowRun]:
        return [run for run in self.runs.values() if not run.done]

    # --- running -------------------------------------------------------------------------------

    def step(self, run: WorkflowRun) -> None:
        """Run the workflow's next step and checkpoint its result."""
        self._advance(run, checkpoint=True)

    def crash(self, run: WorkflowRun) -> None:
        """Run the workflow's next step, then lose its result: the step's writes stay, its
        checkpoint never happens, and the next ``step`` runs it again (recovery)."""
        run.crashes += 1
        with suppress(ProcessCrash):
            self._advance(run, checkpoint=False)
        run.tries = 0  # the step's retry loop lived in the process that died

    def run_to_end(self, run: WorkflowRun, *, max_steps: int = 50) -> None:
        for _ in range(max_steps):
            if run.done:
                return
            self.step(run)
        raise AssertionError(f"{run.workflow_id} did not end within {max_steps} steps ({run.phase})")

    def drain(self) -> None:
        while self.active():
            for run in self.active():
                self.run_to_end(run)

    def replay_record(self, run: WorkflowRun) -> RecordedOutcome:
        """RecordOutcome again after it committed (a crash between its commit and its checkpoint)."""
        assert run.draft is not None
        assert run.done
        assert not run.duplicate
        return steps.record_outcome(self.deps, through_json(run.draft, OutcomeDraft))

    def _advance(self, run: WorkflowRun, *, checkpoint: bool) -> None:
        if run.phase is Phase.PREPARE:
            self._prepare(run, checkpoint)
        elif run.phase is Phase.INVOKE:
            self._invoke(run, checkpoint)
        elif run.phase is Phase.RECORD:
            self._record(run, checkpoint)

    def _prepare(self, run: WorkflowRun, checkpoint: bool) -> None:
        try:
            call = steps.prepare_tool_call(self.deps, through_json(run.request, ExecutionRequest))
        except ExecutionStopped as stop:
            if checkpoint:
                self._to_record(run, stop.draft)
            return
        if not checkpoint:
            return
        if isinstance(call, DuplicateExecution):
            run.phase, run.result = Phase.DONE, "DUPLICATE_IGNORED"
            return
        run.call, run.phase = through_json(call, ToolCall), Phase.INVOKE

    def _invoke(self, run: WorkflowRun, checkpoint: bool) -> None:
        call = run.call
        assert call is not None
        try:
            result = steps.invoke_tool(self.deps, through_json(call, ToolCall))
        except ExecutionStopped as stop:
            draft = stop.draft
        except steps.RetryableToolFailure as failure:
            run.tries += 1
            if run.tries <= call.retry_count:
                return  # the step's retry: the next ``step`` tries again
            draft = failure.draft  # retries exhausted: the last try's draft (workflow._draft_after_retries)
        except ProcessCrash:
            raise
        except Exception as exc:
            run.unexpected.append(exc)
            draft = outcome_from_step_failure(call.context, steps.unexpected_error(exc, self.deps.store))
        else:
            draft = outcome_from_tool_result(through_json(result, ToolResult))
        if checkpoint:
            self._to_record(run, draft)

    def _to_record(self, run: WorkflowRun, draft: OutcomeDraft) -> None:
        run.draft, run.phase, run.tries = through_json(draft, OutcomeDraft), Phase.RECORD, 0

    def _record(self, run: WorkflowRun, checkpoint: bool) -> None:
        assert run.draft is not None
        recorded = steps.record_outcome(self.deps, through_json(run.draft, OutcomeDraft))
        if not checkpoint:
            return
        run.recorded = through_json(recorded, RecordedOutcome)
        run.result, run.phase = recorded.outcome.status.value, Phase.DONE
        if recorded.cancelled_after_write:
            outcome = recorded.outcome
            run.compensation = CompensationRequest(
                tenant_id=outcome.tenant_id,
                account_id=outcome.account_id,
                action_intent_id=outcome.action_intent_id,
                attempt_count=outcome.attempt_count,
                requested_by="cancel-during-execution",
            )


# --- the store, read back ----------------------------------------------------------------------


@dataclass(frozen=True)
class IntentRows:
    """Everything the store holds about one intent's executions."""

    attempt: ExecutionAttempt | None
    outcomes: dict[int, ActionOutcomeV1]  # by attempt count
    ledger: tuple[LedgerEntry, ...]
    signals: tuple[ExecutionSignal, ...]
    approval_status: str

    def entries(self, event_type: str, attempt: int | None = None) -> list[LedgerEntry]:
        return [
            entry
            for entry in self.ledger
            if entry.event_type == event_type and (attempt is None or entry.attempt == attempt)
        ]


def read_intent_rows(store: Store, tenant_id: str, action_intent_id: str) -> IntentRows:
    with store.read() as uow:
        intent = uow.intents.get_intent(tenant_id, action_intent_id)
        assert intent is not None
        attempt = uow.executions.get_attempt(tenant_id, intent.account_id, action_intent_id)
        outcomes = {}
        for count in range(1, (attempt.attempt_count if attempt else 0) + 1):
            outcome = uow.executions.get_outcome(tenant_id, intent.account_id, action_intent_id, count)
            if outcome is not None:
                outcomes[count] = outcome
        ledger = tuple(uow.executions.list_ledger(tenant_id, action_intent_id))
        signals = tuple(uow.executions.list_signals(tenant_id, action_intent_id))
    return IntentRows(
        attempt=attempt,
        outcomes=outcomes,
        ledger=ledger,
        signals=signals,
        approval_status=intent.approval_status.value,
    )


# --- a service without its servers ---------------------------------------------------------------


@dataclass
class ChainContext:
    """What the use cases and the intake read of a running service (``UseCaseContext``)."""

    settings: Settings
    store: Store
    clock: ManualClock
    tool_schemas: Mapping[str, dict[str, Any]]
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)

    def connector_names(self) -> set[str]:
        return {tool.split(".", 1)[0] for tool in self.tool_schemas}


@dataclass
class ChainService:
    """A service's parts around the steps, on a fresh store, whose workflow starts go to a
    :class:`ChainDriver` instead of the workflow engine."""

    context: ChainContext
    clock: ManualClock
    gateway: RecordingGateway
    driver: ChainDriver
    close: Callable[[], None]

    @property
    def store(self) -> Store:
        return self.context.store


@functools.cache
def _settings(database_url: str = "sqlite:///unused.db") -> Settings:
    """Built once per URL (reading the environment takes longer than a whole example)."""
    return Settings(
        database_url=database_url,
        jwt_secret="chain-driver-secret-0123456789abcdef",
        retry_backoff_base_seconds=0.0,
        rate_limit_backoff_seconds=0.0,
        log_level="WARNING",
    )


def memory_backend() -> tuple[Store, Settings, Callable[[], None]]:
    """A fresh in-memory store with the default registry."""
    store = MemoryStore()
    seed_default_registry(store, iso_from_epoch(1_700_000_000))
    return store, _settings(), lambda: None


def sqlite_backend() -> tuple[Store, Settings, Callable[[], None]]:
    """The SQL adapter on a copy of a migrated, seeded SQLite file (in RAM when /dev/shm exists)."""
    folder = Path(tempfile.mkdtemp(prefix="fulfill-chain-", dir=_fast_tmp()))
    path = folder / "fulfill.db"
    shutil.copyfile(_migrated_template(), path)
    settings = _settings(f"sqlite:///{path}")
    database = Database(settings.database_url, pool_size=2)

    def close() -> None:
        database.dispose()
        shutil.rmtree(folder, ignore_errors=True)

    return SqlStore(database), settings, close


Backend = Callable[[], tuple[Store, Settings, Callable[[], None]]]


@contextmanager
def chain_service(
    stop_observed: Callable[[str, str], bool], *, start_epoch: float, backend: Backend = memory_backend
) -> Iterator[ChainService]:
    store, settings, close = backend()
    clock = ManualClock(start_epoch)
    gateway = RecordingGateway(stop_observed)
    context = ChainContext(settings=settings, store=store, clock=clock, tool_schemas=TOOL_SCHEMAS)
    deps = StepDeps(
        store=store,
        clock=clock,
        gateway=gateway,
        gate=OpenGate(),
        settings=settings,
        needs_confirmation=lambda tool_name: tool_name in CONFIRMED_TOOLS,
        wake_outbox=context.outbox_wakeup.set,
        sleep=lambda _seconds: None,
    )
    driver = ChainDriver(deps)
    previous_start = intake.start_execution
    intake.start_execution = driver.start  # type: ignore[assignment]
    try:
        yield ChainService(context, clock, gateway, driver, close)
    finally:
        intake.start_execution = previous_start  # type: ignore[assignment]
        close()


_template_lock = threading.Lock()
_template: Path | None = None


def _migrated_template() -> Path:
    """One migrated and seeded SQLite file per test process; every SQLite backend is a copy."""
    global _template
    with _template_lock:
        if _template is None:
            folder = Path(tempfile.mkdtemp(prefix="fulfill-chain-", dir=_fast_tmp()))
            atexit.register(shutil.rmtree, folder, True)
            path = folder / "template.db"
            db = Database(f"sqlite:///{path}")
            upgrade_to_head(db)
            seed_default_registry(SqlStore(db), iso_from_epoch(1_700_000_000))
            db.dispose()  # the last connection's close checkpoints the WAL into the file
            _template = path
        return _template


def _fast_tmp() -> str | None:
    """A RAM-backed folder when there is one: these databases live for one test example."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None
