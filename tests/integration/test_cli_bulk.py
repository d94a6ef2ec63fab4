"""``fulfill approve ID ID …`` and ``fulfill reject ID …`` against a running service: each intent is
decided on its own through the HTTP API, one line each; a refused one is named with the service's
code and reason while the others proceed, and the command exits 1 when any was refused."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.store import executions as ledger_store
from fulfill.store import intents as intent_store
from tests.support.harness import ALL_SCOPES, TEST_SECRET, Harness


@pytest.fixture
def cli(shared: Harness, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FULFILL_DATABASE_URL", shared.settings.database_url)
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("FULFILL_URL", shared.url)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def _created(shared: Harness, subject: str, count: int) -> list[str]:
    with shared.client("t1", ALL_SCOPES, subject=subject) as proposer:
        return [shared.create_intent(proposer)["action_intent_id"] for _ in range(count)]


def _status(shared: Harness, intent_id: str) -> str:
    with shared.db.read() as conn:
        intent = intent_store.get_intent(conn, "t1", intent_id)
    assert intent is not None
    return intent.approval_status.value


def _approvals(shared: Harness, intent_id: str) -> list[str]:
    with shared.db.read() as conn:
        return [
            str(entry.data["approved_by"])
            for entry in ledger_store.list_ledger(conn, "t1", intent_id)
            if entry.event_type == "ACTION_APPROVED"
        ]


def test_approve_several_where_one_is_the_approvers_own(cli: CliRunner, shared: Harness) -> None:
    others = _created(shared, "ada@acme.example", 3)
    [own] = _created(shared, "fulfill-cli-approver", 1)  # the subject `approve` acts as
    result = cli.invoke(app, ["approve", others[0], own, others[1], others[2], "--tenant", "t1"])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [f"{intent_id}: APPROVED" for intent_id in others]
    assert f"{own}: refused: POST /intents/{own}/approve answered 403 (SELF_APPROVAL" in result.stderr
    assert "3 of 4 approved; 1 refused" in result.stderr
    with shared.client() as client:
        for intent_id in others:
            assert shared.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
            assert _approvals(shared, intent_id) == ["fulfill-cli-approver"]
    assert _status(shared, own) == "PENDING_APPROVAL"
    assert _approvals(shared, own) == []


def test_reject_several_and_a_missing_one(cli: CliRunner, shared: Harness) -> None:
    ids = _created(shared, "ada@acme.example", 2)
    result = cli.invoke(app, ["reject", ids[0], "ai_missing_xyz", ids[1], ids[0], "--tenant", "t1"])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [f"{ids[0]}: REJECTED", f"{ids[1]}: REJECTED"]  # once each
    assert "ai_missing_xyz: refused: POST /intents/ai_missing_xyz/reject answered 404" in result.stderr
    assert "2 of 3 rejected; 1 refused" in result.stderr
    assert [_status(shared, intent_id) for intent_id in ids] == ["REJECTED", "REJECTED"]


def test_all_accepted_exits_zero(cli: CliRunner, shared: Harness) -> None:
    ids = _created(shared, "ada@acme.example", 2)
    result = cli.invoke(app, ["approve", *ids, "--tenant", "t1"])
    assert result.exit_code == 0, result.output
    assert "2 of 2 approved" in result.stderr


def test_one_id_keeps_the_json_answer(cli: CliRunner, shared: Harness) -> None:
    [intent_id] = _created(shared, "ada@acme.example", 1)
    result = cli.invoke(app, ["reject", intent_id, "--tenant", "t1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["approval_status"] == "REJECTED"


def test_several_ids_with_edited_parameters_or_too_many_are_refused(cli: CliRunner, shared: Harness) -> None:
    ids = _created(shared, "ada@acme.example", 2)
    edited = cli.invoke(app, ["approve", *ids, "--tenant", "t1", "--parameters", "-"], input="{}")
    assert edited.exit_code == 2
    assert "edits one intent" in edited.output
    too_many = cli.invoke(app, ["approve", *[f"ai_x{index}" for index in range(101)], "--tenant", "t1"])
    assert too_many.exit_code == 2
    assert "at most 100 intents at once" in too_many.output
    assert [_status(shared, intent_id) for intent_id in ids] == ["PENDING_APPROVAL"] * 2
