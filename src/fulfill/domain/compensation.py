"""What follows one try of a compensation: done, another try later, or a person.

A try that failed is tried again with exponential backoff, up to the last try, after which it is
abandoned (a person undoes the write). A try whose call reached a target that does not
deduplicate and whose answer was lost (``UNKNOWN_OUTCOME``) is different: the undo may have
happened, and sending it again could repeat it (a second refund). It is never tried again, by
the workflow or by the reconciler; a person checks the target, exactly as for an execution whose
outcome is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fulfill.domain.errors import ExecutionError
from fulfill.domain.ledger import outcome_event
from fulfill.domain.models import ActionOutcomeV1, LedgerEntry
from fulfill.domain.targets import UNKNOWN_OUTCOME

COMPENSATION_OUTCOME_UNKNOWN = "COMPENSATION_OUTCOME_UNKNOWN"


class AfterTry(StrEnum):
    COMPLETED = "completed"
    RETRY = "failed"  # failed; the reconciler starts the next try at ``retry_at_epoch``
    ABANDONED = "abandoned"  # failed on its last try: a person undoes the write
    OUTCOME_UNKNOWN = "unknown"  # may have happened: a person checks the target, never resent


@dataclass(frozen=True)
class NextStep:
    after: AfterTry
    retry_at_epoch: float | None = None


def after_compensation_try(
    *,
    completed: bool,
    error: ExecutionError | None,
    try_number: int,
    max_tries: int,
    retry_base_seconds: float,
    now_epoch: float,
) -> NextStep:
    if completed:
        return NextStep(AfterTry.COMPLETED)
    if error is not None and error.error_code == UNKNOWN_OUTCOME:
        return NextStep(AfterTry.OUTCOME_UNKNOWN)
    if try_number >= max_tries:
        return NextStep(AfterTry.ABANDONED)
    return NextStep(AfterTry.RETRY, now_epoch + retry_base_seconds * 2 ** (try_number - 1))


def compensation_unknown_entry(
    outcome: ActionOutcomeV1,
    timestamp: str,
    *,
    tool_name: str,
    object_id: str | None,
    idempotency_key: str | None,
    error: ExecutionError | None,
    try_number: int,
) -> LedgerEntry:
    """A person must check the target: the undo of ``object_id`` may have happened there (its
    answer was lost), and it is not sent again."""
    target, _, remote_tool = tool_name.partition(".")
    data: dict[str, Any] = {
        "target": target,
        "compensation_tool_name": tool_name,
        "remote_tool": remote_tool,
        "object_id": object_id,
        "idempotency_key": idempotency_key,
        "write_idempotency_key": outcome.idempotency_key,
        "error_code": error.error_code if error else None,
        "error_message": error.error_message if error else None,
        "try": try_number,
        "external_object_refs": [ref.model_dump(exclude_none=True) for ref in outcome.external_object_refs],
        "action": (
            "check the target for the undo carrying this idempotency key; if the object is still "
            "there, undo the write by hand. It is not sent again"
        ),
    }
    return outcome_event(outcome, COMPENSATION_OUTCOME_UNKNOWN, timestamp, data)
