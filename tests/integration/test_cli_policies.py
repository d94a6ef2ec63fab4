"""``fulfill policies …`` and ``fulfill approve --parameters`` against a running service."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.domain.models import ApprovalRule
from tests.support.console import seed_pending
from tests.support.harness import TEST_SECRET, Harness


@pytest.fixture
def cli(shared: Harness, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FULFILL_DATABASE_URL", shared.settings.database_url)
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("FULFILL_URL", shared.url)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


# --- a body that is not a JSON object never reaches the service --------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ('["a list"]', "must hold a JSON object"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["policies", "create"],
        ["policies", "update", "pol_x"],
        ["policies", "simulate"],
        ["approve", "ai_whatever"],
    ],
)
def test_a_file_that_is_not_a_json_object_is_refused_naming_the_option(
    cli: CliRunner, tmp_path: Path, command: list[str], content: str | None, words: str
) -> None:
    path = tmp_path / "body.json"
    if content is not None:
        path.write_text(content)
    option = "--parameters" if command[0] == "approve" else "--file"
    # The service is not asked: an unreachable URL changes nothing.
    result = cli.invoke(app, [*command, "--tenant", "t1", option, str(path), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert option in result.stderr
    assert words in result.stderr


# --- approve --parameters: edit before approving ------------------------------------------------


def _note(cli: CliRunner) -> str:
    submitted = cli.invoke(
        app,
        [
            "intent",
            "submit",
            "--tenant",
            "t1",
            "--account",
            "acc-1",
            "--action-type",
            "CREATE_INTERNAL_NOTE",
            "--param",
            "content=as proposed",
        ],
    )
    assert submitted.exit_code == 0, submitted.output
    return submitted.stdout.strip()


@pytest.mark.parametrize("from_stdin", [False, True])
def test_approve_with_parameters_runs_the_edited_action_and_the_status_says_so(
    cli: CliRunner, shared: Harness, tmp_path: Path, from_stdin: bool
) -> None:
    intent_id = _note(cli)
    edited = '{"content": "as the approver wrote it"}'
    path = tmp_path / "edited.json"
    path.write_text(edited)
    source = "-" if from_stdin else str(path)
    approved = cli.invoke(
        app,
        ["approve", intent_id, "--tenant", "t1", "--parameters", source],
        input=edited if from_stdin else None,
    )
    assert approved.exit_code == 0, approved.output
    answer = json.loads(approved.stdout)
    assert answer["approval_status"] == "APPROVED"
    assert answer["action_hash"].startswith("v1:")
    assert [given["approved_by"] for given in answer["approvals"]] == ["fulfill-cli-approver"]
    with shared.client() as client:
        shared.wait_terminal(client, intent_id)
    status = cli.invoke(app, ["status", intent_id, "--tenant", "t1"])
    assert status.exit_code == 0, status.output
    view = json.loads(status.stdout)
    assert view["status"] == "SUCCEEDED"
    assert view["parameters"] == {"content": "as the approver wrote it"}
    assert view["edited_fields"] == ["content"]
    assert view["action_hash"] == answer["action_hash"]


def test_approve_without_parameters_prints_what_it_always_printed_and_the_hash(cli: CliRunner) -> None:
    intent_id = _note(cli)
    approved = cli.invoke(app, ["approve", intent_id, "--tenant", "t1"])
    assert approved.exit_code == 0, approved.output
    answer = json.loads(approved.stdout)
    assert answer["approval_status"] == "APPROVED"
    assert answer["warnings"] == []
    assert None not in answer.values()  # absent fields are left out, as the API leaves them out


def test_edited_parameters_the_schema_refuses_are_one_line_and_change_nothing(
    cli: CliRunner, shared: Harness, tmp_path: Path
) -> None:
    intent_id = _note(cli)
    path = tmp_path / "edited.json"
    path.write_text('{"content": 42}')
    refused = cli.invoke(app, ["approve", intent_id, "--tenant", "t1", "--parameters", str(path)])
    assert refused.exit_code == 1
    assert "answered 422" in refused.stderr
    with shared.client() as client:
        intent = client.get(f"/intents/{intent_id}").json()
    assert intent["approval_status"] == "PENDING_APPROVAL"
    assert intent["parameters"] == {"content": "as proposed"}


def test_the_proposer_cannot_approve_by_editing_either(
    cli: CliRunner, shared: Harness, tmp_path: Path
) -> None:
    intent_id = _note(cli)
    path = tmp_path / "edited.json"
    path.write_text('{"content": "mine"}')
    own = shared.token("t1", subject="fulfill-cli")
    refused = cli.invoke(
        app, ["approve", intent_id, "--tenant", "t1", "--token", own, "--parameters", str(path)]
    )
    assert refused.exit_code == 1
    assert "answered 403 (SELF_APPROVAL" in refused.stderr


def test_an_approval_that_is_not_the_last_one_says_how_many_more_are_needed(
    cli: CliRunner, shared: Harness
) -> None:
    intent_id = f"ai_cli_two_{uuid.uuid4().hex[:10]}"
    rule = ApprovalRule(policy_id="pol_cli_two", policy_version=1, approvals_required=2)
    seed_pending(shared, intent_id, expires_in=3600, approval_rule=rule, proposed_by="agent-1")
    first = cli.invoke(app, ["approve", intent_id, "--tenant", "t1"])
    assert first.exit_code == 0, first.output
    answer = json.loads(first.stdout)
    assert answer["approval_status"] == "PENDING_APPROVAL"
    assert answer["approvals_required"] == 2
    assert "1 of 2 approvals: it runs once 1 more approve" in first.stderr
    second = cli.invoke(
        app, ["approve", intent_id, "--tenant", "t1", "--token", shared.token("t1", subject="second-person")]
    )
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["approval_status"] == "APPROVED"
    assert "approvals:" not in second.stderr
