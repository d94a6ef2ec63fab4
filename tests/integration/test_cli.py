"""The ``fulfill`` command line against a running service and its database."""

from __future__ import annotations

import json

import jwt
import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.store.migrate import MIGRATIONS_DIR
from tests.support.harness import TEST_SECRET, Harness


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
    intent_id = json.loads(submitted.output)["action_intent_id"]
    approved = cli.invoke(app, ["approve", intent_id, "--tenant", "t1"])
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.output)["approval_status"] == "APPROVED"
    with shared.client() as client:
        shared.wait_terminal(client, intent_id)
    status = cli.invoke(app, ["status", intent_id, "--tenant", "t1"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["status"] == "SUCCEEDED"
    assert shared.note_rows(intent_id) == 1


def test_errors_from_the_api_exit_non_zero(cli: CliRunner) -> None:
    missing = cli.invoke(app, ["status", "ai_missing", "--tenant", "t1"])
    assert missing.exit_code == 1
    assert json.loads(missing.output)["status"] == 404
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
    by_name = {item["name"]: item for item in json.loads(listed.output)}
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


def test_token_refuses_production_mode(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_AUTH_MODE", "production")
    monkeypatch.setenv("FULFILL_JWKS_URL", "https://idp.example/jwks")
    monkeypatch.setenv("FULFILL_JWT_ISSUER", "https://idp.example")
    monkeypatch.setenv("FULFILL_SERVICE_TOKEN_SECRET", "s" * 40)
    result = cli.invoke(app, ["token", "--tenant", "t1"])
    assert result.exit_code == 2
    assert "identity provider" in result.output
