"""Production auth: RS256/ES256 user tokens verified with keys from a JWKS URL, next to the engine's
HS256 service tokens. The JWKS is served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from fulfill import tokens
from fulfill.config import Settings
from fulfill.domain.scopes import Scope
from fulfill.tokens import ServiceTokens, TokenError, TokenVerifier, mint_service_token
from tests.support.serving import serve_in_thread

ISSUER = "https://idp.test"
AUDIENCE = "fulfill-api"
DEV_SECRET = "unit-secret-0123456789abcdef0123456789"
SERVICE_SECRET = "service-secret-0123456789abcdef0123456789"
USER_SCOPES = "intents:write intents:read intents:approve executions:read"


# --- a JWKS endpoint ---------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class JwksServer:
    """Serves ``{"keys": [...]}`` at ``/jwks``; the key set can be swapped (rotation) and the
    answer broken (``status`` other than 200, or a ``body`` that is not a JWK set)."""

    def __init__(self, keys: list[dict[str, Any]] | None = None) -> None:
        self.keys: list[dict[str, Any]] = list(keys or [])
        self.status = 200
        self.body: bytes | None = None
        self.requests = 0
        self._lock = threading.Lock()
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with jwks._lock:
                    jwks.requests += 1
                    status, keys, body = jwks.status, list(jwks.keys), jwks.body
                payload = body if body is not None else json.dumps({"keys": keys}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = serve_in_thread(self._server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/jwks"

    def publish(self, *keys: SigningKey) -> None:
        with self._lock:
            self.keys = [key.jwk for key in keys]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class SigningKey:
    kid: str
    alg: str
    private_key: Any
    jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any] | None = None, *, alg: str | None = None, **headers: Any) -> str:
        return jwt.encode(
            claims if claims is not None else user_claims(),
            self.private_key,
            algorithm=alg or self.alg,
            headers={"kid": self.kid, **headers},
        )


def rsa_key(kid: str = "rsa-1", *, jwk_alg: str | None = "RS256") -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig"})
    if jwk_alg:
        jwk["alg"] = jwk_alg
    return SigningKey(kid, "RS256", private, jwk)


def ec_key(kid: str = "ec-1", *, jwk_alg: str | None = "ES256") -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig"})
    if jwk_alg:
        jwk["alg"] = jwk_alg
    return SigningKey(kid, "ES256", private, jwk)


def user_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": "t1",
        "scope": USER_SCOPES,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None = None) -> str:
    """A token built without PyJWT (which refuses to sign HS256 with a PEM key, or to write odd algs)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b""
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def production_settings(jwks_url: str, /, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_mode": "production",
        "jwks_url": jwks_url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_secret": DEV_SECRET,
        "service_token_secret": SERVICE_SECRET,
    }
    values.update(overrides)
    return Settings(**values)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa1() -> SigningKey:
    return rsa_key("rsa-1")


@pytest.fixture(scope="module")
def rsa2() -> SigningKey:
    return rsa_key("rsa-2")


@pytest.fixture(scope="module")
def ec1() -> SigningKey:
    return ec_key("ec-1")


@pytest.fixture
def jwks(rsa1: SigningKey, ec1: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer([rsa1.jwk, ec1.jwk])
    yield server
    server.close()


@pytest.fixture
def settings(jwks: JwksServer) -> Settings:
    return production_settings(jwks.url)


@pytest.fixture
def verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(settings)


def dev_settings(**overrides: Any) -> Settings:
    return Settings(jwt_secret=DEV_SECRET, **overrides)


# --- user tokens from the identity provider ----------------------------------------------------


def test_rs256_token_accepted(verifier: TokenVerifier, rsa1: SigningKey) -> None:
    principal = verifier.verify(rsa1.sign(user_claims(account_ids=["acc-1"])))
    assert principal.subject == "user-1"
    assert principal.tenant_id == "t1"
    assert principal.scopes == frozenset(USER_SCOPES.split())
    assert principal.account_ids == frozenset({"acc-1"})
    assert principal.claims["iss"] == ISSUER


def test_es256_token_accepted(verifier: TokenVerifier, ec1: SigningKey) -> None:
    principal = verifier.verify(ec1.sign(user_claims(**{"tenant_id": None, "custom:tenant_id": "t7"})))
    assert principal.tenant_id == "t7"
    assert principal.has_scope("intents:write")


def test_jwk_without_alg_field_still_verifies_its_own_algorithm() -> None:
    key = rsa_key("bare", jwk_alg=None)
    server = JwksServer([key.jwk])
    try:
        assert TokenVerifier(production_settings(server.url)).verify(key.sign()).tenant_id == "t1"
    finally:
        server.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "https://evil.test"}, r"^token issuer not accepted$"),
        ({"aud": "someone-else"}, r"^token audience not accepted$"),
        ({"exp": int(time.time()) - 60}, r"^token expired$"),
        ({"exp": None}, r"^token lacks the required claim 'exp'$"),
        ({"iss": None}, r"^token lacks the required claim 'iss'$"),
        ({"aud": None}, r"^token lacks the required claim 'aud'$"),
        ({"sub": None}, r"^token lacks the required claim 'sub'$"),
        ({"tenant_id": None}, r"^token carries no tenant$"),
        ({"account_ids": "{not json"}, r"^token account_ids claim is malformed$"),
    ],
)
@pytest.mark.parametrize("key_name", ["rsa1", "ec1"])
def test_bad_claims_rejected(
    verifier: TokenVerifier,
    request: pytest.FixtureRequest,
    key_name: str,
    overrides: dict[str, Any],
    message: str,
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    with pytest.raises(TokenError, match=message):
        verifier.verify(key.sign(user_claims(**overrides)))


def test_tampered_signature_rejected(verifier: TokenVerifier, rsa1: SigningKey) -> None:
    head, _body, signature = rsa1.sign().split(".")
    forged_body = b64(json.dumps(user_claims(tenant_id="t2")).encode())
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        verifier.verify(f"{head}.{forged_body}.{signature}")


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "e30.e30.", "..."])
def test_garbage_rejected(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(TokenError, match=r"^token malformed \(not a JWT\)$"):
        verifier.verify(token)


# --- algorithms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("mode", ["dev", "production"])
def test_alg_none_always_rejected(jwks: JwksServer, mode: str, alg: str) -> None:
    if mode == "production":
        settings, claims = production_settings(jwks.url), user_claims()
    else:
        settings = dev_settings()
        claims = user_claims(iss=settings.jwt_issuer, aud=settings.jwt_audience)
    verifier = TokenVerifier(settings)
    for issuer in (claims["iss"], "fulfill-service"):
        token = hand_made_token({"alg": alg, "typ": "JWT"}, {**claims, "iss": issuer})
        with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
            verifier.verify(token)
    assert jwks.requests == 0


def test_pyjwt_unsigned_token_rejected(verifier: TokenVerifier) -> None:
    token = jwt.encode(user_claims(), "", algorithm="none")
    with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
        verifier.verify(token)


@pytest.mark.parametrize("secret", [DEV_SECRET, SERVICE_SECRET])
def test_hs256_user_token_rejected_in_production(
    verifier: TokenVerifier, jwks: JwksServer, secret: str
) -> None:
    token = jwt.encode(user_claims(), secret, algorithm="HS256")
    with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
        verifier.verify(token)
    assert jwks.requests == 0


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS384", "RS512", "PS256", "ES384", "EdDSA"])
def test_other_algorithms_rejected_in_production(verifier: TokenVerifier, rsa1: SigningKey, alg: str) -> None:
    token = hand_made_token({"alg": alg, "kid": rsa1.kid}, user_claims(), hmac_key=b"x" * 32)
    with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
        verifier.verify(token)


def test_hs_rs_key_confusion_rejected(jwks: JwksServer, rsa1: SigningKey) -> None:
    """An HS256 token whose HMAC secret is the published RSA public key must never verify."""
    pem = rsa1.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa1.kid}
    confused = hand_made_token(header, user_claims(), hmac_key=pem)
    as_service = hand_made_token(header, user_claims(iss="fulfill-service"), hmac_key=pem)

    production = TokenVerifier(production_settings(jwks.url))
    with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
        production.verify(confused)
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        production.verify(as_service)
    # Dev mode with an identity provider configured: HS256 still means the dev secret, only.
    dev = TokenVerifier(dev_settings(jwks_url=jwks.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        dev.verify(confused)
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        dev.verify(as_service)
    assert jwks.requests == 0


def test_rsa_key_never_verifies_an_es256_header(
    verifier: TokenVerifier, rsa1: SigningKey, ec1: SigningKey
) -> None:
    # Signed by a real EC key, but naming the RSA key's kid.
    token = ec1.sign(kid=rsa1.kid)
    with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
        verifier.verify(token)
    # And the other way round.
    with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
        verifier.verify(rsa1.sign(kid=ec1.kid))


def test_jwk_without_alg_is_bound_to_its_key_type() -> None:
    rsa_bare, ec_bare = rsa_key("rsa-bare", jwk_alg=None), ec_key("ec-bare", jwk_alg=None)
    server = JwksServer([rsa_bare.jwk, ec_bare.jwk])
    try:
        verifier = TokenVerifier(production_settings(server.url))
        assert verifier.verify(rsa_bare.sign()).subject == "user-1"
        assert verifier.verify(ec_bare.sign()).subject == "user-1"
        with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
            verifier.verify(ec_bare.sign(kid=rsa_bare.kid))
        with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
            verifier.verify(rsa_bare.sign(kid=ec_bare.kid))
    finally:
        server.close()


def test_jwk_alg_must_equal_the_header_alg() -> None:
    """An RSA key published for PS256 does not verify RS256 tokens, though the key itself could."""
    key = rsa_key("ps", jwk_alg="PS256")
    server = JwksServer([key.jwk])
    try:
        with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
            TokenVerifier(production_settings(server.url)).verify(key.sign())
    finally:
        server.close()


def test_encryption_keys_are_not_signing_keys(rsa1: SigningKey) -> None:
    server = JwksServer([{**rsa1.jwk, "use": "enc"}, ec_key("other").jwk])
    try:
        with pytest.raises(TokenError, match=r"^token signing key not found$"):
            TokenVerifier(production_settings(server.url)).verify(rsa1.sign())
    finally:
        server.close()


def test_token_without_kid_rejected_without_a_fetch(
    verifier: TokenVerifier, jwks: JwksServer, rsa1: SigningKey
) -> None:
    token = jwt.encode(user_claims(), rsa1.private_key, algorithm="RS256")
    with pytest.raises(TokenError, match=r"^token signing key not found$"):
        verifier.verify(token)
    assert jwks.requests == 0


def test_embedded_jwk_and_jku_headers_are_ignored(verifier: TokenVerifier, jwks: JwksServer) -> None:
    attacker = rsa_key("rsa-1")  # same kid as the published key, different key
    token = attacker.sign(jwk=attacker.jwk, jku="http://127.0.0.1:9/evil-jwks")
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        verifier.verify(token)
    assert jwks.requests == 1


# --- dev mode ------------------------------------------------------------------------------------


def test_dev_mode_rejects_asymmetric_tokens_without_jwks_url(rsa1: SigningKey, ec1: SigningKey) -> None:
    verifier = TokenVerifier(dev_settings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    for key in (rsa1, ec1):
        with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
            verifier.verify(key.sign())


def test_dev_mode_with_jwks_url_accepts_idp_and_dev_tokens(jwks: JwksServer, rsa1: SigningKey) -> None:
    settings = dev_settings(jwks_url=jwks.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    verifier = TokenVerifier(settings)
    assert verifier.verify(rsa1.sign()).subject == "user-1"
    dev_token = tokens.mint_token(settings, tenant_id="t3", scopes=["intents:read"])
    assert verifier.verify(dev_token).tenant_id == "t3"


# --- key cache, refresh and outages ------------------------------------------------------------


def test_keys_are_cached(
    verifier: TokenVerifier, jwks: JwksServer, rsa1: SigningKey, ec1: SigningKey
) -> None:
    for _ in range(25):
        verifier.verify(rsa1.sign())
        verifier.verify(ec1.sign())
    assert jwks.requests == 1


def test_concurrent_first_use_fetches_once(
    verifier: TokenVerifier, jwks: JwksServer, rsa1: SigningKey
) -> None:
    token = rsa1.sign()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        try:
            for _ in range(5):
                verifier.verify(token)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert jwks.requests == 1


def test_cache_expires_after_jwks_cache_seconds(jwks: JwksServer, rsa1: SigningKey, ec1: SigningKey) -> None:
    verifier = TokenVerifier(production_settings(jwks.url, jwks_cache_seconds=0.2))
    verifier.verify(rsa1.sign())
    assert jwks.requests == 1
    # The identity provider withdraws the RSA key: once the cached set expires it is no longer trusted.
    jwks.publish(ec1)
    time.sleep(0.3)
    with pytest.raises(TokenError, match=r"^token signing key not found$"):
        verifier.verify(rsa1.sign())
    assert verifier.verify(ec1.sign()).subject == "user-1"
    assert jwks.requests >= 2


def test_unknown_kid_refreshes_once_and_accepts_a_rotated_key(
    jwks: JwksServer, rsa1: SigningKey, rsa2: SigningKey
) -> None:
    verifier = TokenVerifier(production_settings(jwks.url), jwks_refresh_cooldown_seconds=0)
    verifier.verify(rsa1.sign())
    assert jwks.requests == 1
    jwks.publish(rsa1, rsa2)  # rotation: the new key is published
    assert verifier.verify(rsa2.sign()).subject == "user-1"
    assert jwks.requests == 2
    for _ in range(5):  # both keys now served from the cache
        verifier.verify(rsa1.sign())
        verifier.verify(rsa2.sign())
    assert jwks.requests == 2


def test_still_unknown_kid_is_not_found(jwks: JwksServer) -> None:
    verifier = TokenVerifier(production_settings(jwks.url), jwks_refresh_cooldown_seconds=0)
    stranger = rsa_key("never-published")
    with pytest.raises(TokenError, match=r"^token signing key not found$"):
        verifier.verify(stranger.sign())
    # One fetch for the set, then exactly one refresh for the unknown kid.
    assert jwks.requests == 2


def test_unknown_kid_refresh_respects_the_cooldown(
    jwks: JwksServer, rsa1: SigningKey, rsa2: SigningKey
) -> None:
    """PyJWT refreshes for an unknown kid at most once per cooldown (counted from the last fetch)."""
    # A window of 1 s, the token signed before it opens: the burst below must fit in the window
    # on a loaded machine too.
    verifier = TokenVerifier(production_settings(jwks.url), jwks_refresh_cooldown_seconds=1.0)
    token = rsa2.sign()
    verifier.verify(rsa1.sign())
    jwks.publish(rsa1, rsa2)
    for _ in range(10):  # a burst of made-up or not-yet-fetched kids costs no requests
        with pytest.raises(TokenError, match=r"^token signing key not found$"):
            verifier.verify(token)
    assert jwks.requests == 1
    time.sleep(1.05)
    assert verifier.verify(token).subject == "user-1"
    assert jwks.requests == 2


def test_default_cooldown_is_thirty_seconds(
    verifier: TokenVerifier, jwks: JwksServer, rsa1: SigningKey
) -> None:
    verifier.verify(rsa1.sign())
    client = verifier._jwks_client
    assert client is not None
    assert client.cooldown_duration == tokens.JWKS_REFRESH_COOLDOWN_SECONDS == 30.0
    assert client.jwk_set_cache is not None
    assert client.jwk_set_cache.lifespan == 300.0


def test_jwks_server_down(
    rsa1: SigningKey, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = JwksServer([rsa1.jwk])
    url = server.url
    server.close()
    monkeypatch.setattr(tokens, "JWKS_FAILURE_BACKOFF_SECONDS", 0.0)
    verifier = TokenVerifier(production_settings(url))
    with (
        caplog.at_level(logging.WARNING, logger="fulfill.auth"),
        pytest.raises(TokenError, match=r"^token signing keys unavailable$"),
    ):
        verifier.verify(rsa1.sign())
    records = [r for r in caplog.records if r.name == "fulfill.auth"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert rsa1.jwk["n"] not in caplog.text


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b"{}"),
        (404, b"not found"),
        (200, b"<html>not json</html>"),
        (200, b"[]"),
        (200, b'{"keys": []}'),
        (200, b'{"keys": [{"kty": "nonsense"}]}'),
    ],
)
def test_broken_jwks_answers_mean_unavailable(
    rsa1: SigningKey, caplog: pytest.LogCaptureFixture, status: int, body: bytes
) -> None:
    server = JwksServer([rsa1.jwk])
    server.status, server.body = status, body
    try:
        with (
            caplog.at_level(logging.WARNING, logger="fulfill.auth"),
            pytest.raises(TokenError, match=r"^token signing keys unavailable$"),
        ):
            TokenVerifier(production_settings(server.url)).verify(rsa1.sign())
        assert "could not fetch the token signing keys" in caplog.text
    finally:
        server.close()


def test_failed_fetch_backs_off_then_recovers(
    jwks: JwksServer, rsa1: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "JWKS_FAILURE_BACKOFF_SECONDS", 1.0)
    verifier = TokenVerifier(production_settings(jwks.url))
    token = rsa1.sign()  # signed once: the tries below must fit in the backoff on a loaded machine
    jwks.status = 503
    for _ in range(5):
        with pytest.raises(TokenError, match=r"^token signing keys unavailable$"):
            verifier.verify(token)
    assert jwks.requests == 1  # the backoff keeps the others from reaching the identity provider
    jwks.status = 200
    time.sleep(1.05)
    assert verifier.verify(token).subject == "user-1"
    assert jwks.requests == 2


def test_cached_keys_keep_working_while_a_refresh_fails(
    jwks: JwksServer, rsa1: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "JWKS_FAILURE_BACKOFF_SECONDS", 60.0)
    verifier = TokenVerifier(production_settings(jwks.url), jwks_refresh_cooldown_seconds=0)
    verifier.verify(rsa1.sign())
    jwks.status = 503
    with pytest.raises(TokenError, match=r"^token signing keys unavailable$"):
        verifier.verify(rsa_key("rotated").sign())  # the forced refresh fails
    assert verifier.verify(rsa1.sign()).subject == "user-1"  # the cached key still verifies
    assert jwks.requests == 2


def test_leeway_applies_to_identity_provider_tokens(jwks: JwksServer, rsa1: SigningKey) -> None:
    now = int(time.time())
    ten_seconds_late = rsa1.sign(user_claims(iat=now - 600, exp=now - 10))
    forty_seconds_late = rsa1.sign(user_claims(iat=now - 600, exp=now - 40))
    assert TokenVerifier(production_settings(jwks.url)).verify(ten_seconds_late).subject == "user-1"
    with pytest.raises(TokenError, match=r"^token expired$"):
        TokenVerifier(production_settings(jwks.url)).verify(forty_seconds_late)
    with pytest.raises(TokenError, match=r"^token expired$"):
        TokenVerifier(production_settings(jwks.url, jwt_leeway_seconds=0)).verify(ten_seconds_late)


# --- service tokens ------------------------------------------------------------------------------

BINDING = {
    "tenant_id": "t1",
    "account_id": "acc-1",
    "action_intent_id": "ai_1",
    "idempotency_key": "k" * 64,
}


def service_token(settings: Settings, **overrides: Any) -> str:
    return mint_service_token(settings, **{**BINDING, **overrides})


def test_service_tokens_verify_in_production(
    settings: Settings, verifier: TokenVerifier, jwks: JwksServer
) -> None:
    token = ServiceTokens(settings).token_for_call({**BINDING, "title": "x"})
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    for principal in (verifier.verify(token), verifier.verify_service(token)):
        assert principal.subject == "fulfill-engine"
        assert principal.tenant_id == "t1"
        assert principal.scopes == frozenset({Scope.GATEWAY_INVOKE})
        assert principal.claims["iss"] == "fulfill-service"
        assert principal.claims["aud"] == AUDIENCE
        assert principal.claims["exp"] - principal.claims["iat"] == settings.service_token_ttl_seconds
        assert {name: principal.claims[name] for name in BINDING} == BINDING
    assert jwks.requests == 0  # service tokens never need the identity provider


def test_service_tokens_are_minted_per_call_and_bound_to_it(settings: Settings) -> None:
    service = ServiceTokens(settings)
    first = jwt.decode(service.token_for_call(BINDING), options={"verify_signature": False})
    other = jwt.decode(
        service.token_for_call({**BINDING, "idempotency_key": "j" * 64}), options={"verify_signature": False}
    )
    assert {name: first[name] for name in BINDING} == BINDING
    assert other["idempotency_key"] == "j" * 64
    assert "title" not in jwt.decode(
        service.token_for_call({**BINDING, "title": "not a claim"}), options={"verify_signature": False}
    )


def test_a_service_token_outlives_its_calls_timeout(settings: Settings) -> None:
    claims = jwt.decode(
        ServiceTokens(settings).token_for_call(BINDING, timeout_seconds=500.2),
        options={"verify_signature": False},
    )
    assert claims["exp"] - claims["iat"] == 501 + tokens.SERVICE_TOKEN_MARGIN_SECONDS


@pytest.mark.parametrize("missing", list(BINDING))
def test_a_call_without_its_trusted_arguments_gets_no_token(settings: Settings, missing: str) -> None:
    for arguments in ({k: v for k, v in BINDING.items() if k != missing}, {**BINDING, missing: ""}):
        with pytest.raises(TokenError, match=f"trusted argument\\(s\\): {missing}$"):
            ServiceTokens(settings).token_for_call(arguments)


@pytest.mark.parametrize("missing", list(BINDING))
def test_service_tokens_without_their_binding_claims_rejected(verifier: TokenVerifier, missing: str) -> None:
    claims = {**user_claims(iss="fulfill-service", scope=Scope.GATEWAY_INVOKE), **BINDING}
    del claims[missing]
    token = jwt.encode(claims, SERVICE_SECRET, algorithm="HS256")
    for verify in (verifier.verify, verifier.verify_service):
        with pytest.raises(TokenError, match=r"^token binding claims missing$"):
            verify(token)


def test_verify_service_refuses_user_tokens(jwks: JwksServer, rsa1: SigningKey) -> None:
    settings = production_settings(jwks.url)
    verifier = TokenVerifier(settings)
    admin = rsa1.sign(user_claims(scope=f"admin platform:admin {Scope.GATEWAY_INVOKE}", **BINDING))
    assert verifier.verify(admin).has_scope(Scope.GATEWAY_INVOKE)  # a valid user token...
    with pytest.raises(TokenError, match=r"^a service token is required$"):
        verifier.verify_service(admin)  # ...is no service token
    dev = dev_settings()
    dev_token = tokens.mint_token(dev, tenant_id="t1", scopes=[Scope.GATEWAY_INVOKE, "admin"])
    with pytest.raises(TokenError, match=r"^a service token is required$"):
        TokenVerifier(dev).verify_service(dev_token)
    with pytest.raises(TokenError, match=r"^token malformed \(not a JWT\)$"):
        TokenVerifier(dev).verify_service("garbage")


def test_service_token_with_wrong_secret_rejected(verifier: TokenVerifier, settings: Settings) -> None:
    forged = service_token(settings.model_copy(update={"service_token_secret": "w" * 40}))
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        verifier.verify(forged)
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        verifier.verify_service(forged)
    # The user-token secret is not the service secret (in production, or in dev mode once set).
    signed_with_user_secret = jwt.encode(
        {**user_claims(iss="fulfill-service", scope=Scope.GATEWAY_INVOKE), **BINDING},
        DEV_SECRET,
        algorithm="HS256",
    )
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        verifier.verify(signed_with_user_secret)
    separate = dev_settings(service_token_secret=SERVICE_SECRET)
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        TokenVerifier(separate).verify_service(signed_with_user_secret)


def test_service_token_checks_audience_and_expiry(verifier: TokenVerifier, settings: Settings) -> None:
    expired = service_token(settings, ttl_seconds=60, now=time.time() - 3600)
    with pytest.raises(TokenError, match=r"^token expired$"):
        verifier.verify_service(expired)
    # No leeway for service tokens: the engine mints them for the call it makes right away.
    just_expired = service_token(settings, ttl_seconds=60, now=time.time() - 65)
    with pytest.raises(TokenError, match=r"^token expired$"):
        verifier.verify_service(just_expired)
    other_audience = service_token(settings.model_copy(update={"jwt_audience": "x"}))
    with pytest.raises(TokenError, match=r"^token audience not accepted$"):
        verifier.verify_service(other_audience)


def test_service_tokens_only_ever_carry_the_gateway_scope(verifier: TokenVerifier) -> None:
    token = jwt.encode(
        {
            **user_claims(
                iss="fulfill-service", scope=f"admin platform:admin intents:write {Scope.GATEWAY_INVOKE}"
            ),
            **BINDING,
        },
        SERVICE_SECRET,
        algorithm="HS256",
    )
    assert verifier.verify(token).scopes == frozenset({Scope.GATEWAY_INVOKE})
    assert verifier.verify_service(token).scopes == frozenset({Scope.GATEWAY_INVOKE})


def test_idp_token_claiming_the_service_issuer_rejected(verifier: TokenVerifier, rsa1: SigningKey) -> None:
    with pytest.raises(TokenError, match=r"^token issuer not accepted$"):
        verifier.verify(rsa1.sign(user_claims(iss="fulfill-service")))
    with pytest.raises(TokenError, match=r"^a service token is required$"):
        verifier.verify_service(rsa1.sign({**user_claims(iss="fulfill-service"), **BINDING}))


def test_service_tokens_in_dev_mode_use_the_jwt_secret() -> None:
    settings = dev_settings()
    token = ServiceTokens(settings).token_for_call(BINDING)
    assert jwt.decode(token, DEV_SECRET, algorithms=["HS256"], audience="fulfill")["iss"] == "fulfill-service"
    principal = TokenVerifier(settings).verify_service(token)
    assert principal.scopes == frozenset({Scope.GATEWAY_INVOKE})
    separate = dev_settings(service_token_secret=SERVICE_SECRET)
    token = ServiceTokens(separate).token_for_call(BINDING)
    assert TokenVerifier(separate).verify_service(token).subject == "fulfill-engine"
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        TokenVerifier(settings).verify_service(token)


# --- settings ------------------------------------------------------------------------------------


def test_production_settings_valid(settings: Settings) -> None:
    assert settings.auth_mode == "production"
    assert settings.jwks_cache_seconds == 300.0


def test_defaults_are_dev() -> None:
    settings = Settings()
    assert settings.auth_mode == "dev"
    assert settings.jwks_url == ""
    assert settings.service_token_secret == ""


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwks_url": ""}, "FULFILL_JWKS_URL"),
        ({"jwt_issuer": "fulfill-dev"}, "FULFILL_JWT_ISSUER"),
        ({"service_token_secret": ""}, "FULFILL_SERVICE_TOKEN_SECRET"),
        ({"service_token_secret": "s" * 31}, "at least 32 characters"),
        ({"jwks_url": "file:///etc/passwd"}, "http"),
        ({"jwt_issuer": "fulfill-service"}, "reserved"),
        ({"jwks_cache_seconds": 0}, "greater than 0"),
    ],
)
def test_production_settings_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        production_settings("http://127.0.0.1:9/jwks", **overrides)


def test_production_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_AUTH_MODE", "production")
    monkeypatch.setenv("FULFILL_JWKS_URL", "https://idp.test/.well-known/jwks.json")
    monkeypatch.setenv("FULFILL_JWT_ISSUER", ISSUER)
    with pytest.raises(ValidationError, match="FULFILL_SERVICE_TOKEN_SECRET"):
        Settings()
    monkeypatch.setenv("FULFILL_SERVICE_TOKEN_SECRET", SERVICE_SECRET)
    monkeypatch.setenv("FULFILL_JWKS_CACHE_SECONDS", "60")
    settings = Settings()
    assert settings.auth_mode == "production"
    assert settings.jwks_cache_seconds == 60.0
    assert settings.service_token_secret == SERVICE_SECRET


def test_dev_mode_allows_short_or_missing_service_secret() -> None:
    assert dev_settings(service_token_secret="short").service_token_secret == "short"
    assert dev_settings().service_token_secret == ""


# --- the cache of verified tokens and the key set ---------------------------------------------


def test_a_cached_idp_token_is_refused_once_its_key_set_expires_without_its_key(
    jwks: JwksServer, rsa1: SigningKey, ec1: SigningKey
) -> None:
    verifier = TokenVerifier(production_settings(jwks.url, jwks_cache_seconds=0.2))
    token = rsa1.sign()
    assert verifier.verify(token).subject == "user-1"
    assert verifier.verify(token).subject == "user-1"  # from the cache
    jwks.publish(ec1)  # the identity provider withdraws the RSA key
    time.sleep(0.3)
    with pytest.raises(TokenError, match=r"^token signing key not found$"):
        verifier.verify(token)


def test_a_refreshed_key_set_ends_the_reuse_of_tokens_verified_with_the_old_one(
    jwks: JwksServer, rsa1: SigningKey, rsa2: SigningKey
) -> None:
    verifier = TokenVerifier(production_settings(jwks.url), jwks_refresh_cooldown_seconds=0)
    token = rsa1.sign()
    assert verifier.verify(token).subject == "user-1"
    jwks.publish(rsa2)  # rotation that withdraws rsa-1
    assert verifier.verify(rsa2.sign()).subject == "user-1"  # unknown kid: the set is fetched again
    assert jwks.requests == 2
    with pytest.raises(TokenError, match=r"^token signing key not found$"):
        verifier.verify(token)
