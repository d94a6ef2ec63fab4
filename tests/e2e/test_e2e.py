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
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.tokens import mint_token
from tests.support.harness import ALL_SCOPES, Harness, make_settings

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "e2e.sh"
FULFILL_BIN = shutil.which("fulfill") or str(Path(sys.executable).parent / "fulfill")
BASH = shutil.which("bash") or "/bin/bash"
PATHS = ["B2", "B1", "kill switch", "expired", "duplicate"]


def run_script(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FULFILL_")}
    env.update({"FULFILL_BIN": FULFILL_BIN, "TMPDIR": str(tmp_path), "DBOS__DISABLE_TELEMETRY": "true"})
    env.update(settings)
    return subprocess.run(
        [BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str, **settings: str) -> tuple[int, str]:
    for name in ("FULFILL_URL", "FULFILL_TOKEN", "FULFILL_ACCOUNT_ID"):
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
        result = run_script(tmp_path, FULFILL_URL=harness.url, FULFILL_TOKEN=harness.token("e2e", ALL_SCOPES))
        assert result.returncode == 0, result.stdout + result.stderr
        for path in PATHS:
            assert path in result.stdout

    def test_cli_with_database_checks(self, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        code, output = run_cli(
            monkeypatch,
            "--db",
            harness.settings.database_url,
            FULFILL_URL=harness.url,
            FULFILL_TOKEN=harness.token("e2e", ALL_SCOPES),
            FULFILL_ACCOUNT_ID="acc-e2e",
        )
        assert code == 0, output
        assert "database: one outcome row" in output

    def test_a_failed_check_exits_1_and_the_kill_switches_are_left_as_found(
        self, harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        token = harness.token("e2e", ALL_SCOPES)
        stopped = {"global_stop": True, "disabled_action_types": []}
        with harness.client("ops", ["admin"]) as admin:
            assert admin.put("/admin/kill-switches", json=stopped).status_code == 200
            try:
                result = run_script(tmp_path, FULFILL_URL=harness.url, FULFILL_TOKEN=token)
                assert result.returncode == 1, result.stdout + result.stderr
                assert "✘ status SUCCEEDED (got CANCELLED)" in result.stdout
                code, output = run_cli(monkeypatch, FULFILL_URL=harness.url, FULFILL_TOKEN=token)
                assert code == 1, output
                assert "e2e FAILED" in output
                assert admin.get("/admin/kill-switches").json() == stopped
            finally:
                restored = {"global_stop": False, "disabled_action_types": []}
                assert admin.put("/admin/kill-switches", json=restored).status_code == 200


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
