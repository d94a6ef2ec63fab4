from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from fulfill.config import Settings
from fulfill.domain.scopes import Scope
from fulfill.tokens import (
    Principal,
    TokenError,
    TokenVerifier,
    mint_token,
    principal_from_claims,
)

SECRET = "unit-secret-0123456789abcdef0123456789"
OTHER_SECRET = "other-secret-0123456789abcdef0123456789"


@pytest.fixture
def settings() -> Settings:
    return Settings(jwt_secret=SECRET)


def raw_token(settings: Settings, secret: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": "t1",
        "scope": "intents:write",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret or settings.jwt_secret, algorithm="HS256")


def test_round_trip(settings: Settings) -> None:
    token = mint_token(
        settings,
        tenant_id="t1",
        scopes=["intents:write", Scope.GATEWAY_INVOKE, "intents:write"],
        subject="alice",
    )
    principal = TokenVerifier(settings).verify(token)
    assert principal.tenant_id == "t1"
    assert principal.subject == "alice"
    assert principal.scopes == frozenset({"intents:write", Scope.GATEWAY_INVOKE})
    assert principal.has_scope(Scope.GATEWAY_INVOKE)
    assert not principal.has_scope("admin")
    assert principal.account_ids is None
    assert principal.claims["iss"] == "fulfill-dev"
    assert principal.claims["aud"] == "fulfill"


def test_default_subject_and_ttl(settings: Settings) -> None:
    token = mint_token(settings, tenant_id="t1", scopes=[], now=1_000_000_000)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "fulfill-cli"
    assert claims["iat"] == 1_000_000_000
    assert claims["exp"] == 1_000_003_600
    assert claims["scope"] == ""
    assert "account_ids" not in claims


def test_no_scopes_gives_empty_set(settings: Settings) -> None:
    principal = TokenVerifier(settings).verify(mint_token(settings, tenant_id="t1", scopes=[]))
    assert principal.scopes == frozenset()


def test_account_ids_list_round_trip(settings: Settings) -> None:
    token = mint_token(settings, tenant_id="t1", scopes=["s"], account_ids=["a1", "a2", "a1"])
    principal = TokenVerifier(settings).verify(token)
    assert principal.account_ids == frozenset({"a1", "a2"})
    assert principal.may_access_account("a1")
    assert principal.may_access_account("a2")
    assert not principal.may_access_account("a3")


def test_empty_account_ids_allows_no_account(settings: Settings) -> None:
    principal = TokenVerifier(settings).verify(
        mint_token(settings, tenant_id="t1", scopes=[], account_ids=[])
    )
    assert principal.account_ids == frozenset()
    assert not principal.may_access_account("a1")


def test_custom_tenant_id_accepted(settings: Settings) -> None:
    token = raw_token(settings, tenant_id=None, **{"custom:tenant_id": "t9"})
    assert TokenVerifier(settings).verify(token).tenant_id == "t9"


def test_tenant_id_preferred_over_custom(settings: Settings) -> None:
    token = raw_token(settings, tenant_id="t1", **{"custom:tenant_id": "t9"})
    assert TokenVerifier(settings).verify(token).tenant_id == "t1"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({}, None),
        ({"account_ids": ["a1"]}, frozenset({"a1"})),
        ({"account_ids": json.dumps(["a1", "a2"])}, frozenset({"a1", "a2"})),
        ({"account_ids": "[]"}, frozenset()),
        ({"custom:account_ids": json.dumps(["a3"])}, frozenset({"a3"})),
        ({"custom:account_ids": ["a4"]}, frozenset({"a4"})),
    ],
)
def test_account_ids_accepted(
    settings: Settings, claims: dict[str, Any], expected: frozenset[str] | None
) -> None:
    principal = TokenVerifier(settings).verify(raw_token(settings, **claims))
    assert principal.account_ids == expected


@pytest.mark.parametrize(
    "value",
    [
        42,
        ["a1", 2],
        ["a1", ""],
        [None],
        "not json",
        "[1, 2]",
        '"a1"',
        '{"a": 1}',
        {"a1": True},
        True,
    ],
)
def test_account_ids_malformed(settings: Settings, value: Any) -> None:
    token = raw_token(settings, account_ids=value)
    with pytest.raises(TokenError, match="account_ids claim is malformed"):
        TokenVerifier(settings).verify(token)


def test_account_ids_null_is_malformed() -> None:
    with pytest.raises(TokenError, match="account_ids claim is malformed"):
        principal_from_claims({"sub": "s", "tenant_id": "t1", "account_ids": None})


def test_expired(settings: Settings) -> None:
    token = mint_token(settings, tenant_id="t1", scopes=["s"], ttl_seconds=60, now=time.time() - 3600)
    with pytest.raises(TokenError, match=r"^token expired$"):
        TokenVerifier(settings).verify(token)


def test_wrong_issuer(settings: Settings) -> None:
    token = raw_token(settings, iss="someone-else")
    with pytest.raises(TokenError, match="issuer"):
        TokenVerifier(settings).verify(token)


def test_wrong_audience(settings: Settings) -> None:
    token = raw_token(settings, aud="other-service")
    with pytest.raises(TokenError, match="audience"):
        TokenVerifier(settings).verify(token)


def test_wrong_secret(settings: Settings) -> None:
    token = mint_token(Settings(jwt_secret=OTHER_SECRET), tenant_id="t1", scopes=["s"])
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        TokenVerifier(settings).verify(token)


def test_issuer_and_audience_follow_settings() -> None:
    custom = Settings(jwt_secret=SECRET, jwt_issuer="iss-x", jwt_audience="aud-x")
    token = mint_token(custom, tenant_id="t1", scopes=[])
    assert TokenVerifier(custom).verify(token).tenant_id == "t1"
    with pytest.raises(TokenError):
        TokenVerifier(Settings(jwt_secret=SECRET)).verify(token)


@pytest.mark.parametrize("missing", ["exp", "iss", "aud", "sub"])
def test_required_claims(settings: Settings, missing: str) -> None:
    token = raw_token(settings, **{missing: None})
    with pytest.raises(TokenError):
        TokenVerifier(settings).verify(token)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
def test_garbage_token(settings: Settings, token: str) -> None:
    with pytest.raises(TokenError, match=r"^token malformed \(not a JWT\)$"):
        TokenVerifier(settings).verify(token)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_algorithm_rejected(settings: Settings) -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "s", "tenant_id": "t1", "iss": "fulfill-dev", "aud": "fulfill", "exp": now + 60},
        SECRET,
        algorithm="HS512",
    )
    with pytest.raises(TokenError, match=r"^token algorithm not accepted$"):
        TokenVerifier(settings).verify(token)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"sub": "s"}, "no tenant"),
        ({"sub": "s", "tenant_id": ""}, "no tenant"),
        ({"sub": "s", "tenant_id": 5}, "no tenant"),
        ({"tenant_id": "t1"}, "no subject"),
        ({"sub": "", "tenant_id": "t1"}, "no subject"),
        ({"sub": "s", "tenant_id": "t1", "scope": ["a"]}, "scope claim is malformed"),
    ],
)
def test_principal_from_claims_rejects(claims: dict[str, Any], message: str) -> None:
    with pytest.raises(TokenError, match=message):
        principal_from_claims(claims)


def test_scope_is_space_separated() -> None:
    principal = principal_from_claims({"sub": "s", "tenant_id": "t1", "scope": "  a b\tc  "})
    assert principal.scopes == frozenset({"a", "b", "c"})


def test_may_access_account_without_restriction() -> None:
    principal = Principal(subject="s", tenant_id="t1", scopes=frozenset())
    assert principal.may_access_account("anything")


def test_may_access_account_with_restriction() -> None:
    principal = Principal(subject="s", tenant_id="t1", scopes=frozenset(), account_ids=frozenset({"a1"}))
    assert principal.may_access_account("a1")
    assert not principal.may_access_account("a2")
    assert not principal.may_access_account("")


def test_principal_equality_ignores_claims() -> None:
    one = Principal(subject="s", tenant_id="t1", scopes=frozenset({"x"}), claims={"a": 1})
    two = Principal(subject="s", tenant_id="t1", scopes=frozenset({"x"}), claims={"b": 2})
    assert one == two


# --- clock skew: FULFILL_JWT_LEEWAY_SECONDS ------------------------------------------------------


def _expired_ago(settings: Settings, seconds: int) -> str:
    return mint_token(settings, tenant_id="t1", scopes=["s"], ttl_seconds=60, now=time.time() - 60 - seconds)


def test_default_leeway_is_thirty_seconds(settings: Settings) -> None:
    assert settings.jwt_leeway_seconds == 30


def test_a_token_expired_ten_seconds_ago_is_accepted_with_the_default_leeway(settings: Settings) -> None:
    assert TokenVerifier(settings).verify(_expired_ago(settings, 10)).tenant_id == "t1"


def test_a_token_expired_forty_seconds_ago_is_refused_with_the_default_leeway(settings: Settings) -> None:
    with pytest.raises(TokenError, match=r"^token expired$"):
        TokenVerifier(settings).verify(_expired_ago(settings, 40))


def test_leeway_zero_refuses_a_token_expired_ten_seconds_ago(settings: Settings) -> None:
    strict = settings.model_copy(update={"jwt_leeway_seconds": 0})
    with pytest.raises(TokenError, match=r"^token expired$"):
        TokenVerifier(strict).verify(_expired_ago(strict, 10))


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_leeway_applies_to_nbf_and_iat(settings: Settings, claim: str) -> None:
    now = int(time.time())
    soon = raw_token(settings, **{claim: now + 10})
    assert TokenVerifier(settings).verify(soon).tenant_id == "t1"
    later = raw_token(settings, **{claim: now + 40})
    with pytest.raises(TokenError, match=r"^token not yet valid$"):
        TokenVerifier(settings).verify(later)
    strict = settings.model_copy(update={"jwt_leeway_seconds": 0})
    with pytest.raises(TokenError, match=r"^token not yet valid$"):
        TokenVerifier(strict).verify(soon)


# ---------------------------------------------------------------- what a refused token says


@pytest.mark.parametrize(
    ("make", "message", "code"),
    [
        (lambda s: raw_token(s, exp=int(time.time()) - 3600), "token expired", "TOKEN_EXPIRED"),
        (lambda s: raw_token(s, nbf=int(time.time()) + 3600), "token not yet valid", "TOKEN_NOT_YET_VALID"),
        (lambda s: raw_token(s, secret=OTHER_SECRET), "token signature invalid", "TOKEN_SIGNATURE_INVALID"),
        (lambda s: raw_token(s, iss="elsewhere"), "token issuer not accepted", "TOKEN_ISSUER_NOT_ACCEPTED"),
        (lambda s: raw_token(s, aud="other"), "token audience not accepted", "TOKEN_AUDIENCE_NOT_ACCEPTED"),
        (lambda s: raw_token(s, exp=None), "token lacks the required claim 'exp'", "TOKEN_CLAIM_MISSING"),
        (lambda s: raw_token(s, tenant_id=None), "token carries no tenant", "TOKEN_NO_TENANT"),
        (
            lambda s: raw_token(s, tenant_id="#platform"),
            "token tenant_id is not an identifier (1 to 128 of A-Z a-z 0-9 _ . : @ -)",
            "TOKEN_CLAIM_MALFORMED",
        ),
        (
            lambda s: raw_token(s, tenant_id="t" * 129),
            "token tenant_id is not an identifier (1 to 128 of A-Z a-z 0-9 _ . : @ -)",
            "TOKEN_CLAIM_MALFORMED",
        ),
        (lambda s: raw_token(s, scope=["a"]), "token scope claim is malformed", "TOKEN_CLAIM_MALFORMED"),
        (lambda s: "not-a-jwt", "token malformed (not a JWT)", "TOKEN_MALFORMED"),
    ],
)
def test_a_refused_token_says_why_with_a_code(settings: Settings, make: Any, message: str, code: str) -> None:
    with pytest.raises(TokenError) as refused:
        TokenVerifier(settings).verify(make(settings))
    assert str(refused.value) == message
    assert refused.value.code == code


# ---------------------------------------------------------------- tokens without a scope claim


def test_a_token_without_scope_has_no_scope_by_default(settings: Settings) -> None:
    token = raw_token(settings, scope=None, **{"cognito:groups": ["executions:read"]})
    assert TokenVerifier(settings).verify(token).scopes == frozenset()


def test_scopes_from_another_claim(settings: Settings) -> None:
    mapped = settings.model_copy(update={"jwt_scope_claim": "cognito:groups"})
    token = raw_token(settings, scope=None, **{"cognito:groups": ["executions:read", "intents:write"]})
    assert TokenVerifier(mapped).verify(token).scopes == frozenset({"executions:read", "intents:write"})
    spaced = raw_token(settings, scope=None, **{"cognito:groups": "executions:read admin"})
    assert TokenVerifier(mapped).verify(spaced).scopes == frozenset({"executions:read", "admin"})


def test_a_scope_claim_wins_over_the_mapped_claim(settings: Settings) -> None:
    mapped = settings.model_copy(update={"jwt_scope_claim": "cognito:groups"})
    token = raw_token(settings, scope="intents:read", **{"cognito:groups": ["admin"]})
    assert TokenVerifier(mapped).verify(token).scopes == frozenset({"intents:read"})


def test_a_malformed_mapped_claim_is_refused(settings: Settings) -> None:
    mapped = settings.model_copy(update={"jwt_scope_claim": "cognito:groups"})
    token = raw_token(settings, scope=None, **{"cognito:groups": {"admin": True}})
    with pytest.raises(TokenError, match=r"^token cognito:groups claim is malformed$"):
        TokenVerifier(mapped).verify(token)


def test_default_scopes_for_tokens_without_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_JWT_DEFAULT_SCOPES", "executions:read, intents:read")
    monkeypatch.setenv("FULFILL_JWT_SCOPE_CLAIM", "cognito:groups")
    settings = Settings(jwt_secret=SECRET)
    assert settings.jwt_default_scopes == ["executions:read", "intents:read"]
    verifier = TokenVerifier(settings)
    # No scope, no mapped claim: the defaults.
    assert verifier.verify(raw_token(settings, scope=None)).scopes == frozenset(
        {"executions:read", "intents:read"}
    )
    # The mapped claim, when present, replaces the defaults; a scope claim replaces both.
    grouped = raw_token(settings, scope=None, **{"cognito:groups": ["admin"]})
    assert verifier.verify(grouped).scopes == frozenset({"admin"})
    assert verifier.verify(raw_token(settings, scope="")).scopes == frozenset()


def test_service_tokens_ignore_the_scope_policy() -> None:
    from fulfill.tokens import ServiceTokens

    settings = Settings(jwt_secret=SECRET, jwt_default_scopes=["admin"], jwt_scope_claim="groups")
    token = ServiceTokens(settings).token_for_call(
        {"tenant_id": "t", "account_id": "a", "action_intent_id": "i", "idempotency_key": "k" * 64}
    )
    assert TokenVerifier(settings).verify_service(token).scopes == frozenset({Scope.GATEWAY_INVOKE})


def test_the_scope_claim_cannot_be_mapped_onto_itself() -> None:
    with pytest.raises(ValueError, match="FULFILL_JWT_SCOPE_CLAIM"):
        Settings(jwt_scope_claim="scope")


# --- the cache of verified tokens --------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _count_verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from fulfill import tokens

    verified: list[str] = []
    decode = tokens._decode

    def counting(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        verified.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(tokens, "_decode", counting)
    return verified


def test_an_accepted_token_is_verified_once_then_reused_until_its_exp(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified = _count_verifications(monkeypatch)
    clock = _Clock()
    verifier = TokenVerifier(settings, clock=clock)
    token = raw_token(settings, exp=int(clock.now) + 600)
    principals = [verifier.verify(token) for _ in range(3)]
    assert verified == [token]
    assert all(p is principals[0] for p in principals)
    clock.now = int(clock.now) + 600  # the token's exp: never served from the cache from then on
    verifier.verify(token)  # (still accepted by the full check, whose clock is the real one)
    assert verified == [token, token]


def test_a_cached_token_is_refused_once_it_has_expired() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_leeway_seconds=0)
    verifier = TokenVerifier(settings)
    exp = int(time.time()) + 1
    token = raw_token(settings, exp=exp)
    assert verifier.verify(token).tenant_id == "t1"
    while time.time() < exp + 0.05:
        time.sleep(0.05)
    with pytest.raises(TokenError, match=r"^token expired$") as refused:
        verifier.verify(token)
    assert refused.value.code == "TOKEN_EXPIRED"


def test_refused_tokens_are_verified_every_time(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    verified = _count_verifications(monkeypatch)
    verifier = TokenVerifier(settings)
    good = raw_token(settings)
    assert verifier.verify(good).tenant_id == "t1"
    head, payload, signature = good.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    other_key = raw_token(settings, secret=OTHER_SECRET)
    for _ in range(2):
        with pytest.raises(TokenError):
            verifier.verify(forged)
        with pytest.raises(TokenError, match="signature"):
            verifier.verify(other_key)
    assert verified.count(forged) == 2
    assert verified.count(other_key) == 2
    assert verifier.verify(good).tenant_id == "t1"
    assert verified.count(good) == 1


def test_each_token_gets_its_own_principal_from_the_cache(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    first = raw_token(settings, tenant_id="tenant-a", sub="alice", scope="admin")
    second = raw_token(settings, tenant_id="tenant-b", sub="bob", scope="intents:read", account_ids=["x"])
    for _ in range(2):
        a, b = verifier.verify(first), verifier.verify(second)
        assert (a.tenant_id, a.subject, a.scopes, a.account_ids) == ("tenant-a", "alice", {"admin"}, None)
        assert (b.tenant_id, b.subject, b.scopes, b.account_ids) == (
            "tenant-b",
            "bob",
            {"intents:read"},
            {"x"},
        )


def test_the_cache_of_verified_tokens_is_bounded(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    verified = _count_verifications(monkeypatch)
    verifier = TokenVerifier(settings, cache_size=2)
    tokens = [raw_token(settings, sub=f"user-{n}") for n in range(3)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 2
    verifier.verify(tokens[0])  # the oldest was forgotten: verified again
    assert verified == [*tokens, tokens[0]]
    uncached = TokenVerifier(settings, cache_size=0)
    uncached.verify(tokens[1])
    uncached.verify(tokens[1])
    assert verified[-2:] == [tokens[1], tokens[1]]


def test_cached_answers_only_for_a_token_accepted_before_and_not_expired(settings: Settings) -> None:
    clock = _Clock()
    verifier = TokenVerifier(settings, clock=clock)
    token = raw_token(settings, exp=int(clock.now) + 600)
    assert verifier.cached(token) is None  # never verified: nothing to reuse
    with pytest.raises(TokenError):
        verifier.verify(raw_token(settings, secret=OTHER_SECRET))
    assert verifier.cached(raw_token(settings, secret=OTHER_SECRET)) is None  # refused: not kept
    principal = verifier.verify(token)
    assert verifier.cached(token) is principal
    clock.now = int(clock.now) + 600
    assert verifier.cached(token) is None


# --- the gateway's check of a service token ------------------------------------------------------


def _service_claims(settings: Settings, **claims: Any) -> dict[str, Any]:
    from fulfill.config import SERVICE_TOKEN_ISSUER

    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "fulfill-engine",
        "tenant_id": "t1",
        "account_id": "acct",
        "action_intent_id": "ai_1",
        "idempotency_key": "k" * 64,
        "scope": Scope.GATEWAY_INVOKE,
        "iss": SERVICE_TOKEN_ISSUER,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 60,
    }
    payload.update(claims)
    return {k: v for k, v in payload.items() if v is not None}


@pytest.mark.parametrize(
    ("make", "code"),
    [
        # A user token signed with the very secret service tokens are signed with (dev mode, no
        # service secret of its own): refused as not a service token, not for its issuer.
        (lambda s: raw_token(s, scope=Scope.GATEWAY_INVOKE), "SERVICE_TOKEN_REQUIRED"),
        (lambda s: jwt.encode(_service_claims(s), None, algorithm="none"), "SERVICE_TOKEN_REQUIRED"),
        (
            lambda s: jwt.encode(_service_claims(s, iss="fulfill-dev"), SECRET, algorithm="HS256"),
            "SERVICE_TOKEN_REQUIRED",
        ),
        (lambda s: "not-a-jwt", "TOKEN_MALFORMED"),
        (
            lambda s: jwt.encode(_service_claims(s), OTHER_SECRET, algorithm="HS256"),
            "TOKEN_SIGNATURE_INVALID",
        ),
        (
            lambda s: jwt.encode(_service_claims(s, exp=int(time.time()) - 5), SECRET, algorithm="HS256"),
            "TOKEN_EXPIRED",
        ),
        (
            lambda s: jwt.encode(_service_claims(s, aud="elsewhere"), SECRET, algorithm="HS256"),
            "TOKEN_AUDIENCE_NOT_ACCEPTED",
        ),
        (
            lambda s: jwt.encode(_service_claims(s, idempotency_key=None), SECRET, algorithm="HS256"),
            "TOKEN_CLAIM_MISSING",
        ),
        (
            lambda s: jwt.encode(_service_claims(s, sub=None), SECRET, algorithm="HS256"),
            "TOKEN_CLAIM_MISSING",
        ),
    ],
)
def test_verify_service_refuses_what_is_not_a_valid_service_token_saying_why(
    settings: Settings, make: Any, code: str
) -> None:
    """The check verifies first and explains a refusal after: each refusal keeps its own code."""
    with pytest.raises(TokenError) as refused:
        TokenVerifier(settings).verify_service(make(settings))
    assert refused.value.code == code


def test_verify_service_accepts_a_service_token_with_only_the_gateway_scope(settings: Settings) -> None:
    token = jwt.encode(
        _service_claims(settings, scope=f"admin {Scope.GATEWAY_INVOKE}"), SECRET, algorithm="HS256"
    )
    principal = TokenVerifier(settings).verify_service(token)
    assert (principal.subject, principal.tenant_id, principal.scopes) == (
        "fulfill-engine",
        "t1",
        frozenset({Scope.GATEWAY_INVOKE}),
    )
    assert principal.claims["action_intent_id"] == "ai_1"
