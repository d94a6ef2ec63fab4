"""configure_logging end to end: both formats, the context fields, and no token or secret in the output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from fulfill.config import Settings
from fulfill.credentials.crypto import new_key
from fulfill.logging_setup import configure_logging, log_context
from fulfill.tokens import mint_token

SERVICE_SECRET = "service-token-secret-0123456789-abcdef"
WEBHOOK_SECRET = "whsec-configured-webhook-secret"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _settings(key: str) -> Settings:
    return Settings(service_token_secret=SERVICE_SECRET, webhook_secret=WEBHOOK_SECRET, secrets_key=key)


def _log_everything(settings: Settings) -> list[str]:
    """Log lines that carry every kind of secret; return the secrets they carry."""
    token = mint_token(settings, tenant_id="t-1", scopes=["intents:read"])
    key = settings.secrets_key.get_secret_value()
    log = logging.getLogger("fulfill.test")
    outer = log_context(action_intent_id="ai_1", tenant_id="t-1", account_id="acc-1", trace_id="tr-1")
    with outer, log_context(step="InvokeTool"):
        log.info("calling with Authorization: Bearer %s", token)
        log.warning("token %s for webhook %s, key %s", token, WEBHOOK_SECRET, key)
        log.info("service secret is %s", SERVICE_SECRET)
        try:
            raise RuntimeError(f"driver said {token} and {SERVICE_SECRET}")
        except RuntimeError:
            log.exception("call failed")
    log.info("outside any execution")
    return [token, key, SERVICE_SECRET, WEBHOOK_SECRET, settings.jwt_secret]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_parse_carry_the_context_and_leak_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    settings = _settings(new_key())
    configure_logging("INFO", log_format="json", secrets=settings.log_secrets)
    secrets = _log_everything(settings)
    err = capsys.readouterr().err
    for secret in secrets:
        assert secret not in err
    entries = [json.loads(line) for line in err.splitlines()]
    assert len(entries) == 5
    for entry in entries[:4]:
        assert entry["level"] in ("INFO", "WARNING", "ERROR")
        assert entry["logger"] == "fulfill.test"
        assert entry["ts"].endswith("Z")
        assert entry["action_intent_id"] == "ai_1"
        assert entry["tenant_id"] == "t-1"
        assert entry["account_id"] == "acc-1"
        assert entry["trace_id"] == "tr-1"
        assert entry["step"] == "InvokeTool"
        assert "[REDACTED]" in entry["message"] or entry["message"] == "call failed"
    assert entries[0]["message"] == "calling with Authorization: [REDACTED]"
    assert "RuntimeError" in entries[3]["exc"]
    assert "[REDACTED]" in entries[3]["exc"]
    assert entries[4]["message"] == "outside any execution"
    assert "action_intent_id" not in entries[4]


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_leak_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    settings = _settings(f"{new_key()},{new_key()}")
    configure_logging("INFO", secrets=settings.log_secrets)
    secrets = _log_everything(settings)
    err = capsys.readouterr().err
    for secret in [*secrets, *settings.secrets_key.get_secret_value().split(",")]:
        assert secret not in err
    first = err.splitlines()[0]
    assert first.endswith(
        "INFO fulfill.test calling with Authorization: [REDACTED] "
        "[action_intent_id=ai_1 tenant_id=t-1 account_id=acc-1 trace_id=tr-1 step=InvokeTool]"
    )
    assert "RuntimeError" in err
    assert err.splitlines()[-1].endswith("INFO fulfill.test outside any execution")


def test_the_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FULFILL_LOG_FORMAT", raising=False)
    assert Settings().log_format == "text"
    monkeypatch.setenv("FULFILL_LOG_FORMAT", "JSON")
    assert Settings().log_format == "json"
    monkeypatch.setenv("FULFILL_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()
