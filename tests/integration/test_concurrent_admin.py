"""Concurrent admin writes through the API: registry versions are allocated without gaps or
duplicates, and of concurrent kill-switch PUTs the one with the highest revision is what stays.

They run on both backends; on PostgreSQL (READ COMMITTED, a connection per request) they are the
races that lost registrations and kept a kill-switch value other than the one last acknowledged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.support.harness import Harness

# The registry and the global switches are platform-wide; the tenant switches are the tenant's own.
ADMIN_SCOPES = ["admin", "platform:admin"]


def _all_at_once(
    count: int, call: Callable[[httpx.Client, int], httpx.Response], harness: Harness
) -> list[Any]:
    """``count`` requests released together, each on its own connection."""
    barrier = threading.Barrier(count)

    def one(index: int) -> httpx.Response:
        with harness.client("t1", ADMIN_SCOPES) as client:
            client.get("/healthz")  # connect first, so the requests leave together
            barrier.wait(timeout=30)
            return call(client, index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_sixteen_concurrent_registrations_get_versions_one_to_sixteen(harness: Harness) -> None:
    draft = {
        "action_type": "CONCURRENT_TASK",
        "tool_name": "internal.create_task",
        "parameter_mapping": {"title": {"toolParam": "title", "required": True}},
    }
    responses = _all_at_once(16, lambda client, _i: client.post("/admin/registry", json=draft), harness)
    assert [response.status_code for response in responses] == [201] * 16, [r.text for r in responses]
    assert sorted(response.json()["registry_version"] for response in responses) == list(range(1, 17))
    with harness.client("t1", ADMIN_SCOPES) as client:
        listed = client.get("/admin/registry", params={"action_type": "CONCURRENT_TASK"}).json()["entries"]
    assert [entry["registry_version"] for entry in listed] == list(range(1, 17))


def _last_acknowledged_stays(responses: list[httpx.Response], stored: dict[str, Any], before: int) -> None:
    assert [response.status_code for response in responses] == [200] * len(responses)
    answers = [response.json() for response in responses]
    revisions = sorted(answer["revision"] for answer in answers)
    assert revisions == list(range(before + 1, before + len(responses) + 1))  # one write each
    last = max(answers, key=lambda answer: answer["revision"])
    assert stored == last


def test_of_twenty_concurrent_global_puts_the_last_acknowledged_one_stays(harness: Harness) -> None:
    with harness.client("t1", ADMIN_SCOPES) as client:
        before = client.get("/admin/kill-switches").json()
    assert (before["revision"], before["updated_at"]) == (0, None)

    def put(client: httpx.Client, index: int) -> httpx.Response:
        body = {"global_stop": index % 2 == 0, "disabled_action_types": [f"TYPE_{index}"]}
        return client.put("/admin/kill-switches", json=body)

    responses = _all_at_once(20, put, harness)
    with harness.client("t1", ADMIN_SCOPES) as client:
        stored = client.get("/admin/kill-switches").json()
        _last_acknowledged_stays(responses, stored, before["revision"])
        # What a client got can be PUT back as it is: revision and updated_at are ignored.
        again = client.put("/admin/kill-switches", json=stored)
        assert again.status_code == 200, again.text
        assert again.json()["revision"] == stored["revision"] + 1
        assert {k: again.json()[k] for k in ("global_stop", "disabled_action_types")} == {
            k: stored[k] for k in ("global_stop", "disabled_action_types")
        }
        off = client.put("/admin/kill-switches", json={"global_stop": False, "disabled_action_types": []})
        assert off.status_code == 200


def test_of_twenty_concurrent_tenant_puts_the_last_acknowledged_one_stays(harness: Harness) -> None:
    def put(client: httpx.Client, index: int) -> httpx.Response:
        body = {"execution_enabled": index % 2 == 0, "disabled_action_types": [f"TYPE_{index}"]}
        return client.put("/admin/tenants/t1/execution", json=body)

    responses = _all_at_once(20, put, harness)
    with harness.client("t1", ADMIN_SCOPES) as client:
        stored = client.get("/admin/tenants/t1/execution").json()
        _last_acknowledged_stays(responses, stored, 0)
        unknown = client.put(
            "/admin/tenants/t1/execution",
            json={"execution_enabled": True, "disabled_action_types": [], "surprise": 1},
        )
        assert unknown.status_code == 422  # other unknown fields are still refused
