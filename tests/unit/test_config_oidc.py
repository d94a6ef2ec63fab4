"""The console's OpenID Connect settings and their validation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fulfill.config import Settings

SECRET = "console-session-secret-0123456789abcdef"
CLIENT_SECRET = "client-secret-value-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "FULFILL_OIDC_ISSUER",
        "FULFILL_OIDC_CLIENT_ID",
        "FULFILL_OIDC_CLIENT_SECRET",
        "FULFILL_OIDC_SCOPES",
        "FULFILL_OIDC_BEARER",
        "FULFILL_OIDC_REDIRECT_URL",
        "FULFILL_CONSOLE_SESSION_SECRET",
        "FULFILL_CONSOLE_INSECURE_COOKIES",
        "FULFILL_AUTH_MODE",
        "FULFILL_JWKS_URL",
        "FULFILL_JWT_ISSUER",
    ):
        monkeypatch.delenv(name, raising=False)


def _production(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_mode": "production",
        "jwks_url": "https://idp.example/jwks",
        "jwt_issuer": "https://idp.example",
        "service_token_secret": "s" * 40,
        "oidc_issuer": "https://idp.example",
        "oidc_client_id": "console",
        "console_session_secret": SECRET,
    }
    values.update(overrides)
    return Settings(**values)


def _refused(message: str, **overrides: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        _production(**overrides)
    assert message in str(raised.value)


def test_off_by_default() -> None:
    settings = Settings()
    assert settings.oidc_issuer == ""
    assert settings.oidc_scopes == "openid profile email"
    assert settings.oidc_bearer == "access_token"
    assert settings.console_insecure_cookies is False


def test_a_complete_production_configuration() -> None:
    settings = _production(oidc_client_secret=CLIENT_SECRET, oidc_bearer="id_token")
    assert settings.oidc_client_secret.get_secret_value() == CLIENT_SECRET
    assert settings.oidc_bearer == "id_token"
    # Both secrets are redacted from the logs, and never shown by the settings' repr.
    assert {CLIENT_SECRET, SECRET} <= set(settings.log_secrets)
    assert CLIENT_SECRET not in repr(settings)
    assert SECRET not in repr(settings)


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_OIDC_ISSUER", "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc")
    monkeypatch.setenv("FULFILL_OIDC_CLIENT_ID", "app-client")
    monkeypatch.setenv("FULFILL_OIDC_BEARER", "id_token")
    monkeypatch.setenv("FULFILL_OIDC_REDIRECT_URL", "https://console.example/console/auth/callback")
    monkeypatch.setenv("FULFILL_CONSOLE_SESSION_SECRET", SECRET)
    monkeypatch.setenv("FULFILL_CONSOLE_INSECURE_COOKIES", "true")
    monkeypatch.setenv("FULFILL_JWKS_URL", "https://idp.example/jwks")
    settings = Settings()
    assert settings.oidc_client_id == "app-client"
    assert settings.oidc_bearer == "id_token"
    assert settings.oidc_redirect_url == "https://console.example/console/auth/callback"
    assert settings.console_insecure_cookies is True


@pytest.mark.parametrize(
    "issuer", ["http://127.0.0.1:8081", "http://localhost:9000/realms/x", "https://idp.example/"]
)
def test_issuers_accepted(issuer: str) -> None:
    assert _production(oidc_issuer=issuer).oidc_issuer == issuer


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ("http://idp.example", "must use https://"),
        ("http://10.0.0.5", "must use https://"),
        ("ftp://idp.example", "https:// issuer URL"),
        ("idp.example", "https:// issuer URL"),
        ("https://idp.example/?tenant=1", "https:// issuer URL"),
        ("https://idp.example/#x", "https:// issuer URL"),
    ],
)
def test_issuers_refused(issuer: str, message: str) -> None:
    _refused(message, oidc_issuer=issuer)


def test_the_client_id_is_required() -> None:
    _refused("FULFILL_OIDC_ISSUER requires FULFILL_OIDC_CLIENT_ID", oidc_client_id="")


def test_the_scopes_must_ask_for_openid() -> None:
    _refused("FULFILL_OIDC_SCOPES must include 'openid'", oidc_scopes="profile email")


def test_the_api_must_be_able_to_verify_the_bearer() -> None:
    _refused(
        "FULFILL_OIDC_ISSUER requires FULFILL_JWKS_URL",
        auth_mode="dev",
        jwks_url="",
        jwt_issuer="fulfill-dev",
    )


def test_the_session_secret_is_required_in_production() -> None:
    _refused("requires FULFILL_CONSOLE_SESSION_SECRET of at least 32 characters", console_session_secret="")
    _refused(
        "requires FULFILL_CONSOLE_SESSION_SECRET of at least 32 characters", console_session_secret="short"
    )


def test_dev_mode_may_go_without_a_session_secret_but_not_with_a_weak_one() -> None:
    dev = {"auth_mode": "dev", "jwt_issuer": "fulfill-dev"}
    assert _production(console_session_secret="", **dev).console_session_secret.get_secret_value() == ""
    _refused("FULFILL_CONSOLE_SESSION_SECRET of at least 32", console_session_secret="short", **dev)


def test_the_bearer_is_one_of_two_tokens() -> None:
    with pytest.raises(ValidationError):
        _production(oidc_bearer="refresh_token")


@pytest.mark.parametrize(
    "url", ["/console/auth/callback", "javascript:alert(1)", "https:///console/auth/callback"]
)
def test_the_redirect_url_must_be_absolute_http(url: str) -> None:
    _refused("FULFILL_OIDC_REDIRECT_URL must be an http:// or https:// URL", oidc_redirect_url=url)


def test_no_other_oidc_setting_matters_while_it_is_off() -> None:
    settings = Settings(oidc_client_id="", oidc_scopes="profile", console_session_secret="")
    assert settings.oidc_issuer == ""
