"""A real fulfill service in production auth mode: user tokens come from an identity provider
(RS256/ES256, keys from a JWKS URL); the engine still reaches its MCP gateway with its own HS256
service tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jwt

from fulfill.client import default_limits
from fulfill.tokens import ServiceTokens
from tests.support.harness import TEST_SECRET, Harness, make_settings
from tests.unit.test_tokens_production import (
    AUDIENCE,
    ISSUER,
    USER_SCOPES,
    JwksServer,
    ec_key,
    rsa_key,
    user_claims,
)


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(
        limits=default_limits(), base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    )


def _unauthorized(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    body = dict(response.json())
    # RFC 6750: the challenge names the error and says why, as the body's detail does.
    assert response.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="{body["detail"]}"'
    )
    assert body["code"].startswith("TOKEN_")
    return body


def test_production_mode_end_to_end(tmp_path: Path) -> None:
    rsa, ec = rsa_key("idp-rsa"), ec_key("idp-ec")
    jwks = JwksServer([rsa.jwk, ec.jwk])
    harness = Harness(
        make_settings(
            tmp_path,
            auth_mode="production",
            jwks_url=jwks.url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            service_token_secret="s" * 40,
        )
    )
    try:
        harness.start()
        user_token = rsa.sign(user_claims(tenant_id="t1", scope=USER_SCOPES))

        # An IdP user creates and approves an intent; the engine executes it through the gateway
        # with its HS256 service token, so SUCCEEDED proves service tokens still work.
        with _client(harness.url, user_token) as user:
            created = user.post(
                "/intents",
                json={
                    "action_type": "CREATE_INTERNAL_TASK",
                    "account_id": "acc-1",
                    "parameters": {"title": "x"},
                },
            )
            assert created.status_code == 201, created.text
            intent_id = created.json()["action_intent_id"]
            # Another person of the IdP approves (nobody approves their own proposal).
            reviewer = {
                "Authorization": f"Bearer {rsa.sign(user_claims(sub='user-2', tenant_id='t1', scope=USER_SCOPES))}"
            }
            approved = user.post(f"/intents/{intent_id}/approve", headers=reviewer)
            assert approved.status_code == 202, approved.text
            status = harness.wait_terminal(user, intent_id)
        assert status["status"] == "SUCCEEDED", status
        assert harness.task_rows(intent_id) == 1

        # ES256 tokens from the same IdP work too.
        with _client(harness.url, ec.sign(user_claims(tenant_id="t1", scope="executions:read"))) as reader:
            response = reader.get(f"/executions/{intent_id}/status")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "SUCCEEDED"

        path = f"{harness.url}/executions/{intent_id}/status"

        def get(token: str) -> httpx.Response:
            return httpx.get(path, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)

        # An HS256 token signed with the (dev) jwt_secret is not a production user token.
        dev_token = harness.token("t1")  # mint_token: HS256, FULFILL_JWT_SECRET, the IdP's issuer
        assert _unauthorized(get(dev_token))["detail"] == "token algorithm not accepted"
        forged = jwt.encode(user_claims(scope="executions:read"), TEST_SECRET, algorithm="HS256")
        assert _unauthorized(get(forged))["detail"] == "token algorithm not accepted"

        # A key the IdP never published.
        stranger = rsa_key("not-published")
        assert _unauthorized(get(stranger.sign(user_claims())))["detail"] == "token signing key not found"
        # A different key claiming a published kid.
        impostor = rsa_key("idp-rsa")
        assert _unauthorized(get(impostor.sign(user_claims())))["detail"] == "token signature invalid"
        # Wrong issuer, and unsigned tokens.
        assert _unauthorized(get(rsa.sign(user_claims(iss="https://evil.test"))))["detail"] == (
            "token issuer not accepted"
        )
        assert _unauthorized(get(jwt.encode(user_claims(), "", algorithm="none")))["detail"] == (
            "token algorithm not accepted"
        )

        # The engine's service token reaches the gateway, but opens no API route.
        service_token = ServiceTokens(harness.settings).token_for_call(
            {
                "tenant_id": "t1",
                "account_id": "acc-1",
                "action_intent_id": "ai_1",
                "idempotency_key": "k" * 64,
            }
        )
        forbidden = get(service_token)
        assert forbidden.status_code == 403, forbidden.text
        assert forbidden.json()["code"] == "MISSING_SCOPE"

        # The keys were fetched once and then served from the cache (plus at most one refresh
        # for the unknown kid).
        assert 1 <= jwks.requests <= 2
    finally:
        harness.stop()
        jwks.close()


def test_cognito_id_tokens_without_a_scope_claim(tmp_path: Path) -> None:
    """An ID token as the reference's Cognito authorizer accepts it: ``custom:tenant_id``, no
    ``scope``, groups in ``cognito:groups``. With FULFILL_JWT_SCOPE_CLAIM the groups are its scopes;
    FULFILL_JWT_DEFAULT_SCOPES covers tokens without either."""
    rsa = rsa_key("cognito")
    jwks = JwksServer([rsa.jwk])
    harness = Harness(
        make_settings(
            tmp_path,
            auth_mode="production",
            jwks_url=jwks.url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            service_token_secret="s" * 40,
            jwt_scope_claim="cognito:groups",
            jwt_default_scopes=["executions:read"],
        )
    )

    def id_token(**claims: Any) -> str:
        return rsa.sign(user_claims(scope=None, tenant_id=None, token_use="id", **claims))

    try:
        harness.start()
        grouped = id_token(
            **{"custom:tenant_id": "t1", "cognito:groups": ["intents:write", "intents:approve"]}
        )
        with _client(harness.url, grouped) as user:
            created = user.post(
                "/intents",
                json={
                    "action_type": "CREATE_INTERNAL_TASK",
                    "account_id": "acc-1",
                    "parameters": {"title": "x"},
                },
            )
            assert created.status_code == 201, created.text
            intent_id = created.json()["action_intent_id"]
            colleague = id_token(
                sub="user-2",
                **{"custom:tenant_id": "t1", "cognito:groups": ["intents:write", "intents:approve"]},
            )
            assert (
                user.post(
                    f"/intents/{intent_id}/approve", headers={"Authorization": f"Bearer {colleague}"}
                ).status_code
                == 202
            )
            # The groups are the scopes: no executions:read among them.
            assert user.get(f"/executions/{intent_id}/status").json()["code"] == "MISSING_SCOPE"
        # Neither scope nor groups: the default scopes.
        with _client(harness.url, id_token(**{"custom:tenant_id": "t1"})) as reader:
            status = harness.wait_terminal(reader, intent_id)
            assert status["status"] == "SUCCEEDED", status
            assert reader.post("/intents", json={}).json()["code"] == "MISSING_SCOPE"
    finally:
        harness.stop()
        jwks.close()
