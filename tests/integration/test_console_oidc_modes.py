"""The console's OpenID Connect login in other configurations, one service per test: ID tokens as
the bearer with a confidential client (Cognito-style), a console on plain http, a provider without
an end-session endpoint, an issuer that cannot be reached, a discovery document of another issuer,
and OIDC switched off."""

from __future__ import annotations

import html
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulfill.console.oidc import CALLBACK_PATH
from fulfill.console.session import SESSION_COOKIE
from tests.support import plain_http
from tests.support.browser import Browser
from tests.support.harness import Harness, make_settings
from tests.support.oidc_provider import OidcProvider, User

SESSION_SECRET = "console-session-secret-0123456789abcdef"
CLIENT_SECRET = "console-client-secret-0123456789"


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Whatever a test starts (services, providers), stopped at the end."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing.stop() if isinstance(thing, Harness) else thing.close()


def _service(
    tmp_path: Path, started: list[Any], provider_issuer: str, jwks_url: str, **settings: Any
) -> Harness:
    values: dict[str, Any] = {
        "auth_mode": "production",
        "jwks_url": jwks_url,
        "jwt_issuer": provider_issuer,
        "jwt_audience": "fulfill-api",
        "service_token_secret": "s" * 40,
        "oidc_issuer": provider_issuer,
        "oidc_client_id": "console",
        "console_session_secret": SESSION_SECRET,
    }
    values.update(settings)
    harness = Harness(make_settings(tmp_path, **values))
    started.append(harness)
    return harness.start()


def _login(browser: Browser) -> httpx.Response:
    login = browser.get("/console/login/oidc")
    assert login.status_code == 302, login.text
    return browser.follow(browser.follow(login))


def _page(response: httpx.Response, status: int, phrase: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert html.escape(phrase) in response.text, response.text


def test_cognito_style_id_token_bearer_with_a_confidential_client(tmp_path: Path, started: list[Any]) -> None:
    """FULFILL_OIDC_BEARER=id_token: the ID token (audience = the client id, tenant in
    custom:tenant_id, scopes in cognito:groups) is the console's bearer; the client authenticates
    with its secret; the console runs on plain http; the provider has no end-session endpoint."""
    provider = OidcProvider(client_secret=CLIENT_SECRET, end_session=False)
    started.append(provider)
    harness = _service(
        tmp_path,
        started,
        provider.issuer,
        provider.jwks_url,
        jwt_audience=provider.client_id,
        jwt_scope_claim="cognito:groups",
        oidc_bearer="id_token",
        oidc_client_secret=CLIENT_SECRET,
        console_insecure_cookies=True,
    )
    provider.redirect_uris = [harness.url + CALLBACK_PATH]
    provider.user = User(
        sub="cognito-user",
        claims={"custom:tenant_id": "t2", "cognito:groups": ["executions:read", "intents:approve"]},
        scope=None,
    )
    browser = Browser(harness.url, SESSION_COOKIE)
    callback = _login(browser)
    assert callback.status_code == 303, callback.text
    # HTTP Basic client authentication; the secret never travels in the form.
    assert "client_secret" not in provider.token_requests[-1]
    assert provider.token_requests[-1]["code_verifier"]
    cookie = browser.set_cookies[-1]
    assert cookie["httponly"]
    assert cookie["samesite"].lower() == "lax"
    assert not cookie["secure"]  # FULFILL_CONSOLE_INSECURE_COOKIES
    # The session's id and CSRF token only: the ID token (the bearer here) stays on the server.
    session = browser.session(SESSION_SECRET)
    assert set(session) == {"sid", "csrf"}
    assert provider.issued[-1]["id_token"] not in str(session)
    me = browser.get("/console/session").json()
    assert (me["subject"], me["tenant_id"], me["scopes"]) == (
        "cognito-user",
        "t2",
        ["executions:read", "intents:approve"],
    )
    # No end-session endpoint: logout ends the console's session only.
    logout = browser.logout(SESSION_SECRET)
    assert logout.status_code == 303
    assert logout.headers["location"] == "/console/"
    assert browser.cookie is None
    assert browser.get("/console/session").status_code == 401

    # A client secret the provider no longer accepts: the token endpoint refuses the client.
    provider.client_secret = "rotated-at-the-provider-0123456789"
    _page(_login(browser), 502, "answered 'invalid_client'")
    assert provider.refusals[-1] == "client authentication failed"
    browser.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_issuer_that_cannot_be_reached(tmp_path: Path, started: list[Any]) -> None:
    """Dev mode (no session secret: a random one; no Secure cookie) with an issuer nobody answers."""
    issuer = f"http://127.0.0.1:{_closed_port()}"
    harness = _service(
        tmp_path,
        started,
        issuer,
        f"{issuer}/jwks",
        auth_mode="dev",
        jwt_issuer="fulfill-dev",
        jwt_audience="fulfill",
        console_session_secret="",
    )
    browser = Browser(harness.url, SESSION_COOKIE)
    _page(
        browser.get("/console/login/oidc"),
        502,
        "could not be reached for its discovery document (ConnectError)",
    )
    assert browser.cookie is None  # nothing was started
    assert browser.logout(SESSION_SECRET).headers["location"] == "/console/"
    browser.close()


def test_a_discovery_document_of_another_issuer(tmp_path: Path, started: list[Any]) -> None:
    provider = OidcProvider()
    started.append(provider)
    # The service trusts "localhost", the provider calls itself "127.0.0.1".
    issuer = provider.issuer.replace("127.0.0.1", "localhost")
    harness = _service(tmp_path, started, issuer, provider.jwks_url)
    browser = Browser(harness.url, SESSION_COOKIE)
    _page(browser.get("/console/login/oidc"), 502, "names another issuer than FULFILL_OIDC_ISSUER")
    assert provider.authorize_requests == []
    browser.close()


def test_without_an_issuer_there_is_no_console_login(tmp_path: Path, started: list[Any]) -> None:
    harness = _service(tmp_path, started, "fulfill-idp", "http://127.0.0.1:9/jwks", oidc_issuer="")
    for path in ("/console/login/oidc", CALLBACK_PATH, "/console/session"):
        response = plain_http.get(harness.url + path)
        assert response.status_code == 404, (path, response.text)
        assert "set-cookie" not in response.headers


def test_behind_a_proxy_with_an_explicit_redirect_url(tmp_path: Path, started: list[Any]) -> None:
    """FULFILL_OIDC_REDIRECT_URL: the URL registered at the provider (the proxy's), not the one
    the service sees, goes to the authorization and token endpoints and into logout."""
    public = "https://console.example/console/auth/callback"
    provider = OidcProvider(redirect_uris=[public])
    started.append(provider)
    harness = _service(tmp_path, started, provider.issuer, provider.jwks_url, oidc_redirect_url=public)
    browser = Browser(harness.url, SESSION_COOKIE)
    answer = browser.follow(browser.get("/console/login/oidc"))
    location = answer.headers["location"]
    assert location.startswith(public + "?")
    # The proxy forwards the browser's request to the service.
    callback = browser.get(harness.url + CALLBACK_PATH + location.removeprefix(public))
    assert callback.status_code == 303, callback.text
    assert provider.token_requests[-1]["redirect_uri"] == public
    logout = browser.logout(SESSION_SECRET)
    assert "post_logout_redirect_uri=https%3A%2F%2Fconsole.example%2Fconsole%2F" in logout.headers["location"]
    browser.close()
