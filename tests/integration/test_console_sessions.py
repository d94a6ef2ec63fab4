"""Console sessions on the server and who gets the local login.

The cookie holds a session id and a CSRF token, never a bearer the API accepts; logout revokes the
session on the server, so a copy of the cookie taken before is refused afterwards, by every
process of the deployment. The local login (a token for any tenant and scope) exists only in the
laptop case or when allowed explicitly, and answers loopback requests only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from fulfill.console.session import SESSION_COOKIE
from fulfill.store.tables import console_sessions
from tests.support.console import CONSOLE_SCOPES, Console, cookie_content, dev_login, is_login_redirect
from tests.support.harness import JWT_SHAPE, Harness


@pytest.fixture
def console(shared: Harness) -> Iterator[Console]:
    browser = Console(shared)
    yield browser
    browser.close()


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def test_the_session_cookie_holds_no_bearer_the_api_accepts(shared: Harness, console: Console) -> None:
    console.login(scopes=CONSOLE_SCOPES)
    assert console.get("/console/approvals").status_code == 200
    content = cookie_content(shared, console.http.cookies[SESSION_COOKIE])
    assert "token" not in content
    # Whatever the cookie holds, lifted and presented to the API as a bearer, opens nothing.
    for value in _strings(content):
        lifted = httpx.get(
            f"{shared.url}/admin/kill-switches", headers={"Authorization": f"Bearer {value}"}, timeout=30
        )
        assert lifted.status_code == 401, (value[:20], lifted.text)
    # Nor does the table hold a token: only the hash of the id and the bearer sealed with it.
    with shared.db.read() as conn:
        rows = conn.execute(select(console_sessions)).mappings().all()
    assert rows
    for row in rows:
        # No JWT (the sealed bearer is random base64: it held "eyJ" by chance in one run).
        assert JWT_SHAPE.search(json.dumps(dict(row), default=str)) is None
        assert content["sid"] not in json.dumps(dict(row), default=str)


def test_a_copied_cookie_is_refused_after_logout(shared: Harness, console: Console) -> None:
    console.login()
    copied = console.http.cookies[SESSION_COOKIE]
    assert console.post("/console/logout").status_code == 303
    thief = Console(shared)
    try:
        thief.http.cookies.set(SESSION_COOKIE, copied)
        assert is_login_redirect(thief.get("/console/approvals"))
        assert thief.get("/console/session").status_code in (401, 404)
    finally:
        thief.close()


def test_a_copied_cookie_keeps_working_until_logout_and_not_after(shared: Harness, console: Console) -> None:
    """Two browsers with the same session (one of them a copy): the owner's logout ends both."""
    console.login()
    twin = Console(shared)
    try:
        twin.http.cookies.set(SESSION_COOKIE, console.http.cookies[SESSION_COOKIE])
        assert twin.get("/console/approvals").status_code == 200
        assert twin.post("/console/logout").status_code == 303
        assert is_login_redirect(console.get("/console/approvals"))
    finally:
        twin.close()


# --- the local login ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "console.example.com"},
        {"Host": "attacker.example:8080"},
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
    ],
    ids=["public-host", "rebound-host", "x-forwarded-for", "forwarded", "x-real-ip"],
)
def test_the_local_login_answers_loopback_requests_only(console: Console, headers: dict[str, str]) -> None:
    """Even where it is allowed: not through a proxy, not under another host name (DNS rebinding)."""
    refused = dev_login(console, **headers)
    assert refused.status_code == 404, refused.text[:300]
    assert is_login_redirect(console.get("/console/approvals"))
