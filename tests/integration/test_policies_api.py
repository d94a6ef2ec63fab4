"""Approval policies over HTTP (``/admin/policies``), on a real service (SQLite, and PostgreSQL on
its pass): every write a new version, CEL checked at write time, each tenant's policies its own,
the platform's written only by a platform admin, no agent managing any, and the simulation over a
tenant's recorded intents.

Each test works in a tenant of its own; platform policies written here match no intent (an account
no test uses), so that they change nothing for the other tests of the module.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from fulfill.client import ApiError
from fulfill.domain.policies import Policy, PolicySpec
from fulfill.store import policies as policy_store
from fulfill.store.tables import PLATFORM_OWNER, approval_policies
from tests.support import plain_http
from tests.support.harness import ALL_SCOPES, Harness

TENANT_SCOPES = [scope for scope in ALL_SCOPES if scope != "platform:admin"]
NOBODYS_ACCOUNT = "acc-no-intent-ever"


def _tenant() -> str:
    return f"pol-{uuid.uuid4().hex[:10]}"


def _problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    if code is not None:
        assert body["code"] == code, body
    return body


def _body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "small internal tasks approve themselves",
        "match": {
            "action_types": ["CREATE_INTERNAL_TASK"],
            "risk_classes": ["MINIMAL", "LOW"],
            "when": "size(params.title) < 200",
        },
        "decision": "AUTO_APPROVE",
        "priority": 10,
    }
    body.update(fields)
    return body


def test_a_policy_is_created_read_replaced_and_deleted_each_write_a_new_version(shared: Harness) -> None:
    tenant = _tenant()
    with (
        shared.client(tenant, TENANT_SCOPES, subject="ada") as ada,
        shared.client(tenant, TENANT_SCOPES, subject="grace") as grace,
    ):
        created = ada.post("/admin/policies", json=_body(description="the routine"))
        assert created.status_code == 201, created.text
        policy = created.json()
        policy_id = policy["policy_id"]
        assert policy_id.startswith("pol_")
        assert policy["version"] == 1
        assert policy["scope"] == "tenant"
        assert policy["tenant_id"] == tenant
        assert (policy["created_by"], policy["updated_by"]) == ("ada", "ada")
        assert policy["created_at"] == policy["updated_at"]
        # Defaults filled in, every field of the contract present.
        assert policy["approvals_required"] == 1
        assert policy["approver_scopes"] == []
        assert policy["mode"] == "ENFORCE"
        assert policy["on_expiry"] == "EXPIRE"
        assert policy["escalation"] is None
        assert policy["match"]["account_ids"] is None
        assert ada.get(f"/admin/policies/{policy_id}").json() == policy
        assert ada.get("/admin/policies").json() == {"policies": [policy]}

        replaced = grace.put(
            f"/admin/policies/{policy_id}",
            json=_body(
                decision="REQUIRE_APPROVAL",
                approvals_required=2,
                approver_scopes=["approvers:crm"],
                on_expiry="ESCALATE",
                escalation={"approver_scopes": ["managers"], "extend_seconds": 3600},
            ),
        )
        assert replaced.status_code == 200, replaced.text
        second = replaced.json()
        assert second["policy_id"] == policy_id
        assert second["version"] == 2
        assert second["decision"] == "REQUIRE_APPROVAL"
        assert second["approvals_required"] == 2
        assert second["escalation"] == {"approver_scopes": ["managers"], "extend_seconds": 3600}
        assert (second["created_by"], second["updated_by"]) == ("ada", "grace")
        assert second["created_at"] == policy["created_at"]
        assert ada.get(f"/admin/policies/{policy_id}").json() == second

        deleted = grace.delete(f"/admin/policies/{policy_id}")
        assert deleted.status_code == 204
        assert deleted.content == b""
        _problem(ada.get(f"/admin/policies/{policy_id}"), 404, "POLICY_NOT_FOUND")
        _problem(ada.put(f"/admin/policies/{policy_id}", json=_body()), 404, "POLICY_NOT_FOUND")
        _problem(ada.delete(f"/admin/policies/{policy_id}"), 404, "POLICY_NOT_FOUND")
        assert ada.get("/admin/policies").json() == {"policies": []}
        history = ada.get(f"/admin/policies/{policy_id}/versions").json()["versions"]
        assert [(v["version"], v["decision"], v["updated_by"]) for v in history] == [
            (1, "AUTO_APPROVE", "ada"),
            (2, "REQUIRE_APPROVAL", "grace"),
            (3, "REQUIRE_APPROVAL", "grace"),
        ]
        assert [v["deleted_at"] is not None for v in history] == [False, False, True]
        assert {k: v for k, v in history[0].items() if k != "deleted_at"} == policy
        _problem(ada.get("/admin/policies/pol_0000000000000000/versions"), 404, "POLICY_NOT_FOUND")

    # Every version stays for the audit; the last one records the deletion.
    with shared.db.read() as conn:
        versions = policy_store.list_versions(conn, tenant, policy_id)
        assert policy_store.list_effective(conn, tenant) == []
    assert [v.policy.version for v in versions] == [1, 2, 3]
    assert [v.deleted_at is not None for v in versions] == [False, False, True]
    assert versions[0].policy.decision.value == "AUTO_APPROVE"
    assert versions[2].policy.updated_by == "grace"
    assert shared.count(approval_policies, owner=tenant, policy_id=policy_id, is_current=True) == 1


def test_the_typed_client_manages_policies(shared: Harness) -> None:
    tenant = _tenant()
    with shared.client(tenant, TENANT_SCOPES, subject="ada") as http:
        api = shared.api(http)
        created = api.create_policy(PolicySpec.model_validate(_body()))
        assert isinstance(created, Policy)
        assert api.get_policy(created.policy_id) == created
        assert api.list_policies() == [created]
        replaced = api.replace_policy(created.policy_id, {**_body(), "priority": 5})
        assert (replaced.version, replaced.priority) == (2, 5)
        result = api.simulate_policy(_body(), limit=10)
        assert result.evaluated == 0
        api.delete_policy(created.policy_id)
        assert api.list_policies() == []
        with pytest.raises(ApiError) as refused:
            api.get_policy(created.policy_id)
        assert (refused.value.status, refused.value.code) == (404, "POLICY_NOT_FOUND")


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        ("size(params.title) <", "Syntax error"),
        ("params.title = 'x'", "Syntax error"),
        ("amount > 10", "Undefined variable or function: 'amount'"),
        ("shout(params.title)", "Undefined variable or function: 'shout'"),
        ("account_id", "must evaluate to a bool; it gives str"),
    ],
)
def test_an_invalid_expression_is_refused_with_the_reason(shared: Harness, when: str, reason: str) -> None:
    tenant = _tenant()
    with shared.client(tenant, TENANT_SCOPES) as http:
        body = _body(match={"when": when})
        problem = _problem(http.post("/admin/policies", json=body), 422, "INVALID_POLICY_EXPRESSION")
        assert reason in problem["detail"]
        assert "match.when" in problem["detail"]
        # Nothing stored; a replace with it is refused too, and leaves the policy as it was.
        assert http.get("/admin/policies").json() == {"policies": []}
        stored = http.post("/admin/policies", json=_body()).json()
        _problem(
            http.put(f"/admin/policies/{stored['policy_id']}", json=body), 422, "INVALID_POLICY_EXPRESSION"
        )
        assert http.get(f"/admin/policies/{stored['policy_id']}").json()["version"] == 1
        # And a simulation of it.
        _problem(
            http.post("/admin/policies/simulate", json={"policy": body}), 422, "INVALID_POLICY_EXPRESSION"
        )


def test_a_tenant_admin_reaches_neither_another_tenants_policies_nor_writes_the_platforms(
    shared: Harness,
) -> None:
    mine, theirs = _tenant(), _tenant()
    with (
        shared.client(mine, TENANT_SCOPES) as admin,
        shared.client(theirs, TENANT_SCOPES) as other,
        shared.client(mine, ALL_SCOPES, subject="platform-op") as platform,
    ):
        policy = admin.post("/admin/policies", json=_body()).json()
        policy_id = policy["policy_id"]
        # Another tenant's admin: not found, whatever they try; their list does not show it.
        _problem(other.get(f"/admin/policies/{policy_id}"), 404, "POLICY_NOT_FOUND")
        _problem(other.put(f"/admin/policies/{policy_id}", json=_body(name="mine now")), 404)
        _problem(other.delete(f"/admin/policies/{policy_id}"), 404)
        _problem(other.get(f"/admin/policies/{policy_id}/versions"), 404)
        assert other.get("/admin/policies").json() == {"policies": []}
        assert admin.get(f"/admin/policies/{policy_id}").json() == policy

        # A tenant admin cannot write a platform policy: 403, nothing stored.
        before = shared.count(approval_policies, owner=PLATFORM_OWNER)
        problem = _problem(
            admin.post(
                "/admin/policies", json=_body(scope="platform", match={"account_ids": [NOBODYS_ACCOUNT]})
            ),
            403,
            "MISSING_SCOPE",
        )
        assert "platform:admin" in problem["detail"]
        assert shared.count(approval_policies, owner=PLATFORM_OWNER) == before

        # A platform admin writes one; a tenant admin reads it (it applies to them) and cannot
        # change or delete it.
        made = platform.post(
            "/admin/policies",
            json=_body(scope="platform", decision="DENY", match={"account_ids": [NOBODYS_ACCOUNT]}),
        )
        assert made.status_code == 201, made.text
        shared_policy = made.json()
        assert (shared_policy["scope"], shared_policy["tenant_id"]) == ("platform", None)
        assert other.get(f"/admin/policies/{shared_policy['policy_id']}").json() == shared_policy
        _problem(
            other.put(f"/admin/policies/{shared_policy['policy_id']}", json=_body(name="x")),
            403,
            "MISSING_SCOPE",
        )
        _problem(other.delete(f"/admin/policies/{shared_policy['policy_id']}"), 403, "MISSING_SCOPE")
        # A policy never moves between a tenant and the platform.
        _problem(
            platform.put(f"/admin/policies/{policy_id}", json=_body(scope="platform")),
            422,
            "POLICY_SCOPE_FIXED",
        )
        # Left out, the scope stays what it is.
        kept = platform.put(
            f"/admin/policies/{shared_policy['policy_id']}",
            json=_body(decision="DENY", match={"account_ids": [NOBODYS_ACCOUNT]}, name="renamed"),
        )
        assert kept.status_code == 200, kept.text
        assert (kept.json()["scope"], kept.json()["version"]) == ("platform", 2)
        assert platform.delete(f"/admin/policies/{shared_policy['policy_id']}").status_code == 204


def test_a_platform_policy_applies_to_every_tenant_after_its_own(shared: Harness) -> None:
    tenant = _tenant()
    with (
        shared.client(tenant, TENANT_SCOPES) as admin,
        shared.client(_tenant(), ["platform:admin"], subject="platform-op") as platform,
    ):
        shared_policy = platform.post(
            "/admin/policies",
            json=_body(
                scope="platform", decision="DENY", priority=0, match={"account_ids": [NOBODYS_ACCOUNT]}
            ),
        ).json()
        own = admin.post("/admin/policies", json=_body(priority=900)).json()
        try:
            listed = admin.get("/admin/policies").json()["policies"]
            ids = [p["policy_id"] for p in listed]
            # The tenant's own first (whatever the priorities), then the platform's.
            assert ids.index(own["policy_id"]) < ids.index(shared_policy["policy_id"])
            with shared.db.read() as conn:
                effective = policy_store.list_effective(conn, tenant)
            assert effective[0].policy_id == own["policy_id"]
            assert shared_policy["policy_id"] in [p.policy_id for p in effective]
            assert all(p.tenant_id is None for p in effective[1:])
            # A platform admin without the tenant's admin scope sees the platform's policies only.
            platform_view = [p["policy_id"] for p in platform.get("/admin/policies").json()["policies"]]
            assert shared_policy["policy_id"] in platform_view
            assert own["policy_id"] not in platform_view
        finally:
            assert platform.delete(f"/admin/policies/{shared_policy['policy_id']}").status_code == 204
        with shared.db.read() as conn:
            assert [p.policy_id for p in policy_store.list_effective(conn, tenant)] == [own["policy_id"]]


@pytest.mark.parametrize(
    ("scopes", "actor", "code"),
    [
        (ALL_SCOPES, "agent-7", "AGENT_CANNOT_MANAGE_POLICIES"),
        (["intents:write", "intents:read", "intents:approve"], None, "MISSING_SCOPE"),
    ],
)
def test_agents_and_tokens_without_an_admin_scope_manage_no_policy(
    shared: Harness, scopes: list[str], actor: str | None, code: str
) -> None:
    tenant = _tenant()
    with (
        shared.client(tenant, TENANT_SCOPES) as admin,
        shared.client(tenant, scopes, subject="ada", actor=actor) as caller,
    ):
        policy_id = admin.post("/admin/policies", json=_body()).json()["policy_id"]
        _problem(caller.get("/admin/policies"), 403, code)
        _problem(caller.post("/admin/policies", json=_body()), 403, code)
        _problem(caller.get(f"/admin/policies/{policy_id}"), 403, code)
        _problem(caller.get(f"/admin/policies/{policy_id}/versions"), 403, code)
        _problem(caller.put(f"/admin/policies/{policy_id}", json=_body(name="changed")), 403, code)
        _problem(caller.delete(f"/admin/policies/{policy_id}"), 403, code)
        _problem(caller.post("/admin/policies/simulate", json={"policy": _body()}), 403, code)
        assert admin.get(f"/admin/policies/{policy_id}").json()["version"] == 1


def test_a_simulation_counts_what_a_candidate_would_have_decided_for_recorded_intents(
    shared: Harness,
) -> None:
    tenant = _tenant()
    with shared.client(tenant, TENANT_SCOPES, subject="ada") as http:
        short = [
            shared.create_intent(http, parameters={"title": f"t{i}"})["action_intent_id"] for i in range(3)
        ]
        long = shared.create_intent(http, parameters={"title": "x" * 50})["action_intent_id"]
        note = shared.create_intent(
            http, action_type="CREATE_INTERNAL_NOTE", account="acc-2", parameters={"content": "hello"}
        )["action_intent_id"]
        # Another tenant's intents are never part of it.
        with shared.client(_tenant(), TENANT_SCOPES) as other:
            shared.create_intent(other, parameters={"title": "elsewhere"})

        candidate = _body(match={"action_types": ["CREATE_INTERNAL_TASK"], "when": "size(params.title) < 10"})
        answer = http.post("/admin/policies/simulate", json={"policy": candidate})
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["evaluated"] == 5
        assert result["counts"] == {"AUTO_APPROVE": 3, "REQUIRE_APPROVAL": 0, "DENY": 0, "NO_MATCH": 2}
        assert result["errors"] == 0
        approved = result["examples"]["AUTO_APPROVE"]
        # Newest first.
        assert [e["action_intent_id"] for e in approved] == list(reversed(short))
        assert approved[0] == {
            "action_intent_id": short[-1],
            "action_type": "CREATE_INTERNAL_TASK",
            "account_id": "acc-1",
            "risk_class": "MINIMAL",
            "proposed_by": "ada",
            "created_at": approved[0]["created_at"],
            "error": None,
        }
        assert [e["action_intent_id"] for e in result["examples"]["NO_MATCH"]] == [note, long]
        assert result["examples"]["DENY"] == result["examples"]["REQUIRE_APPROVAL"] == []

        # The last N only.
        limited = http.post("/admin/policies/simulate", json={"policy": candidate, "limit": 2}).json()
        assert limited["evaluated"] == 2
        assert limited["counts"]["NO_MATCH"] == 2

        # An expression that fails is counted fail-safe, and its error shown: a DENY matches.
        failing = _body(decision="DENY", match={"when": "params.amount > 100"})
        result = http.post("/admin/policies/simulate", json={"policy": failing}).json()
        assert result["counts"] == {"AUTO_APPROVE": 0, "REQUIRE_APPROVAL": 0, "DENY": 5, "NO_MATCH": 0}
        assert result["errors"] == 5
        assert "no such key: 'amount'" in result["examples"]["DENY"][0]["error"]
        # ...and an AUTO_APPROVE does not.
        failing = _body(match={"when": "params.amount > 100"})
        result = http.post("/admin/policies/simulate", json={"policy": failing}).json()
        assert result["counts"]["NO_MATCH"] == 5
        assert result["counts"]["AUTO_APPROVE"] == 0

        # SHADOW or not, a candidate is simulated as if it decided; the examples stop at five.
        for _ in range(3):
            shared.create_intent(http, parameters={"title": "t"})
        shadow = _body(mode="SHADOW", decision="REQUIRE_APPROVAL", approvals_required=2, match={})
        result = http.post("/admin/policies/simulate", json={"policy": shadow}).json()
        assert result["counts"]["REQUIRE_APPROVAL"] == 8
        assert len(result["examples"]["REQUIRE_APPROVAL"]) == 5
        # Nothing was stored.
        assert http.get("/admin/policies").json() == {"policies": []}

    # A token limited to some accounts simulates over those only; a platform candidate is
    # simulated by a platform admin over the token's tenant; platform:admin alone reads no
    # tenant's intents.
    with shared.client(tenant, TENANT_SCOPES, account_ids=["acc-2"]) as narrow:
        result = narrow.post("/admin/policies/simulate", json={"policy": _body(match={})}).json()
        assert result["evaluated"] == 1
        assert result["examples"]["AUTO_APPROVE"][0]["action_intent_id"] == note
    platform_candidate = {"policy": _body(scope="platform", decision="DENY", match={})}
    with shared.client(tenant, ["admin", "platform:admin"]) as platform:
        result = platform.post("/admin/policies/simulate", json=platform_candidate).json()
        assert result["counts"]["DENY"] == 8
    with shared.client(tenant, ["platform:admin"]) as operator:
        _problem(operator.post("/admin/policies/simulate", json=platform_candidate), 403, "MISSING_SCOPE")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "n"},
        {"name": "n", "decision": "MAYBE"},
        {"name": "n", "decision": "DENY", "policy_id": "pol_chosenbyme"},
        {"name": "n", "decision": "DENY", "version": 7},
        {"name": "n", "decision": "DENY", "tenant_id": "someone-else"},
        {"name": "n", "decision": "DENY", "scope": "galaxy"},
        {"name": "x" * 201, "decision": "DENY"},
        {"name": "n", "decision": "DENY", "description": "x" * 2001},
        {"name": "n", "decision": "DENY", "match": {"when": "true || " * 300 + "true"}},
        {"name": "n", "decision": "DENY", "match": {"action_types": ["lower"]}},
        {"name": "n", "decision": "DENY", "match": {"action_types": []}},
        {"name": "n", "decision": "DENY", "match": {"account_ids": ["a"] * 101}},
        {"name": "n", "decision": "DENY", "match": {"unknown": 1}},
        {"name": "n", "decision": "DENY", "priority": 2_000_000},
        {"name": "n", "decision": "DENY", "priority": "first"},
        {"name": "n", "decision": "DENY", "approvals_required": 2},
        {"name": "n", "decision": "REQUIRE_APPROVAL", "approvals_required": 0},
        {"name": "n", "decision": "REQUIRE_APPROVAL", "on_expiry": "ESCALATE"},
        {
            "name": "n",
            "decision": "REQUIRE_APPROVAL",
            "on_expiry": "ESCALATE",
            "escalation": {"approver_scopes": ["m"], "extend_seconds": 10**12},
        },
        [],
        "a string",
        None,
    ],
)
def test_malformed_bodies_are_refused_with_a_problem(shared: Harness, body: Any) -> None:
    tenant = _tenant()
    with shared.client(tenant, TENANT_SCOPES) as http:
        _problem(http.post("/admin/policies", json=body), 422)
        _problem(http.post("/admin/policies/simulate", json={"policy": body}), 422)
        stored = http.post("/admin/policies", json=_body()).json()
        _problem(http.put(f"/admin/policies/{stored['policy_id']}", json=body), 422)
        assert [p["version"] for p in http.get("/admin/policies").json()["policies"]] == [1]


def test_odd_requests_get_a_problem_never_a_500(shared: Harness) -> None:
    tenant = _tenant()
    with shared.client(tenant, TENANT_SCOPES) as http:
        for limit in (0, 1001, "many"):
            _problem(http.post("/admin/policies/simulate", json={"policy": _body(), "limit": limit}), 422)
        _problem(http.post("/admin/policies/simulate", json={"policy": _body(), "extra": 1}), 422)
        _problem(http.post("/admin/policies/simulate", json=_body()), 422)
        not_json = http.post(
            "/admin/policies", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert 400 <= not_json.status_code < 500
        assert not_json.headers["content-type"].startswith("application/problem+json")
        for policy_id in ("nope", "pol_" + "a" * 70, "pol_00000000000000000000"):
            _problem(http.get(f"/admin/policies/{policy_id}"), 404, "POLICY_NOT_FOUND")
        _problem(http.get("/admin/policies/" + "x" * 129), 422)
        # Without a token: 401.
        _problem(plain_http.get(f"{shared.url}/admin/policies"), 401)


def test_writing_a_version_that_exists_changes_nothing(shared: Harness) -> None:
    tenant = _tenant()
    with shared.client(tenant, TENANT_SCOPES) as http:
        policy = Policy.model_validate(http.post("/admin/policies", json=_body()).json())
    second = policy.model_copy(update={"version": 2, "name": "second"})
    rival = policy.model_copy(update={"version": 2, "name": "rival"})
    with shared.db.write() as conn:
        assert policy_store.insert_version(conn, second)
    with shared.db.write() as conn:
        assert not policy_store.insert_version(conn, rival)
        assert not policy_store.insert_version(conn, policy)
    with shared.db.read() as conn:
        assert policy_store.get_current(conn, tenant, policy.policy_id) == second
        assert [v.policy.name for v in policy_store.list_versions(conn, tenant, policy.policy_id)] == [
            policy.name,
            "second",
        ]
        # Under another owner, it is not there.
        assert policy_store.get_current(conn, _tenant(), policy.policy_id) is None
        assert policy_store.get_current(conn, None, policy.policy_id) is None


def test_concurrent_replacements_never_share_a_version(shared: Harness) -> None:
    tenant = _tenant()
    with shared.client(tenant, TENANT_SCOPES) as http:
        policy_id = http.post("/admin/policies", json=_body()).json()["policy_id"]

        def replace(priority: int) -> httpx.Response:
            with shared.client(tenant, TENANT_SCOPES, subject=f"admin-{priority}") as own:
                return own.put(f"/admin/policies/{policy_id}", json=_body(priority=priority))

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(replace, range(1, 13)))
        assert {a.status_code for a in answers} <= {200, 409}, [a.text for a in answers]
        stored = [a.json() for a in answers if a.status_code == 200]
        for refused in (a for a in answers if a.status_code == 409):
            assert refused.json()["code"] == "POLICY_CHANGED"
        versions = sorted(p["version"] for p in stored)
        assert len(set(versions)) == len(versions)
        current = http.get(f"/admin/policies/{policy_id}").json()
        assert current["version"] == 1 + len(stored) == max(versions)
        # The current version is the one its writer was answered.
        assert current == next(p for p in stored if p["version"] == current["version"])
    assert shared.count(approval_policies, owner=tenant, policy_id=policy_id, is_current=True) == 1
    assert shared.count(approval_policies, owner=tenant, policy_id=policy_id) == 1 + len(stored)
