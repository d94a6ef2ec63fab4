"""The ``fulfill`` command line against a running service and its database."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.store.migrate import MIGRATIONS_DIR
from fulfill_tools.launch import free_port
from tests.support.harness import TEST_SECRET, Harness
from tests.support.http_doubles import wait_for


@pytest.fixture
def cli(shared: Harness, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FULFILL_DATABASE_URL", shared.settings.database_url)
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("FULFILL_URL", shared.url)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_token_prints_a_verifiable_token(cli: CliRunner) -> None:
    result = cli.invoke(
        app,
        ["token", "--tenant", "t9", "--scopes", "executions:read", "--account-ids", "a,b", "--sub", "ops"],
    )
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.output.strip(), TEST_SECRET, algorithms=["HS256"], audience="fulfill")
    assert claims["tenant_id"] == "t9"
    assert claims["scope"] == "executions:read"
    assert claims["account_ids"] == ["a", "b"]
    assert claims["sub"] == "ops"


def test_token_help_says_scopes_replace_the_default(cli: CliRunner) -> None:
    result = cli.invoke(app, ["token", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "given, they replace the default" in text
    assert "--scopes platform:admin is that scope alone" in text
    assert "add 'platform:admin'" not in text


def test_submit_approve_and_status(cli: CliRunner, shared: Harness) -> None:
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
            "content=hello",
        ],
    )
    assert submitted.exit_code == 0, submitted.output
    intent_id = submitted.stdout.strip()  # the id alone, as in `ID=$(fulfill intent submit …)`
    assert intent_id.startswith("ai_"), submitted.stdout
    approved = cli.invoke(app, ["approve", intent_id, "--tenant", "t1"])
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.output)["approval_status"] == "APPROVED"
    with shared.client() as client:
        shared.wait_terminal(client, intent_id)
    status = cli.invoke(app, ["status", intent_id, "--tenant", "t1"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["status"] == "SUCCEEDED"
    assert shared.note_rows(intent_id) == 1
    # Two subjects: `intent submit` proposed as fulfill-cli, `approve` approved as another one.
    with shared.client() as client:
        assert client.get(f"/intents/{intent_id}").json()["proposed_by"] == "fulfill-cli"
        entries = client.get(f"/executions/{intent_id}/timeline").json()["entries"]
    [approval] = [e for e in entries if e["event_type"] == "ACTION_APPROVED"]
    assert approval["data"]["approved_by"] == "fulfill-cli-approver"


def test_approve_with_the_proposers_own_token_is_refused(cli: CliRunner, shared: Harness) -> None:
    with shared.client() as client:
        intent_id = shared.create_intent(client)["action_intent_id"]
    own = shared.token("t1", subject="fulfill-cli")
    refused = cli.invoke(app, ["approve", intent_id, "--tenant", "t1", "--token", own])
    assert refused.exit_code == 1
    assert "answered 403 (SELF_APPROVAL" in refused.stderr


@pytest.mark.parametrize(
    ("args", "actor"),
    [
        (["--act", "agent-7"], "agent-7"),
        (["--agent"], "ada"),
        (["--agent", "--act", "ada"], "ada"),
        ([], None),
    ],
)
def test_token_mints_an_agents_token(cli: CliRunner, args: list[str], actor: str | None) -> None:
    result = cli.invoke(app, ["token", "--tenant", "t1", "--sub", "ada", *args])
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.output.strip(), TEST_SECRET, algorithms=["HS256"], audience="fulfill")
    assert claims["sub"] == "ada"
    assert claims.get("act") == ({"sub": actor} if actor else None)


def test_an_agents_token_from_the_cli_cannot_approve(cli: CliRunner, shared: Harness) -> None:
    with shared.client() as client:
        intent_id = shared.create_intent(client)["action_intent_id"]
    agent = cli.invoke(app, ["token", "--tenant", "t1", "--sub", "ada", "--act", "agent-7"]).output.strip()
    refused = cli.invoke(app, ["approve", intent_id, "--tenant", "t1", "--token", agent])
    assert refused.exit_code == 1
    assert "answered 403 (AGENT_CANNOT_APPROVE" in refused.stderr


def test_token_refuses_agent_and_another_act(cli: CliRunner) -> None:
    result = cli.invoke(app, ["token", "--tenant", "t1", "--sub", "ada", "--agent", "--act", "bob"])
    assert result.exit_code == 2


def test_errors_from_the_api_exit_non_zero(cli: CliRunner) -> None:
    missing = cli.invoke(app, ["status", "ai_missing", "--tenant", "t1"])
    assert missing.exit_code == 1
    assert "answered 404" in missing.stderr
    unreachable = cli.invoke(app, ["status", "ai_x", "--tenant", "t1", "--url", "http://127.0.0.1:9"])
    assert unreachable.exit_code == 2


def test_registry_list_and_migrate(cli: CliRunner) -> None:
    listed = cli.invoke(app, ["registry", "list"])
    assert listed.exit_code == 0, listed.output
    assert "CREATE_INTERNAL_TASK" in listed.output
    assert "internal.create_note" in listed.output
    migrated = cli.invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert f"revision {head}" in migrated.output


def test_connector_limits_from_the_command_line(cli: CliRunner, shared: Harness) -> None:
    changed = cli.invoke(app, ["connectors", "limits", "cli-target", "--rate", "5", "--concurrency", "2"])
    assert changed.exit_code == 0, changed.output
    assert "cli-target" in changed.output
    # An option left out keeps its value; "none" lifts the limit.
    lifted = cli.invoke(app, ["connectors", "limits", "cli-target", "--rate", "none"])
    assert lifted.exit_code == 0, lifted.output
    listed = cli.invoke(app, ["connectors", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    by_name = {item["name"]: item for item in json.loads(listed.stdout)}
    assert (by_name["cli-target"]["rate_per_second"], by_name["cli-target"]["concurrency"]) == (None, 2)
    assert by_name["internal"]["circuit"]["state"] == "CLOSED"
    # The API reads what the command stored.
    with shared.client() as client:
        [stored] = [item for item in client.get("/admin/connectors").json() if item["name"] == "cli-target"]
    assert (stored["rate_per_second"], stored["concurrency"], stored["revision"]) == (None, 2, 2)
    table = cli.invoke(app, ["connectors", "list"])
    assert table.exit_code == 0
    assert "cli-target" in table.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["cli-target", "--rate", "2.5"], "whole number"),
        (["cli-target", "--rate", "fast"], "--rate must be a number"),
        (["cli-target", "--concurrency", "0"], "concurrency must be between"),
        (["bad.name", "--rate", "1"], "connector name"),
    ],
)
def test_connector_limits_refuses_bad_values(cli: CliRunner, arguments: list[str], message: str) -> None:
    result = cli.invoke(app, ["connectors", "limits", *arguments])
    assert result.exit_code == 2
    assert message in result.output


def test_demo_against_the_running_service(cli: CliRunner) -> None:
    result = cli.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "SUCCEEDED" in result.output


def test_serve_never_prints_the_database_password() -> None:
    import subprocess
    import sys

    # The database is unreachable, so the service prints its banner and then fails to start.
    env = {"FULFILL_DATABASE_URL": "postgresql+psycopg://user:hunter2@127.0.0.1:1/db", "FULFILL_PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "fulfill", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "postgresql+psycopg://user:***@127.0.0.1:1/db" in output  # the banner named the database...
    assert "hunter2" not in output  # ...without its password
    assert result.returncode != 0
    # One line says why, instead of a traceback.
    assert "Traceback" not in output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(
        "error: fulfill could not start: the database postgresql+psycopg://user:***@127.0.0.1:1/db "
        "cannot be used: connection failed"
    ), line
    assert "Check FULFILL_DATABASE_URL" in line


def test_token_refuses_production_mode(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_AUTH_MODE", "production")
    monkeypatch.setenv("FULFILL_JWKS_URL", "https://idp.example/jwks")
    monkeypatch.setenv("FULFILL_JWT_ISSUER", "https://idp.example")
    monkeypatch.setenv("FULFILL_SERVICE_TOKEN_SECRET", "s" * 40)
    result = cli.invoke(app, ["token", "--tenant", "t1"])
    assert result.exit_code == 2
    assert "identity provider" in result.output


# ---------------------------------------------------------------- the first hour


def test_client_commands_follow_fulfill_host_and_port(
    cli: CliRunner, shared: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without FULFILL_URL the client commands go where `fulfill serve` listens with the same
    settings, not to a fixed 8080."""
    monkeypatch.delenv("FULFILL_URL")
    monkeypatch.setenv("FULFILL_HOST", "127.0.0.1")
    monkeypatch.setenv("FULFILL_PORT", str(shared.settings.port))
    found = cli.invoke(app, ["status", "ai_missing", "--tenant", "t1"])
    assert found.exit_code == 1, found.output  # the service answered: 404
    assert "answered 404" in found.stderr
    assert cli.invoke(app, ["demo"]).exit_code == 0


def test_an_unreachable_service_is_one_line_naming_the_url_and_where_it_came_from(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FULFILL_URL")
    monkeypatch.setenv("FULFILL_PORT", str(free_port()))
    for args in (["status", "ai_x", "--tenant", "t1"], ["demo"], ["approve", "ai_x", "--tenant", "t1"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 2, result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: cannot reach the service at http://127.0.0.1:"), line
        assert "FULFILL_PORT" in line
        assert "connection refused" in line
        assert "Traceback" not in result.output
    explicit = cli.invoke(app, ["status", "ai_x", "--tenant", "t1", "--url", "http://127.0.0.1:9"])
    assert "(from --url / FULFILL_URL)" in explicit.stderr


def test_debug_shows_the_traceback_instead(cli: CliRunner) -> None:
    result = cli.invoke(app, ["--debug", "status", "ai_x", "--tenant", "t1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code != 0
    assert result.exception is not None
    assert "cannot reach" in str(result.exception)


def test_serve_on_a_busy_port_says_so_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "fulfill", "serve"],
            env={**os.environ, "FULFILL_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in line
    assert "--port or FULFILL_PORT" in line


def test_param_needs_key_value_and_keeps_strings(cli: CliRunner, shared: Harness) -> None:
    submit = [
        "intent",
        "submit",
        "--tenant",
        "t1",
        "--account",
        "acc-1",
        "--action-type",
        "CREATE_INTERNAL_TASK",
    ]
    missing = cli.invoke(app, [*submit, "--param", "title"])
    assert missing.exit_code == 2
    assert "'title' has no '='" in missing.output
    not_json = cli.invoke(app, [*submit, "--param", "title:={oops"])
    assert not_json.exit_code == 2
    assert "not JSON" in not_json.output
    # A numeric-looking value is a string (key:=JSON would send the number).
    numeric = cli.invoke(app, [*submit, "--param", "title=123", "--param", "description=true", "--json"])
    assert numeric.exit_code == 0, numeric.output
    assert json.loads(numeric.stdout)["parameters"] == {"title": "123", "description": "true"}
    typed = cli.invoke(app, [*submit, "--param", "title:=42"])
    assert typed.exit_code == 1
    assert "; --param key=value sends a string; key:=JSON" in typed.stderr


def test_unused_parameters_are_named(cli: CliRunner) -> None:
    result = cli.invoke(
        app,
        [
            "intent", "submit", "--tenant", "t1", "--account", "acc-1", "--action-type", "CREATE_INTERNAL_TASK",
            "--param", "title=Call Ada", "--param", "descripton=typo", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ignored_parameters"] == ["descripton"]
    assert "does not use the parameter(s) descripton" in result.stderr


def test_token_ttl_must_be_positive(cli: CliRunner) -> None:
    for ttl in ("0", "-5"):
        result = cli.invoke(app, ["token", "--tenant", "t1", "--ttl", ttl])
        assert result.exit_code == 2, result.output
        assert "--ttl" in result.output


def test_a_token_from_another_secret_gets_a_hint(cli: CliRunner) -> None:
    from fulfill.config import Settings
    from fulfill.tokens import mint_token

    stranger = mint_token(Settings(jwt_secret="x" * 40), tenant_id="t1", scopes=["executions:read"])
    result = cli.invoke(app, ["status", "ai_x", "--tenant", "t1", "--token", stranger])
    assert result.exit_code == 1
    assert "TOKEN_SIGNATURE_INVALID" in result.stderr
    assert "another FULFILL_JWT_SECRET" in result.stderr
    assert "the token came from --token" in result.stderr


def test_a_refused_call_names_an_exported_fulfill_token(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exported FULFILL_TOKEN wins over the minted token for every --url: a refusal says so."""
    from fulfill.config import Settings
    from fulfill.tokens import mint_token

    read_only = mint_token(Settings(jwt_secret=TEST_SECRET), tenant_id="platform", scopes=["executions:read"])
    monkeypatch.setenv("FULFILL_TOKEN", read_only)
    result = cli.invoke(app, ["registry", "list"])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()[-1:]
    assert "answered 403" in line
    assert "the token came from FULFILL_TOKEN; unset it" in line


def test_a_problem_answer_is_one_line_with_its_code_and_detail(cli: CliRunner) -> None:
    result = cli.invoke(app, ["status", "ai_missing", "--tenant", "t1"])
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: GET /executions/ai_missing/status answered 404 ("), line
    assert "NOT_FOUND" in line
    # --debug adds the whole problem body.
    debug = cli.invoke(app, ["--debug", "status", "ai_missing", "--tenant", "t1"])
    assert debug.exit_code == 1
    assert '"status": 404' in debug.stderr
    assert '"detail"' in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == line


def test_intent_submit_json_prints_the_intent(cli: CliRunner) -> None:
    result = cli.invoke(
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
            "content=hello",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["approval_status"] == "PENDING_APPROVAL"


def test_every_list_command_prints_json(cli: CliRunner, shared: Harness) -> None:
    listings = {
        ("registry", "list"): lambda data: (
            {e["action_type"] for e in data["entries"]} >= {"CREATE_INTERNAL_TASK"}
        ),
        ("registry", "list", "--db", shared.settings.database_url): lambda data: len(data["entries"]) > 0,
        ("connectors", "list"): lambda data: "internal" in {c["name"] for c in data},
        ("connectors", "list", "--db", shared.settings.database_url): lambda data: (
            "internal" in {c["name"] for c in data}
        ),
        ("gateway", "list"): lambda data: data["targets"] == [],
        ("outbox", "dead-letters"): lambda data: "dead_letters" in data,
        ("credentials", "list", "--tenant", "t1"): lambda data: "credentials" in data,
    }
    for command, check in listings.items():
        result = cli.invoke(app, [*command, "--json"] if command[0] != "credentials" else list(command))
        assert result.exit_code == 0, (command, result.output)
        assert check(json.loads(result.stdout)), (command, result.stdout)


def test_tables_are_not_cut_when_piped(shared: Harness) -> None:
    """Piped output has no terminal width: a table keeps every character of its cells."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FULFILL_TOKEN")}
    env.update(FULFILL_URL=shared.url, FULFILL_JWT_SECRET=TEST_SECRET)
    result = subprocess.run(
        [sys.executable, "-m", "fulfill", "registry", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    assert "CREATE_INTERNAL_TASK" in result.stdout
    assert "internal.create_note" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) > 80


def test_kill_switch_never_creates_a_database(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a directory without the service's database, and no service URL: refused, naming the
    database it looked for; nothing is created."""
    monkeypatch.delenv("FULFILL_URL")
    monkeypatch.delenv("FULFILL_DATABASE_URL")
    monkeypatch.chdir(tmp_path)
    for args in (["kill-switch", "global", "stop"], ["kill-switch", "show"], ["registry", "list"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"no database at sqlite:///./fulfill.db ({tmp_path / 'fulfill.db'})" in result.stderr
        assert "--url / FULFILL_URL" in result.stderr
        assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
    # A database without fulfill's tables is no service's database.
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = cli.invoke(app, ["kill-switch", "show", "--db", f"sqlite:///{empty}"])
    assert result.exit_code == 2
    assert "holds no fulfill tables" in result.stderr


def test_kill_switch_on_the_database_names_it(cli: CliRunner, shared: Harness) -> None:
    db = shared.settings.database_url
    disabled = cli.invoke(app, ["kill-switch", "action-type", "CREATE_INTERNAL_NOTE", "disable", "--db", db])
    assert disabled.exit_code == 0, disabled.output
    assert disabled.stderr.startswith("database: ")
    assert json.loads(disabled.stdout)["disabled_action_types"] == ["CREATE_INTERNAL_NOTE"]
    enabled = cli.invoke(app, ["kill-switch", "action-type", "CREATE_INTERNAL_NOTE", "enable", "--db", db])
    assert json.loads(enabled.stdout)["disabled_action_types"] == []
    shown = cli.invoke(app, ["kill-switch", "show", "--tenant", "t1", "--db", db])
    assert json.loads(shown.stdout)["tenant"]["execution_enabled"] is True
    listed = cli.invoke(app, ["registry", "list", "--db", db])
    assert "internal.create_task" in listed.stdout


def test_kill_switch_through_the_api_when_a_url_is_given(cli: CliRunner, shared: Harness) -> None:
    stopped = cli.invoke(app, ["kill-switch", "tenant", "t-cli", "stop"])
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stderr.startswith(f"service: {shared.url}")
    assert json.loads(stopped.stdout)["execution_enabled"] is False
    with shared.client("t-cli", ["admin"]) as client:
        assert client.get("/admin/tenants/t-cli/execution").json()["execution_enabled"] is False
    resumed = cli.invoke(app, ["kill-switch", "tenant", "t-cli", "resume"])
    assert json.loads(resumed.stdout)["execution_enabled"] is True
    disabled = cli.invoke(app, ["kill-switch", "action-type", "CREATE_INTERNAL_NOTE", "disable"])
    assert json.loads(disabled.stdout)["disabled_action_types"] == ["CREATE_INTERNAL_NOTE"]
    shown = cli.invoke(app, ["kill-switch", "show"])
    assert json.loads(shown.stdout)["global"]["disabled_action_types"] == ["CREATE_INTERNAL_NOTE"]
    enabled = cli.invoke(app, ["kill-switch", "action-type", "CREATE_INTERNAL_NOTE", "enable"])
    assert json.loads(enabled.stdout)["disabled_action_types"] == []
    listed = cli.invoke(app, ["registry", "list"])
    assert "internal.create_note" in listed.stdout


def test_kill_switch_refuses_an_unknown_action_type(cli: CliRunner, shared: Harness) -> None:
    db = shared.settings.database_url
    for where in ([], ["--db", db]):
        refused = cli.invoke(app, ["kill-switch", "action-type", "NOPE", "disable", *where])
        assert refused.exit_code == 2, refused.output
        assert "NOPE is not a registered action type (known: CREATE_CRM_TASK, CREATE_INTERNAL_NOTE," in (
            refused.stderr
        )
        not_disabled = cli.invoke(app, ["kill-switch", "action-type", "NOPE", "enable", *where])
        assert not_disabled.exit_code == 2
        assert "NOPE is not disabled globally" in not_disabled.stderr
    forced = cli.invoke(app, ["kill-switch", "action-type", "NOPE", "disable", "--force", "--db", db])
    assert json.loads(forced.stdout)["disabled_action_types"] == ["NOPE"]
    assert cli.invoke(app, ["kill-switch", "action-type", "NOPE", "enable"]).exit_code == 0


def _submit(cli: CliRunner, tenant: str, intent_id: str, *options: str) -> None:
    base = ["intent", "submit", "--tenant", tenant, "--account", "acc-1", "--intent-id", intent_id]
    arguments = [*base, "--action-type", "CREATE_INTERNAL_NOTE", "--param", "content=hello", *options]
    submitted = cli.invoke(app, arguments)
    assert submitted.exit_code == 0, submitted.output


def test_submit_sets_the_execution_policy(cli: CliRunner, shared: Harness) -> None:
    _submit(cli, "t1", "ai-cli-policy-1", "--max-attempts", "2", "--timeout-seconds", "60")
    _submit(
        cli,
        "t1",
        "ai-cli-policy-2",
        "--policy",
        '{"retry_count": 0, "max_attempts": 5}',
        "--max-attempts",
        "3",
    )
    with shared.client() as client:
        first = client.get("/intents/ai-cli-policy-1").json()["execution_policy"]
        second = client.get("/intents/ai-cli-policy-2").json()["execution_policy"]
    assert first == {"retry_count": 3, "timeout_seconds": 60, "max_attempts": 2}
    assert second == {"retry_count": 0, "timeout_seconds": 300, "max_attempts": 3}
    base = [
        "intent",
        "submit",
        "--tenant",
        "t1",
        "--account",
        "acc-1",
        "--action-type",
        "CREATE_INTERNAL_NOTE",
    ]
    not_an_object = cli.invoke(app, [*base, "--policy", "[1]"])
    assert not_an_object.exit_code == 2
    assert "--policy" in not_an_object.output
    too_many = cli.invoke(app, [*base, "--max-attempts", "11"])
    assert too_many.exit_code == 2


def test_approve_into_a_kill_switch_warns_then_rerun_and_cancel(cli: CliRunner, shared: Harness) -> None:
    tenant = "t-cli-rerun"
    assert cli.invoke(app, ["kill-switch", "tenant", tenant, "stop"]).exit_code == 0
    try:
        _submit(cli, tenant, "ai-cli-stopped")
        approved = cli.invoke(app, ["approve", "ai-cli-stopped", "--tenant", tenant])
        assert approved.exit_code == 0, approved.output
        assert "warning: kill switch TENANT is on" in approved.stderr
        assert "fulfill rerun ai-cli-stopped" in approved.stderr
        with shared.client(tenant) as client:
            stopped = shared.wait_terminal(client, "ai-cli-stopped")
        assert stopped["status"] == "CANCELLED"
    finally:
        assert cli.invoke(app, ["kill-switch", "tenant", tenant, "resume"]).exit_code == 0
    rerun = cli.invoke(app, ["rerun", "ai-cli-stopped", "--tenant", tenant, "--reason", "switch is off"])
    assert rerun.exit_code == 0, rerun.output
    with shared.client(tenant) as client:
        final = wait_for(
            lambda: (
                (body := client.get("/executions/ai-cli-stopped/status").json())["status"] == "SUCCEEDED"
                and body
            )
        )
        assert final["attempt_count"] == 2
        again = cli.invoke(app, ["rerun", "ai-cli-stopped", "--tenant", tenant])
        assert again.exit_code == 1  # SUCCEEDED is not rerunnable
        _submit(cli, tenant, "ai-cli-cancelled")
        cancelled = cli.invoke(app, ["cancel", "ai-cli-cancelled", "--tenant", tenant])
        assert cancelled.exit_code == 0, cancelled.output
        assert client.get("/intents/ai-cli-cancelled").json()["approval_status"] == "CANCELLED"
    _submit(cli, tenant, "ai-cli-no-stop")
    quiet = cli.invoke(app, ["approve", "ai-cli-no-stop", "--tenant", tenant])
    assert quiet.exit_code == 0, quiet.output
    assert "warning" not in quiet.stderr
