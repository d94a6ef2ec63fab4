"""Console login with OpenID Connect: authorization code flow with PKCE (S256), ``state`` and ``nonce``.

``GET /console/login/oidc`` reads the provider's discovery document
(``<FULFILL_OIDC_ISSUER>/.well-known/openid-configuration``) and redirects the browser to its
authorization endpoint; the PKCE verifier, the state and the nonce stay in the signed session
cookie. ``GET /console/auth/callback`` checks the state, exchanges the code with the verifier at the
token endpoint, validates the ID token (signature from the provider's JWKS, ``iss``, ``aud``,
``nonce``, ``exp``), picks the bearer the console will use on the user's behalf (the access token,
or the ID token with ``FULFILL_OIDC_BEARER=id_token``), has the API's own token verifier accept it,
and only then opens a console session for it (kept on the server: see
:mod:`fulfill.console.session`). The console's sign-out (``POST /console/logout``) revokes that
session and sends the browser on to the provider's ``end_session_endpoint`` when it publishes one;
the console's pages allow that endpoint's origin in their ``form-action``.

Every failure answers a short HTML page (400, 401 or 502) and logs one line; codes, tokens and
secrets appear in neither.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlencode, urlparse

import anyio
import httpx
import httpx2
import jwt
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from fulfill.api.deps import ServiceContext, Verifier, verifier_of
from fulfill.api.problems import ApiProblem
from fulfill.config import Settings
from fulfill.console.session import log_in, session_bearer
from fulfill.tokens import ASYMMETRIC_ALGORITHMS, Principal, TokenError

CONSOLE_HOME = "/console/"
LOGIN_PATH = "/console/login/oidc"
CALLBACK_PATH = "/console/auth/callback"
_CALLBACK_ROUTE = "console_oidc_callback"
_PROVIDER = "oidc"
# The session key of a login under way: its state, PKCE verifier, nonce, redirect URL, start time.
_PENDING_KEY = "oidc_login"
# A login must come back from the provider within this many seconds.
LOGIN_TIMEOUT_SECONDS = 600
# Timeout of every request to the identity provider (discovery, token endpoint, JWKS).
PROVIDER_TIMEOUT_SECONDS = 10.0
# Provider errors that mean "this user did not sign in", as opposed to a broken request.
_USER_REFUSALS = frozenset(
    {
        "access_denied",
        "login_required",
        "consent_required",
        "interaction_required",
        "account_selection_required",
    }
)

# The console's pages name the provider's origins in their CSP ``form-action``: the sign-out
# form's answer redirects to the end-session endpoint, and browsers enforce form-action on the
# redirects of a form submission too. A process that has not read the discovery document yet reads
# it before its first signed-in page (waiting this long at most; after a failure, again this much
# later at the earliest).
DISCOVERY_WAIT_SECONDS = 3.0
DISCOVERY_RETRY_SECONDS = 30.0
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

# What a provider that cannot be reached or answers nonsense raises. Authlib's HTTP client is
# httpx2 when it is installed (the MCP SDK requires it), else httpx.
_UNREACHABLE = (httpx.HTTPError, httpx2.HTTPError, ValueError)

log = logging.getLogger("fulfill.console")


class LoginFailed(Exception):
    """A login step failed; ``detail`` is safe to show and to log."""

    def __init__(self, status: int, title: str, detail: str, code: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code


@dataclass(frozen=True)
class OidcLogin:
    """The configured provider: an Authlib client that discovers its endpoints lazily (and keeps
    them once read) plus what the callback checks."""

    issuer: str
    client_id: str
    bearer: str
    redirect_url: str
    leeway: int
    client: Any  # authlib's StarletteOAuth2App (untyped)
    # When a failed discovery may be tried again for the pages' form-action (monotonic seconds).
    _retry: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcLogin:
        # Authlib (and joserfc under it) is imported only when a provider is configured.
        from authlib.integrations.starlette_client import OAuth

        oauth = OAuth()
        client = oauth.register(
            name=_PROVIDER,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value() or None,
            server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.oidc_scopes,
                "code_challenge_method": "S256",
                "timeout": PROVIDER_TIMEOUT_SECONDS,
            },
        )
        return cls(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            bearer=settings.oidc_bearer,
            redirect_url=settings.oidc_redirect_url,
            leeway=int(settings.jwt_leeway_seconds),
            client=client,
        )

    def callback_url(self, request: Request) -> str:
        return self.redirect_url or str(request.url_for(_CALLBACK_ROUTE))

    def console_url(self, request: Request) -> str:
        """The absolute URL of the console's home, where the provider sends the browser after
        logout."""
        if self.redirect_url:
            parsed = urlparse(self.redirect_url)
            return f"{parsed.scheme}://{parsed.netloc}{CONSOLE_HOME}"
        return str(request.base_url).rstrip("/") + CONSOLE_HOME

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (fetched once, then kept); it must name the configured issuer."""
        try:
            metadata = cast(dict[str, Any], await self.client.load_server_metadata())
        except _UNREACHABLE as exc:
            raise _provider_unreachable("its discovery document", exc) from None
        if metadata.get("issuer") != self.issuer:
            self.client.server_metadata.clear()  # read it again next time
            raise LoginFailed(
                502,
                "Identity provider misconfigured",
                "The identity provider's discovery document names another issuer than FULFILL_OIDC_ISSUER.",
                "OIDC_ISSUER_MISMATCH",
            )
        return metadata

    def form_action_origins(self) -> list[str]:
        """The origins a console page's forms may lead to besides its own: the issuer's, and the
        end-session endpoint's once the discovery document has been read in this process."""
        origins = [origin_of(self.issuer)]
        metadata = self.client.server_metadata
        endpoint = metadata.get("end_session_endpoint") if "_loaded_at" in metadata else None
        if isinstance(endpoint, str):
            origins.append(origin_of(endpoint))
        unique: list[str] = []
        for origin in origins:
            if origin is not None and origin not in unique:
                unique.append(origin)
        return unique

    async def discover_for_pages(self) -> None:
        """Read the discovery document if this process has not yet (bounded; after a failure not
        again for a while), so that the pages can allow the end-session endpoint's origin."""
        if "_loaded_at" in self.client.server_metadata:
            return
        now = time.monotonic()
        if now < self._retry.get("at", 0.0):
            return
        try:
            with anyio.fail_after(DISCOVERY_WAIT_SECONDS):
                await self.metadata()
        except (LoginFailed, TimeoutError):
            self._retry["at"] = now + DISCOVERY_RETRY_SECONDS
            log.warning("console: the identity provider's discovery document could not be read for sign-out")

    async def start(self, request: Request) -> Response:
        metadata = await self.metadata()
        if not metadata.get("authorization_endpoint") or not metadata.get("token_endpoint"):
            raise LoginFailed(
                502,
                "Identity provider misconfigured",
                "The identity provider's discovery document lacks its authorization or token endpoint.",
                "OIDC_DISCOVERY_INCOMPLETE",
            )
        # Authlib makes the PKCE verifier (S256 challenge), the state and the nonce; they wait in
        # the session, replacing any login left unfinished, until the provider's answer spends them.
        redirect_uri = self.callback_url(request)
        authorization = await self.client.create_authorization_url(redirect_uri)
        request.session[_PENDING_KEY] = {
            "state": authorization["state"],
            "code_verifier": authorization["code_verifier"],
            "nonce": authorization["nonce"],
            "redirect_uri": redirect_uri,
            "started_at": int(time.time()),
        }
        return RedirectResponse(authorization["url"], status_code=302, headers={"Cache-Control": "no-store"})

    async def finish(self, request: Request) -> tuple[str, Principal]:
        """The bearer of a successful callback, already accepted by the API's verifier, and whom
        it names."""
        params = request.query_params
        # Any answer spends the pending login: a forged or stale one cannot be retried against it.
        pending = request.session.pop(_PENDING_KEY, None)
        error = params.get("error")
        if error:
            described = _printable(params.get("error_description") or "")
            detail = f"The identity provider answered '{_printable(error)}'" + (
                f": {described}" if described else "."
            )
            status = 401 if error in _USER_REFUSALS else 400
            raise LoginFailed(status, "Sign-in refused", detail, "OIDC_PROVIDER_ERROR")
        state = params.get("state") or ""
        if not isinstance(pending, dict) or not secrets.compare_digest(
            state.encode(), str(pending.get("state", "")).encode()
        ):
            raise LoginFailed(
                400,
                "Sign-in not recognised",
                "This answer does not belong to the sign-in started in this browser (unknown or "
                "reused state). Start again.",
                "OIDC_STATE_MISMATCH",
            )
        started_at = pending.get("started_at")
        if not isinstance(started_at, int) or time.time() - started_at > LOGIN_TIMEOUT_SECONDS:
            raise LoginFailed(
                400, "Sign-in expired", "The sign-in took too long. Start again.", "OIDC_LOGIN_EXPIRED"
            )
        code = params.get("code")
        if not code:
            raise LoginFailed(
                400, "Sign-in incomplete", "The identity provider sent no code.", "OIDC_NO_CODE"
            )
        token = await self._exchange(code, pending)
        await self._validate_id_token(token, pending)
        bearer = token.get(self.bearer)
        if not isinstance(bearer, str) or not bearer:
            raise LoginFailed(
                502,
                "Sign-in incomplete",
                f"The identity provider's token response has no {self.bearer}.",
                "OIDC_NO_BEARER",
            )
        verifier = verifier_of(request)
        try:
            principal = await anyio.to_thread.run_sync(verifier.verify, bearer)
        except TokenError as exc:
            raise LoginFailed(
                401,
                "Token not accepted",
                f"The API does not accept the {self.bearer} the identity provider issued: {exc}."
                + _what_to_change(self.bearer, exc.code),
                exc.code,
            ) from None
        return bearer, principal

    async def _exchange(self, code: str, pending: dict[str, Any]) -> dict[str, Any]:
        from authlib.integrations.base_client import OAuthError

        try:
            token = await self.client.fetch_access_token(
                code=code,
                redirect_uri=pending.get("redirect_uri"),
                code_verifier=pending.get("code_verifier"),
            )
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                raise LoginFailed(
                    401,
                    "Sign-in code refused",
                    "The identity provider refused the sign-in code (expired, already used, or not "
                    "issued to this browser's sign-in). Start again.",
                    "OIDC_CODE_REFUSED",
                ) from None
            raise LoginFailed(
                502,
                "Identity provider refused the client",
                f"The identity provider's token endpoint answered '{_printable(str(exc.error))}'.",
                "OIDC_TOKEN_ENDPOINT_ERROR",
            ) from None
        except _UNREACHABLE as exc:
            raise _provider_unreachable("its token endpoint", exc) from None
        return cast(dict[str, Any], token)

    async def _validate_id_token(self, token: dict[str, Any], pending: dict[str, Any]) -> None:
        from joserfc.errors import ClaimError, ExpiredTokenError, InvalidKeyIdError, JoseError

        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise LoginFailed(
                502, "Sign-in incomplete", "The identity provider returned no ID token.", "OIDC_NO_ID_TOKEN"
            )
        nonce = pending.get("nonce")
        if not nonce:  # cannot happen with 'openid' among the scopes, which the settings require
            raise LoginFailed(400, "Sign-in not recognised", "The sign-in has no nonce.", "OIDC_NO_NONCE")
        try:
            alg = jwt.get_unverified_header(id_token).get("alg")
        except jwt.PyJWTError:
            alg = None
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise _invalid_id_token("it is not signed with RS256 or ES256")
        try:
            await self.client.parse_id_token(
                token,
                nonce=nonce,
                # Authlib checks aud only through azp; require the client id among the audiences.
                claims_options={
                    "iss": {"essential": True, "values": [self.issuer]},
                    "aud": {"essential": True, "values": [self.client_id]},
                },
                leeway=self.leeway,
            )
        except InvalidKeyIdError:
            raise _invalid_id_token(
                "it is signed with a key the identity provider does not publish"
            ) from None
        except ExpiredTokenError:
            raise _invalid_id_token("it has expired") from None
        except ClaimError as exc:
            raise _invalid_id_token(str(exc.description).lower()) from None
        except JoseError as exc:
            raise _invalid_id_token(str(exc.error).replace("_", " ")) from None
        except (*_UNREACHABLE, RuntimeError) as exc:
            raise _provider_unreachable("its signing keys", exc) from None

    async def logout_url(self, request: Request) -> str:
        """Where the browser goes after its session is cleared: the provider's end-session
        endpoint when it has one, else the console."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except LoginFailed as exc:
            log.warning("console logout: the identity provider's session is not ended: %s", exc.detail)
            endpoint = None
        if not isinstance(endpoint, str) or not endpoint:
            return CONSOLE_HOME
        query = urlencode(
            {"client_id": self.client_id, "post_logout_redirect_uri": self.console_url(request)}
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, fit for a CSP source list; None otherwise."""
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        return None
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parsed.scheme}://{host}" + (f":{port}" if port is not None else "")
    return origin if _ORIGIN.match(origin) else None


def _provider_unreachable(what: str, exc: Exception) -> LoginFailed:
    reason = (
        f"HTTP {exc.response.status_code}"
        if isinstance(exc, httpx.HTTPStatusError | httpx2.HTTPStatusError)
        else type(exc).__name__
    )
    return LoginFailed(
        502,
        "Identity provider unavailable",
        f"The identity provider could not be reached for {what} ({reason}). Try again later.",
        "OIDC_PROVIDER_UNAVAILABLE",
    )


def _invalid_id_token(reason: str) -> LoginFailed:
    return LoginFailed(
        401,
        "Invalid ID token",
        f"The identity provider's ID token is invalid: {reason}.",
        "OIDC_ID_TOKEN_INVALID",
    )


def _printable(text: str, limit: int = 200) -> str:
    """Text from the query string, fit for a log line and a page (escaped there)."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return cleaned[:limit]


def error_page(failure: LoginFailed) -> HTMLResponse:
    title, detail = html.escape(failure.title), html.escape(failure.detail)
    body = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title} · fulfill console</title></head>\n"
        f"<body><main><h1>{title}</h1>\n<p>{detail}</p>\n"
        f'<p><a href="{LOGIN_PATH}">Sign in again</a></p></main></body></html>\n'
    )
    return HTMLResponse(
        body,
        status_code=failure.status,
        headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'"},
    )


router = APIRouter(include_in_schema=False)


def _login(request: Request) -> OidcLogin:
    return cast(OidcLogin, request.app.state.oidc_login)


def _failed(step: str, failure: LoginFailed) -> HTMLResponse:
    log.warning("console %s failed: %s %s: %s", step, failure.status, failure.code, failure.detail)
    return error_page(failure)


@router.get(LOGIN_PATH)
async def login(request: Request) -> Response:
    try:
        return await _login(request).start(request)
    except LoginFailed as failure:
        return _failed("login", failure)


@router.get(CALLBACK_PATH, name=_CALLBACK_ROUTE)
async def callback(request: Request, ctx: ServiceContext) -> Response:
    try:
        bearer, principal = await _login(request).finish(request)
    except LoginFailed as failure:
        return _failed("login callback", failure)
    await anyio.to_thread.run_sync(lambda: log_in(request, ctx, bearer, principal, now=ctx.clock.now()))
    return RedirectResponse(CONSOLE_HOME, status_code=303, headers={"Cache-Control": "no-store"})


def _what_to_change(bearer: str, code: str) -> str:
    """The configuration that fixes a refused bearer, where the reason points at one."""
    if code == "TOKEN_MALFORMED" and bearer == "access_token":
        return (
            " The provider issues opaque access tokens: configure it to issue JWT access tokens for "
            "the API (an API or resource whose audience is FULFILL_JWT_AUDIENCE, signed RS256 or "
            "ES256, with the tenant_id and scope claims), or use its ID token instead with "
            "FULFILL_OIDC_BEARER=id_token when that one carries them."
        )
    if code == "TOKEN_AUDIENCE_NOT_ACCEPTED":
        return f" Set FULFILL_JWT_AUDIENCE to the {bearer}'s audience, or configure the provider to issue it for that one."
    return ""


def configured_login(request: Request) -> OidcLogin | None:
    """The OIDC login of this service, or None when FULFILL_OIDC_ISSUER is not set (the
    console's logout asks it where to send the browser afterwards)."""
    login: OidcLogin | None = getattr(request.app.state, "oidc_login", None)
    return login


@router.get("/console/session")
async def session(request: Request, ctx: ServiceContext, verifier: Verifier) -> JSONResponse:
    """Who is signed in to the console: the subject, tenant and scopes of the session's bearer."""
    token = await anyio.to_thread.run_sync(lambda: session_bearer(request, ctx, now=ctx.clock.now()))
    if token is None:
        raise ApiProblem(
            401, "not signed in to the console", slug="unauthorized", code="CONSOLE_NOT_SIGNED_IN"
        )
    try:
        principal = await anyio.to_thread.run_sync(verifier.verify, token)
    except TokenError as exc:
        raise ApiProblem(401, f"the console session's {exc}", slug="unauthorized", code=exc.code) from None
    return JSONResponse(
        {
            "subject": principal.subject,
            "tenant_id": principal.tenant_id,
            "scopes": sorted(principal.scopes),
            "account_ids": sorted(principal.account_ids) if principal.account_ids is not None else None,
            "expires_at": principal.claims.get("exp"),
        },
        headers={"Cache-Control": "no-store"},
    )


def install(app: FastAPI, settings: Settings) -> None:
    """With FULFILL_OIDC_ISSUER set: the OIDC login routes (the console installs the session)."""
    if not settings.oidc_issuer:
        return
    app.state.oidc_login = OidcLogin.from_settings(settings)
    app.include_router(router)
