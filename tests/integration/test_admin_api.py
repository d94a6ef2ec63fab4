"""Admin routes: kill switches, a tenant's execution config, the registry; and which admin may do
what (a tenant's ``admin`` manages its own tenant, ``platform:admin`` what every tenant shares)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.harness import Harness

TASK_V = {
    "action_type": "CREATE_INTERNAL_TASK",
    "tool_name": "internal.create_task",
    "compensation_strategy": "AUTOMATIC",
    "compensation_tool_name": "internal.delete_task",
    "parameter_mapping": {
        "title": {"toolParam": "title", "required": True},
        "details": {"toolParam": "description", "transform": "UPPERCASE"},
    },
}


def switches(body: dict[str, Any]) -> dict[str, Any]:
    """The switches of a kill-switch answer, without the write's ``revision`` and ``updated_at``."""
    return {key: value for key, value in body.items() if key not in ("revision", "updated_at")}


def test_kill_switches_round_trip_and_apply_to_the_next_execution(shared: Harness) -> None:
    with shared.client() as client:
        assert switches(client.get("/admin/kill-switches").json()) == {
            "global_stop": False,
            "disabled_action_types": [],
        }
        stored = client.put(
            "/admin/kill-switches",
            json={"global_stop": False, "disabled_action_types": ["CREATE_INTERNAL_NOTE"]},
        )
        assert stored.status_code == 200
        assert switches(stored.json()) == {
            "global_stop": False,
            "disabled_action_types": ["CREATE_INTERNAL_NOTE"],
        }
        assert stored.json()["revision"] >= 1
        assert stored.json()["updated_at"]
        note = shared.run_task(client, action_type="CREATE_INTERNAL_NOTE", parameters={"content": "x"})
        assert (note["status"], note["error_code"]) == ("CANCELLED", "KILL_SWITCH_ENABLED")
        client.put("/admin/kill-switches", json={"global_stop": False, "disabled_action_types": []})
        assert (
            shared.run_task(client, action_type="CREATE_INTERNAL_NOTE", parameters={"content": "x"})["status"]
            == "SUCCEEDED"
        )
        assert client.put("/admin/kill-switches", json={"global_stop": "yes please"}).status_code == 422
        assert (
            client.put(
                "/admin/kill-switches", json={"global_stop": True, "disabled_action_types": ["bad type"]}
            ).status_code
            == 422
        )
    with shared.client(scopes=["executions:read"]) as reader:
        assert reader.get("/admin/kill-switches").status_code == 403
    with shared.client(scopes=["admin"]) as tenant_admin:
        assert tenant_admin.get("/admin/kill-switches").status_code == 403


def test_tenant_execution_config_is_per_tenant_and_foreign_tenants_are_404(shared: Harness) -> None:
    with shared.client(tenant="t7") as client:
        assert client.get("/admin/tenants/t7/execution").json() == {
            "execution_enabled": True,
            "revision": 0,  # never written
            "updated_at": None,
            "disabled_action_types": [],
        }
        stopped = client.put(
            "/admin/tenants/t7/execution", json={"execution_enabled": False, "disabled_action_types": []}
        )
        assert switches(stopped.json()) == {"execution_enabled": False, "disabled_action_types": []}
        assert stopped.json()["revision"] == 1
        assert shared.run_task(client)["status"] == "CANCELLED"
        client.put(
            "/admin/tenants/t7/execution", json={"execution_enabled": True, "disabled_action_types": []}
        )
        assert shared.run_task(client)["status"] == "SUCCEEDED"
        assert client.get("/admin/tenants/t1/execution").status_code == 404
        assert (
            client.put(
                "/admin/tenants/t1/execution", json={"execution_enabled": False, "disabled_action_types": []}
            ).status_code
            == 404
        )


def test_registering_versions_and_pinning(shared: Harness) -> None:
    with shared.client() as client:
        created = client.post("/admin/registry", json={**TASK_V, "action_type": "FLAG_FOR_REVIEW"})
        assert created.status_code == 201, created.text
        entry = created.json()
        assert entry["registry_version"] == 1
        assert entry["parameter_mapping"]["details"] == {
            "toolParam": "description",
            "transform": "UPPERCASE",
            "required": False,
        }
        second = client.post("/admin/registry", json={**TASK_V, "action_type": "FLAG_FOR_REVIEW"}).json()
        assert second["registry_version"] == 2
        listed = client.get("/admin/registry", params={"action_type": "FLAG_FOR_REVIEW"}).json()["entries"]
        assert [e["registry_version"] for e in listed] == [1, 2]
        status = shared.run_task(
            client, action_type="FLAG_FOR_REVIEW", parameters={"title": "t", "details": "shout"}
        )
        assert status["status"] == "SUCCEEDED"
        # deprecate version 2: new intents get version 1 by default and cannot pin 2
        deprecated = client.post("/admin/registry/FLAG_FOR_REVIEW/versions/2/deprecate")
        assert deprecated.status_code == 200
        assert deprecated.json()["deprecated_at"]
        assert (
            shared.create_intent(client, action_type="FLAG_FOR_REVIEW", parameters={"title": "t"})[
                "registry_version"
            ]
            == 1
        )
        pinned = client.post(
            "/intents",
            json={
                "action_type": "FLAG_FOR_REVIEW",
                "account_id": "acc-1",
                "parameters": {"title": "t"},
                "registry_version": 2,
            },
        )
        assert pinned.json()["code"] == "REGISTRY_VERSION_DEPRECATED"
        assert client.post("/admin/registry/FLAG_FOR_REVIEW/versions/9/deprecate").status_code == 404


def test_an_action_type_whose_every_version_is_deprecated_says_so(shared: Harness) -> None:
    with shared.client() as client:
        created = client.post("/admin/registry", json={**TASK_V, "action_type": "RETIRED_ACTION"})
        assert created.status_code == 201, created.text
        assert client.post("/admin/registry/RETIRED_ACTION/versions/1/deprecate").status_code == 200
        refused = client.post(
            "/intents",
            json={"action_type": "RETIRED_ACTION", "account_id": "acc-1", "parameters": {"title": "t"}},
        )
        assert refused.status_code == 422
        assert refused.json()["code"] == "REGISTRY_VERSION_DEPRECATED"
        assert "every registry version of RETIRED_ACTION is deprecated" in refused.json()["detail"]


def test_concurrent_registrations_get_distinct_versions(shared: Harness) -> None:
    def register(_: int) -> int:
        with shared.client() as own:
            response = own.post("/admin/registry", json={**TASK_V, "action_type": "FETCH_ACCOUNT_NEWS"})
            assert response.status_code == 201, response.text
            return int(response.json()["registry_version"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(register, range(16)))
    assert sorted(versions) == list(range(1, 17))


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"tool_name": "internal.no_such_tool"}, "UNKNOWN_TOOL"),
        ({"compensation_tool_name": "internal.nope"}, "UNKNOWN_TOOL"),
        ({"parameter_mapping": {"title": {"toolParam": "headline", "required": True}}}, "INVALID_MAPPING"),
        ({"parameter_mapping": {"details": {"toolParam": "description"}}}, "INVALID_MAPPING"),
        (
            {
                "parameter_mapping": {
                    "title": {"toolParam": "title", "required": True},
                    "t": {"toolParam": "tenant_id"},
                }
            },
            "INVALID_MAPPING",
        ),
        ({"compensation_tool_name": None}, "INVALID_REGISTRY_ENTRY"),
    ],
)
def test_invalid_registrations_are_422(shared: Harness, change: dict[str, Any], code: str) -> None:
    with shared.client() as client:
        response = client.post("/admin/registry", json={**TASK_V, **change})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


def test_registry_input_is_validated(shared: Harness) -> None:
    with shared.client() as client:
        assert client.post("/admin/registry", json={**TASK_V, "action_type": "lower"}).status_code == 422
        assert (
            client.post(
                "/admin/registry",
                json={**TASK_V, "parameter_mapping": {"t": {"toolParam": "title", "transform": "CUSTOM"}}},
            ).status_code
            == 422
        )
    with shared.client(scopes=["intents:write"]) as no_admin:
        assert no_admin.get("/admin/registry").status_code == 403


# --- platform scope vs tenant scope -------------------------------------------------------------------


def test_a_tenant_admin_cannot_stop_every_tenant(shared: Harness) -> None:
    stop = {"global_stop": True, "disabled_action_types": ["CREATE_INTERNAL_TASK"]}
    try:
        with shared.client(tenant="t2", scopes=["admin"]) as t2_admin:
            refused = t2_admin.put("/admin/kill-switches", json=stop)
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "MISSING_SCOPE"
            assert t2_admin.get("/admin/kill-switches").status_code == 403
        with shared.client() as t1:
            assert shared.run_task(t1)["status"] == "SUCCEEDED"
    finally:  # whatever happened, the other tests of the module need the switches off
        with shared.client() as everything:
            everything.put("/admin/kill-switches", json={"global_stop": False, "disabled_action_types": []})


def test_a_tenant_admin_cannot_change_the_registry_every_tenant_pins(shared: Harness) -> None:
    with shared.client(tenant="t2", scopes=["admin"]) as t2_admin:
        hijack = t2_admin.post(
            "/admin/registry",
            json={**TASK_V, "parameter_mapping": {"title": {"toolParam": "title", "transform": "UPPERCASE"}}},
        )
        assert hijack.status_code == 403, hijack.text
        assert hijack.json()["code"] == "MISSING_SCOPE"
        assert t2_admin.get("/admin/registry").status_code == 403
        assert t2_admin.post("/admin/registry/CREATE_INTERNAL_TASK/versions/1/deprecate").status_code == 403
    with shared.client(tenant="ops", scopes=["platform:admin"]) as platform:
        versions = platform.get("/admin/registry", params={"action_type": "CREATE_INTERNAL_TASK"}).json()
    assert [entry["registry_version"] for entry in versions["entries"]] == [1]
    with shared.client() as t1:
        intent = shared.create_intent(t1, parameters={"title": "stays as typed"})
        assert intent["registry_version"] == 1
        assert shared.run_task(t1)["status"] == "SUCCEEDED"


def test_a_platform_admin_manages_shared_settings_but_no_tenant(shared: Harness) -> None:
    with shared.client(tenant="ops", scopes=["platform:admin"]) as platform:
        assert platform.get("/admin/kill-switches").status_code == 200
        assert platform.get("/admin/registry").status_code == 200
        # No tenant power: not over another tenant's switches, not over its own, no reruns.
        assert platform.get("/admin/tenants/t1/execution").status_code == 403
        assert platform.get("/admin/tenants/ops/execution").status_code == 403
        off = {"execution_enabled": False, "disabled_action_types": []}
        assert platform.put("/admin/tenants/t1/execution", json=off).status_code == 403
        assert platform.post("/intents/ai_any/rerun", json={"reason": "x"}).status_code == 403
    with shared.client(scopes=["admin"]) as t1_admin:
        assert t1_admin.get("/admin/tenants/t1/execution").json()["execution_enabled"] is True


def test_a_tenant_admin_reruns_only_its_own_intents(shared: Harness) -> None:
    with shared.client() as t1:
        intent = shared.create_intent(t1)
    with shared.client(tenant="t2", scopes=["admin"]) as t2_admin:
        foreign = t2_admin.post(f"/intents/{intent['action_intent_id']}/rerun", json={"reason": "x"})
        assert foreign.status_code == 404, foreign.text
    with shared.client(scopes=["admin"]) as t1_admin:
        own = t1_admin.post(f"/intents/{intent['action_intent_id']}/rerun", json={"reason": "x"})
        assert own.status_code == 409, own.text  # its own intent: found, just not rerunnable yet
