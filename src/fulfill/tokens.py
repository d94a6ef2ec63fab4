"""Bearer tokens: verifying the callers' JWTs and minting the service's own.

Two kinds of token reach :class:`TokenVerifier`:

* **Service tokens**: the engine's own ``gateway:invoke`` tokens (:func:`mint_service_token`),
  HS256 with ``FULFILL_SERVICE_TOKEN_SECRET`` (or ``FULFILL_JWT_SECRET`` when that is empty, dev
  mode only), issuer ``fulfill-service``. Each is minted for one tool call and bound to its
  trusted arguments (``tenant_id``, ``account_id``, ``action_intent_id``, ``idempotency_key``,
  all required claims). Accepted in both modes, only ever for the ``gateway:invoke`` scope, and
  the only tokens the gateway accepts (:meth:`TokenVerifier.verify_service`).
* **User tokens**. Dev mode (``FULFILL_AUTH_MODE=dev``): HS256 with ``FULFILL_JWT_SECRET``, issuer
  ``FULFILL_JWT_ISSUER`` (``fulfill-dev``) and audience ``FULFILL_JWT_AUDIENCE`` (``fulfill``).
  Production mode: RS256 or ES256 from an identity provider, verified with the keys published at
  ``FULFILL_JWKS_URL``; HS256 user tokens are refused. Dev mode also accepts RS256/ES256 tokens
  when ``FULFILL_JWKS_URL`` is set. ``exp``, ``nbf`` and ``iat`` are checked with
  ``FULFILL_JWT_LEEWAY_SECONDS`` of tolerance for clock skew.

Claims: ``sub``, ``tenant_id`` (or ``custom:tenant_id``), optional ``account_ids``, ``scope``
(space-separated), ``iss``, ``aud``, ``exp``. An RFC 8693 ``act`` claim (or a marker configured in
``FULFILL_AGENT_TOKEN_CLAIMS``) makes the token an agent's (:attr:`Principal.is_agent`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from fulfill.config import SERVICE_TOKEN_ISSUER, Settings
from fulfill.domain.approvers import ACTOR_CLAIM, AgentMarkers
from fulfill.domain.mapping import TRUSTED_ARGUMENTS
from fulfill.domain.scopes import Scope

SERVICE_SUBJECT = "fulfill-engine"
# A service token is bound to exactly these arguments of the one tool call it was minted for.
SERVICE_BINDING_CLAIMS = TRUSTED_ARGUMENTS
# A service token outlives its call's timeout by this much (the call's requests arrive within it).
SERVICE_TOKEN_MARGIN_SECONDS = 5
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
# A JWKS refresh forced by an unknown ``kid`` happens at most once per this many seconds (it stops
# tokens with made-up key ids from turning into a stream of requests to the identity provider).
JWKS_REFRESH_COOLDOWN_SECONDS = 30.0
# After a failed JWKS fetch, tokens that need a fetch are refused at once for this long, instead of
# each request waiting for the identity provider again.
JWKS_FAILURE_BACKOFF_SECONDS = 5.0
JWKS_FETCH_TIMEOUT_SECONDS = 10.0
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
# How many verified tokens :meth:`TokenVerifier.verify` remembers (oldest forgotten first).
VERIFIED_TOKEN_CACHE_SIZE = 4096

log = logging.getLogger("fulfill.auth")


class TokenError(Exception):
    """The token cannot be accepted; the message is safe to return to the caller, and ``code`` is
    a stable machine-readable reason (``TOKEN_EXPIRED``, ``TOKEN_SIGNATURE_INVALID``, ...)."""

    def __init__(self, message: str, code: str = "TOKEN_INVALID") -> None:
        super().__init__(message)
        self.code = code


_MALFORMED = "token malformed (not a JWT)"
_NOT_ACCEPTED_ALGORITHM = "token algorithm not accepted"


def _malformed() -> TokenError:
    return TokenError(_MALFORMED, "TOKEN_MALFORMED")


def _algorithm_not_accepted() -> TokenError:
    return TokenError(_NOT_ACCEPTED_ALGORITHM, "TOKEN_ALGORITHM_NOT_ACCEPTED")


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant_id: str
    scopes: frozenset[str]
    # None: every account of the tenant. A set: only these accounts.
    account_ids: frozenset[str] | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)
    # The token carries an agent marker (an RFC 8693 ``act`` claim, or a configured one): it may
    # propose, and never approve or reject (domain/approvers.py).
    is_agent: bool = False

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def may_access_account(self, account_id: str) -> bool:
        return self.account_ids is None or account_id in self.account_ids


def service_token_secret(settings: Settings) -> str:
    return settings.service_token_secret or settings.jwt_secret


@dataclass(frozen=True)
class _Verified:
    """A token :meth:`TokenVerifier.verify` accepted: what it gave, until when it may give it again
    without verifying (the token's ``exp``), and for a token verified with a key from the JWKS,
    the key set that key came from (the answer is only reused while that set is still current)."""

    principal: Principal
    expires_at: float
    key_set: object | None = None


class TokenVerifier:
    """Verifies bearer tokens; one instance is shared by the API and the gateway (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        *,
        jwks_refresh_cooldown_seconds: float = JWKS_REFRESH_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.time,
        cache_size: int = VERIFIED_TOKEN_CACHE_SIZE,
    ) -> None:
        self._production = settings.auth_mode == "production"
        self._secret = settings.jwt_secret
        self._service_secret = service_token_secret(settings)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._jwks_url = settings.jwks_url
        self._jwks_lifespan = settings.jwks_cache_seconds
        self._jwks_cooldown = jwks_refresh_cooldown_seconds
        self._jwks_client: jwt.PyJWKClient | None = None
        self._jwks_lock = threading.Lock()
        self._jwks_retry_at = 0.0
        self._scope_policy = ScopePolicy.from_settings(settings)
        self._agent_markers = AgentMarkers.parse(settings.agent_token_claims)
        # Tokens accepted, by their exact text (signature included): a client sends the same token
        # with each request, and verifying it again (three parses and an HMAC or a public-key
        # check) is most of what authentication costs. Nothing a token does not say is cached:
        # a refused token is verified again every time; an accepted one is reused only before its
        # ``exp`` and, if its key came from the JWKS, while that same key set is current (a key
        # the identity provider withdraws stops being trusted when the set is fetched again, as
        # without the cache).
        self._clock = clock
        self._cache_size = cache_size
        self._verified: dict[str, _Verified] = {}
        self._verified_lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """What :meth:`verify` gives for a token it accepted before and may still give without
        verifying it again; None otherwise (the token must go through :meth:`verify`). Never
        blocks: no key fetch, no signature check."""
        known = self._verified.get(token)
        if known is None:
            return None
        if self._clock() < known.expires_at and self._key_set_current(known.key_set):
            return known.principal
        with self._verified_lock:
            self._verified.pop(token, None)
        return None

    def verify(self, token: str) -> Principal:
        """The principal of a token the API accepts (a user token, or a service token with no
        scope but ``gateway:invoke``); :class:`TokenError` says why one is refused."""
        known = self.cached(token)
        if known is not None:
            return known
        key_set: list[object] = []
        principal = self._verify(token, key_set)
        self._remember(token, principal, key_set[0] if key_set else None)
        return principal

    def _remember(self, token: str, principal: Principal, key_set: object | None) -> None:
        if self._cache_size <= 0:
            return
        try:
            expires_at = float(principal.claims["exp"])
        except (KeyError, TypeError, ValueError):
            return
        if self._clock() >= expires_at:
            return  # accepted within the leeway: verified again each time
        with self._verified_lock:
            while len(self._verified) >= self._cache_size:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = _Verified(principal, expires_at, key_set)

    def _key_set_current(self, key_set: object | None) -> bool:
        if key_set is None:
            return True  # verified with a configured secret
        client = self._jwks_client
        cache = client.jwk_set_cache if client is not None else None
        return cache is not None and cache.jwk_set_with_timestamp is key_set and not cache.is_expired()

    def _verify(self, token: str, key_set: list[object]) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise _malformed() from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise _malformed()
        if alg.lower() == "none":
            raise _algorithm_not_accepted()
        if alg == "HS256":
            if _unverified_issuer(token) == SERVICE_TOKEN_ISSUER:
                return self._verify_service_token(token)
            if self._production:
                raise _algorithm_not_accepted()
            return self._verify_dev_token(token)
        if alg in ASYMMETRIC_ALGORITHMS:
            if not self._jwks_url:
                raise _algorithm_not_accepted()
            return self._verify_jwks_token(token, alg, header.get("kid"), key_set)
        if self._production:
            raise _algorithm_not_accepted()
        return self._verify_dev_token(token)  # refuses it: the dev key only verifies HS256

    def verify_service(self, token: str) -> Principal:
        """Only the engine's own service tokens: what the gateway accepts. User tokens, whatever
        their scopes, are refused.

        A token is verified at once, in one parse: the verification itself accepts only HS256 and
        the service issuer, so a token it accepts is one the checks of its header and issuer would
        have let through. Only a refused token is parsed again, unverified, to say why as before:
        not a JWT, not a service token (``SERVICE_TOKEN_REQUIRED``), or the verification's own
        reason (expired, signature, binding claims)."""
        try:
            return self._verify_service_token(token)
        except TokenError:
            try:
                header = jwt.get_unverified_header(token)
            except (jwt.PyJWTError, ValueError, TypeError) as exc:
                raise _malformed() from exc
            if header.get("alg") != "HS256" or _unverified_issuer(token) != SERVICE_TOKEN_ISSUER:
                raise TokenError("a service token is required", "SERVICE_TOKEN_REQUIRED") from None
            raise

    def _verify_dev_token(self, token: str) -> Principal:
        claims = _decode(token, self._secret, ["HS256"], self._issuer, self._audience, leeway=self._leeway)
        return principal_from_claims(claims, self._scope_policy, self._agent_markers)

    def _verify_service_token(self, token: str) -> Principal:
        # No leeway: the engine mints these for the call it is about to make.
        claims = _decode(token, self._service_secret, ["HS256"], SERVICE_TOKEN_ISSUER, self._audience)
        if any(not isinstance(claims.get(name), str) or not claims[name] for name in SERVICE_BINDING_CLAIMS):
            raise TokenError("token binding claims missing", "TOKEN_CLAIM_MISSING")
        principal = principal_from_claims(claims)
        # A service token can call the gateway and nothing else, whatever scopes it carries.
        return Principal(
            subject=principal.subject,
            tenant_id=principal.tenant_id,
            scopes=principal.scopes & {Scope.GATEWAY_INVOKE},
            account_ids=principal.account_ids,
            claims=principal.claims,
        )

    def _verify_jwks_token(self, token: str, alg: str, kid: object, key_set: list[object]) -> Principal:
        if not isinstance(kid, str) or not kid:
            raise TokenError("token signing key not found", "TOKEN_SIGNING_KEY_NOT_FOUND")
        signing_key, current_set = self._signing_key(kid)
        if current_set is not None:
            key_set.append(current_set)
        if not _key_fits_algorithm(signing_key, alg):
            raise _algorithm_not_accepted()
        claims = _decode(
            token, signing_key, list(ASYMMETRIC_ALGORITHMS), self._issuer, self._audience, leeway=self._leeway
        )
        return principal_from_claims(claims, self._scope_policy, self._agent_markers)

    def _signing_key(self, kid: str) -> tuple[jwt.PyJWK, object | None]:
        """The JWKS key named ``kid``, and the cached key set it came from (None: not cached)."""
        with self._jwks_lock:
            client = self._jwks()
            if time.monotonic() < self._jwks_retry_at:
                # Backing off after a failed fetch: serve what is cached, fetch nothing.
                cached = client.jwk_set_cache.get() if client.jwk_set_cache is not None else None
                usable = [k for k in cached.keys if k.public_key_use in ("sig", None)] if cached else []
                key = client.match_kid(usable, kid)
                if key is None:
                    raise TokenError("token signing keys unavailable", "TOKEN_SIGNING_KEYS_UNAVAILABLE")
                return key, self._current_key_set(client)
            try:
                return client.get_signing_key(kid), self._current_key_set(client)
            except jwt.PyJWKClientConnectionError as exc:
                self._jwks_failed(exc)
            except jwt.PyJWKClientError as exc:
                if str(exc).startswith("Unable to find a signing key"):
                    raise TokenError("token signing key not found", "TOKEN_SIGNING_KEY_NOT_FOUND") from None
                self._jwks_failed(exc)
            except (jwt.PyJWTError, OSError, ValueError) as exc:  # e.g. a body that is not JSON
                self._jwks_failed(exc)
            raise TokenError("token signing keys unavailable", "TOKEN_SIGNING_KEYS_UNAVAILABLE")

    @staticmethod
    def _current_key_set(client: jwt.PyJWKClient) -> object | None:
        cache = client.jwk_set_cache
        return cache.jwk_set_with_timestamp if cache is not None else None

    def _jwks_failed(self, exc: Exception) -> None:
        self._jwks_retry_at = time.monotonic() + JWKS_FAILURE_BACKOFF_SECONDS
        # The exception text can quote the JWKS document; log only its type.
        log.warning("could not fetch the token signing keys from %s (%s)", self._jwks_url, type(exc).__name__)

    def _jwks(self) -> jwt.PyJWKClient:
        """The shared JWKS client, built on first use. Call with ``_jwks_lock`` held."""
        if self._jwks_client is None:
            # cache_keys stays False: PyJWT's per-kid cache is an LRU without expiry, so a key the
            # identity provider withdraws would stay trusted. The JWK set cache below expires
            # after jwks_cache_seconds and already answers repeat lookups without a request.
            self._jwks_client = jwt.PyJWKClient(
                self._jwks_url,
                cache_keys=False,
                cache_jwk_set=True,
                lifespan=self._jwks_lifespan,
                timeout=JWKS_FETCH_TIMEOUT_SECONDS,
                cooldown_duration=self._jwks_cooldown,
            )
        return self._jwks_client


def _unverified_issuer(token: str) -> object:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise _malformed() from exc
    return claims.get("iss")


def _key_fits_algorithm(key: jwt.PyJWK, alg: str) -> bool:
    """A JWKS key verifies only its own algorithm: RS256 needs an RSA key, ES256 a P-256 key, and a
    key that names its ``alg`` must name this one."""
    if key.algorithm_name != alg:
        return False
    if alg == "RS256":
        return isinstance(key.key, RSAPublicKey)
    if alg == "ES256":
        return isinstance(key.key, EllipticCurvePublicKey) and isinstance(key.key.curve, SECP256R1)
    return False


def _decode(
    token: str,
    key: str | jwt.PyJWK,
    algorithms: list[str],
    issuer: str,
    audience: str,
    *,
    leeway: float = 0.0,
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired", "TOKEN_EXPIRED") from exc
    except jwt.ImmatureSignatureError as exc:
        raise TokenError("token not yet valid", "TOKEN_NOT_YET_VALID") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenError("token issuer not accepted", "TOKEN_ISSUER_NOT_ACCEPTED") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenError("token audience not accepted", "TOKEN_AUDIENCE_NOT_ACCEPTED") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"token lacks the required claim '{exc.claim}'", "TOKEN_CLAIM_MISSING") from exc
    except jwt.InvalidSignatureError as exc:
        # Signed with another key or secret, or altered after signing.
        raise TokenError("token signature invalid", "TOKEN_SIGNATURE_INVALID") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise _algorithm_not_accepted() from exc
    except jwt.DecodeError as exc:
        raise _malformed() from exc
    except jwt.InvalidIssuedAtError as exc:
        raise TokenError("token iat claim is malformed", "TOKEN_CLAIM_MALFORMED") from exc
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise TokenError("token invalid", "TOKEN_INVALID") from exc
    return claims


@dataclass(frozen=True)
class ScopePolicy:
    """Where a user token's scopes come from when it has no ``scope`` claim (a Cognito ID token,
    for example): another claim holding scope names (``FULFILL_JWT_SCOPE_CLAIM``, e.g.
    ``cognito:groups``), else a default set (``FULFILL_JWT_DEFAULT_SCOPES``). Both are off by
    default: a token without ``scope`` then has no scope at all."""

    claim: str = ""
    defaults: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> ScopePolicy:
        return cls(claim=settings.jwt_scope_claim, defaults=frozenset(settings.jwt_default_scopes))

    def scopes(self, claims: Mapping[str, Any]) -> frozenset[str]:
        if "scope" in claims:  # space-separated, as OAuth 2.0 (RFC 8693 §4.2) has it
            scope = claims["scope"]
            if not isinstance(scope, str):
                raise TokenError("token scope claim is malformed", "TOKEN_CLAIM_MALFORMED")
            return frozenset(scope.split())
        if self.claim and self.claim in claims:
            return _scope_names(claims[self.claim], self.claim)
        return self.defaults


def _scope_names(value: object, claim: str) -> frozenset[str]:
    """A space-separated string of scope names, or a list of them (as ``cognito:groups`` is)."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(name for item in value for name in item.split())
    raise TokenError(f"token {claim} claim is malformed", "TOKEN_CLAIM_MALFORMED")


# What a tenant id looks like (domain/models.py ``Identifier``).
_TENANT_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


def principal_from_claims(
    claims: dict[str, Any], scope_policy: ScopePolicy | None = None, agent_markers: AgentMarkers | None = None
) -> Principal:
    tenant_id = claims.get("tenant_id") or claims.get("custom:tenant_id")
    if not isinstance(tenant_id, str) or not tenant_id:
        raise TokenError("token carries no tenant", "TOKEN_NO_TENANT")
    if not _TENANT_ID.fullmatch(tenant_id):
        # Every tenant's data is keyed by it (an Identifier); another value would fail deep inside.
        raise TokenError(
            "token tenant_id is not an identifier (1 to 128 of A-Z a-z 0-9 _ . : @ -)",
            "TOKEN_CLAIM_MALFORMED",
        )
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenError("token carries no subject", "TOKEN_CLAIM_MISSING")
    return Principal(
        subject=subject,
        tenant_id=tenant_id,
        scopes=(scope_policy or ScopePolicy()).scopes(claims),
        account_ids=_account_ids(claims),
        claims=claims,
        is_agent=(agent_markers or AgentMarkers()).is_agent(claims),
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
            raise TokenError("token account_ids claim is malformed", "TOKEN_CLAIM_MALFORMED") from exc
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise TokenError("token account_ids claim is malformed", "TOKEN_CLAIM_MALFORMED")
    return frozenset(value)


def mint_token(
    settings: Settings,
    *,
    tenant_id: str,
    scopes: Iterable[str],
    subject: str = "fulfill-cli",
    account_ids: Iterable[str] | None = None,
    actor: str | None = None,
    ttl_seconds: int = 3600,
    now: float | None = None,
) -> str:
    """A dev-mode user token. ``actor``: the token is an agent's, acting for ``subject`` (RFC 8693
    ``act`` claim naming the agent)."""
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
    if actor is not None:
        claims[ACTOR_CLAIM] = {"sub": actor}
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def mint_service_token(
    settings: Settings,
    *,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    idempotency_key: str,
    ttl_seconds: int | None = None,
    now: float | None = None,
) -> str:
    """The engine's ``gateway:invoke`` token for one tool call (issuer ``fulfill-service``), bound
    to that call's trusted arguments."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": SERVICE_SUBJECT,
        "tenant_id": tenant_id,
        "account_id": account_id,
        "action_intent_id": action_intent_id,
        "idempotency_key": idempotency_key,
        "scope": Scope.GATEWAY_INVOKE,
        "iss": SERVICE_TOKEN_ISSUER,
        "aud": settings.jwt_audience,
        "iat": issued,
        "exp": issued + (ttl_seconds if ttl_seconds is not None else settings.service_token_ttl_seconds),
    }
    return jwt.encode(claims, service_token_secret(settings), algorithm="HS256")


def binding_of(arguments: Mapping[str, Any]) -> dict[str, str]:
    """The trusted arguments of a tool call, which its service token is bound to.

    Raises :class:`TokenError` naming the ones that are missing (never their values)."""
    missing = [
        name
        for name in SERVICE_BINDING_CLAIMS
        if not isinstance(arguments.get(name), str) or not arguments[name]
    ]
    if missing:
        raise TokenError(f"the tool call lacks its trusted argument(s): {', '.join(missing)}")
    return {name: str(arguments[name]) for name in SERVICE_BINDING_CLAIMS}


class ServiceTokens:
    """Mints the engine's service tokens, one per tool call.

    Nothing is cached: each token is bound to one call's trusted arguments, and minting an HS256
    token costs microseconds.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ttl = settings.service_token_ttl_seconds

    def token_for_call(self, arguments: Mapping[str, Any], *, timeout_seconds: float = 0.0) -> str:
        """A token for the call with these arguments; it lives at least as long as the call may."""
        ttl = max(self._ttl, math.ceil(timeout_seconds) + SERVICE_TOKEN_MARGIN_SECONDS)
        binding = binding_of(arguments)
        return mint_service_token(
            self._settings,
            tenant_id=binding["tenant_id"],
            account_id=binding["account_id"],
            action_intent_id=binding["action_intent_id"],
            idempotency_key=binding["idempotency_key"],
            ttl_seconds=ttl,
        )
