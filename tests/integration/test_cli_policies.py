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


# --- fulfill policies, through the API and on the database ----------------------------------------

SMALL_TASKS = {
    "name": "small internal notes approve themselves",
    "match": {"action_types": ["CREATE_INTERNAL_NOTE"], "when": "size(params.content) < 200"},
    "decision": "AUTO_APPROVE",
    "priority": 10,
}


def _tenant() -> str:
    return f"t-pol-{uuid.uuid4().hex[:8]}"


def _file(tmp_path: Path, body: object, name: str = "policy.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return str(path)


def _db(shared: Harness, on_database: bool) -> list[str]:
    return ["--db", shared.settings.database_url] if on_database else []


@pytest.mark.parametrize("on_database", [False, True], ids=["api", "database"])
def test_create_list_show_update_delete(
    cli: CliRunner, shared: Harness, tmp_path: Path, on_database: bool
) -> None:
    tenant, where = _tenant(), _db(shared, on_database)
    created = cli.invoke(
        app, ["policies", "create", "--tenant", tenant, "--file", _file(tmp_path, SMALL_TASKS), *where]
    )
    assert created.exit_code == 0, created.output
    policy = json.loads(created.stdout)
    policy_id = policy["policy_id"]
    assert policy_id.startswith("pol_")
    assert policy["version"] == 1
    assert policy["tenant_id"] == tenant
    assert policy["created_by"] == ("fulfill-cli (database)" if on_database else "fulfill-cli")
    assert f"created {policy_id} (version 1)" in created.stderr
    assert ("database:" in created.stderr) is on_database  # it names what it acts on

    table = cli.invoke(app, ["policies", "list", "--tenant", tenant, *where])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if policy_id in line)
    for cell in ("tenant", "10", "small internal notes approve themselves", "AUTO_APPROVE", "ENFORCE"):
        assert cell in row
    assert "action_types=CREATE_INTERNAL_NOTE when size(params.content) < 200" in row

    listed = cli.invoke(app, ["policies", "list", "--tenant", tenant, "--json", *where])
    assert [p["policy_id"] for p in json.loads(listed.stdout)["policies"] if p["tenant_id"] == tenant] == [
        policy_id
    ]

    shown = cli.invoke(app, ["policies", "show", policy_id, "--tenant", tenant, *where])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == policy

    two = {
        **SMALL_TASKS,
        "decision": "REQUIRE_APPROVAL",
        "approvals_required": 2,
        "approver_scopes": ["approvers:crm"],
    }
    updated = cli.invoke(
        app, ["policies", "update", policy_id, "--tenant", tenant, "--file", _file(tmp_path, two), *where]
    )
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.stdout)["version"] == 2
    assert f"updated {policy_id} to version 2" in updated.stderr
    table = cli.invoke(app, ["policies", "list", "--tenant", tenant, *where]).stdout
    assert "2 (approvers:crm)" in next(line for line in table.splitlines() if policy_id in line)

    deleted = cli.invoke(app, ["policies", "delete", policy_id, "--tenant", tenant, *where])
    assert deleted.exit_code == 0, deleted.output
    assert f"deleted {policy_id}" in deleted.stderr
    listed = cli.invoke(app, ["policies", "list", "--tenant", tenant, "--json", *where])
    assert policy_id not in listed.stdout
    gone = cli.invoke(app, ["policies", "show", policy_id, "--tenant", tenant, *where])
    assert gone.exit_code == 1
    assert "POLICY_NOT_FOUND" in gone.stderr


def test_what_one_operator_writes_the_other_reads(cli: CliRunner, shared: Harness, tmp_path: Path) -> None:
    tenant = _tenant()
    created = cli.invoke(
        app,
        ["policies", "create", "--tenant", tenant, "--file", "-", *_db(shared, True)],
        input=json.dumps(SMALL_TASKS),
    )
    assert created.exit_code == 0, created.output
    policy = json.loads(created.stdout)
    through_api = cli.invoke(app, ["policies", "show", policy["policy_id"], "--tenant", tenant])
    assert through_api.exit_code == 0, through_api.output
    assert json.loads(through_api.stdout) == policy


@pytest.mark.parametrize("on_database", [False, True], ids=["api", "database"])
def test_an_invalid_expression_is_refused_with_the_parsers_reason(
    cli: CliRunner, shared: Harness, tmp_path: Path, on_database: bool
) -> None:
    tenant = _tenant()
    broken = {**SMALL_TASKS, "match": {"when": "size(params.content <"}}
    refused = cli.invoke(
        app,
        [
            "policies",
            "create",
            "--tenant",
            tenant,
            "--file",
            _file(tmp_path, broken),
            *_db(shared, on_database),
        ],
    )
    assert refused.exit_code == 1, refused.output
    assert "INVALID_POLICY_EXPRESSION" in refused.stderr
    assert "match.when is not a valid expression" in refused.stderr
    if not on_database:
        assert "answered 422" in refused.stderr
    listed = cli.invoke(app, ["policies", "list", "--tenant", tenant, "--json", *_db(shared, on_database)])
    assert [p for p in json.loads(listed.stdout)["policies"] if p["tenant_id"] == tenant] == []


@pytest.mark.parametrize("on_database", [False, True], ids=["api", "database"])
def test_a_body_the_policy_model_refuses_is_one_line(
    cli: CliRunner, shared: Harness, tmp_path: Path, on_database: bool
) -> None:
    refused = cli.invoke(
        app,
        [
            "policies",
            "create",
            "--tenant",
            _tenant(),
            "--file",
            _file(tmp_path, {**SMALL_TASKS, "decision": "MAYBE"}),
            *_db(shared, on_database),
        ],
    )
    assert refused.exit_code == 1, refused.output
    assert "INVALID_REQUEST" in refused.stderr
    assert "decision: Input should be 'AUTO_APPROVE', 'REQUIRE_APPROVAL' or 'DENY'" in refused.stderr
    assert "configuration" not in refused.stderr
    assert "Traceback" not in refused.output


def test_a_tenant_admin_token_cannot_write_a_platform_policy_nor_see_another_tenants(
    cli: CliRunner, shared: Harness, tmp_path: Path
) -> None:
    tenant, other = _tenant(), _tenant()
    theirs = json.loads(
        cli.invoke(
            app, ["policies", "create", "--tenant", other, "--file", _file(tmp_path, SMALL_TASKS)]
        ).stdout
    )["policy_id"]
    admin = shared.token(tenant, scopes=["admin"], subject="tenant-admin")
    platform = {
        **SMALL_TASKS,
        "scope": "platform",
        "mode": "SHADOW",
        "match": {"account_ids": ["acc-nobody"]},
    }
    refused = cli.invoke(
        app, ["policies", "create", "--tenant", tenant, "--token", admin, "--file", _file(tmp_path, platform)]
    )
    assert refused.exit_code == 1
    assert "answered 403" in refused.stderr
    assert "platform:admin" in refused.stderr
    hidden = cli.invoke(app, ["policies", "show", theirs, "--tenant", tenant, "--token", admin])
    assert hidden.exit_code == 1
    assert "answered 404" in hidden.stderr
    deleted = cli.invoke(app, ["policies", "delete", theirs, "--tenant", tenant, "--token", admin])
    assert deleted.exit_code == 1
    assert "answered 404" in deleted.stderr
    still = cli.invoke(app, ["policies", "show", theirs, "--tenant", other])
    assert still.exit_code == 0, still.output


def test_an_agents_token_manages_no_policy(cli: CliRunner, shared: Harness, tmp_path: Path) -> None:
    agent = shared.token("t1", scopes=["admin"], subject="ada", actor="agent-7")
    refused = cli.invoke(
        app,
        ["policies", "create", "--tenant", "t1", "--token", agent, "--file", _file(tmp_path, SMALL_TASKS)],
    )
    assert refused.exit_code == 1
    assert "AGENT_CANNOT_MANAGE_POLICIES" in refused.stderr


def _seed_notes(shared: Harness, tenant: str, contents: list[str]) -> list[str]:
    ids = []
    for content in contents:
        intent_id = f"ai_sim_{uuid.uuid4().hex[:10]}"
        seed_pending(
            shared,
            intent_id,
            expires_in=3600,
            tenant_id=tenant,
            action_type="CREATE_INTERNAL_NOTE",
            parameters={"content": content},
            proposed_by="agent-1",
        )
        ids.append(intent_id)
    return ids


@pytest.mark.parametrize("on_database", [False, True], ids=["api", "database"])
def test_simulate_counts_what_a_candidate_would_have_decided(
    cli: CliRunner, shared: Harness, tmp_path: Path, on_database: bool
) -> None:
    tenant, where = _tenant(), _db(shared, on_database)
    _seed_notes(shared, tenant, ["short", "also short", "x" * 300])
    candidate = _file(tmp_path, SMALL_TASKS)
    answer = cli.invoke(
        app, ["policies", "simulate", "--tenant", tenant, "--file", candidate, "--json", *where]
    )
    assert answer.exit_code == 0, answer.output
    result = json.loads(answer.stdout)
    assert result["evaluated"] == 3
    assert result["counts"] == {"AUTO_APPROVE": 2, "REQUIRE_APPROVAL": 0, "DENY": 0, "NO_MATCH": 1}
    assert len(result["examples"]["AUTO_APPROVE"]) == 2

    limited = cli.invoke(
        app,
        ["policies", "simulate", "--tenant", tenant, "--file", candidate, "--limit", "1", "--json", *where],
    )
    assert json.loads(limited.stdout)["evaluated"] == 1

    table = cli.invoke(app, ["policies", "simulate", "--tenant", tenant, "--file", candidate, *where])
    assert table.exit_code == 0, table.output
    assert "Over the latest 3 intents" in table.stdout
    assert "NO_MATCH (the default: one approval)" in table.stdout
    assert "Examples" in table.stdout
    listed = cli.invoke(app, ["policies", "list", "--tenant", tenant, "--json", *where])
    assert [
        p for p in json.loads(listed.stdout)["policies"] if p["tenant_id"] == tenant
    ] == []  # nothing stored


def test_simulate_reads_a_wrapped_candidate_and_a_limit_the_service_refuses(
    cli: CliRunner, shared: Harness, tmp_path: Path
) -> None:
    tenant = _tenant()
    _seed_notes(shared, tenant, ["one", "two"])
    wrapped = _file(tmp_path, {"policy": SMALL_TASKS, "limit": 1})
    answer = cli.invoke(app, ["policies", "simulate", "--tenant", tenant, "--file", wrapped, "--json"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout)["evaluated"] == 1
    refused = cli.invoke(
        app, ["policies", "simulate", "--tenant", tenant, "--file", wrapped, "--limit", "5000"]
    )
    assert refused.exit_code == 1
    assert "answered 422" in refused.stderr
