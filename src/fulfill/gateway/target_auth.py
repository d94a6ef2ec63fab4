"""How the gateway authenticates to its targets, and where their secrets are kept.

A target's auth is ``none``, ``bearer`` (a static token) or ``oauth_client_credentials`` (an
access token fetched from the target's token URL with a client id and secret, cached until
shortly before it expires). Secrets are read and written only through :class:`TargetSecrets`;
nothing returns them to a client or writes them to a log, and a failure message never quotes one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx2

from fulfill.credentials.crypto import SecretBox, SecretsKeyError
from fulfill.credentials.vault import ConfigurationError
from fulfill.domain.egress import EgressAllowList, EgressRefused
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.targets import TargetAuthType, TargetAuthView
from fulfill.gateway.egress import AnswerTooLarge, Resolver, ResponseBudget, pinned_client
from fulfill.store import targets as store
from fulfill.store.db import Database

# A token endpoint's answer is a small JSON object; more is refused while it streams.
MAX_TOKEN_ANSWER_BYTES = 64 * 1024


class TargetSecrets(Protocol):
    """Where target credentials live: ``{"token": …}`` for bearer, ``{"client_secret": …}`` for
    OAuth client credentials."""

    @property
    def can_store(self) -> bool: ...

    def get(self, target_name: str) -> dict[str, str] | None: ...

    def put(self, target_name: str, secret: dict[str, str]) -> None: ...

    def delete(self, target_name: str) -> None: ...


class EncryptedTargetSecrets:
    """:class:`TargetSecrets` in the ``gateway_target_secrets`` table, sealed with AES-256-GCM
    under ``FULFILL_SECRETS_KEY`` (the key of connector credentials) and bound to the target's
    name, so a sealed value copied onto another target does not open. Without a key nothing can
    be stored; never a plaintext fallback."""

    def __init__(self, db: Database, box: SecretBox, now_iso: Callable[[], str]) -> None:
        self._db = db
        self._box = box
        self._now_iso = now_iso

    @property
    def can_store(self) -> bool:
        return self._box.configured

    def get(self, target_name: str) -> dict[str, str] | None:
        with self._db.read() as conn:
            stored = store.get_secret(conn, target_name)
        if stored is None:
            return None
        opened = json.loads(self._box.open(stored.get("sealed", ""), _bound_to(target_name)))
        return {str(k): str(v) for k, v in opened.items()}

    def put(self, target_name: str, secret: dict[str, str]) -> None:
        if not self._box.configured:
            raise SecretsKeyError(
                "FULFILL_SECRETS_KEY is not set: target credentials are stored only encrypted"
            )
        sealed = {
            "sealed": self._box.seal(json.dumps(secret).encode(), _bound_to(target_name)),
            "key_id": self._box.primary_key_id,
        }
        with self._db.write() as conn:
            store.put_secret(conn, target_name, sealed, now=self._now_iso())

    def delete(self, target_name: str) -> None:
        with self._db.write() as conn:
            store.delete_secret(conn, target_name)

    def rekey(self) -> int:
        """Seal every stored target secret with the first configured key; returns how many changed."""
        changed = 0
        with self._db.read() as conn:
            stored = store.all_secrets(conn)
        for target_name, sealed in stored.items():
            if sealed.get("key_id") == self._box.primary_key_id:
                continue
            opened = self._box.open(sealed.get("sealed", ""), _bound_to(target_name))
            resealed = {
                "sealed": self._box.seal(opened, _bound_to(target_name)),
                "key_id": self._box.primary_key_id,
            }
            with self._db.write() as conn:
                if store.reseal_secret(conn, target_name, old=sealed, new=resealed, now=self._now_iso()):
                    changed += 1
        return changed


def _bound_to(target_name: str) -> bytes:
    return f"gateway-target:{target_name}".encode()


def check_target_secrets_key(db: Database, box: SecretBox) -> None:
    """At start-up: stored target credentials need every key they were sealed with."""
    with db.read() as conn:
        sealed_by = store.secret_key_ids_by_target(conn)
    unreadable = sorted(name for name, key_id in sealed_by.items() if key_id not in box.key_ids)
    if unreadable:
        missing = sorted({sealed_by[name] for name in unreadable})
        removals = "`, `".join(f"fulfill gateway remove {name}" for name in unreadable)
        raise ConfigurationError(
            f"gateway target credentials were encrypted with key(s) {', '.join(missing)}, which "
            "FULFILL_SECRETS_KEY does not hold: set it to the key(s) they were encrypted with. Old key "
            f"lost? Those targets cannot authenticate without it: remove them with `{removals}` (it "
            "works without the key), then register them again with `fulfill gateway add`"
        )


class TargetAuthFailed(Exception):
    """No credentials for a request to a target; nothing was sent to the target itself."""

    def __init__(self, error: ExecutionError) -> None:
        super().__init__(error.error_message)
        self.error = error


@dataclass(frozen=True)
class _CachedToken:
    value: str
    refresh_at: float  # monotonic


class OAuthTokens:
    """Client-credentials access tokens, cached per target and credentials until shortly before
    they expire (``expires_in`` minus a tenth, at most a minute; 5 minutes when not given)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _CachedToken] = {}

    def forget(self, target_name: str) -> None:
        with self._lock:
            for key in [key for key in self._tokens if key.startswith(f"{target_name}\n")]:
                del self._tokens[key]

    async def token(
        self,
        target_name: str,
        auth: TargetAuthView,
        client_secret: str,
        *,
        allow: EgressAllowList,
        resolver: Resolver,
        timeout: float,
    ) -> tuple[str, bool]:
        """An access token, and whether it was fetched now (False: from the cache)."""
        key = _cache_key(target_name, auth, client_secret)
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and cached.refresh_at > self._clock():
            return cached.value, False
        value, lifetime = await _fetch_token(
            auth, client_secret, allow=allow, resolver=resolver, timeout=timeout
        )
        with self._lock:
            self._tokens[key] = _CachedToken(value, self._clock() + lifetime - min(60.0, lifetime / 10))
        return value, True


def _cache_key(target_name: str, auth: TargetAuthView, client_secret: str) -> str:
    fingerprint = hashlib.sha256(
        "\n".join(
            [auth.token_url or "", auth.client_id or "", auth.scope or "", auth.audience or "", client_secret]
        ).encode()
    ).hexdigest()
    return f"{target_name}\n{fingerprint}"


async def _fetch_token(
    auth: TargetAuthView, client_secret: str, *, allow: EgressAllowList, resolver: Resolver, timeout: float
) -> tuple[str, float]:
    """POST ``grant_type=client_credentials`` to the token URL (client authentication with HTTP
    Basic, RFC 6749 §2.3.1); the token URL is subject to the same egress rules as targets, and
    its answer is read up to ``MAX_TOKEN_ANSWER_BYTES`` (uncompressed), like a target's."""
    form = {"grant_type": "client_credentials"}
    if auth.scope:
        form["scope"] = auth.scope
    if auth.audience:
        form["audience"] = auth.audience
    try:
        budget = ResponseBudget(MAX_TOKEN_ANSWER_BYTES)
        async with pinned_client(allow, resolver, timeout=timeout, budget=budget) as http:
            response = await http.post(
                auth.token_url or "",
                data=form,
                auth=httpx2.BasicAuth(auth.client_id or "", client_secret),
                headers={"Accept": "application/json"},
            )
    except EgressRefused as exc:
        raise TargetAuthFailed(_error(ErrorClass.VALIDATION, "EGRESS_REFUSED", f"token URL: {exc}")) from None
    except AnswerTooLarge as exc:
        raise TargetAuthFailed(
            _error(
                ErrorClass.VALIDATION,
                "TARGET_TOKEN_ANSWER_TOO_LARGE",
                f"the token URL answered {exc}; a token answer may hold at most {MAX_TOKEN_ANSWER_BYTES} bytes",
            )
        ) from None
    except httpx2.TimeoutException:
        raise TargetAuthFailed(
            _error(ErrorClass.TIMEOUT, "TARGET_TOKEN_TIMEOUT", "the token URL did not answer in time")
        ) from None
    except httpx2.HTTPError:
        raise TargetAuthFailed(
            _error(ErrorClass.DOWNSTREAM, "TARGET_TOKEN_UNAVAILABLE", "the token URL could not be reached")
        ) from None
    if response.status_code != 200:
        status = response.status_code
        error_class = ErrorClass.DOWNSTREAM if status >= 500 or status == 429 else ErrorClass.AUTH
        raise TargetAuthFailed(
            _error(error_class, "TARGET_TOKEN_REFUSED", f"the token URL answered HTTP {status}")
        )
    try:
        body = response.json()
        value = body["access_token"]
        expires_in = float(body.get("expires_in") or 300)
    except (ValueError, KeyError, TypeError):
        raise TargetAuthFailed(
            _error(ErrorClass.AUTH, "TARGET_TOKEN_INVALID", "the token URL answered without an access_token")
        ) from None
    if not isinstance(value, str) or not value:
        raise TargetAuthFailed(
            _error(ErrorClass.AUTH, "TARGET_TOKEN_INVALID", "the token URL answered without an access_token")
        )
    return value, max(1.0, expires_in)


def _error(error_class: ErrorClass, code: str, message: str) -> ExecutionError:
    return ExecutionError(error_class=error_class, error_code=code, error_message=message)


async def auth_headers(
    target_name: str,
    auth: TargetAuthView,
    secret: dict[str, str] | None,
    tokens: OAuthTokens,
    *,
    allow: EgressAllowList,
    resolver: Resolver,
    timeout: float,
) -> tuple[dict[str, str], bool]:
    """The headers that authenticate a request to the target, and whether they hold a token that
    was just fetched (False: cached, so a 401 may mean it was revoked early and is worth one
    fresh fetch)."""
    if auth.type is TargetAuthType.NONE:
        return {}, True
    if auth.type is TargetAuthType.BEARER:
        token = (secret or {}).get("token")
        if not token:
            raise TargetAuthFailed(
                _error(
                    ErrorClass.AUTH, "TARGET_SECRET_MISSING", f"no bearer token is stored for {target_name}"
                )
            )
        return {"Authorization": f"Bearer {token}"}, True
    client_secret = (secret or {}).get("client_secret")
    if not client_secret:
        raise TargetAuthFailed(
            _error(
                ErrorClass.AUTH,
                "TARGET_SECRET_MISSING",
                f"no OAuth client secret is stored for {target_name}",
            )
        )
    value, fresh = await tokens.token(
        target_name, auth, client_secret, allow=allow, resolver=resolver, timeout=timeout
    )
    return {"Authorization": f"Bearer {value}"}, fresh
