"""Every route against every way a caller can be wrong: the 401s, the 403s, a foreign tenant's
object (404), malformed input (400/422), and the route working for the right caller; and every
admin route against a tenant's admin, a platform admin and another tenant's admin."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest

from tests.support import plain_http
from tests.support.harness import ALL_SCOPES, TEST_SECRET, Harness


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {intent} and {account} are filled in per test
    scope: str
    body: Any = None
    ok: tuple[int, ...] = (200,)
    owned: bool = False  # names one tenant's object: another tenant gets 404
    own_tenant: bool = False  # acts on the token's own tenant: another tenant's admin gets its own
    account_bound: bool = False  # an account_ids claim without the account gets 403
    fresh_intent: bool = False  # the happy path changes the intent: use a new one
    invalid_body: Any = field(default=None)


REGISTRY_DRAFT = {
    "action_type": "FLAG_FOR_REVIEW",
    "tool_name": "internal.create_task",
    "parameter_mapping": {"title": {"toolParam": "title", "required": True}},
}

ROUTES = [
    Route("GET", "/executions/{intent}/status", "executions:read", owned=True, account_bound=True),
    Route("GET", "/accounts/{account}/executions", "executions:read", account_bound=True),
    Route("GET", "/executions/{intent}/timeline", "executions:read", owned=True, account_bound=True),
    Route(
        "POST",
        "/intents",
        "intents:write",
        body={"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {"title": "m"}},
        ok=(201,),
        account_bound=True,
        invalid_body={"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": "nope"},
    ),
    Route("GET", "/intents/{intent}", "intents:read", owned=True, account_bound=True),
    Route(
        "POST",
        "/intents/{intent}/approve",
        "intents:approve",
        ok=(202,),
        owned=True,
        account_bound=True,
        fresh_intent=True,
    ),
    Route(
        "POST",
        "/intents/{intent}/reject",
        "intents:approve",
        ok=(202,),
        owned=True,
        account_bound=True,
        fresh_intent=True,
    ),
    Route(
        "POST",
        "/intents/{intent}/cancel",
        "intents:approve",
        ok=(202,),
        owned=True,
        account_bound=True,
        fresh_intent=True,
    ),
    Route(
        "POST",
        "/intents/{intent}/rerun",
        "admin",
        body={"reason": "x"},
        ok=(409,),
        owned=True,
        invalid_body={"reason": 5},
    ),
    Route("POST", "/events", "events:write", body={"source": "cc-native"}, ok=(422,), invalid_body=[]),
    Route("GET", "/admin/kill-switches", "platform:admin"),
    Route(
        "PUT",
        "/admin/kill-switches",
        "platform:admin",
        body={"global_stop": False, "disabled_action_types": []},
        invalid_body={"global_stop": "maybe"},
    ),
    Route("GET", "/admin/tenants/{tenant}/execution", "admin", owned=True),
    Route(
        "PUT",
        "/admin/tenants/{tenant}/execution",
        "admin",
        body={"execution_enabled": True, "disabled_action_types": []},
        owned=True,
        invalid_body={"execution_enabled": True},
    ),
    Route("GET", "/admin/registry", "platform:admin"),
    Route(
        "POST",
        "/admin/registry",
        "platform:admin",
        body=REGISTRY_DRAFT,
        ok=(201,),
        invalid_body={"action_type": "X"},
    ),
    Route("POST", "/admin/registry/FLAG_FOR_REVIEW/versions/1/deprecate", "platform:admin"),
    Route("GET", "/admin/gateway/targets", "platform:admin"),
    Route(
        "POST",
        "/admin/gateway/targets",
        "platform:admin",
        # Answered, and refused: loopback is not allowed without FULFILL_GATEWAY_EGRESS_ALLOW.
        body={"name": "matrix", "url": "http://127.0.0.1:9/mcp"},
        ok=(422,),
        invalid_body={"name": "Not A Name", "url": "http://127.0.0.1:9/mcp"},
    ),
    Route("POST", "/admin/gateway/targets/matrix/sync", "platform:admin", ok=(404,)),
    Route("DELETE", "/admin/gateway/targets/matrix", "platform:admin", ok=(404,)),
    Route("GET", "/admin/connectors", "platform:admin"),
    Route(
        "PUT",
        "/admin/connectors/matrix-target/limits",  # a name no execution uses
        "platform:admin",
        body={"rate_per_second": 10, "concurrency": 5},
        invalid_body={"rate_per_second": "fast", "concurrency": 5},
    ),
    Route("GET", "/admin/outbox/dead-letters", "platform:admin"),
    Route(
        "POST",
        "/admin/outbox/dead-letters/redeliver",
        "platform:admin",
        body={},  # every dead letter: there are none
        invalid_body={"message_id": ""},
    ),
    Route("GET", "/admin/tenants/{tenant}/outbox/dead-letters", "admin", owned=True),
    Route(
        "POST",
        "/admin/tenants/{tenant}/outbox/dead-letters/redeliver",
        "admin",
        body={},
        owned=True,
        invalid_body={"message_id": "x", "payload": {}},
    ),
    Route("GET", "/admin/notifications", "admin", own_tenant=True),
    Route(
        "PUT",
        "/admin/notifications",
        "admin",
        body={},  # every channel off
        own_tenant=True,
        invalid_body={"webhooks": [{"url": "ftp://hooks.example.com/", "secret": "s" * 16}]},
    ),
]


def _id(route: Route) -> str:
    return f"{route.method} {route.path}"


@pytest.fixture(scope="module")
def world(shared: Harness) -> dict[str, str]:
    with shared.client() as client:
        intent = shared.create_intent(client)
        assert client.post("/admin/registry", json=REGISTRY_DRAFT).status_code == 201
    return {"intent": intent["action_intent_id"], "account": "acc-1", "tenant": "t1"}


def _url(shared: Harness, route: Route, world: dict[str, str], **overrides: str) -> str:
    return shared.url + route.path.format(**{**world, **overrides})


def _call(route: Route, url: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
    content = body if body is not None else route.body
    return httpx.request(route.method, url, headers=headers, json=content, timeout=30)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BAD_TOKENS = {
    "none": None,
    "expired": {"exp": -120},  # beyond FULFILL_JWT_LEEWAY_SECONDS
    "wrong issuer": {"iss": "someone-else"},
    "wrong audience": {"aud": "another-api"},
    "bad signature": {"secret": "not-the-secret-not-the-secret-xx"},
    "alg none": {"alg": "none"},
}


def _bad_token(kind: str, scope: str) -> dict[str, str]:
    change = BAD_TOKENS[kind]
    if change is None:
        return {}
    claims = {
        "sub": "u",
        "tenant_id": "t1",
        "scope": scope,
        "iss": change.get("iss", "fulfill-dev"),
        "aud": change.get("aud", "fulfill"),
        "exp": int(time.time()) + change.get("exp", 600),
    }
    if change.get("alg") == "none":
        return _bearer(jwt.encode(claims, None, algorithm="none"))
    return _bearer(jwt.encode(claims, change.get("secret", TEST_SECRET), algorithm="HS256"))


@pytest.mark.parametrize("route", ROUTES, ids=_id)
@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_401_for_every_bad_token(shared: Harness, world: dict[str, str], route: Route, kind: str) -> None:
    response = _call(route, _url(shared, route, world), _bad_token(kind, route.scope))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_403_without_the_scope(shared: Harness, world: dict[str, str], route: Route) -> None:
    others = [scope for scope in ALL_SCOPES if scope != route.scope]
    response = _call(route, _url(shared, route, world), _bearer(shared.token(scopes=others)))
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "MISSING_SCOPE"


@pytest.mark.parametrize("route", [r for r in ROUTES if r.account_bound], ids=_id)
def test_403_for_an_account_outside_the_token(shared: Harness, world: dict[str, str], route: Route) -> None:
    headers = _bearer(shared.token(account_ids=["someone-elses-account"]))
    response = _call(route, _url(shared, route, world), headers)
    assert response.status_code == 403, response.text


@pytest.mark.parametrize("route", [r for r in ROUTES if r.owned], ids=_id)
def test_404_for_another_tenants_object(shared: Harness, world: dict[str, str], route: Route) -> None:
    response = _call(route, _url(shared, route, world), _bearer(shared.token(tenant="t-other")))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("route", [r for r in ROUTES if r.body is not None], ids=_id)
def test_400_for_malformed_json(shared: Harness, world: dict[str, str], route: Route) -> None:
    headers = {**_bearer(shared.token()), "Content-Type": "application/json"}
    response = plain_http.request(route.method, _url(shared, route, world), headers=headers, content=b"{oops")
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("route", [r for r in ROUTES if r.invalid_body is not None], ids=_id)
def test_422_for_invalid_input(shared: Harness, world: dict[str, str], route: Route) -> None:
    response = _call(route, _url(shared, route, world), _bearer(shared.token()), body=route.invalid_body)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("route", [r for r in ROUTES if "{intent}" in r.path], ids=_id)
def test_422_for_a_malformed_id(shared: Harness, world: dict[str, str], route: Route) -> None:
    response = _call(route, _url(shared, route, world, intent="bad id!"), _bearer(shared.token()))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_the_right_caller_gets_an_answer(shared: Harness, world: dict[str, str], route: Route) -> None:
    intent = world["intent"]
    if route.fresh_intent:
        # Proposed by someone else: the right caller of approve is not the proposer.
        with shared.client(subject="proposer@tests") as client:
            intent = shared.create_intent(client)["action_intent_id"]
    response = _call(
        route, _url(shared, route, world, intent=intent), _bearer(shared.token(account_ids=["acc-1"]))
    )
    assert response.status_code in route.ok, response.text


# --- admin routes: tenant admin, platform admin, another tenant's admin ------------------------------

ADMIN_ROUTES = [route for route in ROUTES if route.scope in ("admin", "platform:admin")]
ADMIN_CALLERS = {
    # the world's tenant (t1), with the tenant scope only
    "tenant admin": ("t1", ["admin"]),
    # an operator: every tenant's shared settings, no tenant's data
    "platform admin": ("ops", ["platform:admin"]),
    # a tenant admin of another tenant
    "other tenant's admin": ("t-other", ["admin"]),
}


def _expected(route: Route, caller: str) -> tuple[int, ...]:
    if route.scope == "platform:admin":
        return route.ok if caller == "platform admin" else (403,)
    # Tenant routes: only the tenant's own admin; a platform admin gets no tenant power, and
    # another tenant's admin cannot tell the object exists (or, on a route of the token's own
    # tenant, gets its own tenant's answer).
    if route.own_tenant and caller == "other tenant's admin":
        return route.ok
    return {"tenant admin": route.ok, "platform admin": (403,), "other tenant's admin": (404,)}[caller]


def test_every_admin_route_is_in_the_admin_matrix() -> None:
    assert {_id(route) for route in ADMIN_ROUTES} == {
        "POST /intents/{intent}/rerun",
        "GET /admin/kill-switches",
        "PUT /admin/kill-switches",
        "GET /admin/tenants/{tenant}/execution",
        "PUT /admin/tenants/{tenant}/execution",
        "GET /admin/registry",
        "POST /admin/registry",
        "POST /admin/registry/FLAG_FOR_REVIEW/versions/1/deprecate",
        "GET /admin/gateway/targets",
        "POST /admin/gateway/targets",
        "POST /admin/gateway/targets/matrix/sync",
        "DELETE /admin/gateway/targets/matrix",
        "GET /admin/connectors",
        "PUT /admin/connectors/matrix-target/limits",
        "GET /admin/outbox/dead-letters",
        "POST /admin/outbox/dead-letters/redeliver",
        "GET /admin/tenants/{tenant}/outbox/dead-letters",
        "POST /admin/tenants/{tenant}/outbox/dead-letters/redeliver",
        "GET /admin/notifications",
        "PUT /admin/notifications",
    }
    assert all(route.owned or route.own_tenant for route in ADMIN_ROUTES if route.scope == "admin")


@pytest.mark.parametrize("caller", list(ADMIN_CALLERS))
@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=_id)
def test_admin_routes_by_kind_of_admin(
    shared: Harness, world: dict[str, str], route: Route, caller: str
) -> None:
    tenant, scopes = ADMIN_CALLERS[caller]
    response = _call(route, _url(shared, route, world), _bearer(shared.token(tenant=tenant, scopes=scopes)))
    expected = _expected(route, caller)
    assert response.status_code in expected, response.text
    if 403 in expected:
        assert response.json()["code"] == "MISSING_SCOPE"
