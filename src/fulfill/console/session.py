"""The console's session: a signed cookie holding the user's bearer token and a CSRF token.

The session is Starlette's ``SessionMiddleware`` (an itsdangerous-signed cookie named
``fulfill_console``, HttpOnly, SameSite=Lax, limited to ``/console``). Logging in means putting
a token the service accepts in ``session["token"]``; every request verifies it again with the
service's :class:`~fulfill.tokens.TokenVerifier`, so expiry, scopes and the tenant are exactly
the API's. Every form carries ``session["csrf"]``, compared in constant time on every POST.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware

from fulfill.config import Settings
from fulfill.tokens import Principal, TokenError, TokenVerifier

SESSION_COOKIE = "fulfill_console"
SESSION_PATH = "/console"
# The cookie outlives no working day; the token inside it usually expires sooner.
SESSION_MAX_AGE_SECONDS = 8 * 3600
CSRF_FIELD = "csrf"
TOKEN_KEY = "token"  # noqa: S105 - a session key, not a secret
CSRF_KEY = "csrf"


def is_dev_mode(settings: Settings) -> bool:
    return settings.auth_mode == "dev"


def session_secret(settings: Settings) -> str | None:
    """The cookie-signing secret: the configured one, else (dev mode only) one derived from the
    dev JWT secret, so that every process of a dev deployment signs alike. None: not configured."""
    configured = settings.console_session_secret.get_secret_value()
    if configured:
        return configured
    if is_dev_mode(settings):
        return hashlib.sha256(b"fulfill-console-session:" + settings.jwt_secret.encode()).hexdigest()
    return None


def install_sessions(app: FastAPI, settings: Settings) -> bool:
    """Add the session middleware; returns whether the console can keep sessions (False: a
    production deployment without ``FULFILL_CONSOLE_SESSION_SECRET``, where the console refuses
    every page instead of starting with a key nobody configured)."""
    secret = session_secret(settings)
    app.add_middleware(
        SessionMiddleware,
        # Without a configured secret the middleware still needs a key; a random one signs
        # nothing anybody can use (the console answers 503 before reading the session).
        secret_key=secret or secrets.token_hex(32),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_SECONDS,
        path=SESSION_PATH,
        same_site="lax",
        https_only=not (is_dev_mode(settings) or settings.console_insecure_cookies),
    )
    return secret is not None


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


def csrf_ok(request: Request, form: Mapping[str, list[str]]) -> bool:
    expected = request.session.get(CSRF_KEY)
    sent = form.get(CSRF_FIELD, [])
    if not isinstance(expected, str) or not expected or len(sent) != 1:
        return False
    return hmac.compare_digest(expected.encode(), sent[0].encode())


def log_in(request: Request, token: str) -> None:
    """Start a fresh session for a verified token (a new CSRF token too)."""
    request.session.clear()
    request.session[TOKEN_KEY] = token
    request.session[CSRF_KEY] = secrets.token_urlsafe(32)


def current_principal(request: Request, verifier: TokenVerifier) -> Principal | None:
    """The signed-in user, or None (no session, a token the service no longer accepts: the
    session is then cleared)."""
    token = request.session.get(TOKEN_KEY)
    if not isinstance(token, str) or not token:
        return None
    try:
        return verifier.verify(token)
    except TokenError:
        request.session.clear()
        return None
