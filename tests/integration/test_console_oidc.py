"""The console's OpenID Connect login against a real provider double on 127.0.0.1: authorization code
with PKCE (S256), state and nonce, the session cookie's flags, the bearer the API accepts, logout,
and a readable page with the right status on every failure path.

One service in production auth mode (JWKS from the provider) for the whole module; a public client.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fulfill.console.oidc import CALLBACK_PATH
from fulfill.console.session import SESSION_COOKIE
from tests.support import plain_http
from tests.support.browser import Browser, query_of
from tests.support.harness import Harness, make_settings
from tests.support.oidc_provider import OidcProvider, RsaKey, User, s256

SESSION_SECRET = "console-session-secret-0123456789abcdef"
LOGGER = "fulfill.console"


@dataclass
class Env:
    harness: Harness
    provider: OidcProvider

    @property
    def callback_url(self) -> str:
        return self.harness.url + CALLBACK_PATH

    def browser(self) -> Browser:
        return Browser(self.harness.url, SESSION_COOKIE)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    provider = OidcProvider()
    tmp: Path = tmp_path_factory.mktemp("console-oidc")
    harness = Harness(
        make_settings(
            tmp,
            auth_mode="production",
            jwks_url=provider.jwks_url,
            jwt_issuer=provider.issuer,
            jwt_audience=provider.api_audience,
            service_token_secret="s" * 40,
            oidc_issuer=provider.issuer,
            oidc_client_id=provider.client_id,
            console_session_secret=SESSION_SECRET,
            log_level="INFO",
        )
    )
    try:
        harness.start()
        provider.redirect_uris = [harness.url + CALLBACK_PATH]
        yield Env(harness, provider)
    finally:
        harness.stop()
        provider.close()


@pytest.fixture
def provider(env: Env) -> OidcProvider:
    env.provider.reset()
    return env.provider


def _start(env: Env, browser: Browser) -> httpx.Response:
    """Login, then the provider's answer: the redirect back to the callback."""
    login = browser.get("/console/login/oidc")
    assert login.status_code == 302, login.text
    assert login.headers["location"].startswith(env.provider.issuer + "/authorize?")
    answer = browser.follow(login)
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"].startswith(env.callback_url + "?")
    return answer


def _page(response: httpx.Response, status: int, *phrases: str) -> str:
    """A short readable HTML page, never a traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    text = response.text
    assert "Traceback" not in text
    assert "Internal Server Error" not in text
    assert 'href="/console/login/oidc"' in text
    for phrase in phrases:
        assert html.escape(phrase) in text, text
    return text


def _signed_out(browser: Browser) -> None:
    response = browser.get("/console/session")
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "CONSOLE_NOT_SIGNED_IN"


def test_login_with_pkce_state_and_nonce_then_logout(env: Env, provider: OidcProvider) -> None:
    browser = env.browser()
    login = browser.get("/console/login/oidc")
    assert login.status_code == 302, login.text
    authorize = query_of(login.headers["location"])
    assert authorize["response_type"] == "code"
    assert authorize["client_id"] == "console"
    assert authorize["redirect_uri"] == env.callback_url
    assert authorize["scope"].split() == ["openid", "profile", "email"]
    assert authorize["code_challenge_method"] == "S256"
    assert len(authorize["code_challenge"]) == 43  # base64url of a SHA-256 digest, unpadded
    assert len(authorize["state"]) >= 20
    assert len(authorize["nonce"]) >= 20
    # The verifier, state and nonce wait in the session cookie: HttpOnly, SameSite=Lax, Secure
    # (production mode), scoped to /console.
    cookie = browser.set_cookies[-1]
    assert cookie["httponly"]
    assert cookie["secure"]
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/console"

    answer = browser.follow(login)
    assert provider.authorize_requests[-1]["code_challenge"] == authorize["code_challenge"]
    callback = browser.follow(answer)
    assert callback.status_code == 303, callback.text
    assert callback.headers["location"] == "/console/"
    # The provider checked the verifier against the challenge; this is what it received.
    exchange = provider.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["redirect_uri"] == env.callback_url
    assert s256(exchange["code_verifier"]) == authorize["code_challenge"]
    assert "client_secret" not in exchange  # a public client

    cookie = browser.set_cookies[-1]
    assert cookie["httponly"]
    assert cookie["secure"]
    assert cookie["samesite"].lower() == "lax"
    # The cookie holds the session's id and the console's CSRF token, nothing of the finished
    # login: the bearer (the provider's access token, the default) stays on the server.
    session = browser.session(SESSION_SECRET)
    assert set(session) == {"sid", "csrf"}
    bearer = provider.issued[-1]["access_token"]
    assert bearer not in str(session)
    me = browser.get("/console/session")
    assert me.status_code == 200, me.text
    assert me.json() == {
        "subject": "user-1",
        "tenant_id": "t1",
        "scopes": ["executions:read", "intents:read"],
        "account_ids": None,
        "expires_at": me.json()["expires_at"],
    }
    # The bearer the console uses opens the API; nothing the cookie holds does.
    listing = plain_http.get(
        f"{env.harness.url}/accounts/acc-1/executions", headers={"Authorization": f"Bearer {bearer}"}
    )
    assert listing.status_code == 200, listing.text
    for value in session.values():
        lifted = plain_http.get(
            f"{env.harness.url}/accounts/acc-1/executions", headers={"Authorization": f"Bearer {value}"}
        )
        assert lifted.status_code == 401, lifted.text

    logout = browser.logout(SESSION_SECRET)
    assert logout.status_code == 303
    end_session = logout.headers["location"]
    assert end_session.startswith(provider.issuer + "/logout?")
    assert query_of(end_session) == {
        "client_id": "console",
        "post_logout_redirect_uri": env.harness.url + "/console/",
    }
    assert browser.cookie is None  # the server expired the cookie
    assert browser.follow(logout).status_code == 200
    assert provider.logouts[-1]["client_id"] == "console"
    _signed_out(browser)
    browser.close()


def test_a_callback_of_another_login_is_refused(env: Env, provider: OidcProvider) -> None:
    browser = env.browser()
    answer = _start(env, browser)
    location = answer.headers["location"]
    state = query_of(location)["state"]
    # A wrong state.
    _page(browser.get(location.replace(state, "forged-state")), 400, "Sign-in not recognised")
    # The wrong state spent the login: the genuine answer no longer matches anything either.
    _page(browser.get(location), 400, "unknown or reused state")
    # A browser that started no login.
    stranger = env.browser()
    _page(stranger.get(location), 400, "Sign-in not recognised")
    _signed_out(stranger)
    _signed_out(browser)
    # No code reached the token endpoint.
    assert all(request.get("code") != query_of(location)["code"] for request in provider.token_requests)
    browser.close()
    stranger.close()


def test_a_login_left_too_long_is_refused(env: Env, provider: OidcProvider) -> None:
    browser = env.browser()
    answer = _start(env, browser)
    pending = browser.session(SESSION_SECRET)["oidc_login"]
    assert pending["state"] == query_of(answer.headers["location"])["state"]
    browser.forge_session(
        SESSION_SECRET, {"oidc_login": {**pending, "started_at": pending["started_at"] - 601}}
    )
    _page(browser.follow(answer), 400, "Sign-in expired", "took too long")
    _signed_out(browser)
    browser.close()


def test_a_replayed_callback_and_a_replayed_code_are_refused(env: Env, provider: OidcProvider) -> None:
    first = env.browser()
    answer = _start(env, first)
    assert first.follow(answer).status_code == 303
    # The same callback again: its state was spent.
    _page(first.get(answer.headers["location"]), 400, "Sign-in not recognised")

    # The code, replayed in a new login of another browser (its own state): the provider refuses it.
    second = env.browser()
    own = _start(env, second)
    replayed = own.headers["location"].replace(
        query_of(own.headers["location"])["code"], query_of(answer.headers["location"])["code"]
    )
    _page(second.get(replayed), 401, "Sign-in code refused")
    assert provider.refusals[-1] == "code already used"
    _signed_out(second)
    first.close()
    second.close()


def test_a_stolen_code_fails_without_its_verifier(env: Env, provider: OidcProvider) -> None:
    """PKCE: a code taken from the victim's redirect and injected into the attacker's own login is
    exchanged with the attacker's verifier, which does not match the victim's challenge."""
    victim, attacker = env.browser(), env.browser()
    stolen = query_of(_start(env, victim).headers["location"])["code"]
    own = _start(env, attacker).headers["location"]
    _page(attacker.get(own.replace(query_of(own)["code"], stolen)), 401, "Sign-in code refused")
    assert provider.refusals[-1] == "code_verifier does not match"
    _signed_out(attacker)
    victim.close()
    attacker.close()


def test_access_denied_by_the_provider(
    env: Env, provider: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.authorize_error = "access_denied"
    browser = env.browser()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _page(
            browser.follow(_start(env, browser)),
            401,
            "Sign-in refused",
            "access_denied",
            "The user declined.",
        )
    lines = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert lines == [
        "console login callback failed: 401 OIDC_PROVIDER_ERROR: The identity provider answered 'access_denied': The user declined."
    ]
    _signed_out(browser)
    # What the provider says is shown as text, never as markup.
    forged = browser.get(
        f"{CALLBACK_PATH}?error=invalid_request&error_description=%3Cscript%3Ealert(1)%3C/script%3E"
    )
    text = _page(forged, 400, "<script>alert(1)</script>")
    assert "<script>" not in text
    browser.close()


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"nonce": "another-login"}, "invalid claim: 'nonce'"),
        ({"nonce": None}, "missing claim: 'nonce'"),
        ({"aud": "another-client"}, "invalid claim: 'aud'"),
        ({"iss": "https://impostor.test"}, "invalid claim: 'iss'"),
        ({"exp": int(time.time()) - 3600}, "it has expired"),
        ("bad-signature", "bad signature"),
        ("unknown-key", "signed with a key the identity provider does not publish"),
    ],
    ids=[
        "wrong-nonce",
        "no-nonce",
        "wrong-audience",
        "wrong-issuer",
        "expired",
        "bad-signature",
        "unknown-key",
    ],
)
def test_an_invalid_id_token_is_refused(
    env: Env, provider: OidcProvider, tamper: object, reason: str
) -> None:
    if tamper == "bad-signature":
        provider.id_token_key = RsaKey(provider.key.kid)  # another key under the published kid
    elif tamper == "unknown-key":
        provider.id_token_key = RsaKey("unpublished")
    else:
        assert isinstance(tamper, dict)
        provider.id_token_overrides = tamper
    browser = env.browser()
    _page(browser.follow(_start(env, browser)), 401, "Invalid ID token", reason)
    _signed_out(browser)
    browser.close()


def test_signing_keys_unavailable(env: Env, provider: OidcProvider) -> None:
    """An ID token under a new key while the provider's JWKS endpoint fails: 502, not a 500."""
    provider.id_token_key = RsaKey("rotated")
    provider.jwks_status = 503
    browser = env.browser()
    _page(
        browser.follow(_start(env, browser)),
        502,
        "Identity provider unavailable",
        "could not be reached for its signing keys (HTTP 503)",
    )
    _signed_out(browser)
    browser.close()


def test_a_token_the_api_refuses_is_not_stored(env: Env, provider: OidcProvider) -> None:
    provider.user = User(sub="user-2", claims={}, scope="executions:read")  # no tenant
    browser = env.browser()
    text = _page(browser.follow(_start(env, browser)), 401, "Token not accepted", "token carries no tenant")
    assert provider.issued[-1]["access_token"] not in text
    assert "sid" not in browser.session(SESSION_SECRET)
    _signed_out(browser)
    browser.close()


def test_a_tampered_session_cookie_signs_no_one_in(env: Env, provider: OidcProvider) -> None:
    browser = env.browser()
    assert browser.follow(_start(env, browser)).status_code == 303
    assert browser.get("/console/session").status_code == 200
    assert browser.cookie is not None
    payload, _, signature = browser.cookie.value.partition(".")
    browser.cookie.set(SESSION_COOKIE, payload[:-4] + "AAAA." + signature, "")
    _signed_out(browser)
    browser.close()


def test_pages_let_their_forms_lead_to_the_identity_provider(env: Env, provider: OidcProvider) -> None:
    """The sign-out form's answer redirects to the end-session endpoint; browsers apply the page's
    form-action to that redirect, so it names the provider's origin (and nothing else)."""
    browser = env.browser()
    assert browser.follow(_start(env, browser)).status_code == 303
    page = browser.get("/console/approvals")
    assert page.status_code == 200
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in page.headers["content-security-policy"].split(";")
        if directive.strip()
    }
    assert policy["form-action"] == ["'self'", provider.issuer]
    assert policy["frame-ancestors"] == ["'none'"]
    logout = browser.logout(SESSION_SECRET)
    assert logout.headers["location"].startswith(provider.issuer + "/logout?")
    browser.close()


def test_an_opaque_access_token_names_the_two_ways_out(env: Env, provider: OidcProvider) -> None:
    provider.opaque_access_token = True
    browser = env.browser()
    _page(
        browser.follow(_start(env, browser)),
        401,
        "Token not accepted",
        "not a JWT",
        "JWT access tokens",
        "FULFILL_OIDC_BEARER=id_token",
    )
    _signed_out(browser)
    browser.close()


def test_a_sign_in_without_console_scopes_says_which_scopes_and_where_they_are_read(
    env: Env, provider: OidcProvider
) -> None:
    provider.user = User(claims={"tenant_id": "t1"}, scope="events:write")
    browser = env.browser()
    callback = browser.follow(_start(env, browser))
    assert callback.status_code == 303, callback.text
    page = browser.follow(callback)
    text = html.unescape(page.text)
    assert "grants no console scope" in text
    assert "events:write" in text  # what it does grant
    assert "scope claim" in text
    for needed in ("intents:read", "executions:read", "admin", "platform:admin"):
        assert needed in text
    assert "FULFILL_OIDC_SCOPES" in text
    browser.close()
