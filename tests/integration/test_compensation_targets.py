"""Compensation on remote MCP targets: its own idempotency key, and lost answers left for a person.

A real MCP server (``tests/support/mcp_target.py --undo``, its own process) creates tickets and
deletes them with ``delete_ticket``; the registry maps ``CREATE_TICKET`` to ``create_ticket``,
undone ``AUTOMATIC``ally by ``delete_ticket``. A fault-injecting proxy in front of it loses the
answer of the undo after the server has run it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulfill.domain.idempotency import compensation_idempotency_key
from fulfill.engine.reconciler import reconcile_once
from fulfill.store import compensation_calls, executions
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, wait_for
from tests.support.mcp_target import McpTarget
from tests.support.metrics import delta, has, scrape

pytestmark = pytest.mark.slow

TICKET_MAPPING = {"title": {"toolParam": "title", "required": True}}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Harness]:
    """Reconciler grace and compensation backoff of 0: every reconciler pass may start a next try."""
    settings = make_settings(
        tmp_path,
        gateway_egress_allow=["127.0.0.1"],
        gateway_call_timeout_seconds=3.0,
        reconcile_grace_seconds=0,
        compensation_retry_base_seconds=0,
        compensation_max_tries=3,
    )
    running = Harness(settings).start()
    yield running
    running.stop()


@pytest.fixture
def proxy() -> Iterator[FaultyProxy]:
    running = FaultyProxy()
    yield running
    running.close()


def start_target(proxy: FaultyProxy, *args: str) -> McpTarget:
    target = McpTarget("--undo", *args)
    proxy.upstream = target.url
    return target


def register(
    client: httpx.Client, proxy: FaultyProxy, *, deduplicates: bool, lookup_tool: str | None = None
) -> None:
    """The target ``tickets`` behind ``proxy`` and the CREATE_TICKET action type, compensated."""
    body: dict[str, Any] = {"name": "tickets", "url": proxy.url, "deduplicates": deduplicates}
    if lookup_tool is not None:
        body["lookup_tool"] = lookup_tool
    response = client.post("/admin/gateway/targets", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["lookup_tool"] == lookup_tool
    response = client.post(
        "/admin/registry",
        json={
            "action_type": "CREATE_TICKET",
            "tool_name": "tickets.create_ticket",
            "parameter_mapping": TICKET_MAPPING,
            "compensation_strategy": "AUTOMATIC",
            "compensation_tool_name": "tickets.delete_ticket",
        },
    )
    assert response.status_code == 201, response.text


def compensation_status(client: httpx.Client, intent_id: str) -> str | None:
    status = client.get(f"/executions/{intent_id}/status").json().get("compensation_status")
    return str(status) if status is not None else None


def events(harness: Harness, intent_id: str) -> list[Any]:
    with harness.db.read() as conn:
        return list(executions.list_ledger(conn, "t1", intent_id))


def written(harness: Harness, client: httpx.Client) -> tuple[str, str]:
    """Run one CREATE_TICKET to SUCCEEDED; its intent id and the write's idempotency key."""
    status = harness.run_task(client, action_type="CREATE_TICKET", parameters={"title": "Printer on fire"})
    assert status["status"] == "SUCCEEDED", status
    assert status["external_object_refs"][0]["object_id"] == "T-1"
    intent_id = str(status["action_intent_id"])
    [executed] = [e for e in events(harness, intent_id) if e.event_type == "ACTION_EXECUTED"]
    return intent_id, str(executed.data["idempotency_key"])


# --- its own key -------------------------------------------------------------------------------------


def test_a_deduplicating_target_really_undoes_the_write_under_a_key_of_its_own(
    service: Harness, proxy: FaultyProxy
) -> None:
    target = start_target(proxy, "--dedupe")
    try:
        with service.client() as client:
            register(client, proxy, deduplicates=True)
            intent_id, write_key = written(service, client)
            assert target.stats()["tickets"] == ["T-1"]
            # The undo runs at the target, then its answer is lost: the step retries it (the
            # target deduplicates), and the retry is answered from the target's cache of the undo.
            proxy.add_faults(Fault("drop_after"))
            assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
            wait_for(lambda: compensation_status(client, intent_id) == "COMPLETED", timeout=60)
        stats = target.stats()
    finally:
        target.stop()

    assert stats["tickets"] == []  # the ticket is gone...
    assert stats["deleted"] == ["T-1"]  # ...deleted once
    undo_keys = stats["keys"]["delete_ticket"]
    assert len(undo_keys) == 2  # the lost answer's retry...
    assert undo_keys[0] == undo_keys[1]  # ...with the same key
    assert undo_keys[0] != write_key
    assert stats["keys"]["create_ticket"] == [write_key]
    assert undo_keys[0] == compensation_idempotency_key(
        write_key=write_key, compensation_tool="tickets.delete_ticket", object_id="T-1"
    )
    assert [e.event_type for e in events(service, intent_id)].count("COMPENSATION_COMPLETED") == 1


def test_a_later_try_of_a_compensation_sends_the_same_key(service: Harness, proxy: FaultyProxy) -> None:
    target = start_target(proxy, "--dedupe")
    try:
        with service.client() as client:
            register(client, proxy, deduplicates=True)
            intent_id, write_key = written(service, client)
            # The target undoes, then its answer is a refusal: this try fails for good...
            proxy.add_faults(Fault("status_after", 400))
            assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
            wait_for(lambda: compensation_status(client, intent_id) == "FAILED", timeout=60)
            # ...and the next one, started by the reconciler, is a new workflow with the same key.
            assert reconcile_once(service.service.runtime) == 1
            wait_for(lambda: compensation_status(client, intent_id) == "COMPLETED", timeout=60)
        stats = target.stats()
    finally:
        target.stop()

    assert stats["tickets"] == []
    assert stats["deleted"] == ["T-1"]
    first, second = stats["keys"]["delete_ticket"]
    assert first == second != write_key


# --- lost answers on a target that does not deduplicate -------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault("drop_after"), Fault("status_after", 502), Fault("hold")],
    ids=["dropped", "http-502", "timeout"],
)
def test_a_lost_undo_answer_is_never_sent_again_and_waits_for_a_person(
    service: Harness, proxy: FaultyProxy, fault: Fault
) -> None:
    target = start_target(proxy)
    try:
        with service.client() as client:
            register(client, proxy, deduplicates=False)
            intent_id, write_key = written(service, client)
            before = scrape(service.url)
            # The target runs every undo it receives; no answer to one ever arrives.
            proxy.add_faults(fault, fault, fault, fault)
            assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
            wait_for(lambda: compensation_status(client, intent_id) == "FAILED", timeout=60)

            def tries_ended() -> int:
                kinds = [e.event_type for e in events(service, intent_id)]
                return kinds.count("COMPENSATION_FAILED") + kinds.count("COMPENSATION_COMPLETED")

            acted = 0
            for _ in range(4):  # however often the reconciler looks...
                ended = tries_ended()
                if reconcile_once(service.service.runtime):
                    acted += 1
                    wait_for(lambda ended=ended: tries_ended() > ended, timeout=60)  # type: ignore[misc]
            status = client.get(f"/executions/{intent_id}/status").json()
            timeline = client.get(f"/executions/{intent_id}/timeline").json()["entries"]
        after = scrape(service.url)
        stats = target.stats()
    finally:
        target.stop()

    assert stats["calls"].get("delete_ticket") == 1  # ...the undo was sent once
    assert acted == 0
    assert stats["deleted"] == ["T-1"]
    assert (status["status"], status["compensation_status"]) == ("SUCCEEDED", "FAILED")
    kinds = [entry["event_type"] for entry in timeline]
    assert kinds.count("COMPENSATION_FAILED") == 1
    assert "COMPENSATION_ABANDONED" not in kinds
    [unknown] = [entry for entry in timeline if entry["event_type"] == "COMPENSATION_OUTCOME_UNKNOWN"]
    undo_key = compensation_idempotency_key(
        write_key=write_key, compensation_tool="tickets.delete_ticket", object_id="T-1"
    )
    assert unknown["data"]["target"] == "tickets"
    assert unknown["data"]["compensation_tool_name"] == "tickets.delete_ticket"
    assert unknown["data"]["object_id"] == "T-1"
    assert unknown["data"]["idempotency_key"] == undo_key == stats["keys"]["delete_ticket"][0]
    assert unknown["data"]["error_code"] == "UNKNOWN_OUTCOME"
    assert "check" in unknown["data"]["action"]
    assert has(before, "fulfill_compensations_outcome_unknown_total")  # there from start-up, at 0
    assert delta(before, after, "fulfill_compensations_outcome_unknown_total") == 1
    assert delta(before, after, "fulfill_compensations_total", result="unknown") == 1


def test_an_undo_in_flight_when_its_process_stopped_is_never_sent_again(
    service: Harness, proxy: FaultyProxy
) -> None:
    target = start_target(proxy)
    try:
        with service.client() as client:
            register(client, proxy, deduplicates=False)
            intent_id, write_key = written(service, client)
            undo_key = compensation_idempotency_key(
                write_key=write_key, compensation_tool="tickets.delete_ticket", object_id="T-1"
            )
            # What InvokeCompensation leaves behind when its process dies after sending the undo
            # and before its answer: the workflow's replay (or the reconciler's next try) finds it.
            with service.db.write() as conn:
                compensation_calls.mark(
                    conn,
                    tenant_id="t1",
                    account_id="acc-1",
                    idempotency_key=undo_key,
                    action_intent_id=intent_id,
                    attempt_count=1,
                    tool_name="tickets.delete_ticket",
                    object_id="T-1",
                    now="2026-01-01T00:00:00.000Z",
                )
            assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
            wait_for(lambda: compensation_status(client, intent_id) == "FAILED", timeout=60)
            assert reconcile_once(service.service.runtime) == 0
        stats = target.stats()
    finally:
        target.stop()

    assert stats["calls"].get("delete_ticket") is None
    assert stats["tickets"] == ["T-1"]  # a person checks, and undoes it by hand if still wanted
    [unknown] = [e for e in events(service, intent_id) if e.event_type == "COMPENSATION_OUTCOME_UNKNOWN"]
    assert unknown.data["idempotency_key"] == undo_key
    assert "in flight" in unknown.data["error_message"]
