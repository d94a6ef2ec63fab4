"""The approval is bound to the exact action: an intent changed in the store after its approval
(its parameters or its pinned registry version, by SQL on its document) is refused right before
its tool call, FAILED ``APPROVAL_MISMATCH``, and the target gets no call; an unchanged one runs,
and its outcome and timeline carry the hash its approval recorded. Both backends.

Each execution is held where the test needs it, deterministically: behind another call that
holds its connector's only slot (concurrency 1, the first call held at the proxy until the
test lets it go), or stopped by the tenant's kill switch and then rerun."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulfill.domain.action_hash import action_hash, prefix
from fulfill.domain.models import ActionIntentV1, ActionOutcomeV1, TenantExecutionConfig
from fulfill.store import executions, intents, killswitches
from fulfill.store.tables import connector_waiters
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, wait_for
from tests.support.tamper import tamper_document


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Harness, FaultyProxy]]:
    """A service whose engine reaches its gateway through a proxy that can hold a call; its calls
    may take 30 s (a held call does not time out while the test works)."""
    proxy = FaultyProxy()
    running = Harness(make_settings(tmp_path, gateway_url=proxy.url, gateway_call_timeout_seconds=30.0))
    proxy.upstream = f"{running.url}/mcp"
    running.start()
    yield running, proxy
    proxy.close()
    running.stop()


def _wait_at_the_gate(harness: Harness) -> None:
    """Until the second execution waits at its connector's gate (its row among the connector's
    waiters). Only then does a change land between its first check of the intent and the one it
    makes once admitted. Changed any earlier, on a busy machine it could pass its first check
    before the change and reach the gate only after the first call let go of the slot: admitted
    without waiting, with no second check, it sends the call it checked (the approved one)."""
    wait_for(lambda: harness.count(connector_waiters, name="internal") == 1, timeout=30)


def _stored(harness: Harness, intent_id: str) -> ActionIntentV1:
    with harness.db.read() as conn:
        intent = intents.get_intent(conn, "t1", intent_id)
    assert intent is not None
    return intent


def _outcome(harness: Harness, intent_id: str, attempt: int = 1) -> ActionOutcomeV1:
    with harness.db.read() as conn:
        outcome = executions.get_outcome(conn, "t1", "acc-1", intent_id, attempt)
    assert outcome is not None
    return outcome


def _timeline(client: httpx.Client, intent_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/executions/{intent_id}/timeline")
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


def _entry(timeline: list[dict[str, Any]], event_type: str, attempt: int) -> dict[str, Any]:
    [entry] = [e for e in timeline if e["event_type"] == event_type and e["attempt"] == attempt]
    return dict(entry["data"])


def _set_tenant_stop(harness: Harness, stopped: bool) -> None:
    with harness.db.write() as conn:
        killswitches.put_tenant(
            conn,
            TenantExecutionConfig(tenant_id="t1", execution_enabled=not stopped),
            now=harness.service.clock.now_iso(),
        )


def _assert_refused(status: dict[str, Any], approved: str, actual: str) -> None:
    assert (status["status"], status["error_class"], status["error_code"]) == (
        "FAILED",
        "VALIDATION",
        "APPROVAL_MISMATCH",
    )
    assert prefix(approved) in status["error_message"]
    assert prefix(actual) in status["error_message"]
    assert "the tool was not called" in status["error_message"]


def test_an_unchanged_approved_intent_carries_its_hash_to_the_outcome_and_the_timeline(
    harness: Harness,
) -> None:
    with harness.client() as client:
        intent = harness.create_intent(client, parameters={"title": "bound"})
        intent_id = intent["action_intent_id"]
        harness.approve(client, intent_id)
        status = harness.wait_terminal(client, intent_id)
        timeline = _timeline(client, intent_id)
    assert status["status"] == "SUCCEEDED"
    stored = _stored(harness, intent_id)
    assert stored.action_hash is not None
    assert stored.action_hash == action_hash(stored)
    assert _outcome(harness, intent_id).action_hash == stored.action_hash
    assert _entry(timeline, "EXECUTION_STARTED", 1)["action_hash"] == stored.action_hash
    assert _entry(timeline, "ACTION_EXECUTED", 1)["action_hash"] == stored.action_hash
    assert harness.task_rows(intent_id) == 1


def test_parameters_changed_in_the_store_before_the_call_fail_without_a_call(
    held: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = held
    with harness.client() as client:
        response = client.put(
            "/admin/connectors/internal/limits", json={"rate_per_second": None, "concurrency": 1}
        )
        assert response.status_code == 200, response.text
        # The first execution's call reaches the target and its answer is held: it keeps the
        # connector's only slot, so the second one cannot call before the test lets the first go.
        proxy.add_faults(Fault("hold"))
        first = harness.create_intent(client, parameters={"title": "holds the slot"})["action_intent_id"]
        harness.approve(client, first)
        assert proxy.state.forwarded.wait(timeout=30), "the first call never reached the target"
        second = harness.create_intent(client, parameters={"title": "what was approved"})["action_intent_id"]
        harness.approve(client, second)
        _wait_at_the_gate(harness)
        approved = _stored(harness, second)
        changed = tamper_document(harness.db, second, parameters={"title": "what someone put there later"})
        proxy.state.release.set()
        assert harness.wait_terminal(client, first)["status"] == "SUCCEEDED"
        status = harness.wait_terminal(client, second)
        timeline = _timeline(client, second)
    assert approved.action_hash is not None
    _assert_refused(status, approved.action_hash, action_hash(changed))
    assert proxy.state.tool_calls_seen == 1  # the first execution's only
    assert harness.task_rows(second) == 0
    assert _entry(timeline, "EXECUTION_STARTED", 1)["action_hash"] == approved.action_hash
    assert _entry(timeline, "ACTION_FAILED", 1)["error_code"] == "APPROVAL_MISMATCH"


def test_an_account_changed_in_the_store_before_the_call_is_a_mismatch_not_a_missing_intent(
    held: tuple[Harness, FaultyProxy],
) -> None:
    """The intent moved to another account of the tenant behind its approval's back: the attempt
    (of the account it was approved for) ends APPROVAL_MISMATCH with no call."""
    harness, proxy = held
    with harness.client() as client:
        response = client.put(
            "/admin/connectors/internal/limits", json={"rate_per_second": None, "concurrency": 1}
        )
        assert response.status_code == 200, response.text
        proxy.add_faults(Fault("hold"))
        first = harness.create_intent(client, parameters={"title": "holds the slot"})["action_intent_id"]
        harness.approve(client, first)
        assert proxy.state.forwarded.wait(timeout=30), "the first call never reached the target"
        second = harness.create_intent(client)["action_intent_id"]
        harness.approve(client, second)
        _wait_at_the_gate(harness)
        approved = _stored(harness, second)
        changed = tamper_document(harness.db, second, account_id="acc-2")
        proxy.state.release.set()
        assert harness.wait_terminal(client, first)["status"] == "SUCCEEDED"
    wait_for(lambda: harness.outcome_rows(second) == 1, timeout=30)
    outcome = _outcome(harness, second)
    assert (outcome.status.value, outcome.error_code) == ("FAILED", "APPROVAL_MISMATCH")
    assert approved.action_hash is not None
    assert prefix(approved.action_hash) in (outcome.error_message or "")
    assert prefix(action_hash(changed)) in (outcome.error_message or "")
    assert proxy.state.tool_calls_seen == 1
    assert harness.task_rows(second) == 0


@pytest.mark.parametrize(
    "change",
    [{"parameters": {"title": "changed while it was stopped"}}, {"registry_version": 2}],
    ids=["parameters", "registry-version"],
)
def test_a_rerun_checks_the_hash_again(harness: Harness, change: dict[str, Any]) -> None:
    """Stopped by the tenant's kill switch before its call, changed in the store, rerun: refused."""
    _set_tenant_stop(harness, True)
    with harness.client() as client:
        intent_id = harness.create_intent(client, parameters={"title": "approved"})["action_intent_id"]
        harness.approve(client, intent_id)
        stopped = harness.wait_terminal(client, intent_id)
        assert (stopped["status"], stopped["error_code"]) == ("CANCELLED", "KILL_SWITCH_ENABLED")
        approved = _stored(harness, intent_id)
        changed = tamper_document(harness.db, intent_id, **change)
        _set_tenant_stop(harness, False)
        rerun = client.post(f"/intents/{intent_id}/rerun", json={"reason": "switch is off"})
        assert rerun.status_code == 202, rerun.text

        def second_attempt() -> dict[str, Any] | None:
            status = harness.wait_terminal(client, intent_id)
            return status if status["attempt_count"] == 2 else None

        status = wait_for(second_attempt, timeout=30)
    assert approved.action_hash is not None
    _assert_refused(status, approved.action_hash, action_hash(changed))
    assert harness.task_rows(intent_id) == 0
    assert _outcome(harness, intent_id, attempt=2).action_hash == action_hash(changed)


def test_a_rerun_of_an_unchanged_intent_runs(harness: Harness) -> None:
    """The check refuses only a change: the same rerun of an intact intent writes its task."""
    _set_tenant_stop(harness, True)
    with harness.client() as client:
        intent_id = harness.create_intent(client)["action_intent_id"]
        harness.approve(client, intent_id)
        assert harness.wait_terminal(client, intent_id)["status"] == "CANCELLED"
        _set_tenant_stop(harness, False)
        assert client.post(f"/intents/{intent_id}/rerun", json={}).status_code == 202

        def second_attempt() -> dict[str, Any] | None:
            status = harness.wait_terminal(client, intent_id)
            return status if status["attempt_count"] == 2 else None

        status = wait_for(second_attempt, timeout=30)
    assert status["status"] == "SUCCEEDED"
    assert _outcome(harness, intent_id, attempt=2).action_hash == _stored(harness, intent_id).action_hash
    assert harness.task_rows(intent_id) == 1


def test_an_intent_pinned_to_a_version_deprecated_before_its_approval_runs_bound_to_it(
    harness: Harness,
) -> None:
    """Deprecation stops new intents pinning a version; one pinned already is approved and runs,
    and its hash (which names the version) still matches."""
    with harness.client() as client, harness.client("t1", ["platform:admin"], subject="ops") as ops:
        intent_id = harness.create_intent(client)["action_intent_id"]
        deprecated = ops.post("/admin/registry/CREATE_INTERNAL_TASK/versions/1/deprecate")
        assert deprecated.status_code == 200, deprecated.text
        harness.approve(client, intent_id)
        status = harness.wait_terminal(client, intent_id)
    assert status["status"] == "SUCCEEDED", status
    stored = _stored(harness, intent_id)
    assert stored.action_hash == action_hash(stored)
    assert _outcome(harness, intent_id).action_hash == stored.action_hash
    assert harness.task_rows(intent_id) == 1
