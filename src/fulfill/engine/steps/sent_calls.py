"""The sent-call protocol, for a call that must never be sent twice (a target that does not
deduplicate on the idempotency key): mark the call before it leaves; on a replay (a crash, a
resumed workflow, a later try) read the mark instead of calling again; settle the mark with the
answer.

A mark with an answer gives that answer back. A mark without one means the call was in flight
when its process stopped: the outcome is unknown (``UNKNOWN_OUTCOME``), and the call is never sent
again. A call that certainly did nothing has its mark cleared, so that a later try may send it.
When the store cannot take the mark, the call is not sent (the step is retried); when it cannot
take the answer, the mark stays without one (unknown, never a second call). Each time it gives up
like this, it says so in the log.

InvokeTool keeps its marks per attempt (``remote_tool_calls``), the compensation per call key
(``remote_compensation_calls``): :class:`ToolCallMarks` and :class:`CompensationCallMarks`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.ports import Clock, ToolCallOutcome
from fulfill.domain.targets import UNKNOWN_OUTCOME
from fulfill.logging_setup import describe_failure
from fulfill.ports.store import Store, UnitOfWork

log = logging.getLogger(__name__)

# Pauses before each try of writing the answer.
_SETTLE_DELAYS = (0.0, 0.05, 0.2, 0.5)


class Marked(Protocol):
    @property
    def answer(self) -> ToolCallOutcome | None: ...


class CallMarks(Protocol):
    """Where the mark of one call is kept."""

    def read(self, uow: UnitOfWork) -> Marked | None: ...

    def mark(self, uow: UnitOfWork, *, now: str) -> None: ...

    def settle(self, uow: UnitOfWork, answer: ToolCallOutcome) -> None: ...

    def clear(self, uow: UnitOfWork) -> None: ...


class ToolCallMarks:
    """InvokeTool's mark: one per attempt of an intent."""

    def __init__(
        self,
        *,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        tool_name: str,
        idempotency_key: str,
    ) -> None:
        self._key = (tenant_id, account_id, action_intent_id, attempt_count)
        self._tool_name = tool_name
        self._idempotency_key = idempotency_key

    def read(self, uow: UnitOfWork) -> Marked | None:
        return uow.targets.get_remote_call(*self._key)

    def mark(self, uow: UnitOfWork, *, now: str) -> None:
        tenant_id, account_id, action_intent_id, attempt_count = self._key
        uow.targets.mark_remote_call(
            tenant_id=tenant_id,
            account_id=account_id,
            action_intent_id=action_intent_id,
            attempt_count=attempt_count,
            tool_name=self._tool_name,
            idempotency_key=self._idempotency_key,
            now=now,
        )

    def settle(self, uow: UnitOfWork, answer: ToolCallOutcome) -> None:
        uow.targets.settle_remote_call(*self._key, answer)

    def clear(self, uow: UnitOfWork) -> None:
        uow.targets.clear_remote_call(*self._key)


class CompensationCallMarks:
    """A compensation call's mark: one per call key (the same on every try of the compensation)."""

    def __init__(
        self,
        *,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        tool_name: str,
        object_id: str,
        idempotency_key: str,
    ) -> None:
        self._key = (tenant_id, account_id, idempotency_key)
        self._action_intent_id = action_intent_id
        self._attempt_count = attempt_count
        self._tool_name = tool_name
        self._object_id = object_id

    def read(self, uow: UnitOfWork) -> Marked | None:
        return uow.compensation_calls.get(*self._key)

    def mark(self, uow: UnitOfWork, *, now: str) -> None:
        tenant_id, account_id, idempotency_key = self._key
        uow.compensation_calls.mark(
            tenant_id=tenant_id,
            account_id=account_id,
            idempotency_key=idempotency_key,
            action_intent_id=self._action_intent_id,
            attempt_count=self._attempt_count,
            tool_name=self._tool_name,
            object_id=self._object_id,
            now=now,
        )

    def settle(self, uow: UnitOfWork, answer: ToolCallOutcome) -> None:
        uow.compensation_calls.settle(*self._key, answer)

    def clear(self, uow: UnitOfWork) -> None:
        uow.compensation_calls.clear(*self._key)


class SentCall:
    """One call under the protocol.

    ``what`` names the call in messages ("the call to sf.create_task"); ``keep`` says whether an
    answer shows the call did (or may have done) something, so its mark keeps the answer; an
    answer that says it did nothing clears the mark. ``unavailable`` builds the exception that
    makes the step retry when the store cannot be read or written before the call is sent.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        marks: CallMarks,
        *,
        tool_name: str,
        idempotency_key: str,
        what: str,
        keep: Callable[[ToolCallOutcome], bool],
        unavailable: Callable[[], Exception],
        sleep: Callable[[float], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._marks = marks
        self._tool_name = tool_name
        self._idempotency_key = idempotency_key
        self._what = what
        self._keep = keep
        self._unavailable = unavailable
        self._sleep = sleep

    def answer_sent_before(self) -> ToolCallOutcome | None:
        """What an earlier run got for this call: the recorded answer, or, when the call was
        marked sent and never answered, an unknown outcome. None when it was not sent."""
        try:
            with self._store.read() as uow:
                mark = self._marks.read(uow)
        except Exception as exc:
            if not self._store.is_transient(exc):
                raise
            log.warning(
                "%s is not sent now: whether it was sent before could not be read (the store is "
                "unavailable); the step is tried again",
                self._what,
            )
            raise self._unavailable() from None
        if mark is None:
            return None
        if mark.answer is not None:
            return mark.answer
        target = self._tool_name.split(".", 1)[0]
        return ToolCallOutcome(
            success=False,
            error=ExecutionError(
                error_class=ErrorClass.UNKNOWN,
                error_code=UNKNOWN_OUTCOME,
                error_message=(
                    f"{self._what} was in flight when its process stopped; {target} does not "
                    f"deduplicate, so it is not sent again: check {target} for idempotency key "
                    f"{self._idempotency_key}"
                ),
            ),
        )

    def mark_sent(self) -> None:
        """Written before the call leaves: a replay finds it and does not call again."""
        try:
            with self._store.write() as uow:
                self._marks.mark(uow, now=self._clock.now_iso())
        except Exception as exc:
            if not self._store.is_transient(exc):
                raise
            log.warning(
                "%s is not sent: its mark could not be written (the store is unavailable); the "
                "step is tried again",
                self._what,
            )
            raise self._unavailable() from None

    def settle(self, answer: ToolCallOutcome) -> None:
        """Record the answer on the mark (or drop the mark when the call did nothing, so that a
        later try may send it). If this cannot be written, the mark stays without an answer, and a
        replay reports the outcome as unknown: never a second call."""
        failure: BaseException | None = None
        for delay in _SETTLE_DELAYS:
            self._sleep(delay)
            try:
                with self._store.write() as uow:
                    if self._keep(answer):
                        self._marks.settle(uow, answer)
                    else:
                        self._marks.clear(uow)
                return
            except Exception as exc:
                failure = exc
                if not self._store.is_transient(exc):
                    break
        log.warning(
            "gave up recording the answer of %s (%s): its mark stays without one, so a replay "
            "reports the outcome as unknown and does not send it again",
            self._what,
            describe_failure(failure) if failure else "unknown failure",
        )
