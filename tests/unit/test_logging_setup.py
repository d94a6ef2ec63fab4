"""The log redaction filter, pattern by pattern, and the log context."""

from __future__ import annotations

import logging
import threading

import pytest

from fulfill.logging_setup import (
    REDACTED,
    RedactionFilter,
    Redactor,
    current_log_context,
    log_context,
)

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXZhbHVlXy0"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        ("header Bearer abcdefgh12345678 sent", "abcdefgh12345678", "Bearer [REDACTED]"),
        ("got bearer abcdefgh.12345678-x_y~z", "abcdefgh.12345678", "bearer [REDACTED]"),
        (f"token {JWT} refused", JWT, "token [REDACTED] refused"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA", "Authorization: [REDACTED]"),
        ("{'authorization': 'Token t0ps3cret'}", "t0ps3cret", "{'authorization': '[REDACTED]'}"),
        ("POST access_token=at-123456&x=1", "at-123456", "access_token=[REDACTED]&x=1"),
        ("refresh_token=5Aep861 done", "5Aep861", "refresh_token=[REDACTED] done"),
        ("client_secret = 'cs 12345' end", "cs 12345", "client_secret = [REDACTED] end"),
        ("password=hunter22", "hunter22", "password=[REDACTED]"),
        ("secret=s3cr3t, next", "s3cr3t", "secret=[REDACTED], next"),
        ("token=tok-1234", "tok-1234", "token=[REDACTED]"),
        ("FULFILL_WEBHOOK_SECRET=whsec-1", "whsec-1", "FULFILL_WEBHOOK_SECRET=[REDACTED]"),
        ('{"access_token": "at-9876", "ttl": 1}', "at-9876", '{"access_token": "[REDACTED]", "ttl": 1}'),
        ('{"client_secret":"c\\"s-42"}', "s-42", '{"client_secret":"[REDACTED]"}'),
        ("{'password': 'pw-1234'}", "pw-1234", "{'password': '[REDACTED]'}"),
        ('{"Token": "abcd-efgh"}', "abcd-efgh", '{"Token": "[REDACTED]"}'),
        (f"aws key {AWS_SECRET} used", AWS_SECRET, "aws key [REDACTED] used"),
        (f"aws_secret_access_key={AWS_SECRET}", AWS_SECRET, "aws_secret_access_key=[REDACTED]"),
        ("X-Amz-Security-Token: FwoGZXIvYXdzEJr", "FwoGZXIvYXdzEJr", "X-Amz-Security-Token: [REDACTED]"),
    ],
)
def test_each_pattern_is_redacted(text: str, secret: str, expected: str) -> None:
    redacted = Redactor()(text)
    assert secret not in redacted
    assert expected in redacted


@pytest.mark.parametrize(
    "text",
    [
        "intent ai_01HX approved by user-1 (tenant t-1)",
        "a bearer token was refused: expired",
        "service_token_ttl_seconds=60 max_tokens=5",
        "idempotency_key=ik-abc123 sent to fulfill.engine.steps",
        "commit 06ce1550123456789abcdef0123456789abcdef0",  # a 40-digit hex digest is no AWS key
        "GET https://api.example.com/v1/items?page=2",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor()(text) == text


def test_configured_secrets_are_redacted_wherever_they_appear() -> None:
    redactor = Redactor(["my-webhook-secret-value", "k3y!", "", "ab"])
    assert redactor("sig with my-webhook-secret-value; k3y! x") == f"sig with {REDACTED}; {REDACTED} x"
    assert redactor("ab stays: too short to look for") == "ab stays: too short to look for"


def test_the_filter_redacts_the_formatted_message_and_the_exception_text() -> None:
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "call with %s failed", (f"Bearer {JWT}",), None
    )
    try:
        raise ValueError(f"database said password=pw-7777 and {JWT}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactionFilter(Redactor()).filter(record)
    assert record.getMessage() == f"call with Bearer {REDACTED} failed"
    assert record.exc_text is not None
    assert "pw-7777" not in record.exc_text
    assert JWT not in record.exc_text
    assert "ValueError" in record.exc_text


def test_log_context_nests_and_is_restored() -> None:
    assert current_log_context() == {}
    with log_context(tenant_id="t-1", action_intent_id="ai_1"):
        with log_context(step="InvokeTool", trace_id=None):
            assert current_log_context() == {
                "tenant_id": "t-1",
                "action_intent_id": "ai_1",
                "step": "InvokeTool",
            }
        assert current_log_context() == {"tenant_id": "t-1", "action_intent_id": "ai_1"}
    assert current_log_context() == {}
    with pytest.raises(ValueError, match="unknown log context fields: body"), log_context(body="x"):
        pass


def test_log_context_does_not_leak_into_other_threads() -> None:
    seen: list[dict[str, str]] = []
    with log_context(tenant_id="t-1"):
        thread = threading.Thread(target=lambda: seen.append(current_log_context()))
        thread.start()
        thread.join()
    assert seen == [{}]
