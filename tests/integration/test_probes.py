"""Reconcile probes of AMBIGUOUS executions, end to end.

A real MCP server (``tests/support/mcp_target.py --undo --lookup``, its own process) creates
tickets and looks them up by idempotency key (``lookup_by_key``); a fault-injecting proxy in front
of it loses the answer of ``create_ticket`` after the server wrote (``drop_after``) or before the
call reached it (``drop_before``). The target is registered as one that does not deduplicate, with
``lookup_tool``, so the execution ends AMBIGUOUS and a probe looks the write up.

The service's own probe loop runs every ``FULFILL_PROBE_INTERVAL_SECONDS`` (100 s here, so it
stays out of the way); the tests run its passes themselves, as of a time far enough ahead that
what the backoff put off is due.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.domain.models import ExecutionStatus
from fulfill.domain.probes import Absent, Found, Inconclusive, ProbeRecord, Undeclared
from fulfill.engine.probes import probe_due, probe_one
from fulfill.store import executions, external_writes
from fulfill.store.tables import execution_attempts, execution_outcomes, internal_tasks
from tests.integration.test_compensation_targets import compensation_status
from tests.integration.test_compensation_targets import register as register_tickets
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, wait_for
from tests.support.mcp_target import McpTarget
from tests.support.salesforce import key_for, salesforce_rig

pytestmark = pytest.mark.slow

INTERVAL = 100.0
MAX_BACKOFF = 400.0
# Far enough ahead that every backoff and every probe's lease has run out.
AHEAD = 10_000.0
FOUND_REF = {"system": "MCP:tickets", "object_type": "Ticket", "object_id": "T-1"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path,
        gateway_egress_allow=["127.0.0.1"],
        # A lookup answers in tens of milliseconds; the room is for a loaded machine.
        gateway_call_timeout_seconds=6.0,
        reconcile_grace_seconds=0,
        probe_interval_seconds=INTERVAL,
        probe_max_backoff_seconds=MAX_BACKOFF,
    )
    running = Harness(settings).start()
    yield running
    running.stop()


@pytest.fixture
def proxy() -> Iterator[FaultyProxy]:
    running = FaultyProxy()
    yield running
    running.close()


@pytest.fixture
def target(proxy: FaultyProxy) -> Iterator[McpTarget]:
    running = McpTarget("--undo", "--lookup")
    proxy.upstream = running.url
    yield running
    running.stop()


def register(client: httpx.Client, proxy: FaultyProxy, *, lookup_tool: str | None = "lookup_by_key") -> None:
    register_tickets(client, proxy, deduplicates=False, lookup_tool=lookup_tool)


def ambiguous(
    harness: Harness,
    client: httpx.Client,
    proxy: FaultyProxy,
    *,
    fault: str = "drop_after",
    **register_args: Any,
) -> str:
    """One CREATE_TICKET whose answer is lost: after the target wrote (``drop_after``) or before
    the call reached it (``drop_before``). Its intent id, AMBIGUOUS. The proxy drops the
    connection, so the gateway learns at once that the answer is lost; an answer lost by its
    budget running out ends the same way (``test_gateway_targets.py``)."""
    register(client, proxy, **register_args)
    proxy.add_faults(Fault(fault))
    intent = harness.create_intent(
        client, action_type="CREATE_TICKET", parameters={"title": "Printer on fire"}
    )
    intent_id = str(intent["action_intent_id"])
    harness.approve(client, intent_id)
    status = harness.wait_terminal(client, intent_id)
    assert status["status"] == "AMBIGUOUS", status
    return intent_id


def probe(harness: Harness) -> list[bool]:
    """One probe pass as of AHEAD seconds from now: whether each due execution was resolved."""
    rt = harness.service.runtime
    with rt.store.read() as uow:
        due = uow.probes.due_probes(now_epoch=rt.clock.now() + AHEAD, first_after_seconds=INTERVAL, limit=50)
    return [probe_one(rt, item) for item in due]


def probe_resolves(harness: Harness, intent_id: str) -> None:
    """One probe pass resolves ``intent_id``; when it does not, the failure says what the probe
    recorded (its result and reason: a lookup that timed out, failed or was not taken)."""
    assert probe(harness) == [True], probe_row(harness, intent_id)


def probe_row(harness: Harness, intent_id: str, attempt: int = 1) -> ProbeRecord | None:
    with harness.service.store.read() as uow:
        return uow.probes.get_probe("t1", "acc-1", intent_id, attempt)


def events(harness: Harness, intent_id: str) -> list[Any]:
    with harness.db.read() as conn:
        return list(executions.list_ledger(conn, "t1", intent_id))


def resolutions(harness: Harness, intent_id: str) -> list[Any]:
    return [e for e in events(harness, intent_id) if e.event_type == "EXECUTION_RESOLVED"]


def status_of(client: httpx.Client, intent_id: str) -> dict[str, Any]:
    return dict(client.get(f"/executions/{intent_id}/status").json())


def succeeded(client: httpx.Client, intent_id: str) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (s := status_of(client, intent_id))["status"] == "SUCCEEDED" and s,
            timeout=30,
        )
    )


# --- a gateway target with a lookup tool -----------------------------------------------------------


def test_a_probe_that_finds_the_write_resolves_it_succeeded_with_the_found_refs(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        probe_resolves(service, intent_id)
        status = status_of(client, intent_id)
        assert status["status"] == "SUCCEEDED"
        assert status["attempt_count"] == 1
        assert status["external_object_refs"] == [FOUND_REF]
        [resolved] = resolutions(service, intent_id)
        assert resolved.data["resolution"] == "committed"
        assert resolved.data["decided_by"] == "probe:tickets"
        assert resolved.data["external_object_refs"] == [FOUND_REF]
        # The lookup was asked, through the gateway, with the write's own key.
        keys = target.stats()["keys"]
        assert keys["lookup_by_key"] == keys["create_ticket"]
        assert target.stats()["arguments"]["lookup_by_key"] == {"idempotency_key": keys["create_ticket"][0]}
        record = probe_row(service, intent_id)
        assert record is not None
        assert record.last_result == "found"
        assert record.probes == 1
        # Resolved: nothing is due any more, and a person's resolution now is a 409.
        assert probe(service) == []
        late = client.post(f"/executions/{intent_id}/resolve", json={"resolution": "abandon", "reason": "x"})
        assert late.status_code == 409
        assert late.json()["code"] == "NOT_AMBIGUOUS"
        # The write it found is compensable like any other.
        assert client.post(f"/intents/{intent_id}/cancel", json={}).status_code == 202
        wait_for(lambda: compensation_status(client, intent_id) == "COMPLETED", timeout=30)
    assert target.stats()["deleted"] == ["T-1"]
    assert target.calls() == 1


def test_a_probe_that_proves_absence_sends_the_call_once_more_under_the_same_key(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy, fault="drop_before")
        assert target.calls() == 0
        probe_resolves(service, intent_id)
        status = succeeded(client, intent_id)
        assert status["attempt_count"] == 2
        assert status["external_object_refs"][0]["object_id"] == "T-1"
        [resolved] = resolutions(service, intent_id)
        assert resolved.data["resolution"] == "not_committed"
        assert resolved.data["decided_by"] == "probe:tickets"
        assert resolved.data["next_attempt"] == 2
        assert [e.event_type for e in events(service, intent_id)].count("RERUN_REQUESTED") == 1
        record = probe_row(service, intent_id)
        assert record is not None
        assert record.resent
        assert record.last_result == "resent"
        # Nothing left to probe; passes after it send nothing.
        assert probe(service) == []
    keys = target.stats()["keys"]
    assert target.calls() == 1  # exactly one resend
    assert keys["create_ticket"] == keys["lookup_by_key"]  # under the key the lookup proved absent
    with service.service.store.read() as uow:
        first = uow.executions.get_outcome("t1", "acc-1", intent_id, 1)
    assert first is not None
    assert first.idempotency_key == keys["create_ticket"][0]
    assert first.error_code == "NOT_COMMITTED"


def test_a_worker_that_died_after_claiming_leaves_the_probe_to_another_once_its_lease_ends(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy, fault="drop_before")
        rt = service.service.runtime
        now = rt.clock.now()
        with rt.store.write() as uow:
            [due] = uow.probes.due_probes(now_epoch=now + INTERVAL + 1, first_after_seconds=INTERVAL, limit=5)
            # A worker claims it, then never comes back (no lookup, no resolution).
            assert uow.probes.claim_probe(due, lease_until_epoch=now + 60, now="2026-01-01T00:00:00Z")
        # Until the lease ends, nobody else probes it; after it, one does, and resends once.
        with rt.store.read() as uow:
            assert uow.probes.due_probes(now_epoch=now + 30, first_after_seconds=INTERVAL, limit=5) == []
        probe_resolves(service, intent_id)
        assert succeeded(client, intent_id)["attempt_count"] == 2
        assert probe(service) == []
    assert target.calls() == 1


def test_inconclusive_and_hostile_answers_leave_it_ambiguous_and_the_backoff_grows(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        pauses = []
        # An error, a success in another shape, a body past the gateway's limit, an answer later
        # than the gateway waits: each proves nothing.
        for mode, seconds in (("error", 0.0), ("garbage", 0.0), ("huge", 0.0), ("slow", 8.0)):
            target.lookup_mode(mode, seconds)
            before = time.time()
            assert probe(service) == [False], mode
            record = probe_row(service, intent_id)
            assert record is not None
            assert record.last_result == "inconclusive", (mode, record)
            pauses.append(record.next_probe_epoch - before)
            assert status_of(client, intent_id)["status"] == "AMBIGUOUS"
        assert record.probes == 4
        # interval, then doubled, up to the maximum (each within the time its probe took).
        for pause, expected in zip(pauses, (INTERVAL, 2 * INTERVAL, 4 * INTERVAL, MAX_BACKOFF), strict=True):
            assert expected - 1 <= pause <= expected + 10, pauses
        assert resolutions(service, intent_id) == []
        assert target.calls() == 1  # nothing was sent again
        # Then the lookup answers as declared: the write is found.
        target.lookup_mode("normal")
        probe_resolves(service, intent_id)
        assert status_of(client, intent_id)["external_object_refs"] == [FOUND_REF]
    assert target.calls() == 1


def test_a_target_without_a_lookup_stays_ambiguous_until_a_person_resolves_it(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy, lookup_tool=None)
        before = time.time()
        assert probe(service) == [False]
        record = probe_row(service, intent_id)
        assert record is not None
        assert record.last_result == "undeclared"
        assert MAX_BACKOFF - 1 <= record.next_probe_epoch - before <= MAX_BACKOFF + 10
        assert status_of(client, intent_id)["status"] == "AMBIGUOUS"
        assert resolutions(service, intent_id) == []
        response = client.post(
            f"/executions/{intent_id}/resolve",
            json={"resolution": "committed", "external_object_refs": [FOUND_REF]},
        )
        assert response.status_code == 200, response.text
        assert probe(service) == []
    assert target.calls("lookup_by_key") == 0
    assert target.calls() == 1


def test_two_workers_probing_at_once_resolve_it_once(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy, fault="drop_before")
        rt = service.service.runtime
        with rt.store.read() as uow:
            due = uow.probes.due_probes(
                now_epoch=rt.clock.now() + AHEAD, first_after_seconds=INTERVAL, limit=5
            )
        start = threading.Barrier(4)

        def worker() -> bool:
            start.wait()
            return probe_one(rt, due[0])

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda _: worker(), range(4)))
        assert sorted(results) == [False, False, False, True]
        # And full passes by two workers at once, after it: nothing more.
        with ThreadPoolExecutor(max_workers=2) as pool:
            assert list(pool.map(lambda _: probe(service), range(2))) == [[], []]
        assert succeeded(client, intent_id)["attempt_count"] == 2
        assert len(resolutions(service, intent_id)) == 1
    assert target.calls() == 1


def test_a_person_resolving_while_a_probe_runs_wins_and_the_probe_does_nothing(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy)
        target.lookup_mode("slow", 1.0)  # well within the 5.5 s the gateway waits: the probe will find it
        with ThreadPoolExecutor(max_workers=1) as pool:
            probing = pool.submit(probe, service)
            wait_for(lambda: target.calls("lookup_by_key") == 1, timeout=10)
            response = client.post(
                f"/executions/{intent_id}/resolve",
                json={"resolution": "abandon", "reason": "the ticket was closed by hand"},
            )
            assert response.status_code == 200, response.text
            assert probing.result(timeout=30) == [False]
        status = status_of(client, intent_id)
        assert status["status"] == "FAILED"
        assert status["error_code"] == "AMBIGUOUS_ABANDONED"
        [resolved] = resolutions(service, intent_id)
        assert resolved.data["decided_by"] != "probe:tickets"
        # The probe's record was not written either (its transaction was the resolution's).
        record = probe_row(service, intent_id)
        assert record is not None
        assert record.probes == 0
    assert target.calls() == 1


def test_a_kill_switch_keeps_a_proven_absence_from_being_resent_until_it_is_off(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        intent_id = ambiguous(service, client, proxy, fault="drop_before")
        switches = {"global_stop": True, "disabled_action_types": []}
        assert client.put("/admin/kill-switches", json=switches).status_code == 200
        assert probe(service) == [False]
        record = probe_row(service, intent_id)
        assert record is not None
        assert record.last_result == "absent"
        assert not record.resent
        assert status_of(client, intent_id)["status"] == "AMBIGUOUS"
        assert target.calls() == 0
        switches["global_stop"] = False
        assert client.put("/admin/kill-switches", json=switches).status_code == 200
        probe_resolves(service, intent_id)
        assert succeeded(client, intent_id)["attempt_count"] == 2
    assert target.calls() == 1


def test_the_service_probes_by_itself(tmp_path: Path, proxy: FaultyProxy, target: McpTarget) -> None:
    settings = make_settings(
        tmp_path,
        gateway_egress_allow=["127.0.0.1"],
        gateway_call_timeout_seconds=3.0,
        probe_interval_seconds=0.5,
        probe_max_backoff_seconds=2.0,
    )
    harness = Harness(settings).start()
    try:
        with harness.client() as client:
            intent_id = ambiguous(harness, client, proxy)
            status = succeeded(client, intent_id)
            assert status["external_object_refs"] == [FOUND_REF]
            assert resolutions(harness, intent_id)[0].data["decided_by"] == "probe:tickets"
            assert probe_due(harness.service.runtime) == 0
    finally:
        harness.stop()
    assert target.calls() == 1


def test_the_lookup_tool_is_checked_when_the_target_is_registered(
    service: Harness, proxy: FaultyProxy, target: McpTarget
) -> None:
    with service.client() as client:
        for lookup_tool, code in (("find_it", "LOOKUP_TOOL_UNKNOWN"), ("add_comment", "LOOKUP_TOOL_INVALID")):
            response = client.post(
                "/admin/gateway/targets",
                json={"name": "tickets", "url": proxy.url, "lookup_tool": lookup_tool},
            )
            assert response.status_code == 422, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == code
            assert lookup_tool in response.json()["detail"]
        bad_name = client.post(
            "/admin/gateway/targets", json={"name": "tickets", "url": proxy.url, "lookup_tool": "no spaces"}
        )
        assert bad_name.status_code == 422
        register(client, proxy)
        [listed] = client.get("/admin/gateway/targets").json()["targets"]
        assert listed["lookup_tool"] == "lookup_by_key"


def test_the_cli_registers_a_target_with_its_lookup_tool(
    service: Harness, target: McpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FULFILL_DATABASE_URL", service.settings.database_url)
    monkeypatch.setenv("FULFILL_GATEWAY_EGRESS_ALLOW", "127.0.0.1")
    cli = CliRunner()
    refused = cli.invoke(app, ["gateway", "add", "tickets", target.url, "--lookup-tool", "add_comment"])
    assert refused.exit_code == 1
    assert "LOOKUP_TOOL_INVALID" in refused.output
    added = cli.invoke(app, ["gateway", "add", "tickets", target.url, "--lookup-tool", "lookup_by_key"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["lookup_tool"] == "lookup_by_key"
    # A running service's catalog reads it from the database with the lookup tool.
    endpoint = service.service.target_catalog.refresh(force=True).endpoints["tickets"]
    assert endpoint.lookup_tool == "lookup_by_key"


# --- the in-process connectors --------------------------------------------------------------------


def _make_ambiguous(harness: Harness, intent_id: str) -> None:
    """Turn a recorded execution into one whose answer was lost (what a crash between the write
    and its record leaves, for a connector that reports its outcome unknown)."""
    with harness.service.store.read() as uow:
        outcome = uow.executions.get_outcome("t1", "acc-1", intent_id, 1)
    assert outcome is not None
    lost = outcome.model_copy(
        update={
            "status": ExecutionStatus.AMBIGUOUS,
            "external_object_refs": [],
            "error_code": "UNKNOWN_OUTCOME",
            "error_message": "the answer was lost",
        }
    )
    with harness.db.write() as conn:
        conn.execute(
            update(execution_outcomes)
            .where(execution_outcomes.c.action_intent_id == intent_id)
            .values(status="AMBIGUOUS", document=lost.model_dump(mode="json"))
        )
        conn.execute(
            update(execution_attempts)
            .where(execution_attempts.c.action_intent_id == intent_id)
            .values(status="AMBIGUOUS", updated_at="2026-01-01T00:00:00Z")
        )


def test_the_internal_connector_finds_its_write_in_its_table(service: Harness) -> None:
    with service.client() as client:
        done = service.run_task(client)
        intent_id = done["action_intent_id"]
        refs = done["external_object_refs"]
        _make_ambiguous(service, intent_id)
        assert status_of(client, intent_id)["status"] == "AMBIGUOUS"
        probe_resolves(service, intent_id)
        status = status_of(client, intent_id)
        assert status["status"] == "SUCCEEDED"
        assert status["external_object_refs"] == refs
        assert resolutions(service, intent_id)[0].data["decided_by"] == "probe:internal"
    assert service.task_rows(intent_id) == 1


def test_the_internal_connector_proves_absence_and_the_task_is_written_once(service: Harness) -> None:
    with service.client() as client:
        done = service.run_task(client)
        intent_id = done["action_intent_id"]
        _make_ambiguous(service, intent_id)
        with service.db.write() as conn:
            conn.execute(delete(internal_tasks).where(internal_tasks.c.action_intent_id == intent_id))
        probe_resolves(service, intent_id)
        status = succeeded(client, intent_id)
        assert status["attempt_count"] == 2
        assert status["external_object_refs"] == done["external_object_refs"]  # same key, same id
        assert probe(service) == []
    assert service.task_rows(intent_id) == 1


# --- the Salesforce connector, against the local Salesforce server -----------------------------------


def test_the_salesforce_connector_looks_a_create_up_by_its_marker_field(tmp_path: Path) -> None:
    with salesforce_rig(tmp_path) as rig:
        written = key_for("t1:written")
        # A Task written under the key whose answer never came back.
        record_id = rig.dev.insert("Task", {"Subject": "Call", "Fulfill_Idempotency_Key__c": written})

        def lookup(tool: str, key: str) -> Any:
            return rig.connector.lookup(
                tenant_id="t1",
                account_id="acc-1",
                action_intent_id="ai_written",
                tool_name=tool,
                idempotency_key=key,
                timeout_seconds=1.0,
            )

        found = lookup("crm.create_task", written)
        assert isinstance(found, Found)
        [ref] = found.refs
        assert (ref.system, ref.object_type, ref.object_id) == ("CRM", "Task", record_id)
        # Recorded as the key's write, so that a compensation of the resolved write finds it.
        with rig.db.read() as conn:
            write = external_writes.committed_write_of(
                conn,
                "t1",
                "acc-1",
                action_intent_id="ai_written",
                tool_name="crm.create_task",
                object_id=record_id,
            )
        assert write is not None
        assert isinstance(lookup("crm.create_task", key_for("t1:never")), Absent)
        assert isinstance(lookup("crm.create_opportunity", key_for("t1:never")), Absent)
        assert isinstance(lookup("crm.update_field", written), Undeclared)
        rig.server.stop()
        assert isinstance(lookup("crm.create_task", written), Inconclusive)
