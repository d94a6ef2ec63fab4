"""Driving the operator console over HTTP as a browser does: a cookie jar, its forms' CSRF token."""

from __future__ import annotations

import base64
import json
import re
import secrets
from typing import Any

import httpx
from itsdangerous import TimestampSigner

from fulfill.client import default_limits
from fulfill.console.session import SESSION_COOKIE, seal, session_hash, session_secret
from fulfill.domain.models import ApprovalStatus
from fulfill.domain.time import iso_from_epoch
from fulfill.store import console_sessions
from tests.support.harness import Harness, seed_intent

CONSOLE_SCOPES = [
    "intents:read",
    "intents:approve",
    "executions:read",
    "admin",
    "platform:admin",
]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Console:
    """One browser: its own cookies, never following redirects on its own (tests look at them)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.http = httpx.Client(base_url=harness.url, timeout=30.0, limits=default_limits())

    def close(self) -> None:
        self.http.close()

    def csrf(self, path: str = "/console/login") -> str:
        """The CSRF token of the forms on ``path`` (the session's)."""
        page = self.http.get(path, follow_redirects=True)
        match = _CSRF.search(page.text)
        assert match, f"no form with a CSRF token on {path}"
        return match.group(1)

    def login(
        self,
        tenant: str = "t1",
        scopes: list[str] | None = None,
        subject: str = "operator@example.com",
        account_ids: str = "",
    ) -> Console:
        response = self.http.post(
            "/console/login",
            data={
                "csrf": self.csrf(),
                "tenant": tenant,
                "subject": subject,
                "scopes": CONSOLE_SCOPES if scopes is None else scopes,
                "account_ids": account_ids,
                "next": "/console/",
            },
        )
        assert response.status_code == 303, response.text[:500]
        return self

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: str | None = "page"
    ) -> httpx.Response:
        """POST a form; ``csrf="page"`` sends the session's token, None sends none, any other
        string is sent as it is."""
        fields = dict(data or {})
        if csrf == "page":
            fields["csrf"] = self.csrf("/console/")  # any signed-in page carries it
        elif csrf is not None:
            fields["csrf"] = csrf
        return self.http.post(path, data=fields)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)


def dev_login(console: Console, **headers: str) -> httpx.Response:
    """Post the local login form (platform:admin) with extra request headers, and the session's
    CSRF token (taken from the cookie: the page may offer no form); no checks."""
    console.get("/console/login")
    csrf = str(cookie_content(console.harness, console.http.cookies[SESSION_COOKIE]).get("csrf", ""))
    return console.http.post(
        "/console/login",
        data={
            "csrf": csrf,
            "tenant": "t1",
            "subject": "x",
            "scopes": ["platform:admin"],
            "next": "/console/",
        },
        headers=headers,
    )


def cookie_content(harness: Harness, value: str) -> dict[str, Any]:
    """What a session cookie signed by the service holds."""
    secret = session_secret(harness.settings)
    assert secret is not None
    return dict(json.loads(base64.b64decode(TimestampSigner(secret).unsign(value.encode()))))


def session_cookie(harness: Harness, session: dict[str, Any]) -> str:
    """A session cookie signed as the service signs it (Starlette's SessionMiddleware format)."""
    secret = session_secret(harness.settings)
    assert secret is not None
    data = base64.b64encode(json.dumps(session).encode())
    return TimestampSigner(secret).sign(data).decode()


def bearer_session_cookie(harness: Harness, bearer: str, *, tenant: str = "t1") -> str:
    """A session cookie for a server-side session holding ``bearer`` as it is (whether the service
    accepts it or not): what a login stores, without the checks a login makes."""
    raw = secrets.token_bytes(32)
    now = harness.service.clock.now()
    with harness.db.write() as conn:
        console_sessions.insert(
            conn,
            session_hash=session_hash(raw),
            tenant_id=tenant,
            subject="seeded",
            sealed_token=seal(raw, bearer),
            now=now,
            expires_epoch=now + 3600,
        )
    return session_cookie(harness, {"sid": base64.urlsafe_b64encode(raw).decode(), "csrf": "x"})


def seed_pending(harness: Harness, intent_id: str, *, expires_in: float, **fields: Any) -> None:
    """An intent waiting for approval that expires ``expires_in`` seconds from now (may be < 0)."""
    now = harness.service.clock.now()
    epoch = int(now + expires_in)
    seed_intent(
        harness,
        intent_id,
        approval_status=ApprovalStatus.PENDING_APPROVAL,
        approved_by=None,
        approval_timestamp=None,
        expires_at=iso_from_epoch(epoch),
        expires_at_epoch=epoch,
        **fields,
    )


def is_login_redirect(response: httpx.Response) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith("/console/login")
