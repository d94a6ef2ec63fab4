"""No approved intent is stranded, and no write is recorded as a failure.

The execution lock (a QUEUED attempt row) is taken where ACTION_APPROVED is accepted; whatever
fails afterwards, the reconciler finds the row and gets its workflow running again (started,
resumed or forked from its failed step), and the workflow records what really happened.
Failures are injected at the store boundary (a database error that outlasts a step's retries)
and at the network edge (the fault-injecting proxy in front of the gateway).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbos import DBOS

from fulfill.domain.models import GlobalExecutionConfig
from fulfill.engine import intake
from fulfill.engine.reconciler import reconcile_once
from fulfill.store import executions, killswitches
from fulfill.store.tables import execution_attempts
from tests.support.harness import Harness, approved_event, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, wait_for
from tests.support.outages import database_down


def _settings(tmp_path: Path, **overrides: Any) -> Any:
    return make_settings(tmp_path, reconcile_grace_seconds=0, compensation_retry_base_seconds=0, **overrides)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Harness]:
    running = Harness(_settings(tmp_path)).start()
    yield running
    running.stop()


@pytest.fixture
def proxied_service(tmp_path: Path) -> Iterator[tuple[Harness, FaultyProxy]]:
    proxy = FaultyProxy()
    running = Harness(_settings(tmp_path, gateway_url=proxy.url, compensation_max_tries=3))
    proxy.upstream = f"{running.url}/mcp"
    running.start()
    yield running, proxy
    proxy.close()
    running.stop()


def _outage(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> Callable[[], None]:
    """Make one store function fail as a database outage would; returns the repair."""
    real = getattr(module, name)

    monkeypatch.setattr(module, name, database_down)
    return lambda: monkeypatch.setattr(module, name, real)


def _workflow_state(harness: Harness, intent_id: str) -> str | None:
    with harness.db.read() as conn:
        attempt = executions.get_attempt(conn, "t1", "acc-1", intent_id)
    if attempt is None:
        return None
    status = DBOS.get_workflow_status(attempt.workflow_id)
    return status.status if status else None


def _ledger(harness: Harness, intent_id: str) -> list[str]:
    with harness.db.read() as conn:
        return [e.event_type for e in executions.list_ledger(conn, "t1", intent_id)]


def test_an_outage_during_start_execution_does_not_strand_the_intent(
    service: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    repair = _outage(monkeypatch, executions, "begin_attempt")
    with service.client() as client:
        intent_id = service.create_intent(client)["action_intent_id"]
        service.approve(client, intent_id)
        wait_for(lambda: _workflow_state(service, intent_id) == "ERROR", timeout=30)
        # A redelivered event is answered, and it starts nothing new: the lock is held.
        assert client.post("/events", json=approved_event(intent_id)).status_code == 202
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "PENDING"
        repair()
        assert reconcile_once(service.service.runtime) == 1
        status = service.wait_terminal(client, intent_id)
    assert status["status"] == "SUCCEEDED"
    assert status["external_object_refs"]
    assert service.task_rows(intent_id) == 1
    assert service.outcome_rows(intent_id) == 1
    assert service.signal_rows(intent_id) == 1
    ledger = _ledger(service, intent_id)
    assert ledger[:2] == ["ACTION_APPROVED", "EXECUTION_STARTED"]
    assert ledger.count("ACTION_EXECUTED") == 1
    assert reconcile_once(service.service.runtime) == 0


def test_an_accepted_event_whose_workflow_was_never_enqueued_is_started(
    service: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(_request: Any, **_options: Any) -> None:
        raise ConnectionError("the process died between the commit and the enqueue")

    monkeypatch.setattr(intake, "start_execution", lost)
    with service.client() as client:
        intent_id = service.create_intent(client)["action_intent_id"]
        service.approve(client, intent_id)
        wait_for(lambda: service.count(execution_attempts, action_intent_id=intent_id) == 1)
        assert _workflow_state(service, intent_id) is None
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "PENDING"
        monkeypatch.undo()
        assert reconcile_once(service.service.runtime) == 1
        assert service.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    assert service.task_rows(intent_id) == 1


def test_a_write_followed_by_an_outage_is_recorded_with_its_refs_not_as_a_failure(
    service: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    repair = _outage(monkeypatch, executions, "insert_outcome")
    with service.client() as client:
        intent_id = service.create_intent(client)["action_intent_id"]
        service.approve(client, intent_id)
        wait_for(lambda: _workflow_state(service, intent_id) == "ERROR", timeout=30)
        assert service.task_rows(intent_id) == 1  # the tool wrote; RecordOutcome never got through
        repair()
        assert reconcile_once(service.service.runtime) == 1
        status = service.wait_terminal(client, intent_id)
        assert status["status"] == "SUCCEEDED"
        [ref] = status["external_object_refs"]
        # The refs are there, so a cancel can compensate the write.
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
        compensated = wait_for(
            lambda: (
                body
                if (body := client.get(f"/executions/{intent_id}/status").json()).get("compensation_status")
                == "COMPLETED"
                else None
            )
        )
    assert compensated["external_object_refs"] == [ref]
    assert service.task_rows(intent_id) == 1
    assert service.outcome_rows(intent_id) == 1


def test_a_kill_switch_turned_on_after_a_failed_try_stops_the_retry(
    proxied_service: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied_service

    def stop_everything() -> None:
        with harness.db.write() as conn:
            killswitches.put_global(
                conn, GlobalExecutionConfig(global_stop=True), now=harness.service.clock.now_iso()
            )

    proxy.add_faults(Fault("status_before", 503, then=stop_everything))
    with harness.client() as client:
        status = harness.run_task(client)
    intent_id = status["action_intent_id"]
    assert (status["status"], status["error_code"]) == ("CANCELLED", "KILL_SWITCH_ENABLED")
    assert proxy.state.tool_calls_seen == 1  # the retry was never sent
    assert harness.task_rows(intent_id) == 0
    assert "EXECUTION_CANCELLED" in _ledger(harness, intent_id)


def test_a_failed_compensation_is_retried_until_it_succeeds(
    proxied_service: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied_service
    with harness.client() as client:
        status = harness.run_task(client)
        intent_id = status["action_intent_id"]
        proxy.add_faults(Fault("status_before", 400))  # the first compensation try is refused
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202

        def compensation() -> str | None:
            return client.get(f"/executions/{intent_id}/status").json().get("compensation_status")

        wait_for(lambda: compensation() == "FAILED")
        assert reconcile_once(harness.service.runtime) == 1
        wait_for(lambda: compensation() == "COMPLETED")
    ledger = _ledger(harness, intent_id)
    assert ledger.count("COMPENSATION_FAILED") == 1
    assert ledger.count("COMPENSATION_COMPLETED") == 1
    assert "COMPENSATION_ABANDONED" not in ledger
    assert reconcile_once(harness.service.runtime) == 0


def test_a_compensation_that_keeps_failing_is_left_for_a_person(
    proxied_service: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied_service
    with harness.client() as client:
        intent_id = harness.run_task(client)["action_intent_id"]
        proxy.add_faults(*[Fault("status_before", 400) for _ in range(3)])
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202

        def entries(event_type: str) -> int:
            return _ledger(harness, intent_id).count(event_type)

        for tries in (1, 2):
            wait_for(lambda t=tries: entries("COMPENSATION_FAILED") == t)  # type: ignore[misc]
            assert reconcile_once(harness.service.runtime) == 1
        wait_for(lambda: entries("COMPENSATION_ABANDONED") == 1)
        status = client.get(f"/executions/{intent_id}/status").json()
        metrics = client.get("/metrics").text
    assert status["compensation_status"] == "FAILED"
    assert entries("COMPENSATION_FAILED") == 3
    assert 'fulfill_compensations_total{result="abandoned"}' in metrics
    assert reconcile_once(harness.service.runtime) == 0  # the last try is final
    assert harness.task_rows(intent_id) == 1


def test_a_workflow_stuck_far_past_its_budget_is_resumed_and_records_once(
    proxied_service: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied_service
    proxy.add_faults(Fault("hold_before"))  # the tool call hangs before reaching the gateway
    with harness.client() as client:
        intent_id = harness.create_intent(client)["action_intent_id"]
        harness.approve(client, intent_id)
        assert proxy.state.held_before.wait(timeout=20)
        assert reconcile_once(harness.service.runtime) == 0  # alive and within its budget
        harness.service.clock.advance(300 + 1)
        assert reconcile_once(harness.service.runtime) == 1
        status = harness.wait_terminal(client, intent_id)
        proxy.state.release.set()
    assert (status["status"], status["error_code"]) == ("FAILED", "EXECUTION_TIMEOUT")
    assert harness.task_rows(intent_id) == 0
    assert harness.outcome_rows(intent_id) == 1
    assert harness.signal_rows(intent_id) == 1


def test_the_reconciler_leaves_finished_and_live_executions_alone(service: Harness) -> None:
    with service.client() as client:
        finished = service.run_task(client)
    assert reconcile_once(service.service.runtime) == 0
    assert service.outcome_rows(finished["action_intent_id"]) == 1


def test_intent_ids_are_per_tenant_and_so_are_their_executions(tmp_path: Path) -> None:
    harness = Harness(make_settings(tmp_path)).start()
    try:
        body = {"action_intent_id": "ai_shared_id", "account_id": "acc-1"}
        with harness.client("t1") as one, harness.client("t2") as two:
            first = harness.create_intent(one, parameters={"title": "t1's"}, **body)
            second = harness.create_intent(two, parameters={"title": "t2's"}, **body)
            harness.approve(one, first["action_intent_id"])
            harness.approve(two, second["action_intent_id"])
            assert harness.wait_terminal(one, "ai_shared_id")["status"] == "SUCCEEDED"
            assert harness.wait_terminal(two, "ai_shared_id")["status"] == "SUCCEEDED"
            timeline_one = one.get("/executions/ai_shared_id/timeline").json()["entries"]
            timeline_two = two.get("/executions/ai_shared_id/timeline").json()["entries"]
        assert harness.task_rows("ai_shared_id") == 2
        assert [e["event_type"] for e in timeline_one] == [e["event_type"] for e in timeline_two]
        assert DBOS.get_workflow_status("exec-t1/ai_shared_id") is not None
        assert DBOS.get_workflow_status("exec-t2/ai_shared_id") is not None
    finally:
        harness.stop()


def test_event_intake_enforces_the_tokens_account_ids(service: Harness) -> None:
    with service.client() as client:
        intent = service.create_intent(
            client, approval={"approved_by": "u", "approval_timestamp": "2026-01-01T00:00:00Z"}
        )
    with service.client(account_ids=["acc-2"]) as limited:
        answer = limited.post("/events", json=approved_event(intent["action_intent_id"]))
    assert answer.status_code == 422
    assert answer.json()["code"] == "ACCOUNT_NOT_ALLOWED"
    assert service.count(execution_attempts, action_intent_id=intent["action_intent_id"]) == 0


def test_a_workflow_that_keeps_failing_is_forked_a_bounded_number_of_times(
    service: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fulfill.engine.reconciler import MAX_FORKS

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("a defect, not an outage")

    monkeypatch.setattr(executions, "begin_attempt", broken)
    with service.client() as client:
        intent_id = service.create_intent(client)["action_intent_id"]
        service.approve(client, intent_id)
        for _ in range(MAX_FORKS):
            wait_for(lambda: _workflow_state(service, intent_id) == "ERROR", timeout=30)
            assert reconcile_once(service.service.runtime) == 1
        wait_for(lambda: _workflow_state(service, intent_id) == "ERROR", timeout=30)
        assert reconcile_once(service.service.runtime) == 0  # left for a person
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "PENDING"
    with service.db.read() as conn:
        attempt = executions.get_attempt(conn, "t1", "acc-1", intent_id)
    assert attempt is not None
    assert attempt.workflow_id == f"exec-t1/{intent_id}~{MAX_FORKS}"
