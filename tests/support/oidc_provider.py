"""A small, real OpenID Connect provider on 127.0.0.1 for the console's login tests.

A thread runs an HTTP server with discovery (``/.well-known/openid-configuration``), a JWKS with
one RSA key, ``/authorize`` (no login screen: it redirects back at once with a code for the
configured user, or with the configured error, and records the request with its
``code_challenge``), ``/token`` (authorization code grant: the code must be unused and issued to
this client and redirect URI, the PKCE ``code_verifier`` must match the S256 challenge, and a
confidential client must authenticate with HTTP Basic; it answers an RS256 ID token and access
token) and ``/logout``. Tests tamper with what it issues through its attributes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class RsaKey:
    kid: str
    private_key: Any = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    @property
    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return jwk

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})


@dataclass
class User:
    sub: str = "user-1"
    # Claims both tokens carry (e.g. tenant_id, or custom:tenant_id and cognito:groups).
    claims: dict[str, Any] = field(default_factory=dict)
    # The access token's scope claim; None: no scope claim.
    scope: str | None = None


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    user: User
    used: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class OidcProvider:
    def __init__(
        self,
        *,
        client_id: str = "console",
        client_secret: str | None = None,
        redirect_uris: list[str] | None = None,
        api_audience: str = "fulfill-api",
        end_session: bool = True,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = list(redirect_uris or [])
        self.api_audience = api_audience
        self.end_session = end_session
        self.key = RsaKey("provider-key")
        self.user = User(claims={"tenant_id": "t1"}, scope="executions:read intents:read")
        # Tampering: an error /authorize answers instead of a code; claims overriding the ID
        # token's (None removes one); another key that signs the ID token; a JWKS endpoint that
        # answers this status instead of the keys.
        self.authorize_error: str | None = None
        self.jwks_status = 200
        # Like providers whose access tokens are opaque unless an API (resource) is configured.
        self.opaque_access_token = False
        self.id_token_overrides: dict[str, Any] = {}
        self.id_token_key: RsaKey | None = None
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.issued: list[dict[str, Any]] = []
        self.refusals: list[str] = []
        self.logouts: list[dict[str, str]] = []
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                provider._get(self)

            def do_POST(self) -> None:
                provider._post(self)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Back to honest answers for the configured user."""
        with self._lock:
            self.authorize_error = None
            self.id_token_overrides = {}
            self.id_token_key = None
            self.jwks_status = 200
            self.opaque_access_token = False
            self.user = User(claims={"tenant_id": "t1"}, scope="executions:read intents:read")

    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
            "scopes_supported": ["openid", "profile", "email"],
        }
        if self.end_session:
            metadata["end_session_endpoint"] = f"{self.issuer}/logout"
        return metadata

    # --- HTTP ----------------------------------------------------------------------------------

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        if url.path == "/.well-known/openid-configuration":
            _json(handler, 200, self.metadata())
        elif url.path == "/jwks":
            if self.jwks_status != 200:
                _json(handler, self.jwks_status, {"error": "unavailable"})
            else:
                _json(handler, 200, {"keys": [self.key.jwk]})
        elif url.path == "/authorize":
            self._authorize(handler, query)
        elif url.path == "/logout":
            with self._lock:
                self.logouts.append(query)
            _json(handler, 200, {"signed_out": True})
        else:
            _json(handler, 404, {"error": "not_found"})

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        form = {name: values[0] for name, values in parse_qs(handler.rfile.read(length).decode()).items()}
        if urlparse(handler.path).path != "/token":
            _json(handler, 404, {"error": "not_found"})
            return
        status, body = self._token(form, handler.headers.get("Authorization"))
        _json(handler, status, body)

    def _authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        with self._lock:
            self.authorize_requests.append(query)
            error, user = self.authorize_error, self.user
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            _json(
                handler, 400, {"error": "invalid_request", "error_description": "unknown client or redirect"}
            )
            return
        answer: dict[str, str]
        if error:
            answer = {"error": error, "error_description": "The user declined."}
        elif query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            answer = {"error": "invalid_request", "error_description": "code flow with S256 PKCE only"}
        elif not query.get("code_challenge"):
            answer = {"error": "invalid_request", "error_description": "code_challenge required"}
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._grants[code] = _Grant(
                    client_id=query["client_id"],
                    redirect_uri=redirect_uri,
                    code_challenge=query["code_challenge"],
                    nonce=query.get("nonce"),
                    user=user,
                )
            answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        handler.send_response(302)
        handler.send_header("Location", f"{redirect_uri}?{urlencode(answer)}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_requests.append(form)
            if not self._client_authenticated(form, authorization):
                return self._refuse(401, "invalid_client", "client authentication failed")
            if form.get("grant_type") != "authorization_code":
                return self._refuse(400, "unsupported_grant_type", "authorization_code only")
            grant = self._grants.get(form.get("code", ""))
            if grant is None:
                return self._refuse(400, "invalid_grant", "unknown code")
            if grant.used:
                return self._refuse(400, "invalid_grant", "code already used")
            grant.used = True  # single use, whatever follows
            if grant.client_id != self.client_id or grant.redirect_uri != form.get("redirect_uri"):
                return self._refuse(400, "invalid_grant", "redirect_uri does not match")
            verifier = form.get("code_verifier", "")
            if not verifier or s256(verifier) != grant.code_challenge:
                return self._refuse(400, "invalid_grant", "code_verifier does not match")
            answer = self._tokens(grant)
            self.issued.append(answer)
            return 200, answer

    def _client_authenticated(self, form: dict[str, str], authorization: str | None) -> bool:
        if self.client_secret is None:  # a public client names itself
            return form.get("client_id") == self.client_id and authorization is None
        if not authorization or not authorization.startswith("Basic "):
            return False
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        return secrets.compare_digest(authorization.removeprefix("Basic "), expected)

    def _refuse(self, status: int, error: str, reason: str) -> tuple[int, dict[str, Any]]:
        self.refusals.append(reason)
        return status, {"error": error, "error_description": reason}

    def _tokens(self, grant: _Grant) -> dict[str, Any]:
        now = int(time.time())
        common = {
            "iss": self.issuer,
            "sub": grant.user.sub,
            "iat": now,
            "exp": now + 3600,
            **grant.user.claims,
        }
        access: dict[str, Any] = {**common, "aud": self.api_audience, "client_id": self.client_id}
        if grant.user.scope is not None:
            access["scope"] = grant.user.scope
        identity: dict[str, Any] = {
            **common,
            "aud": self.client_id,
            "email": f"{grant.user.sub}@example.test",
        }
        if grant.nonce is not None:
            identity["nonce"] = grant.nonce
        for name, value in self.id_token_overrides.items():
            if value is None:
                identity.pop(name, None)
            else:
                identity[name] = value
        signer = self.id_token_key or self.key
        return {
            "access_token": secrets.token_urlsafe(32) if self.opaque_access_token else self.key.sign(access),
            "token_type": "Bearer",
            "expires_in": 3600,
            "id_token": signer.sign(identity),
            "scope": "openid profile email",
        }


def _json(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Cache-Control", "no-store")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
