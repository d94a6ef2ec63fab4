"""Rerun and cancel from the console, and the warning when approving into a kill switch: the
buttons follow the scopes, every POST checks its CSRF token and its scope (a forged form gets 403
and changes nothing), and a rerun after a kill-switch stop works with the default max_attempts."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.console import Console
from tests.support.harness import Harness
from tests.support.http_doubles import wait_for

ADMIN = ["intents:read", "intents:approve", "executions:read", "admin"]
APPROVER = ["intents:read", "intents:approve", "executions:read"]


@pytest.fixture
def console(shared: Harness) -> Iterator[Console]:
    browser = Console(shared)
    yield browser
    browser.close()


def _switch(client: httpx.Client, tenant: str, *, enabled: bool) -> None:
    body = {"execution_enabled": enabled, "disabled_action_types": []}
    assert client.put(f"/admin/tenants/{tenant}/execution", json=body).status_code == 200


def _stopped_by_the_switch(shared: Harness, console: Console, client: httpx.Client, tenant: str) -> str:
    """Approved in the console while the tenant's switch is on: warned before and after, then
    CANCELLED by the switch; the switch is off again on return."""
    _switch(client, tenant, enabled=False)
    try:
        intent_id = shared.create_intent(client)["action_intent_id"]
        before = console.get(f"/console/executions/{intent_id}")
        assert "Approving now: kill switch TENANT is on" in before.text
        approved = console.post(f"/console/intents/{intent_id}/approve")
        assert approved.status_code == 303, approved.text
        after = console.get(approved.headers["location"])
        assert "Warning: kill switch TENANT is on" in after.text
        assert "end CANCELLED" in after.text
        stopped = shared.wait_terminal(client, intent_id)
        assert (stopped["status"], stopped["error_code"]) == ("CANCELLED", "KILL_SWITCH_ENABLED")
    finally:
        _switch(client, tenant, enabled=True)
    return str(intent_id)


def test_an_admin_reruns_a_kill_switch_stop_from_the_console(shared: Harness, console: Console) -> None:
    tenant = "t-console-rerun"
    with shared.client(tenant) as client:
        console.login(tenant=tenant, scopes=ADMIN, subject="ops@example.com")
        intent_id = _stopped_by_the_switch(shared, console, client, tenant)
        page = console.get(f"/console/executions/{intent_id}")
        assert f"/console/intents/{intent_id}/rerun" in page.text
        assert console.post(f"/console/intents/{intent_id}/rerun", csrf=None).status_code == 403
        assert console.post(f"/console/intents/{intent_id}/rerun", csrf="forged").status_code == 403

        plain = Console(shared)
        try:
            plain.login(tenant=tenant, scopes=APPROVER)
            assert (
                f"/console/intents/{intent_id}/rerun"
                not in plain.get(f"/console/executions/{intent_id}").text
            )
            forged = plain.post(f"/console/intents/{intent_id}/rerun")
            assert forged.status_code == 403
            assert "admin" in forged.text
        finally:
            plain.close()
        assert client.get(f"/executions/{intent_id}/status").json()["attempt_count"] == 1

        rerun = console.post(f"/console/intents/{intent_id}/rerun", {"reason": "switch is off again"})
        assert rerun.status_code == 303, rerun.text
        assert "attempt 2" in console.get(rerun.headers["location"]).text
        final = wait_for(
            lambda: (
                (body := client.get(f"/executions/{intent_id}/status").json())["status"] == "SUCCEEDED"
                and body
            )
        )
        assert final["attempt_count"] == 2
        entries = client.get(f"/executions/{intent_id}/timeline").json()["entries"]
    [requested] = [e for e in entries if e["event_type"] == "RERUN_REQUESTED"]
    assert requested["data"]["requested_by"] == "ops@example.com"
    assert requested["data"]["reason"] == "switch is off again"
    assert requested["data"]["after_stop"] == "KILL_SWITCH_ENABLED"
    shown = console.get(f"/console/executions/{intent_id}").text
    assert f"/console/intents/{intent_id}/rerun" not in shown
    assert (
        "after a stop before the tool call (KILL_SWITCH_ENABLED): beyond the intent&#39;s max_attempts"
        in shown
    )


def test_cancel_from_the_console_needs_its_scope_and_token(shared: Harness, console: Console) -> None:
    tenant = "t-console-cancel"
    with shared.client(tenant) as client:
        console.login(tenant=tenant, scopes=ADMIN)
        intent_id = _stopped_by_the_switch(shared, console, client, tenant)
        page = console.get(f"/console/executions/{intent_id}")
        assert f"/console/intents/{intent_id}/cancel" in page.text

        reader = Console(shared)
        try:
            reader.login(tenant=tenant, scopes=["intents:read", "executions:read"])
            shown = reader.get(f"/console/executions/{intent_id}").text
            assert f"/console/intents/{intent_id}/cancel" not in shown
            assert f"/console/intents/{intent_id}/rerun" not in shown
            forged = reader.post(f"/console/intents/{intent_id}/cancel")
            assert forged.status_code == 403
            assert "intents:approve" in forged.text
        finally:
            reader.close()
        assert console.post(f"/console/intents/{intent_id}/cancel", csrf=None).status_code == 403
        assert client.get(f"/intents/{intent_id}").json()["approval_status"] == "APPROVED"

        cancelled = console.post(f"/console/intents/{intent_id}/cancel")
        assert cancelled.status_code == 303, cancelled.text
        assert client.get(f"/intents/{intent_id}").json()["approval_status"] == "CANCELLED"
        after = console.get(f"/console/executions/{intent_id}").text
    assert f"Cancelled {intent_id}." in after
    assert f"/console/intents/{intent_id}/rerun" not in after  # a cancelled intent is not rerun
    assert f"/console/intents/{intent_id}/cancel" not in after


def test_no_warning_when_no_stop_is_on(shared: Harness, console: Console) -> None:
    with shared.client("t-console-nostop") as client:
        intent_id = shared.create_intent(client)["action_intent_id"]
        console.login(tenant="t-console-nostop", scopes=APPROVER)
        assert "Approving now" not in console.get(f"/console/executions/{intent_id}").text
        approved = console.post(f"/console/intents/{intent_id}/approve")
        assert "Warning:" not in console.get(approved.headers["location"]).text
        shared.wait_terminal(client, intent_id)
