"""Access tokens for a connector, from its stored credential, cached in memory.

One :class:`TokenProvider` per connector and process. A token is requested from
``{login_url}/services/oauth2/token`` with the credential's grant:

* ``client_credentials``: ``client_id`` and ``client_secret``;
* ``jwt_bearer``: an RS256 assertion ``{iss: client_id, sub: username, aud, exp: now + 3 min}``
  signed with the stored private key (``urn:ietf:params:oauth:grant-type:jwt-bearer``);
* ``refresh_token``: the stored refresh token. When the server answers with a new refresh token
  (rotation), the new one is stored at once: the old one is now spent, and using a spent one
  makes Salesforce revoke the whole family. So that two processes never spend the same one, the
  exchange is done under a lease on the credential's row.

Tokens are cached per (tenant, credential, revision) until shortly before they expire (the
response's ``expires_in``, else ``FULFILL_SALESFORCE_TOKEN_TTL_SECONDS``); a 401 from the API
invalidates the cached token and the caller asks once more. Concurrent callers wait for one
request instead of each making their own. Tokens and secrets are never logged or put in an error
message: messages carry the OAuth error code and the server's description only.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from fulfill.bounded_http import AnswerTooLarge, bounded_request
from fulfill.credentials.crypto import SecretsKeyError
from fulfill.credentials.vault import CredentialVault
from fulfill.domain.credentials import CredentialType, StoredCredential
from fulfill.domain.egress import EgressRefused
from fulfill.domain.errors import ErrorClass
from fulfill.domain.external_writes import Written
from fulfill.domain.ports import Clock
from fulfill.domain.tenant_urls import LoginUrlPolicy, TenantUrlRefused

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ASSERTION_SECONDS = 180
_REFRESH_MARGIN_SECONDS = 60.0
_LEASE_WAIT_POLL_SECONDS = 0.1
# The most of a token endpoint's answer read: a token answer is a few hundred bytes (a few KiB
# with an id token); the endpoint is at an address a tenant's admin chooses.
TOKEN_ANSWER_BYTES = 64 * 1024


class ConnectorFailure(Exception):
    """A classified failure of a connector's call; ``written`` says whether a write may have
    happened (``Written.NO``: certainly not; ``Written.UNKNOWN``: it may have)."""

    def __init__(
        self, error_class: ErrorClass, code: str, message: str, *, written: Written = Written.NO
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.code = code
        self.message = message
        self.written = written


def egress_failure(exc: EgressRefused) -> ConnectorFailure:
    """A destination the egress rules refuse: nothing was sent, and retrying cannot help."""
    return ConnectorFailure(
        ErrorClass.VALIDATION,
        "EGRESS_REFUSED",
        f"{exc} (an operator may allow it with FULFILL_GATEWAY_EGRESS_ALLOW)",
    )


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    instance_url: str
    expires_at: float
    cache_key: tuple[str, str, str]
    revision: int


class TokenProvider:
    def __init__(
        self,
        vault: CredentialVault,
        http: httpx.Client,
        clock: Clock,
        *,
        connector: str,
        default_login_url: str,
        token_ttl_seconds: float,
        timeout_seconds: float,
        login_policy: LoginUrlPolicy,
    ) -> None:
        self._vault = vault
        self._login_policy = login_policy
        self._http = http
        self._clock = clock
        self._connector = connector
        self._default_login_url = default_login_url.rstrip("/")
        self._ttl = token_ttl_seconds
        self._timeout = timeout_seconds
        self._cache: dict[tuple[str, str, str], AccessToken] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self.requests = 0  # token requests made (for operators' metrics and the tests)

    def token(self, tenant_id: str, account_id: str) -> AccessToken:
        """A live access token for the credential that applies to this account."""
        located = self._vault.locate(tenant_id, account_id, self._connector)
        if located is None:
            raise ConnectorFailure(
                ErrorClass.AUTH,
                "CREDENTIALS_NOT_CONFIGURED",
                f"no {self._connector} credentials for this tenant or account: set them with "
                f"PUT /admin/credentials/{self._connector}",
            )
        account_key, revision = located
        key = (tenant_id, account_key, self._connector)
        cached = self._fresh(key, revision)
        if cached is not None:
            return cached
        with self._lock_for(key):
            cached = self._fresh(key, revision)  # another thread may have fetched it meanwhile
            if cached is not None:
                return cached
            token = self._request(key)
            with self._guard:
                self._cache[key] = token
            return token

    def invalidate(self, token: AccessToken) -> None:
        """The API refused this token (401): the next :meth:`token` asks the server again."""
        with self._guard:
            if self._cache.get(token.cache_key) is token:
                del self._cache[token.cache_key]

    def forget(self, tenant_id: str) -> None:
        with self._guard:
            for key in [key for key in self._cache if key[0] == tenant_id]:
                del self._cache[key]

    def _fresh(self, key: tuple[str, str, str], revision: int) -> AccessToken | None:
        with self._guard:
            cached = self._cache.get(key)
        if cached is None or cached.revision != revision:
            return None
        if cached.expires_at - self._clock.now() <= _REFRESH_MARGIN_SECONDS:
            return None
        return cached

    def _lock_for(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _request(self, key: tuple[str, str, str]) -> AccessToken:
        credential = self._open(key)
        if credential.type is CredentialType.REFRESH_TOKEN:
            return self._with_refresh_lease(key, credential)
        return self._exchange(key, credential, self._form(credential))[0]

    def _open(self, key: tuple[str, str, str]) -> StoredCredential:
        try:
            credential = self._vault.open(*key)
        except SecretsKeyError as exc:
            raise ConnectorFailure(ErrorClass.AUTH, "CREDENTIALS_UNREADABLE", str(exc)) from None
        if credential is None:  # deleted between locate and open
            raise ConnectorFailure(
                ErrorClass.AUTH,
                "CREDENTIALS_NOT_CONFIGURED",
                f"no {self._connector} credentials for this tenant or account",
            )
        return credential

    def _with_refresh_lease(self, key: tuple[str, str, str], credential: StoredCredential) -> AccessToken:
        owner = uuid.uuid4().hex
        lease = self._timeout + 5.0
        deadline = time.monotonic() + lease
        while not self._vault.take_refresh_lease(credential, owner, lease):
            if time.monotonic() > deadline:
                raise ConnectorFailure(
                    ErrorClass.DOWNSTREAM,
                    "TOKEN_REFRESH_IN_PROGRESS",
                    "another process is exchanging this refresh token; try again",
                )
            time.sleep(_LEASE_WAIT_POLL_SECONDS)
        try:
            credential = self._open(key)  # the refresh token may have been rotated meanwhile
            token, answer = self._exchange(key, credential, self._form(credential))
            rotated = answer.get("refresh_token")
            if isinstance(rotated, str) and rotated and rotated != credential.secret("refresh_token"):
                self._vault.store_rotated_refresh_token(credential, rotated, owner)
            return token
        finally:
            self._vault.release_refresh_lease(credential, owner)

    def _form(self, credential: StoredCredential) -> dict[str, str]:
        if credential.type is CredentialType.CLIENT_CREDENTIALS:
            return {
                "grant_type": "client_credentials",
                "client_id": credential.client_id,
                "client_secret": credential.secret("client_secret") or "",
            }
        if credential.type is CredentialType.JWT_BEARER:
            now = int(self._clock.now())
            assertion = jwt.encode(
                {
                    "iss": credential.client_id,
                    "sub": credential.username,
                    "aud": credential.audience or self._login_url(credential),
                    "exp": now + _ASSERTION_SECONDS,
                },
                credential.secret("private_key") or "",
                algorithm="RS256",
            )
            return {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
        form = {
            "grant_type": "refresh_token",
            "refresh_token": credential.secret("refresh_token") or "",
            "client_id": credential.client_id,
        }
        client_secret = credential.secret("client_secret")
        if client_secret:
            form["client_secret"] = client_secret
        return form

    def _login_url(self, credential: StoredCredential) -> str:
        if credential.login_url is None:
            return self._default_login_url  # the operator's, not the tenant's
        # Checked again here, not only when stored: the platform's list may have shrunk since,
        # and a credential stored before the list existed was never checked.
        try:
            return self._login_policy.check_login_url(credential.login_url)
        except TenantUrlRefused as exc:
            raise ConnectorFailure(
                ErrorClass.VALIDATION, "LOGIN_URL_REFUSED", f"the credential's login_url is refused: {exc}"
            ) from None

    def _exchange(
        self, key: tuple[str, str, str], credential: StoredCredential, form: dict[str, str]
    ) -> tuple[AccessToken, dict[str, Any]]:
        url = f"{self._login_url(credential)}/services/oauth2/token"
        self.requests += 1
        try:
            response = bounded_request(
                self._http,
                "POST",
                url,
                deadline_seconds=self._timeout,
                max_bytes=TOKEN_ANSWER_BYTES,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except EgressRefused as exc:
            raise egress_failure(exc) from None
        except AnswerTooLarge as exc:
            raise ConnectorFailure(
                ErrorClass.DOWNSTREAM,
                "OAUTH_ANSWER_TOO_LARGE",
                f"the OAuth token endpoint answered {exc.reason}; the rest was not read",
            ) from None
        except httpx.TimeoutException:
            raise ConnectorFailure(
                ErrorClass.TIMEOUT, "OAUTH_TIMEOUT", "the OAuth token endpoint did not answer in time"
            ) from None
        except httpx.TransportError:
            raise ConnectorFailure(
                ErrorClass.DOWNSTREAM, "OAUTH_UNREACHABLE", "the OAuth token endpoint cannot be reached"
            ) from None
        answer = _json_object(response)
        if response.status_code != 200:
            raise _oauth_failure(response.status_code, answer, credential.type)
        value = answer.get("access_token")
        instance_url = answer.get("instance_url")
        if not isinstance(value, str) or not value or not isinstance(instance_url, str) or not instance_url:
            raise ConnectorFailure(
                ErrorClass.UNKNOWN,
                "OAUTH_INVALID_RESPONSE",
                "the OAuth token endpoint answered without access_token or instance_url",
            )
        expires_in = answer.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else self._ttl
        token = AccessToken(
            value=value,
            instance_url=instance_url.rstrip("/"),
            expires_at=self._clock.now() + min(lifetime, self._ttl),
            cache_key=key,
            revision=credential.revision,
        )
        return token, answer


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


_SAFE = re.compile(r"[^A-Za-z0-9 _.,:;()/'-]")


# The error codes an OAuth server answers (RFC 6749 §5.2, and Salesforce's own). Only an answer
# with one of them is read further: anything else is the text of something that is not an OAuth
# server, and none of it is repeated in an execution's error.
OAUTH_ERROR_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
        "invalid_client_id",
        "invalid_client_credentials",
        "inactive_user",
        "inactive_org",
        "rate_limit_exceeded",
        "invalid_app_access",
        "invalid_assertion_type",
        "unknown_error",
    }
)


def _oauth_failure(status: int, answer: dict[str, Any], grant: CredentialType) -> ConnectorFailure:
    raw_error = answer.get("error")
    error = raw_error if isinstance(raw_error, str) and raw_error in OAUTH_ERROR_CODES else ""
    description = _SAFE.sub("", str(answer.get("error_description") or ""))[:200] if error else ""
    code = "OAUTH_" + (error.upper() or f"HTTP_{status}")
    detail = f"{error} ({description})" if description else error or f"HTTP {status}"
    if status == 429:
        return ConnectorFailure(
            ErrorClass.RATE_LIMIT, code, f"the OAuth token endpoint is rate limiting: {detail}"
        )
    if status >= 500:
        return ConnectorFailure(ErrorClass.DOWNSTREAM, code, f"the OAuth token endpoint failed: {detail}")
    return ConnectorFailure(
        ErrorClass.AUTH, code, f"the OAuth server refused the {grant.value} credentials: {detail}"
    )
