"""Invariant 5: every kill switch stops executions as CANCELLED, at preflight and right before
the tool call, changes without a restart, and fails closed when it cannot be read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fulfill.cli import app as cli_app
from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig
from fulfill.engine import steps
from fulfill.store import executions, killswitches
from tests.support.harness import Harness, make_settings


def _set_global(harness: Harness, **values: Any) -> None:
    with harness.db.write() as conn:
        killswitches.put_global(conn, GlobalExecutionConfig(**values), now=harness.service.clock.now_iso())


def _set_tenant(harness: Harness, **values: Any) -> None:
    with harness.db.write() as conn:
        killswitches.put_tenant(
            conn, TenantExecutionConfig(tenant_id="t1", **values), now=harness.service.clock.now_iso()
        )


def _assert_cancelled(harness: Harness, status: dict[str, Any], intent_id: str) -> None:
    assert status["status"] == "CANCELLED"
    assert status["error_code"] == "KILL_SWITCH_ENABLED"
    assert status["error_class"] == "VALIDATION"
    assert harness.task_rows(intent_id) == 0
    assert harness.signal_rows(intent_id) == 1
    with harness.db.read() as conn:
        ledger = [e.event_type for e in executions.list_ledger(conn, "t1", intent_id)]
    assert "EXECUTION_CANCELLED" in ledger
    assert "ACTION_EXECUTED" not in ledger


SWITCHES: dict[str, Callable[[Harness], None]] = {
    "global stop": lambda h: _set_global(h, global_stop=True),
    "global action type": lambda h: _set_global(h, disabled_action_types=["CREATE_INTERNAL_TASK"]),
    "tenant execution disabled": lambda h: _set_tenant(h, execution_enabled=False),
    "tenant action type": lambda h: _set_tenant(h, disabled_action_types=["CREATE_INTERNAL_TASK"]),
}


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_each_stored_switch_cancels_and_writes_nothing(harness: Harness, switch: str) -> None:
    SWITCHES[switch](harness)
    with harness.client() as client:
        intent = harness.create_intent(client)
        harness.approve(client, intent["action_intent_id"])
        status = harness.wait_terminal(client, intent["action_intent_id"])
    _assert_cancelled(harness, status, intent["action_intent_id"])


def test_environment_global_stop_cancels(tmp_path: Path) -> None:
    harness = Harness(make_settings(tmp_path, global_execution_stop=True)).start()
    try:
        with harness.client() as client:
            intent = harness.create_intent(client)
            harness.approve(client, intent["action_intent_id"])
            status = harness.wait_terminal(client, intent["action_intent_id"])
        _assert_cancelled(harness, status, intent["action_intent_id"])
        assert "GLOBAL_STOP" in status["error_message"]
    finally:
        harness.stop()


def test_a_tenant_switch_does_not_touch_other_tenants(harness: Harness) -> None:
    _set_tenant(harness, execution_enabled=False)
    with harness.client(tenant="t2") as client:
        status = harness.run_task(client)
    assert status["status"] == "SUCCEEDED"


def test_switch_flipped_between_preflight_and_invoke_cancels(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_map = steps.map_action_to_tool

    def map_then_flip(deps: Any, checked: Any) -> Any:
        call = real_map(deps, checked)
        _set_global(harness, global_stop=True)  # an operator pulls the switch right now
        return call

    monkeypatch.setattr(steps, "map_action_to_tool", map_then_flip)
    with harness.client() as client:
        intent = harness.create_intent(client)
        harness.approve(client, intent["action_intent_id"])
        status = harness.wait_terminal(client, intent["action_intent_id"])
    _assert_cancelled(harness, status, intent["action_intent_id"])
    with harness.db.read() as conn:
        ledger = executions.list_ledger(conn, "t1", intent["action_intent_id"])
    cancelled = next(e for e in ledger if e.event_type == "EXECUTION_CANCELLED")
    assert cancelled.data["tool_name"] == "internal.create_task"  # it got as far as the mapping


def test_a_switch_lookup_error_fails_closed(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any) -> Any:
        raise RuntimeError("tenants table unreachable")

    monkeypatch.setattr(killswitches, "get_global_and_tenant", broken)
    with harness.client() as client:
        intent = harness.create_intent(client)
        harness.approve(client, intent["action_intent_id"])
        status = harness.wait_terminal(client, intent["action_intent_id"])
    _assert_cancelled(harness, status, intent["action_intent_id"])
    assert "LOOKUP_FAILED" in status["error_message"]


def test_cli_toggles_take_effect_without_restart(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_DATABASE_URL", harness.settings.database_url)
    runner = CliRunner()
    assert runner.invoke(cli_app, ["kill-switch", "global", "stop"]).exit_code == 0
    with harness.client() as client:
        stopped = harness.run_task(client)
        assert stopped["status"] == "CANCELLED"
        assert runner.invoke(cli_app, ["kill-switch", "global", "resume"]).exit_code == 0
        assert harness.run_task(client)["status"] == "SUCCEEDED"

        result = runner.invoke(
            cli_app, ["kill-switch", "action-type", "CREATE_INTERNAL_TASK", "disable", "--tenant", "t1"]
        )
        assert result.exit_code == 0, result.output
        assert harness.run_task(client)["status"] == "CANCELLED"
        assert (
            runner.invoke(
                cli_app, ["kill-switch", "action-type", "CREATE_INTERNAL_TASK", "enable", "--tenant", "t1"]
            ).exit_code
            == 0
        )
        assert runner.invoke(cli_app, ["kill-switch", "tenant", "t1", "stop"]).exit_code == 0
        assert harness.run_task(client)["status"] == "CANCELLED"
        assert runner.invoke(cli_app, ["kill-switch", "tenant", "t1", "resume"]).exit_code == 0
        assert (
            runner.invoke(
                cli_app, ["kill-switch", "action-type", "CREATE_INTERNAL_TASK", "disable"]
            ).exit_code
            == 0
        )
        assert harness.run_task(client)["status"] == "CANCELLED"
        assert (
            runner.invoke(cli_app, ["kill-switch", "action-type", "CREATE_INTERNAL_TASK", "enable"]).exit_code
            == 0
        )
        assert harness.run_task(client)["status"] == "SUCCEEDED"
    shown = runner.invoke(cli_app, ["kill-switch", "show", "--tenant", "t1"])
    assert '"global_stop": false' in shown.output
    assert runner.invoke(cli_app, ["kill-switch", "global", "sideways"]).exit_code != 0
