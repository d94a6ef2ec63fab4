"""Who gets the console's local login: the decision, and the setting that feeds it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fulfill.config import DEV_JWT_SECRET, Settings
from fulfill.console.oidc import origin_of
from fulfill.domain.console_login import dev_login_enabled, dev_login_refusal, host_of, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("localhost.attacker.example", False),
        ("console.example.com", False),
        ("", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("console.example.com:443", "console.example.com"),
    ],
)
def test_host_of(header: str, host: str) -> None:
    assert host_of(header) == host


@pytest.mark.parametrize(
    ("auth_mode", "dev_secret", "listener", "explicit", "enabled"),
    [
        ("dev", True, "127.0.0.1", None, True),  # the quick start
        ("dev", True, "localhost", None, True),
        ("dev", True, "0.0.0.0", None, False),  # listening beyond loopback
        ("dev", False, "127.0.0.1", None, False),  # a secret of one's own
        ("dev", False, "127.0.0.1", True, True),
        ("dev", False, "0.0.0.0", True, True),  # still loopback requests only (below)
        ("dev", True, "127.0.0.1", False, False),
        ("production", True, "127.0.0.1", None, False),
    ],
)
def test_enabled(
    auth_mode: str, dev_secret: bool, listener: str, explicit: bool | None, enabled: bool
) -> None:
    assert (
        dev_login_enabled(
            auth_mode=auth_mode, uses_dev_secret=dev_secret, listener_host=listener, explicit=explicit
        )
        is enabled
    )


def _refusal(**overrides: object) -> str | None:
    values: dict[str, object] = {
        "enabled": True,
        "client_host": "127.0.0.1",
        "host_header": "127.0.0.1:8080",
        "header_names": ["host", "content-type", "cookie"],
    }
    values.update(overrides)
    return dev_login_refusal(**values)  # type: ignore[arg-type]


def test_a_loopback_request_gets_it() -> None:
    assert _refusal() is None
    assert _refusal(client_host="::1", host_header="[::1]:8080") is None
    assert _refusal(host_header="localhost:8080") is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"enabled": False},
        {"client_host": "10.0.0.7"},
        {"client_host": None},
        {"host_header": "console.example.com"},
        {"host_header": "rebind.attacker.example:8080"},
        {"header_names": ["host", "X-Forwarded-For"]},
        {"header_names": ["host", "forwarded"]},
        {"header_names": ["host", "x-real-ip"]},
        {"header_names": ["host", "x-forwarded-host"]},
    ],
)
def test_anything_else_is_refused_with_a_reason(overrides: dict[str, object]) -> None:
    reason = _refusal(**overrides)
    assert reason


def test_the_setting() -> None:
    assert Settings(jwt_secret=DEV_JWT_SECRET).console_dev_login_enabled
    assert not Settings(jwt_secret=DEV_JWT_SECRET, host="0.0.0.0").console_dev_login_enabled
    assert not Settings(jwt_secret="another-secret-0123456789abcdef0123").console_dev_login_enabled
    assert Settings(
        jwt_secret="another-secret-0123456789abcdef0123", console_dev_login=True
    ).console_dev_login_enabled
    assert not Settings(jwt_secret=DEV_JWT_SECRET, console_dev_login=False).console_dev_login_enabled


def test_explicitly_on_in_production_mode_is_a_configuration_error() -> None:
    with pytest.raises(
        ValidationError, match="FULFILL_CONSOLE_DEV_LOGIN=true requires FULFILL_AUTH_MODE=dev"
    ):
        Settings(
            auth_mode="production",
            jwks_url="https://idp.example/jwks",
            jwt_issuer="https://idp.example",
            service_token_secret="s" * 40,
            console_dev_login=True,
        )


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://idp.example/realms/x", "https://idp.example"),
        ("http://127.0.0.1:9000/session/end?x=1", "http://127.0.0.1:9000"),
        ("https://user:pw@auth.example.com:8443/logout", "https://auth.example.com:8443"),
        ("https://[::1]:9000/logout", "https://[::1]:9000"),
        ("javascript:alert(1)", None),
        ("https://bad;host/", None),
        ("https://idp.example:99999/", None),
    ],
)
def test_origin_of_a_provider_url(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_the_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, parsed in [("", None), ("true", True), ("false", False)]:
        monkeypatch.setenv("FULFILL_CONSOLE_DEV_LOGIN", raw)
        assert Settings().console_dev_login is parsed
    monkeypatch.setenv("FULFILL_CONSOLE_DEV_LOGIN", "perhaps")
    with pytest.raises(ValidationError):
        Settings()
