"""ACTION_APPROVED events delivered by a client: each one is accepted (its execution started,
once) or rejected with a code; a rejection is an answer here, never an exception."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fulfill.engine.intake import EventRejected, accept_approved_event, parse_approved_event
from fulfill.engine.runtime import Runtime
from fulfill.tokens import Principal


@dataclass(frozen=True)
class EventAccepted:
    action_intent_id: str


@dataclass(frozen=True)
class EventRefused:
    code: str
    message: str


class EventIntake:
    """The intake of the engine this process runs, as the HTTP edge sees it."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def accept(self, raw: Any, caller: Principal) -> EventAccepted | EventRefused:
        """Parse one event in its EventBridge shape and accept it for the caller's tenant."""
        try:
            event = parse_approved_event(raw)
            result = accept_approved_event(self._runtime, event, caller=caller)
        except EventRejected as rejection:
            return EventRefused(code=rejection.code, message=rejection.message)
        return EventAccepted(action_intent_id=result.action_intent_id)
