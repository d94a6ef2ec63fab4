"""The E2E verifiers themselves: ``scripts/e2e.sh`` and ``fulfill e2e``, embedded and against a
running service, with their exit codes (0 verified, 1 a check failed, 2 configuration error).

Only one fulfill service may run inside this process at a time (DBOS is a process singleton): the
CliRunner-embedded run happens before the class that keeps a Harness running; the script's
embedded service is a separate process.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig
from fulfill.store import killswitches
from fulfill.tokens import mint_token
from fulfill_tools import e2e
from tests.support.harness import ALL_SCOPES, Harness, make_settings

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "e2e.sh"
FULFILL_BIN = shutil.which("fulfill") or str(Path(sys.executable).parent / "fulfill")
BASH = shutil.which("bash") or "/bin/bash"
PATHS = ["B2", "B1", "kill switch", "expired", "duplicate"]
# The global stop affects every tenant: it needs the platform-wide admin scope.
GLOBAL_STOP_SCOPES = [*ALL_SCOPES, "platform:admin"]

# Another person approves what the e2e token proposes: nobody approves their own proposal.
E2E_APPROVER = "e2e-approver"


def run_script(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FULFILL_")}
    env.update({"FULFILL_BIN": FULFILL_BIN, "TMPDIR": str(tmp_path), "DBOS__DISABLE_TELEMETRY": "true"})
    env.update(settings)
    return subprocess.run(
        [BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str, **settings: str) -> tuple[int, str]:
    for name in ("FULFILL_URL", "FULFILL_TOKEN", "FULFILL_APPROVER_TOKEN", "FULFILL_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    # DBOS gives its logger a handler on the sys.stderr of the moment it first starts in a process;
    # inside CliRunner that stream is closed afterwards, and the next DBOS start fails flushing it.
    dbos_logger = logging.getLogger("dbos")
    handlers = list(dbos_logger.handlers)
    try:
        result = CliRunner().invoke(app, ["e2e", *args])
    finally:
        for handler in [h for h in dbos_logger.handlers if h not in handlers]:
            dbos_logger.removeHandler(handler)
    return result.exit_code, result.output


def _switches(harness: Harness, tenant: str) -> tuple[GlobalExecutionConfig, TenantExecutionConfig]:
    """The stored global and tenant switches, with the time each was last written."""
    with harness.db.read() as conn:
        return killswitches.get_global(conn), killswitches.get_tenant(conn, tenant)


def _bystander_during_the_kill_switch(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """Runs another tenant's intent to its end while the e2e kill-switch path has its switch on
    (right before that path approves its intent); returns that execution's final status."""
    seen: list[dict[str, Any]] = []
    approve = e2e._Run.approve

    def approve_after_a_bystander(run: Any, intent_id: str) -> None:
        if intent_id.startswith("e2e_killswitch_"):
            with harness.client("bystander") as client:
                seen.append(harness.run_task(client))
        approve(run, intent_id)

    monkeypatch.setattr(e2e._Run, "approve", approve_after_a_bystander)
    return seen


def test_script_embedded_verifies_every_path(tmp_path: Path) -> None:
    result = run_script(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in PATHS:
        assert path in result.stdout
    assert "e2e passed" in result.stdout
    assert "✘" not in result.stdout
    assert list(tmp_path.iterdir()) == []  # the temporary service directory is gone


def test_cli_embedded_verifies_every_path(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = run_cli(monkeypatch)
    assert code == 0, output
    for path in PATHS:
        assert path in output
    assert "database: one internal task row" in output


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"FULFILL_URL": "http://127.0.0.1:9"}, "FULFILL_TOKEN is missing"),
        ({"FULFILL_URL": "localhost:8080", "FULFILL_TOKEN": "x.y.z"}, "not an http(s) URL"),
        ({"FULFILL_URL": "http://127.0.0.1:port", "FULFILL_TOKEN": "x.y.z"}, "not an http(s) URL"),
        ({"FULFILL_URL": "http://127.0.0.1:9", "FULFILL_TOKEN": "not-a-jwt"}, "FULFILL_TOKEN"),
    ],
)
def test_configuration_errors_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], message: str
) -> None:
    result = run_script(tmp_path, **settings)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    code, output = run_cli(monkeypatch, **settings)
    assert code == 2, output
    assert message in " ".join(output.split())


def test_script_without_jq_exits_2(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    curl = shutil.which("curl")
    assert curl is not None
    (tools / "curl").symlink_to(curl)
    result = run_script(tmp_path, PATH=str(tools))
    assert result.returncode == 2
    assert "jq is required" in result.stderr


class TestAgainstARunningService:
    @pytest.fixture(scope="class")
    def harness(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
        running = Harness(make_settings(tmp_path_factory.mktemp("e2e"))).start()
        try:
            yield running
        finally:
            running.stop()

    def test_script(self, harness: Harness, tmp_path: Path) -> None:
        """By default the kill-switch path switches off its own tenant only: another tenant's
        executions, run all the while, are not stopped, and the global switches are never written."""
        global_before, tenant_before = _switches(harness, "e2e")
        bystanders: list[dict[str, Any]] = []
        done = threading.Event()

        def bystander() -> None:
            with harness.client("bystander") as client:
                while not done.is_set():
                    bystanders.append(harness.run_task(client))

        thread = threading.Thread(target=bystander)
        thread.start()
        try:
            result = run_script(
                tmp_path,
                FULFILL_URL=harness.url,
                FULFILL_TOKEN=harness.token("e2e", ALL_SCOPES),
                FULFILL_APPROVER_TOKEN=harness.token("e2e", ALL_SCOPES, subject=E2E_APPROVER),
            )
        finally:
            done.set()
            thread.join(timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        for path in PATHS:
            assert path in result.stdout
        assert "execution of tenant e2e off" in result.stdout
        assert bystanders
        assert {status["status"] for status in bystanders} == {"SUCCEEDED"}
        global_after, tenant_after = _switches(harness, "e2e")
        assert global_after == global_before
        assert tenant_after.updated_at != tenant_before.updated_at  # switched off, then restored
        assert tenant_after.model_dump(exclude={"updated_at", "revision"}) == tenant_before.model_dump(
            exclude={"updated_at", "revision"}
        )

    def test_script_uses_the_global_stop_only_when_asked(self, harness: Harness, tmp_path: Path) -> None:
        global_before, tenant_before = _switches(harness, "e2e")
        result = run_script(
            tmp_path,
            FULFILL_URL=harness.url,
            FULFILL_TOKEN=harness.token("e2e", GLOBAL_STOP_SCOPES),
            FULFILL_APPROVER_TOKEN=harness.token("e2e", GLOBAL_STOP_SCOPES, subject=E2E_APPROVER),
            FULFILL_E2E_GLOBAL_STOP="1",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "global stop on" in result.stdout
        global_after, tenant_after = _switches(harness, "e2e")
        assert global_after.updated_at != global_before.updated_at  # switched on, then restored
        assert global_after.global_stop is False
        assert tenant_after == tenant_before

    def test_cli_stops_only_its_own_tenant(self, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        bystanders = _bystander_during_the_kill_switch(harness, monkeypatch)
        global_before, _ = _switches(harness, "e2e")
        code, output = run_cli(
            monkeypatch,
            FULFILL_URL=harness.url,
            FULFILL_TOKEN=harness.token("e2e", ALL_SCOPES),
            FULFILL_APPROVER_TOKEN=harness.token("e2e", ALL_SCOPES, subject=E2E_APPROVER),
        )
        assert code == 0, output
        assert "execution of tenant e2e off" in output
        [bystander] = bystanders
        assert bystander["status"] == "SUCCEEDED"
        assert _switches(harness, "e2e")[0] == global_before
        assert _switches(harness, "e2e")[1].execution_enabled is True

    def test_cli_global_stop_flag_stops_every_tenant(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        bystanders = _bystander_during_the_kill_switch(harness, monkeypatch)
        code, output = run_cli(
            monkeypatch,
            "--global-stop",
            FULFILL_URL=harness.url,
            FULFILL_TOKEN=harness.token("e2e", GLOBAL_STOP_SCOPES),
            FULFILL_APPROVER_TOKEN=harness.token("e2e", GLOBAL_STOP_SCOPES, subject=E2E_APPROVER),
        )
        assert code == 0, output
        assert "global stop on" in output
        [bystander] = bystanders
        assert (bystander["status"], bystander["error_code"]) == ("CANCELLED", "KILL_SWITCH_ENABLED")
        assert _switches(harness, "e2e")[0].global_stop is False

    def test_cli_with_database_checks(self, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        code, output = run_cli(
            monkeypatch,
            "--db",
            harness.settings.database_url,
            FULFILL_URL=harness.url,
            FULFILL_TOKEN=harness.token("e2e", ALL_SCOPES),
            FULFILL_APPROVER_TOKEN=harness.token("e2e", ALL_SCOPES, subject=E2E_APPROVER),
            FULFILL_ACCOUNT_ID="acc-e2e",
        )
        assert code == 0, output
        assert "database: one outcome row" in output

    def test_a_failed_check_exits_1_and_the_kill_switches_are_left_as_found(
        self, harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        token = harness.token("e2e", ALL_SCOPES)
        approver = harness.token("e2e", ALL_SCOPES, subject=E2E_APPROVER)
        stopped = {"global_stop": True, "disabled_action_types": []}
        own = {"execution_enabled": True, "disabled_action_types": ["CREATE_INTERNAL_NOTE"]}
        with (
            harness.client("ops", ["admin", "platform:admin"]) as admin,
            harness.client("e2e", ["admin"]) as tenant,
        ):
            assert admin.put("/admin/kill-switches", json=stopped).status_code == 200
            assert tenant.put("/admin/tenants/e2e/execution", json=own).status_code == 200
            try:
                result = run_script(
                    tmp_path, FULFILL_URL=harness.url, FULFILL_TOKEN=token, FULFILL_APPROVER_TOKEN=approver
                )
                assert result.returncode == 1, result.stdout + result.stderr
                assert "✘ status SUCCEEDED (got CANCELLED)" in result.stdout
                code, output = run_cli(
                    monkeypatch, FULFILL_URL=harness.url, FULFILL_TOKEN=token, FULFILL_APPROVER_TOKEN=approver
                )
                assert code == 1, output
                assert "e2e FAILED" in output
                found = admin.get("/admin/kill-switches").json()
                assert {name: found.get(name) for name in stopped} == stopped
                left = tenant.get("/admin/tenants/e2e/execution").json()
                assert {name: left.get(name) for name in own} == own
            finally:
                restored = {"global_stop": False, "disabled_action_types": []}
                assert admin.put("/admin/kill-switches", json=restored).status_code == 200
                enabled = {"execution_enabled": True, "disabled_action_types": []}
                assert tenant.put("/admin/tenants/e2e/execution", json=enabled).status_code == 200


def test_an_unreachable_service_is_a_failed_check_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mint_token(make_settings(tmp_path), tenant_id="e2e", scopes=ALL_SCOPES)
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        result = run_script(tmp_path, FULFILL_URL=url, FULFILL_TOKEN=token)
        code, output = run_cli(monkeypatch, FULFILL_URL=url, FULFILL_TOKEN=token)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "POST /intents: cannot reach the service" in result.stdout
    assert code == 1, output
    assert "POST /intents: cannot reach the service" in output
