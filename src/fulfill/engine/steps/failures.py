"""How the steps name what went wrong: the errors they record and the one they retry on."""

from __future__ import annotations

from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import OutcomeDraft
from fulfill.ports.store import Store


class RetryableToolFailure(Exception):
    """A transient tool failure; the workflow's one retry layer retries the step on it."""

    def __init__(self, draft: OutcomeDraft) -> None:
        super().__init__(draft)
        self.draft = draft


def unexpected_error(exc: BaseException, store: Store) -> ExecutionError:
    """What an execution records for a failure no step classified."""
    if store.is_transient(exc):
        return ExecutionError(
            error_class=ErrorClass.DOWNSTREAM,
            error_code="STORE_UNAVAILABLE",
            error_message="the database stayed unavailable through every retry",
        )
    return ExecutionError(
        error_class=ErrorClass.UNKNOWN,
        error_code="EXECUTION_FAILED",
        error_message=f"the execution failed unexpectedly ({type(exc).__name__})",
    )


def validation_error(code: str, message: str) -> ExecutionError:
    return ExecutionError(error_class=ErrorClass.VALIDATION, error_code=code, error_message=message)


def timeout_error(message: str) -> ExecutionError:
    return ExecutionError(
        error_class=ErrorClass.TIMEOUT, error_code="EXECUTION_TIMEOUT", error_message=message
    )
