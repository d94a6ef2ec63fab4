"""The executions API: the account list with tenant-bound cursors, the timeline, status filters."""

from __future__ import annotations

import base64

import pytest

from fulfill.domain.time import iso_from_epoch
from tests.support.harness import Harness


def test_walk_250_executions_at_limit_7_each_once_in_order(shared: Harness) -> None:
    with shared.client() as client:
        created = [
            shared.create_intent(client, account="acc-walk", action_intent_id=f"ai_walk_{n:03d}")[
                "action_intent_id"
            ]
            for n in range(250)
        ]
        seen: list[dict[str, object]] = []
        token: str | None = None
        pages = 0
        while True:
            params: dict[str, object] = {"limit": 7}
            if token:
                params["next_token"] = token
            response = client.get("/accounts/acc-walk/executions", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["executions"]) <= 7
            seen.extend(body["executions"])
            pages += 1
            token = body["next_token"]
            if token is None:
                break
    ids = [item["action_intent_id"] for item in seen]
    assert sorted(ids) == sorted(created)
    assert len(set(ids)) == 250
    assert pages == 36
    keys = [(item["updated_at"], item["action_intent_id"]) for item in seen]
    assert keys == sorted(keys, reverse=True)
    first = seen[0]
    assert first["status"] == "PENDING"
    assert first["account_id"] == "acc-walk"
    assert first["action_type"] == "CREATE_INTERNAL_TASK"


def test_list_shows_newest_change_first_and_filters_by_status(shared: Harness) -> None:
    with shared.client() as client:
        pending = shared.create_intent(client, account="acc-mix")
        done = shared.run_task(client, account="acc-mix")
        failed = shared.run_task(client, account="acc-mix", parameters={"title": " "})
        listed = client.get("/accounts/acc-mix/executions").json()
        assert [i["action_intent_id"] for i in listed["executions"]] == [
            failed["action_intent_id"],
            done["action_intent_id"],
            pending["action_intent_id"],
        ]
        assert listed["next_token"] is None
        [succeeded] = client.get("/accounts/acc-mix/executions", params={"status": "SUCCEEDED"}).json()[
            "executions"
        ]
        assert succeeded["action_intent_id"] == done["action_intent_id"]
        assert succeeded["external_object_refs"][0]["object_type"] == "Task"
        [failure] = client.get("/accounts/acc-mix/executions", params={"status": "FAILED"}).json()[
            "executions"
        ]
        assert failure["error_code"] == "VALIDATION_FAILED"
        [waiting] = client.get("/accounts/acc-mix/executions", params={"status": "PENDING"}).json()[
            "executions"
        ]
        assert waiting["action_intent_id"] == pending["action_intent_id"]
        shared.service.clock.advance(31 * 86_400)  # the pending intent expires
        assert (
            client.get("/accounts/acc-mix/executions", params={"status": "PENDING"}).json()["executions"]
            == []
        )
        [expired] = client.get("/accounts/acc-mix/executions", params={"status": "EXPIRED"}).json()[
            "executions"
        ]
        assert expired["action_intent_id"] == pending["action_intent_id"]
        assert expired["status"] == "EXPIRED"


@pytest.mark.parametrize("limit", ["0", "101", "abc", "10abc", "-1", "1.5"])
def test_a_bad_limit_is_400(shared: Harness, limit: str) -> None:
    with shared.client() as client:
        response = client.get("/accounts/acc-1/executions", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_LIMIT"


def test_a_bad_status_filter_is_400(shared: Harness) -> None:
    with shared.client() as client:
        response = client.get("/accounts/acc-1/executions", params={"status": "DONE"})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_STATUS"


def test_tampered_and_foreign_cursors_are_400(shared: Harness) -> None:
    with shared.client() as client:
        for n in range(3):
            shared.create_intent(client, account="acc-cur", action_intent_id=f"ai_cur_{n}")
        token = client.get("/accounts/acc-cur/executions", params={"limit": 1}).json()["next_token"]
        assert token
        raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        raw[-3] ^= 0x01
        tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        for bad in [tampered, "not-a-cursor", "AAAA", token[:-2], "€"]:
            response = client.get("/accounts/acc-cur/executions", params={"next_token": bad})
            assert response.status_code == 400, bad
            assert response.json()["code"] == "INVALID_CURSOR"
        other_filter = client.get(
            "/accounts/acc-cur/executions", params={"next_token": token, "status": "PENDING"}
        )
        assert other_filter.status_code == 400
        other_account = client.get("/accounts/acc-other/executions", params={"next_token": token})
        assert other_account.status_code == 400
    with shared.client(tenant="t2") as stranger:
        foreign = stranger.get("/accounts/acc-cur/executions", params={"next_token": token})
        assert foreign.status_code == 400
        assert stranger.get("/accounts/acc-cur/executions").json() == {"executions": [], "next_token": None}


def test_list_respects_account_claims_and_scopes(shared: Harness) -> None:
    with shared.client(account_ids=["acc-1"]) as narrow:
        assert narrow.get("/accounts/acc-1/executions").status_code == 200
        assert narrow.get("/accounts/acc-2/executions").status_code == 403
    with shared.client(scopes=["intents:read"]) as no_scope:
        assert no_scope.get("/accounts/acc-1/executions").status_code == 403


def test_timeline_lists_the_ledger_in_order(shared: Harness) -> None:
    with shared.client() as client:
        status = shared.run_task(client)
        intent_id = status["action_intent_id"]
        timeline = client.get(f"/executions/{intent_id}/timeline").json()
    assert timeline["action_intent_id"] == intent_id
    assert [e["event_type"] for e in timeline["entries"]] == [
        "ACTION_APPROVED",
        "EXECUTION_STARTED",
        "ACTION_EXECUTED",
        "SIGNAL",
    ]
    executed = timeline["entries"][2]
    assert executed["attempt"] == 1
    assert executed["data"]["external_object_refs"] == status["external_object_refs"]
    assert {"entry_id", "event_type", "timestamp", "attempt", "data"} == set(executed)
    with shared.client(tenant="t2") as stranger:
        assert stranger.get(f"/executions/{intent_id}/timeline").status_code == 404
    with shared.client(account_ids=["other"]) as narrow:
        assert narrow.get(f"/executions/{intent_id}/timeline").status_code == 403


def test_an_imported_approval_records_who_asserted_it_besides_who_approved(shared: Harness) -> None:
    now = shared.service.clock.now()
    approval = {"approved_by": "alice@upstream.example", "approval_timestamp": iso_from_epoch(now)}
    with shared.client(subject="svc-decision-importer") as importer:
        imported = shared.create_intent(importer, approval=approval)
        intent_id = imported["action_intent_id"]
        entries = importer.get(f"/executions/{intent_id}/timeline").json()["entries"]
    approved = next(e for e in entries if e["event_type"] == "ACTION_APPROVED")
    assert approved["data"]["approved_by"] == "alice@upstream.example"  # what the body claims
    assert approved["data"]["asserted_by"] == "svc-decision-importer"  # the token that claimed it
    assert approved["data"]["imported"] is True
    # An approval given here: the approver is the token's subject, and both say so.
    with shared.client(subject="bob") as approver, shared.client() as proposer:
        pending = shared.create_intent(proposer)  # nobody approves their own proposal
        approver.post(f"/intents/{pending['action_intent_id']}/approve")
        entries = approver.get(f"/executions/{pending['action_intent_id']}/timeline").json()["entries"]
    approved = next(e for e in entries if e["event_type"] == "ACTION_APPROVED")
    assert (approved["data"]["approved_by"], approved["data"]["asserted_by"]) == ("bob", "bob")
