"""AMBIGUOUS executions and their resolution by a person, end to end.

A real MCP server (``tests/support/mcp_target.py --undo``, its own process) creates tickets and
deletes them; a fault-injecting proxy in front of it loses the answer of ``create_ticket`` after the
server wrote. The target is registered as one that does not deduplicate, so the execution ends
AMBIGUOUS and waits for ``POST /executions/{id}/resolve``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from fulfill.cli.app import app
from fulfill.engine.reconciler import reconcile_once
from fulfill.store import executions
from tests.integration.test_agent_mcp import _names, call_tool, run
from tests.integration.test_compensation_targets import compensation_status, register
from tests.support.console import Console
from tests.support.harness import TEST_SECRET, Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, wait_for
from tests.support.mcp_target import McpTarget
from tests.support.metrics import scrape, value

pytestmark = pytest.mark.slow

TICKET_REF = {"system": "MCP:tickets", "object_type": "Ticket", "object_id": "T-1"}


def _service(tmp_path: Path, gateway_call_timeout_seconds: float) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path,
        gateway_egress_allow=["127.0.0.1"],
        gateway_call_timeout_seconds=gateway_call_timeout_seconds,
        reconcile_grace_seconds=0,
    )
    running = Harness(settings).start()
    yield running
    running.stop()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Harness]:
    """A gateway budget of 5 s: a held call's answer is lost after it, and a call that is not held
    must reach its target and answer within it, which on a loaded machine took more than 2 s (a
    resend that arrived late was lost as well, and stayed AMBIGUOUS)."""
    yield from _service(tmp_path, gateway_call_timeout_seconds=5.0)


@pytest.fixture
def patient_service(tmp_path: Path) -> Iterator[Harness]:
    """The service above with a gateway budget of 10 s: a call must reach its target, through the
    proxy, before the budget runs out, and a loaded machine has taken longer than 2 s to get it
    there (the target never saw the call) while the test waits for it. The held call's answer is
    dropped as soon as the test has cancelled, so the test does not wait for the budget."""
    yield from _service(tmp_path, gateway_call_timeout_seconds=10.0)


@pytest.fixture
def proxy() -> Iterator[FaultyProxy]:
    running = FaultyProxy()
    yield running
    running.close()


@pytest.fixture
def target(proxy: FaultyProxy) -> Iterator[McpTarget]:
    running = McpTarget("--undo")
    proxy.upstream = running.url
    yield running
    running.stop()


def events(harness: Harness, intent_id: str) -> list[Any]:
    with harness.db.read() as conn:
        return list(executions.list_ledger(conn, "t1", intent_id))


def ambiguous(
    harness: Harness, client: httpx.Client, proxy: FaultyProxy, *, timeout_seconds: int | None = None
) -> str:
    """Register the target, run one CREATE_TICKET whose answer is lost: its intent id, AMBIGUOUS.

    The proxy drops the connection once the target has written, so the answer is lost at once.
    An answer lost by the gateway's budget running out (a held call) ends the same way
    (``test_gateway_targets.py``); waiting for it here would only make each test longer."""
    register(client, proxy, deduplicates=False)
    proxy.add_faults(Fault("drop_after"))  # the target writes; its answer never arrives
    policy = {"execution_policy": {"timeout_seconds": timeout_seconds}} if timeout_seconds else {}
    intent = harness.create_intent(
        client, action_type="CREATE_TICKET", parameters={"title": "Printer on fire"}, **policy
    )
    intent_id = str(intent["action_intent_id"])
    harness.approve(client, intent_id)
    status = harness.wait_terminal(client, intent_id)
    assert status["status"] == "AMBIGUOUS", status
    return intent_id


def resolve(client: httpx.Client, intent_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/executions/{intent_id}/resolve", json=body)


def problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    if code is not None:
        assert body.get("code") == code, body
    return body


def test_a_lost_answer_waits_ambiguous_with_no_second_call_no_rerun_and_no_cancel(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        status = client.get(f"/executions/{intent_id}/status").json()
        assert status["status"] == "AMBIGUOUS"
        assert status["error_code"] == "UNKNOWN_OUTCOME"
        assert status["attempt_count"] == 1
        # Its evidence on the timeline: what was sent (tool, key), when, and what came back.
        timeline = client.get(f"/executions/{intent_id}/timeline").json()["entries"]
        [entry] = [e for e in timeline if e["event_type"] == "ACTION_AMBIGUOUS"]
        assert entry["data"]["status"] == "AMBIGUOUS"
        assert entry["data"]["tool_name"] == "tickets.create_ticket"
        assert entry["data"]["idempotency_key"]
        assert entry["data"]["error_message"]
        assert [e for e in timeline if e["event_type"] == "OUTCOME_UNKNOWN"]
        # No rerun, no cancel while it is in doubt.
        problem(client.post(f"/intents/{intent_id}/rerun", json={}), 409, "EXECUTION_AMBIGUOUS")
        body = problem(client.post(f"/intents/{intent_id}/cancel", json={}), 409, "EXECUTION_AMBIGUOUS")
        assert "resolve it first" in body["detail"]
        assert client.get(f"/intents/{intent_id}").json()["approval_status"] == "APPROVED"
        # Nothing retries it, not even the reconciler.
        reconcile_once(service.service.runtime)
        time.sleep(0.5)
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "AMBIGUOUS"
        listed = client.get("/accounts/acc-1/executions", params={"status": "AMBIGUOUS"}).json()
        assert [e["action_intent_id"] for e in listed["executions"]] == [intent_id]
        samples = scrape(service.url)
        assert value(samples, "fulfill_ambiguous_executions", age="under_1h") == 1
        assert value(samples, "fulfill_ambiguous_executions", age="1h_to_24h") == 0
        assert value(samples, "fulfill_ambiguous_executions", age="over_24h") == 0
        assert value(samples, "fulfill_ambiguous_oldest_age_seconds") >= 0.5  # waited the sleep above
        assert value(samples, "fulfill_ambiguous_alert_threshold_seconds") == 3600
    assert target.calls() == 1
    assert target.stats()["effects"] == 1


def test_committed_succeeds_with_the_refs_and_a_cancel_afterwards_compensates(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        response = resolve(client, intent_id, resolution="committed", external_object_refs=[TICKET_REF])
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "SUCCEEDED"
        assert response.json()["external_object_refs"] == [TICKET_REF]
        assert "error_code" not in response.json()
        status = client.get(f"/executions/{intent_id}/status").json()
        assert status["status"] == "SUCCEEDED"
        assert status["external_object_refs"] == [TICKET_REF]
        [resolved] = [e for e in events(service, intent_id) if e.event_type == "EXECUTION_RESOLVED"]
        assert resolved.data["resolution"] == "committed"
        assert resolved.data["decided_by"] == "fulfill-cli"
        assert resolved.data["external_object_refs"] == [TICKET_REF]
        # Already resolved: 409.
        problem(resolve(client, intent_id, resolution="abandon", reason="again"), 409, "NOT_AMBIGUOUS")
        # The write it named is compensable like any other.
        assert client.post(f"/intents/{intent_id}/cancel", json={}).status_code == 202
        wait_for(lambda: compensation_status(client, intent_id) == "COMPLETED", timeout=30)
    assert target.stats()["deleted"] == ["T-1"]
    assert target.calls() == 1


def test_not_committed_sends_the_call_once_more_under_the_same_key(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        first_key = target.stats()["meta"]["create_ticket"]["io.fulfill/idempotency-key"]
        response = resolve(client, intent_id, resolution="not_committed")
        assert response.status_code == 200, response.text
        assert response.json()["attempt_count"] == 2
        assert response.json()["status"] in {"PENDING", "RUNNING", "SUCCEEDED"}
        status = wait_for(
            lambda: (
                (s := client.get(f"/executions/{intent_id}/status").json())["status"] == "SUCCEEDED" and s
            ),
            timeout=30,
        )
        assert status["attempt_count"] == 2
        assert status["external_object_refs"][0]["object_id"] == "T-2"
        kinds = [e.event_type for e in events(service, intent_id)]
        assert kinds.count("EXECUTION_RESOLVED") == 1
        assert kinds.count("RERUN_REQUESTED") == 1
        problem(resolve(client, intent_id, resolution="not_committed"), 409, "NOT_AMBIGUOUS")
    assert target.calls() == 2  # exactly one resend
    assert target.stats()["meta"]["create_ticket"]["io.fulfill/idempotency-key"] == first_key


def test_abandon_fails_with_the_reason_as_error_message(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        problem(resolve(client, intent_id, resolution="abandon"), 422)
        problem(resolve(client, intent_id, resolution="committed"), 422)
        problem(resolve(client, intent_id, resolution="maybe"), 422)
        response = resolve(client, intent_id, resolution="abandon", reason="the ticket system was rebuilt")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "FAILED"
        assert body["error_code"] == "AMBIGUOUS_ABANDONED"
        assert body["error_message"] == "the ticket system was rebuilt"
        [resolved] = [e for e in events(service, intent_id) if e.event_type == "EXECUTION_RESOLVED"]
        assert resolved.data["reason"] == "the ticket system was rebuilt"
        samples = scrape(service.url)
        assert value(samples, "fulfill_ambiguous_executions", age="under_1h") == 0
        assert value(samples, "fulfill_ambiguous_oldest_age_seconds") == 0
    assert target.calls() == 1


def test_two_racing_resolutions_one_wins_the_other_gets_409(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(
                pool.map(
                    lambda _: resolve(client, intent_id, resolution="not_committed"),
                    range(4),
                )
            )
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [200, 409, 409, 409], [a.text for a in answers]
        wait_for(
            lambda: client.get(f"/executions/{intent_id}/status").json()["status"] == "SUCCEEDED", timeout=30
        )
        kinds = [e.event_type for e in events(service, intent_id)]
        assert kinds.count("EXECUTION_RESOLVED") == 1
    assert target.calls() == 2


def test_the_budget_does_not_run_while_it_waits(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy, timeout_seconds=5)
        time.sleep(5.5)  # past the first attempt's budget
        reconcile_once(service.service.runtime)
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "AMBIGUOUS"
        assert resolve(client, intent_id, resolution="not_committed").status_code == 200
        status = wait_for(
            lambda: (
                (s := client.get(f"/executions/{intent_id}/status").json())["status"]
                in {"SUCCEEDED", "FAILED"}
                and s
            ),
            timeout=30,
        )
        assert status["status"] == "SUCCEEDED", status  # a fresh budget, not EXECUTION_TIMEOUT
    assert target.calls() == 2


def test_an_agent_another_tenant_and_a_non_admin_cannot_resolve(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        with service.client(actor="agent-7") as agent:
            problem(resolve(agent, intent_id, resolution="abandon", reason="x"), 403, "AGENT_CANNOT_RESOLVE")
        with service.client(tenant="t2") as other:
            problem(resolve(other, intent_id, resolution="abandon", reason="x"), 404)
        with service.client(scopes=["executions:read", "intents:approve"]) as reader:
            problem(resolve(reader, intent_id, resolution="abandon", reason="x"), 403)
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "AMBIGUOUS"


def test_resolving_what_is_not_ambiguous_is_409(service: Harness, target: McpTarget) -> None:
    with service.client() as client:
        status = service.run_task(client, action_type="CREATE_INTERNAL_TASK", parameters={"title": "x"})
        assert status["status"] == "SUCCEEDED"
        intent_id = status["action_intent_id"]
        problem(resolve(client, intent_id, resolution="abandon", reason="x"), 409, "NOT_AMBIGUOUS")
        problem(resolve(client, "nope", resolution="abandon", reason="x"), 404)


def test_the_cli_resolves_committed_with_refs_and_refuses_a_second_resolution(
    service: Harness, proxy: FaultyProxy, target: McpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FULFILL_DATABASE_URL", service.settings.database_url)
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("FULFILL_URL", service.url)
    monkeypatch.setenv("COLUMNS", "200")
    cli = CliRunner()
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        neither = cli.invoke(app, ["resolve", intent_id, "--tenant", "t1"])
        assert neither.exit_code == 2
        bad_ref = cli.invoke(app, ["resolve", intent_id, "--tenant", "t1", "--committed", "--ref", "T-1"])
        assert bad_ref.exit_code == 2
        done = cli.invoke(
            app, ["resolve", intent_id, "--tenant", "t1", "--committed", "--ref", "MCP:tickets:Ticket:T-1"]
        )
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["status"] == "SUCCEEDED"
        assert client.get(f"/executions/{intent_id}/status").json()["external_object_refs"] == [TICKET_REF]
        again = cli.invoke(app, ["resolve", intent_id, "--tenant", "t1", "--abandon", "--reason", "x"])
        assert again.exit_code == 1
        assert "AMBIGUOUS" in again.stderr


def test_the_mcp_door_offers_resolve_action_to_an_operator_and_never_to_an_agent(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    operator = service.token("t1")
    agent = service.token("t1", actor="agent-7")
    reader = service.token("t1", ["intents:read", "executions:read", "intents:approve"])
    assert "resolve_action" in run(_names(service, operator))
    assert "resolve_action" not in run(_names(service, agent))
    assert "resolve_action" not in run(_names(service, reader))
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        refused = call_tool(
            service,
            agent,
            "resolve_action",
            {"action_intent_id": intent_id, "resolution": "abandon", "reason": "x"},
        )
        assert refused.is_error
        assert refused.structured_content["error_code"] == "AGENT_CANNOT_RESOLVE"
        no_scope = call_tool(
            service,
            reader,
            "resolve_action",
            {"action_intent_id": intent_id, "resolution": "abandon", "reason": "x"},
        )
        assert no_scope.structured_content["error_code"] == "MISSING_SCOPE"
        bad = call_tool(
            service, operator, "resolve_action", {"action_intent_id": intent_id, "resolution": "committed"}
        )
        assert bad.structured_content["error_code"] == "INVALID_RESOLUTION"
        other_tenant = service.token("t2")
        unknown = call_tool(
            service,
            other_tenant,
            "resolve_action",
            {"action_intent_id": intent_id, "resolution": "abandon", "reason": "x"},
        )
        assert unknown.is_error
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "AMBIGUOUS"
        done = call_tool(
            service,
            operator,
            "resolve_action",
            {"action_intent_id": intent_id, "resolution": "committed", "external_object_refs": [TICKET_REF]},
        )
        assert not done.is_error, done
        assert done.structured_content["status"] == "SUCCEEDED"
        assert done.structured_content["external_object_refs"] == [TICKET_REF]
        again = call_tool(
            service,
            operator,
            "resolve_action",
            {"action_intent_id": intent_id, "resolution": "abandon", "reason": "x"},
        )
        assert again.structured_content["error_code"] == "NOT_AMBIGUOUS"


def test_the_console_shows_the_evidence_and_an_admin_resolves_there(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    admin_scopes = ["intents:read", "intents:approve", "executions:read", "admin"]
    browser = Console(service)
    plain = Console(service)
    try:
        browser.login(scopes=admin_scopes, subject="ops@example.com")
        plain.login(scopes=["intents:read", "intents:approve", "executions:read"])
        with service.client() as client:
            intent_id = ambiguous(service, client, proxy)
            page = browser.get(f"/console/executions/{intent_id}").text
            assert "status-ambiguous" in page
            assert "Outcome: AMBIGUOUS" in page
            assert "sent: tickets.create_ticket with idempotency key" in page
            assert "what came back:" in page
            assert f"/console/executions/{intent_id}/resolve" in page
            assert f"/console/intents/{intent_id}/cancel" not in page
            assert 'hx-trigger="every 1s"' not in page  # nothing changes it but a person
            assert (
                f"/console/executions/{intent_id}/resolve"
                not in plain.get(f"/console/executions/{intent_id}").text
            )
            path = f"/console/executions/{intent_id}/resolve"
            assert plain.post(path, {"resolution": "abandon", "reason": "x"}).status_code == 403
            assert browser.post(path, {"resolution": "abandon", "reason": "x"}, csrf=None).status_code == 403
            assert (
                browser.post(path, {"resolution": "abandon", "reason": "x"}, csrf="forged").status_code == 403
            )
            assert browser.post(path, {"resolution": "committed", "refs": "nonsense"}).status_code == 422
            assert client.get(f"/executions/{intent_id}/status").json()["status"] == "AMBIGUOUS"
            done = browser.post(path, {"resolution": "committed", "refs": "MCP:tickets:Ticket:T-1\n"})
            assert done.status_code == 303, done.text
            shown = browser.get(done.headers["location"]).text
            assert "Resolved committed" in shown or "Resolved: committed" in shown
            assert "by ops@example.com" in shown
            status = client.get(f"/executions/{intent_id}/status").json()
            assert status["status"] == "SUCCEEDED"
            assert status["external_object_refs"] == [TICKET_REF]
    finally:
        browser.close()
        plain.close()


def _cancelled_while_in_flight(
    service: Harness, client: httpx.Client, proxy: FaultyProxy, target: McpTarget
) -> str:
    """The intent is cancelled while its call is held (written at the target, answer not back
    yet); then the answer is lost (the proxy drops it once released)."""
    register(client, proxy, deduplicates=False)
    proxy.add_faults(Fault("hold_then_drop"))
    intent_id = str(
        service.create_intent(client, action_type="CREATE_TICKET", parameters={"title": "Printer on fire"})[
            "action_intent_id"
        ]
    )
    service.approve(client, intent_id)

    def where_it_stands() -> str:
        status = client.get(f"/executions/{intent_id}/status").text
        ledger = [event.event_type for event in events(service, intent_id)]
        return f"status {status}; ledger {ledger}; {proxy.describe()}; target {target.stats()}"

    wait_for(lambda: target.calls() == 1, timeout=30, describe=where_it_stands)
    assert client.post(f"/intents/{intent_id}/cancel", json={}).status_code == 202
    proxy.state.release.set()
    status = service.wait_terminal(client, intent_id)
    assert status["status"] == "AMBIGUOUS", status
    assert client.get(f"/intents/{intent_id}").json()["approval_status"] == "CANCELLED"
    return intent_id


def test_a_write_cancelled_in_flight_then_resolved_committed_is_compensated(
    patient_service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with patient_service.client() as client:
        intent_id = _cancelled_while_in_flight(patient_service, client, proxy, target)
        response = resolve(client, intent_id, resolution="committed", external_object_refs=[TICKET_REF])
        assert response.status_code == 200, response.text
        wait_for(lambda: compensation_status(client, intent_id) == "COMPLETED", timeout=30)
    assert target.stats()["deleted"] == ["T-1"]


def test_a_write_cancelled_in_flight_then_resolved_not_committed_is_not_sent_again(
    patient_service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with patient_service.client() as client:
        intent_id = _cancelled_while_in_flight(patient_service, client, proxy, target)
        response = resolve(client, intent_id, resolution="not_committed")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "FAILED"
        assert response.json()["error_code"] == "NOT_COMMITTED"
        assert response.json()["attempt_count"] == 1
        time.sleep(1.0)
    assert target.calls() == 1
