"""The error taxonomy and the one function that classifies failures.

Every failure that reaches an outcome carries an ``error_class`` (one of six), an ``error_code``
(a stable UPPER_SNAKE identifier) and a human-readable ``error_message``. Only three classes are
worth retrying: the ones that describe a system that may answer differently a moment later.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ErrorClass(StrEnum):
    AUTH = "AUTH"
    RATE_LIMIT = "RATE_LIMIT"
    VALIDATION = "VALIDATION"
    DOWNSTREAM = "DOWNSTREAM"
    TIMEOUT = "TIMEOUT"
    UNKNOWN = "UNKNOWN"


RETRYABLE_CLASSES = frozenset({ErrorClass.RATE_LIMIT, ErrorClass.DOWNSTREAM, ErrorClass.TIMEOUT})


class ExecutionError(BaseModel):
    """A classified failure, safe to show to a client (no stack traces, no payload echoes)."""

    model_config = ConfigDict(frozen=True)

    error_class: ErrorClass
    error_code: str
    error_message: str

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE_CLASSES


# The error_code of a failure whose tool named none: the codes the reference's tool invoker
# derives (AUTH_FAILED, RATE_LIMIT, VALIDATION_ERROR, TIMEOUT, UNKNOWN_ERROR), and for the class it
# never derives, its DownstreamError's code.
DERIVED_CODES: dict[ErrorClass, str] = {
    ErrorClass.AUTH: "AUTH_FAILED",
    ErrorClass.RATE_LIMIT: "RATE_LIMIT",
    ErrorClass.VALIDATION: "VALIDATION_ERROR",
    ErrorClass.TIMEOUT: "TIMEOUT",
    ErrorClass.DOWNSTREAM: "DOWNSTREAM_ERROR",
    ErrorClass.UNKNOWN: "UNKNOWN_ERROR",
}

# Error codes whose class is fixed, whatever the message says.
_CODE_CLASSES: dict[str, ErrorClass] = {
    "AUTH_FAILED": ErrorClass.AUTH,
    "UNAUTHORIZED": ErrorClass.AUTH,
    "FORBIDDEN": ErrorClass.AUTH,
    "TENANT_MISMATCH": ErrorClass.AUTH,
    "RATE_LIMIT": ErrorClass.RATE_LIMIT,
    "RATE_LIMIT_EXCEEDED": ErrorClass.RATE_LIMIT,
    "TOO_MANY_REQUESTS": ErrorClass.RATE_LIMIT,
    "TIMEOUT": ErrorClass.TIMEOUT,
    "EXECUTION_TIMEOUT": ErrorClass.TIMEOUT,
    "GATEWAY_TIMEOUT": ErrorClass.TIMEOUT,
    "DOWNSTREAM_ERROR": ErrorClass.DOWNSTREAM,
    "DOWNSTREAM_UNAVAILABLE": ErrorClass.DOWNSTREAM,
    "GATEWAY_UNAVAILABLE": ErrorClass.DOWNSTREAM,
    "STORE_UNAVAILABLE": ErrorClass.DOWNSTREAM,
    "VALIDATION_FAILED": ErrorClass.VALIDATION,
    "VALIDATION_ERROR": ErrorClass.VALIDATION,
    "INTENT_NOT_FOUND": ErrorClass.VALIDATION,
    "INTENT_EXPIRED": ErrorClass.VALIDATION,
    # What was about to run is not what was approved (domain/action_hash.py): never retried.
    "APPROVAL_MISMATCH": ErrorClass.VALIDATION,
    "KILL_SWITCH_ENABLED": ErrorClass.VALIDATION,
    "MISSING_REGISTRY_VERSION": ErrorClass.VALIDATION,
    "TOOL_MAPPING_NOT_FOUND": ErrorClass.VALIDATION,
    "MISSING_REQUIRED_PARAMETER": ErrorClass.VALIDATION,
    "INVALID_PARAMETER_TYPE": ErrorClass.VALIDATION,
    "INVALID_TOOL_ARGUMENTS": ErrorClass.VALIDATION,
    "TOOL_NOT_FOUND": ErrorClass.VALIDATION,
    "TENANT_BINDING_MISSING": ErrorClass.VALIDATION,
    "INVALID_TOOL_RESPONSE": ErrorClass.UNKNOWN,
    # The call reached a target that does not deduplicate and its answer was lost: it may have
    # written. Never retried; a person checks the target (ledger OUTCOME_UNKNOWN).
    "UNKNOWN_OUTCOME": ErrorClass.UNKNOWN,
    "EGRESS_REFUSED": ErrorClass.VALIDATION,
    "UNKNOWN_ERROR": ErrorClass.UNKNOWN,
}

# Message fragments, matched case-insensitively, in this order: the first hit wins.
_MESSAGE_CLASSES: tuple[tuple[tuple[str, ...], ErrorClass], ...] = (
    (
        ("unauthorized", "unauthenticated", "authentication", "forbidden", "permission denied"),
        ErrorClass.AUTH,
    ),
    (("rate limit", "rate-limit", "throttl", "too many requests"), ErrorClass.RATE_LIMIT),
    (("timeout", "timed out", "deadline exceeded"), ErrorClass.TIMEOUT),
    (
        ("unavailable", "connection refused", "connection reset", "connection error", "database is locked"),
        ErrorClass.DOWNSTREAM,
    ),
    (("validation", "invalid", "missing", "required", "unknown tool", "not found"), ErrorClass.VALIDATION),
)


def classify(
    *,
    http_status: int | None = None,
    error_code: str | None = None,
    message: str | None = None,
    declared_class: str | None = None,
) -> ErrorClass:
    """Classify one failure.

    Precedence: a class the failing system declared itself (when it is one of ours), then the HTTP
    status, then a known error code, then keywords in the message. Codes, declared classes and
    messages are compared case-insensitively. Anything unrecognised is ``UNKNOWN``.
    """
    if declared_class:
        try:
            return ErrorClass(declared_class.strip().upper())
        except ValueError:
            pass
    if http_status is not None:
        status_class = _classify_status(http_status)
        if status_class is not None:
            return status_class
    if error_code:
        code_class = _CODE_CLASSES.get(error_code.strip().upper())
        if code_class is not None:
            return code_class
    if message:
        lowered = message.lower()
        for fragments, error_class in _MESSAGE_CLASSES:
            if any(fragment in lowered for fragment in fragments):
                return error_class
    return ErrorClass.UNKNOWN


def _classify_status(status: int) -> ErrorClass | None:
    if status in (401, 403, 407):
        return ErrorClass.AUTH
    if status == 429:
        return ErrorClass.RATE_LIMIT
    if status in (408, 504):
        return ErrorClass.TIMEOUT
    if status >= 500:
        return ErrorClass.DOWNSTREAM
    if 400 <= status < 500:
        return ErrorClass.VALIDATION
    return None


def make_error(
    error_code: str | None,
    error_message: str,
    *,
    http_status: int | None = None,
    declared_class: str | None = None,
) -> ExecutionError:
    """Build a classified error from a code and message; without a code, the code is derived from
    the class (``DERIVED_CODES``)."""
    error_class = classify(
        http_status=http_status, error_code=error_code, message=error_message, declared_class=declared_class
    )
    return ExecutionError(
        error_class=error_class,
        error_code=error_code or DERIVED_CODES[error_class],
        error_message=error_message,
    )


# --- failures a gateway target reports -----------------------------------------------------------

# A target's own error code is shown as ``TARGET:{CODE}``: fulfill's codes never hold a colon, so
# no target can claim one of them (``KILL_SWITCH_ENABLED``, ``UNKNOWN_OUTCOME``, ``TARGET_TIMEOUT``).
TARGET_CODE_PREFIX = "TARGET:"
MAX_TARGET_CODE = 64
MAX_TARGET_MESSAGE = 500
_NOT_CODE = re.compile(r"[^A-Z0-9_]+")


def printable(text: str, limit: int) -> str:
    """``text`` without control characters (each run of them, and of whitespace, is one space),
    at most ``limit`` characters."""
    kept = "".join(ch if ch.isprintable() else " " for ch in text[: limit * 4])
    return " ".join(kept.split())[:limit]


def target_code(code: str | None) -> str | None:
    """A target's code in fulfill's alphabet (``A-Z 0-9 _``, at most ``MAX_TARGET_CODE``), or
    None when nothing of it is left."""
    if not code:
        return None
    cleaned = _NOT_CODE.sub("_", code[: MAX_TARGET_CODE * 4].upper()).strip("_")[:MAX_TARGET_CODE]
    return cleaned.rstrip("_") or None


def target_error(code: str | None, message: str, *, declared_class: str | None = None) -> ExecutionError:
    """A failure a gateway target reported, made safe to store and show.

    The class is found as for any failure (the class it declared when it is one of the six, then
    its code's meaning, then its message). The code is namespaced, ``TARGET:{CODE}``, so it never
    impersonates one of fulfill's (a target's ``KILL_SWITCH_ENABLED`` is ``TARGET:KILL_SWITCH_ENABLED``,
    class VALIDATION, and stops nothing); without a usable code it is the code derived from the
    class (``DERIVED_CODES``), as for any tool. The message loses its control characters and is
    cut at ``MAX_TARGET_MESSAGE`` characters.
    """
    cleaned = target_code(code)
    text = printable(message, MAX_TARGET_MESSAGE) or "the target reported a failure without a message"
    declared = declared_class[:32] if declared_class else None
    error_class = classify(error_code=cleaned, message=text, declared_class=declared)
    return ExecutionError(
        error_class=error_class,
        error_code=f"{TARGET_CODE_PREFIX}{cleaned}" if cleaned else DERIVED_CODES[error_class],
        error_message=text,
    )
