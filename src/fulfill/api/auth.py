"""Bearer-token authentication and per-route scopes.

401: no token, an invalid token, or a token without a tenant. 403: a valid token without the
route's scope, or with an ``account_ids`` claim that excludes the account. The tenant is always
the token's; nothing in a request body or header can choose it.

Two admin scopes, and neither implies the other: ``admin`` manages the token's own tenant (its
execution switches, reruns of its intents); ``platform:admin`` manages what every tenant shares
(the global kill switches, the action-type registry) and gives no power over any tenant's data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fulfill.api.deps import Verifier
from fulfill.api.problems import ApiProblem
from fulfill.tokens import Principal, TokenError

_bearer = HTTPBearer(auto_error=False, description="A JWT; see README 'Authentication'.")


def _unauthorized(detail: str, code: str, *, challenge: str) -> ApiProblem:
    return ApiProblem(401, detail, slug="unauthorized", code=code, headers={"WWW-Authenticate": challenge})


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "").replace('"', "'") + '"'


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    return require_any_scope(scope)


def require_any_scope(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A verified token holding at least one of ``scopes`` (the route's use case may ask for more)."""
    spelled = " ".join(scopes)
    named = " or ".join(f"'{scope}'" for scope in scopes)

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)], verifier: Verifier
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            # RFC 6750 §3.1: a request without credentials gets a challenge without an error code.
            raise _unauthorized("a bearer token is required", "TOKEN_MISSING", challenge="Bearer")
        try:
            # A token accepted before is answered here, on the event loop; verifying one (which
            # may fetch the identity provider's keys) happens in a worker thread.
            principal = verifier.cached(credentials.credentials)
            if principal is None:
                principal = await anyio.to_thread.run_sync(verifier.verify, credentials.credentials)
        except TokenError as exc:
            raise _unauthorized(
                str(exc),
                exc.code,
                challenge=f"Bearer error={_quoted('invalid_token')}, error_description={_quoted(str(exc))}",
            ) from None
        if not any(principal.has_scope(scope) for scope in scopes):
            raise ApiProblem(
                403,
                f"the token lacks the scope {named}",
                slug="forbidden",
                code="MISSING_SCOPE",
                headers={
                    "WWW-Authenticate": f"Bearer error={_quoted('insufficient_scope')}, scope={_quoted(spelled)}"
                },
            )
        return principal

    return dependency
