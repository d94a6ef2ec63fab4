from __future__ import annotations

import pytest
from pydantic import ValidationError

from fulfill.domain.errors import RETRYABLE_CLASSES, ErrorClass, ExecutionError, classify, make_error


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # declared class wins over everything, case-insensitively
        ({"declared_class": "rate_limit"}, ErrorClass.RATE_LIMIT),
        ({"declared_class": " Timeout "}, ErrorClass.TIMEOUT),
        ({"declared_class": "AUTH", "http_status": 500, "error_code": "TIMEOUT"}, ErrorClass.AUTH),
        ({"declared_class": "validation", "message": "service unavailable"}, ErrorClass.VALIDATION),
        ({"declared_class": "unknown", "http_status": 401}, ErrorClass.UNKNOWN),
        # unknown declared class falls through to the next rule
        ({"declared_class": "FATAL", "http_status": 429}, ErrorClass.RATE_LIMIT),
        ({"declared_class": "bogus"}, ErrorClass.UNKNOWN),
        ({"declared_class": "", "http_status": 401}, ErrorClass.AUTH),
        # HTTP status
        ({"http_status": 401}, ErrorClass.AUTH),
        ({"http_status": 403}, ErrorClass.AUTH),
        ({"http_status": 407}, ErrorClass.AUTH),
        ({"http_status": 429}, ErrorClass.RATE_LIMIT),
        ({"http_status": 408}, ErrorClass.TIMEOUT),
        ({"http_status": 504}, ErrorClass.TIMEOUT),
        ({"http_status": 500}, ErrorClass.DOWNSTREAM),
        ({"http_status": 502}, ErrorClass.DOWNSTREAM),
        ({"http_status": 503}, ErrorClass.DOWNSTREAM),
        ({"http_status": 400}, ErrorClass.VALIDATION),
        ({"http_status": 404}, ErrorClass.VALIDATION),
        ({"http_status": 409}, ErrorClass.VALIDATION),
        ({"http_status": 422}, ErrorClass.VALIDATION),
        ({"http_status": 200}, ErrorClass.UNKNOWN),
        ({"http_status": 302}, ErrorClass.UNKNOWN),
        # status wins over code and message
        ({"http_status": 401, "error_code": "RATE_LIMIT", "message": "timed out"}, ErrorClass.AUTH),
        # a 2xx status falls through to the code and message
        ({"http_status": 200, "error_code": "GATEWAY_TIMEOUT"}, ErrorClass.TIMEOUT),
        ({"http_status": 200, "message": "Unauthorized"}, ErrorClass.AUTH),
        # known codes, case-insensitive
        ({"error_code": "intent_expired"}, ErrorClass.VALIDATION),
        ({"error_code": "rate_limit_exceeded"}, ErrorClass.RATE_LIMIT),
        ({"error_code": "AUTH_FAILED"}, ErrorClass.AUTH),
        ({"error_code": "TENANT_MISMATCH"}, ErrorClass.AUTH),
        ({"error_code": "TOO_MANY_REQUESTS"}, ErrorClass.RATE_LIMIT),
        ({"error_code": "EXECUTION_TIMEOUT"}, ErrorClass.TIMEOUT),
        ({"error_code": "gateway_unavailable"}, ErrorClass.DOWNSTREAM),
        ({"error_code": "STORE_UNAVAILABLE"}, ErrorClass.DOWNSTREAM),
        ({"error_code": "KILL_SWITCH_ENABLED"}, ErrorClass.VALIDATION),
        ({"error_code": "MISSING_REQUIRED_PARAMETER"}, ErrorClass.VALIDATION),
        ({"error_code": "INVALID_TOOL_RESPONSE"}, ErrorClass.UNKNOWN),
        # a known code wins over the message
        ({"error_code": "INVALID_TOOL_RESPONSE", "message": "Unauthorized"}, ErrorClass.UNKNOWN),
        ({"error_code": "TIMEOUT", "message": "invalid input"}, ErrorClass.TIMEOUT),
        # an unknown code falls through to the message
        ({"error_code": "TOOL_ERROR", "message": "Unauthorized"}, ErrorClass.AUTH),
        # message keywords, case-insensitive
        ({"message": "Unauthorized"}, ErrorClass.AUTH),
        ({"message": "Permission Denied for user"}, ErrorClass.AUTH),
        ({"message": "THROTTLED"}, ErrorClass.RATE_LIMIT),
        ({"message": "Too Many Requests"}, ErrorClass.RATE_LIMIT),
        ({"message": "rate-limit hit"}, ErrorClass.RATE_LIMIT),
        ({"message": "Request Timed Out"}, ErrorClass.TIMEOUT),
        ({"message": "deadline exceeded"}, ErrorClass.TIMEOUT),
        ({"message": "service unavailable"}, ErrorClass.DOWNSTREAM),
        ({"message": "Connection refused"}, ErrorClass.DOWNSTREAM),
        ({"message": "database is locked"}, ErrorClass.DOWNSTREAM),
        ({"message": "Invalid title"}, ErrorClass.VALIDATION),
        ({"message": "Unknown tool foo.bar"}, ErrorClass.VALIDATION),
        ({"message": "record not found"}, ErrorClass.VALIDATION),
        # the first keyword group that matches wins (AUTH before VALIDATION, RATE_LIMIT before TIMEOUT)
        ({"message": "invalid authentication"}, ErrorClass.AUTH),
        ({"message": "throttled after timeout"}, ErrorClass.RATE_LIMIT),
        # nothing recognisable
        ({}, ErrorClass.UNKNOWN),
        ({"message": "something odd happened"}, ErrorClass.UNKNOWN),
        ({"error_code": "WEIRD", "message": ""}, ErrorClass.UNKNOWN),
    ],
)
def test_classify(kwargs: dict[str, object], expected: ErrorClass) -> None:
    assert classify(**kwargs) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error_class", "retryable"),
    [
        (ErrorClass.RATE_LIMIT, True),
        (ErrorClass.DOWNSTREAM, True),
        (ErrorClass.TIMEOUT, True),
        (ErrorClass.AUTH, False),
        (ErrorClass.VALIDATION, False),
        (ErrorClass.UNKNOWN, False),
    ],
)
def test_retryable(error_class: ErrorClass, retryable: bool) -> None:
    error = ExecutionError(error_class=error_class, error_code="X", error_message="m")
    assert error.retryable is retryable


def test_retryable_classes_are_exactly_three() -> None:
    assert frozenset({ErrorClass.RATE_LIMIT, ErrorClass.DOWNSTREAM, ErrorClass.TIMEOUT}) == RETRYABLE_CLASSES


def test_make_error_classifies_and_keeps_code_and_message() -> None:
    error = make_error("TOOL_ERROR", "Service Unavailable")
    assert error == ExecutionError(
        error_class=ErrorClass.DOWNSTREAM, error_code="TOOL_ERROR", error_message="Service Unavailable"
    )
    assert error.retryable


def test_make_error_uses_status_and_declared_class() -> None:
    assert make_error("X", "m", http_status=429).error_class is ErrorClass.RATE_LIMIT
    assert make_error("X", "m", http_status=429, declared_class="auth").error_class is ErrorClass.AUTH
    assert make_error("intent_expired", "whatever").error_class is ErrorClass.VALIDATION


def test_execution_error_is_frozen_and_validated() -> None:
    error = make_error("X", "m")
    with pytest.raises(ValidationError):
        error.error_code = "Y"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ExecutionError(error_class="NOPE", error_code="X", error_message="m")
