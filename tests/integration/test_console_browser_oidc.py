"""Signing in to and out of the console in a real browser against a real OpenID provider: headless
Chromium (Playwright) and the certified ``oidc-provider`` (npm), both on 127.0.0.1.

Sign-out is a form post whose answer sends the browser on to the provider's end-session endpoint;
a browser enforces the page's ``form-action`` on that redirect too, so the console's pages must
allow the provider's origin, or the sign-out never reaches the provider and the next "Sign in"
goes straight back in without a password. Screenshots go to
``artifacts/console-screenshots/<backend>/oidc-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.chromium import BROWSER_MARKS, CHROMIUM, SCREENSHOTS
from tests.support.harness import Harness, make_settings
from tests.support.oidc_node import API_AUDIENCE, CLIENT_ID, SCOPES, NodeOidcProvider

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
expect = sync_api.expect
SIGN_IN_LINK = "Sign in with your identity provider"


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[Harness, NodeOidcProvider]]:
    provider = NodeOidcProvider(tmp_path / "oidc-provider.log")
    harness = Harness(
        make_settings(
            tmp_path,
            auth_mode="production",
            jwks_url=provider.jwks_url,
            jwt_issuer=provider.issuer,
            jwt_audience=API_AUDIENCE,
            service_token_secret="s" * 40,
            oidc_issuer=provider.issuer,
            oidc_client_id=CLIENT_ID,
            oidc_scopes=SCOPES,
            console_session_secret="console-session-secret-0123456789abcdef",
            console_insecure_cookies=True,  # plain http on 127.0.0.1
        )
    )
    try:
        harness.start()
        provider.start(harness.url)
        yield harness, provider
    finally:
        harness.stop()
        provider.close()


@pytest.fixture
def page() -> Iterator[Any]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        # The provider's pages import a web font; there is no network here, so refuse it at once.
        context.route("https://fonts.googleapis.com/**", lambda route: route.abort())
        yield context.new_page()
        context.close()
        browser.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _sign_in_with_password(page: Any, harness: Harness) -> None:
    page.get_by_role("link", name=SIGN_IN_LINK).click()
    password = page.locator("input[name=password]")
    expect(password).to_be_visible()  # the provider asks who this is
    page.locator("input[name=login]").fill("alice")
    password.fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    expect(page.locator(".who")).to_contain_text("alice · tenant t1")
    assert page.url.startswith(f"{harness.url}/console/")


def test_sign_out_reaches_the_provider_and_the_next_sign_in_asks_for_the_password(
    deployment: tuple[Harness, NodeOidcProvider], page: Any
) -> None:
    harness, provider = deployment
    page.goto(f"{harness.url}/console/login")
    _sign_in_with_password(page, harness)
    shot(page, "oidc-signed-in")

    page.get_by_role("button", name="Sign out").click()
    # The browser followed the console's redirect to the provider, which asks to confirm.
    confirm = page.get_by_role("button", name="Yes, sign me out")
    expect(confirm).to_be_visible()
    assert page.url.startswith(f"{provider.issuer}/session/end")
    shot(page, "oidc-sign-out-at-the-provider")
    confirm.click()
    # Back at the console (its post-logout URL), signed out of both.
    expect(page.get_by_role("link", name=SIGN_IN_LINK)).to_be_visible()
    assert page.url.startswith(f"{harness.url}/console/login")
    shot(page, "oidc-signed-out")

    # Signing in again takes the password again: the provider's session ended too.
    page.get_by_role("link", name=SIGN_IN_LINK).click()
    expect(page.locator("input[name=password]")).to_be_visible()
    assert page.url.startswith(provider.issuer)
    shot(page, "oidc-sign-in-again")
