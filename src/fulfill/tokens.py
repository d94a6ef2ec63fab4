"""Bearer tokens: verifying the callers' JWTs and minting the service's own.

Dev mode signs and verifies HS256 with ``FULFILL_JWT_SECRET``, issuer ``fulfill-dev`` and audience
``fulfill``. Claims: ``sub``, ``tenant_id`` (or ``custom:tenant_id``), optional ``account_ids``,
``scope`` (space-separated), ``iss``, ``aud``, ``exp``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from fulfill.config import Settings

GATEWAY_SCOPE = "gateway:invoke"


class TokenError(Exception):
    """The token cannot be accepted; the message is safe to return to the caller."""


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant_id: str
    scopes: frozenset[str]
    # None: every account of the tenant. A set: only these accounts.
    account_ids: frozenset[str] | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def may_access_account(self, account_id: str) -> bool:
        return self.account_ids is None or account_id in self.account_ids


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("token issuer not accepted") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("token audience not accepted") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError("token invalid") from exc
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    tenant_id = claims.get("tenant_id") or claims.get("custom:tenant_id")
    if not isinstance(tenant_id, str) or not tenant_id:
        raise TokenError("token carries no tenant")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenError("token carries no subject")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise TokenError("token scope claim is malformed")
    return Principal(
        subject=subject,
        tenant_id=tenant_id,
        scopes=frozenset(scope.split()),
        account_ids=_account_ids(claims),
        claims=claims,
    )


def _account_ids(claims: dict[str, Any]) -> frozenset[str] | None:
    """``account_ids``: absent → all accounts; a list (or a JSON-encoded list) of strings → those;
    anything else is malformed and rejected (the reference failed open here)."""
    key = "account_ids" if "account_ids" in claims else "custom:account_ids"
    if key not in claims:
        return None
    value = claims[key]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise TokenError("token account_ids claim is malformed") from exc
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise TokenError("token account_ids claim is malformed")
    return frozenset(value)


def mint_token(
    settings: Settings,
    *,
    tenant_id: str,
    scopes: Iterable[str],
    subject: str = "fulfill-cli",
    account_ids: Iterable[str] | None = None,
    ttl_seconds: int = 3600,
    now: float | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant_id": tenant_id,
        "scope": " ".join(scopes),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    if account_ids is not None:
        claims["account_ids"] = list(account_ids)
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


class ServiceTokens:
    """The engine's own ``gateway:invoke`` tokens, one per tenant, cached until shortly before expiry."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ttl = settings.service_token_ttl_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token_for(self, tenant_id: str) -> str:
        now = time.time()
        with self._lock:
            cached = self._cache.get(tenant_id)
            if cached and cached[1] - 30 > now:
                return cached[0]
            token = mint_token(
                self._settings,
                tenant_id=tenant_id,
                scopes=[GATEWAY_SCOPE],
                subject="fulfill-engine",
                ttl_seconds=self._ttl,
                now=now,
            )
            self._cache[tenant_id] = (token, now + self._ttl)
            return token
