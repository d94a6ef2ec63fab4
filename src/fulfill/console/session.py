"""The console's session: a signed cookie holding a random session id and a CSRF token; the
user's bearer stays on the server.

The cookie is Starlette's ``SessionMiddleware`` (itsdangerous-signed, named ``fulfill_console``,
HttpOnly, SameSite=Lax, limited to ``/console``). Logging in stores a row in ``console_sessions``
(shared by every process of a deployment): it is found by a hash of the id, and holds the bearer
sealed (AES-256-GCM) with a key derived from the id, so the cookie alone carries no token the API
accepts and the table alone opens no session and reveals no token. Every request looks the row
up (unknown, revoked or expired: signed out) and verifies the bearer again with the service's
:class:`~fulfill.tokens.TokenVerifier`, so expiry, scopes and the tenant are exactly the API's.
Logout revokes the row: a copy of the cookie taken before is refused afterwards. Every form
carries ``session["csrf"]``, compared in constant time on every POST.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware

from fulfill.config import Settings
from fulfill.tokens import Principal, TokenError, TokenVerifier
from fulfill.usecases import console_sessions
from fulfill.usecases.context import UseCaseContext

SESSION_COOKIE = "fulfill_console"
SESSION_PATH = "/console"
# The cookie outlives no working day; the token inside it usually expires sooner.
SESSION_MAX_AGE_SECONDS = 8 * 3600
CSRF_FIELD = "csrf"
SESSION_ID_KEY = "sid"
CSRF_KEY = "csrf"
_ID_BYTES = 32


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


def _derived(raw_id: bytes, purpose: bytes) -> bytes:
    return hashlib.sha256(b"fulfill-console-session:" + purpose + b":" + raw_id).digest()


def session_hash(raw_id: bytes) -> str:
    """What the table keys a session by: never the id itself."""
    return _derived(raw_id, b"id").hex()


def seal(raw_id: bytes, bearer: str) -> str:
    """The bearer encrypted with a key only the cookie's id gives (bound to the session's hash)."""
    nonce = os.urandom(12)
    sealed = AESGCM(_derived(raw_id, b"key")).encrypt(nonce, bearer.encode(), session_hash(raw_id).encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(raw_id: bytes, sealed: str) -> str | None:
    try:
        blob = base64.urlsafe_b64decode(sealed.encode())
        plain = AESGCM(_derived(raw_id, b"key")).decrypt(blob[:12], blob[12:], session_hash(raw_id).encode())
    except (binascii.Error, ValueError, InvalidTag):
        return None
    return plain.decode()


def _raw_id(request: Request) -> bytes | None:
    value = request.session.get(SESSION_ID_KEY)
    if not isinstance(value, str) or not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _ID_BYTES else None


def open_session(ctx: UseCaseContext, bearer: str, principal: Principal, *, now: float) -> str:
    """Store a session for a verified bearer; returns the id for the cookie. It lasts a working
    day at most, and never longer than the bearer."""
    raw = secrets.token_bytes(_ID_BYTES)
    expires = now + SESSION_MAX_AGE_SECONDS
    exp = principal.claims.get("exp")
    if isinstance(exp, int | float):
        expires = min(expires, float(exp))
    console_sessions.open_session(
        ctx,
        session_hash=session_hash(raw),
        tenant_id=principal.tenant_id,
        subject=principal.subject,
        sealed_token=seal(raw, bearer),
        now=now,
        expires_epoch=expires,
    )
    return base64.urlsafe_b64encode(raw).decode()


def log_in(request: Request, ctx: UseCaseContext, bearer: str, principal: Principal, *, now: float) -> None:
    """Start a fresh session for a verified bearer (a new id and a new CSRF token). Blocks on the
    database: call it in a worker thread."""
    session_id = open_session(ctx, bearer, principal, now=now)
    request.session.clear()
    request.session[SESSION_ID_KEY] = session_id
    request.session[CSRF_KEY] = secrets.token_urlsafe(32)


def log_out(request: Request, ctx: UseCaseContext, *, now: float) -> None:
    """Revoke the session on the server (every copy of the cookie) and clear the cookie."""
    raw = _raw_id(request)
    if raw is not None:
        console_sessions.revoke_session(ctx, session_hash(raw), now=now)
    request.session.clear()


def session_bearer(request: Request, ctx: UseCaseContext, *, now: float) -> str | None:
    """The bearer of the cookie's live session; None (and the cookie cleared) when there is none."""
    raw = _raw_id(request)
    if raw is None:
        if SESSION_ID_KEY in request.session:
            request.session.clear()
        return None
    stored = console_sessions.live_session(ctx, session_hash(raw), now=now)
    bearer = unseal(raw, stored.sealed_token) if stored is not None else None
    if bearer is None:
        request.session.clear()
    return bearer


def current_principal(
    request: Request, ctx: UseCaseContext, verifier: TokenVerifier, *, now: float
) -> Principal | None:
    """The signed-in user, or None (no session, a revoked or expired one, a bearer the service no
    longer accepts: the session is then ended and the cookie cleared). Blocks on the database."""
    bearer = session_bearer(request, ctx, now=now)
    if bearer is None:
        return None
    try:
        return verifier.verify(bearer)
    except TokenError:
        log_out(request, ctx, now=now)
        return None
