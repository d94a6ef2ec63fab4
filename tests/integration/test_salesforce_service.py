"""Salesforce through the whole service: intents approved over the HTTP API run through the
engine and the MCP gateway to the local Salesforce server, and end with the record's id in their
refs; cancels compensate; lost answers and rate limits are retried into one write; and no secret
or token ever reaches a log line, an outcome or an API answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from fulfill.store.tables import execution_outcomes, ledger_entries
from fulfill_tools.dev.salesforce import DevSalesforce, DevSalesforceServer, Fault
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for
from tests.support.salesforce import CLIENT_ID, CLIENT_SECRET, SECRETS_KEY, dev_config


@pytest.fixture(scope="module")
def dev() -> Iterator[DevSalesforceServer]:
    server = DevSalesforceServer(DevSalesforce(dev_config())).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, dev: DevSalesforceServer) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path_factory.mktemp("salesforce"),
        secrets_key=SECRETS_KEY,
        salesforce_login_url=dev.url,
        salesforce_timeout_seconds=2.0,
        gateway_egress_allow=["127.0.0.1"],
    )
    running = Harness(settings).start()
    with running.client(scopes=["admin"]) as client:
        response = client.put(
            "/admin/credentials/salesforce",
            json={"type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        )
        assert response.status_code == 201, response.text
    yield running
    running.stop()


def run(harness: Harness, action_type: str, parameters: dict[str, Any], **client_args: Any) -> dict[str, Any]:
    with harness.client(**client_args) as client:
        return harness.run_task(client, action_type=action_type, parameters=parameters)


def test_create_crm_task_approved_over_http_ends_succeeded_with_the_record(
    served: Harness, dev: DevSalesforceServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # whatever an earlier test configured
    status = run(
        served, "CREATE_CRM_TASK", {"title": "Call Ada", "priority": "high", "description": "renewal"}
    )
    assert status["status"] == "SUCCEEDED", status
    [ref] = status["external_object_refs"]
    assert (ref["system"], ref["object_type"]) == ("CRM", "Task")
    task = dev.dev.record("Task", ref["object_id"])
    assert task is not None
    assert (task["Subject"], task["Priority"], task["Description"]) == ("Call Ada", "High", "renewal")
    assert ref["object_url"] == f"{dev.url}/{ref['object_id']}"
    with served.db.read() as conn:
        outcome = conn.execute(
            select(execution_outcomes).where(
                execution_outcomes.c.action_intent_id == status["action_intent_id"]
            )
        ).one()
    assert task["Fulfill_Idempotency_Key__c"] == outcome.document["idempotency_key"]

    # No secret and no token anywhere: logs, the outcome, the ledger, the API's answers.
    with served.client() as client:
        answers = [
            client.get(f"/executions/{status['action_intent_id']}/status").text,
            client.get(f"/executions/{status['action_intent_id']}/timeline").text,
            client.get("/admin/credentials").text,
            client.get("/accounts/acc-1/executions").text,
        ]
    with served.db.read() as conn:
        stored = json.dumps([list(map(str, row)) for row in conn.execute(select(ledger_entries)).all()])
        stored += json.dumps([str(row.document) for row in conn.execute(select(execution_outcomes)).all()])
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert "oauth2/token" in logs  # the capture did see the connector's requests
    assert dev.dev.issued
    for secret in [CLIENT_SECRET, *dev.dev.issued]:
        assert secret not in logs
        assert secret not in stored
        for text in answers:
            assert secret not in text


def test_cancel_after_the_write_deletes_the_task(served: Harness, dev: DevSalesforceServer) -> None:
    status = run(served, "CREATE_CRM_TASK", {"title": "To be undone"})
    intent_id = status["action_intent_id"]
    task_id = status["external_object_refs"][0]["object_id"]
    with served.client() as client:
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
        compensated = served.wait_compensated(client, intent_id)
    assert compensated["status"] == "SUCCEEDED"
    assert dev.dev.record("Task", task_id) is None


def test_stage_update_and_its_compensation(served: Harness, dev: DevSalesforceServer) -> None:
    opportunity = dev.dev.seed()["opportunity_id"]
    status = run(served, "UPDATE_OPPORTUNITY_STAGE", {"opportunity_id": opportunity, "stage": "Closed Won"})
    assert status["status"] == "SUCCEEDED", status
    assert status["external_object_refs"][0]["object_id"] == opportunity
    assert dev.dev.record("Opportunity", opportunity)["StageName"] == "Closed Won"  # type: ignore[index]
    intent_id = status["action_intent_id"]
    with served.client() as client:
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
        wait_for(
            lambda: client.get(f"/executions/{intent_id}/status").json()["compensation_status"] == "COMPLETED"
        )
    assert dev.dev.record("Opportunity", opportunity)["StageName"] == "Prospecting"  # type: ignore[index]


def test_every_crm_action_type_runs(served: Harness, dev: DevSalesforceServer) -> None:
    seeded = dev.dev.seed()
    created = run(
        served,
        "CREATE_OPPORTUNITY",
        {
            "name": "Initech",
            "stage": "Prospecting",
            "close_date": "2031-03-31",
            "amount": 9000,
            "account_record_id": seeded["account_id"],
        },
    )
    assert created["status"] == "SUCCEEDED", created
    assert created["external_object_refs"][0]["object_type"] == "Opportunity"
    updated = run(
        served,
        "UPDATE_ACCOUNT_FIELDS",
        {
            "account_record_id": seeded["account_id"],
            "fields": {"Industry": "Retail", "NumberOfEmployees": 250},
        },
    )
    assert updated["status"] == "SUCCEEDED", updated
    account = dev.dev.record("Account", seeded["account_id"])
    assert account is not None
    assert (account["Industry"], account["NumberOfEmployees"]) == ("Retail", 250)
    refused = run(
        served,
        "UPDATE_ACCOUNT_FIELDS",
        {"account_record_id": seeded["account_id"], "fields": {"OwnerId": "x"}},
    )
    assert refused["status"] == "FAILED"
    assert refused["error_class"] == "VALIDATION"


def test_a_connection_dropped_after_the_write_is_retried_into_one_record(
    served: Harness, dev: DevSalesforceServer
) -> None:
    dev.dev.add_fault(Fault("drop_after_commit", method="POST", path="/sobjects/Task"))
    status = run(served, "CREATE_CRM_TASK", {"title": "Written once"})
    assert status["status"] == "SUCCEEDED", status
    written = [t for t in dev.dev.records("Task") if t["Subject"] == "Written once"]
    assert [t["Id"] for t in written] == [status["external_object_refs"][0]["object_id"]]


def test_rate_limited_then_retried(served: Harness, dev: DevSalesforceServer) -> None:
    dev.dev.add_fault(Fault("rate_limit", method="POST", path="/sobjects/Task"))
    status = run(served, "CREATE_CRM_TASK", {"title": "After the limit"})
    assert status["status"] == "SUCCEEDED", status
    assert len([t for t in dev.dev.records("Task") if t["Subject"] == "After the limit"]) == 1


def test_invalid_input_fails_validation_naming_the_field(served: Harness) -> None:
    status = run(served, "CREATE_CRM_TASK", {"title": "Bad priority", "priority": "urgent"})
    assert status["status"] == "FAILED"
    assert status["error_class"] == "VALIDATION"
    assert "Priority" in status["error_message"]


def test_a_tenant_without_credentials_fails_with_auth(served: Harness) -> None:
    status = run(served, "CREATE_CRM_TASK", {"title": "Nobody set me up"}, tenant="t-nocreds")
    assert status["status"] == "FAILED"
    assert (status["error_class"], status["error_code"]) == ("AUTH", "CREDENTIALS_NOT_CONFIGURED")


def test_parameters_are_checked_against_the_tool_schema(served: Harness) -> None:
    with served.client() as client:
        response = client.post(
            "/intents",
            json={
                "action_type": "UPDATE_ACCOUNT_FIELDS",
                "account_id": "acc-1",
                "parameters": {"account_record_id": "001000000000001AAA", "fields": "Industry=Retail"},
            },
        )
    assert response.status_code == 422
    assert "parameters.fields" in response.json()["detail"]


def test_registry_seeds_the_crm_action_types(served: Harness, tmp_path: Path) -> None:
    with served.client(scopes=["platform:admin"]) as client:
        entries = client.get("/admin/registry").json()["entries"]
    seeded = {e["action_type"]: e for e in entries if e["tool_name"].startswith("crm.")}
    assert {name: (e["tool_name"], e["compensation_tool_name"]) for name, e in seeded.items()} == {
        "CREATE_CRM_TASK": ("crm.create_task", "crm.delete_task"),
        "CREATE_OPPORTUNITY": ("crm.create_opportunity", "crm.delete_opportunity"),
        "UPDATE_OPPORTUNITY_STAGE": ("crm.update_field", "crm.restore_field"),
        "UPDATE_ACCOUNT_FIELDS": ("crm.update_field", "crm.restore_field"),
    }
    from fulfill.usecases.registry import DEFAULT_ENTRIES, RegistryDraft, _check_against_tools

    for fields in DEFAULT_ENTRIES:  # every seeded mapping fits its tools' input schemas
        _check_against_tools(RegistryDraft.model_validate(fields), served.service.runtime.tool_schemas)
