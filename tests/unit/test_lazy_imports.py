"""What ``fulfill serve`` imports: a library of a feature that is not configured stays unloaded (its
memory and import time are not paid), and configuring the feature loads it. Each case runs in a
fresh interpreter, so nothing imported by another test counts."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Loaded only by the feature that needs them (never by a default service's start-up code).
NOT_CONFIGURED = (
    "boto3",  # S3 ledger export, EventBridge
    "botocore",
    "slack_sdk",  # Slack notifications and clicks
    "smtplib",  # email notifications
    "cel",  # approval policies' `when` expressions
    "prompt_toolkit",  # the CEL package's interactive shell
    "authlib",  # console login with OpenID Connect
    "joserfc",
    "jinja2",  # the console's templates, by the first page rendered
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",  # span export
    "alembic",  # building the app migrates nothing (a start on a migrated database neither)
    "fulfill_tools.launch",  # the tooling package's work (its commands only join the CLI)
    "fulfill_tools.loadtest",
    "fulfill_tools.dev",
    "fulfill_tools.cli",  # `fulfill serve` builds only its own command:
    "fulfill.cli.app",  # not the other commands,
    "fulfill.cli.operators",
    "fulfill.client",  # nor the API client they use,
    "rich",  # nor Rich (the MCP SDK's servers would load it to configure logging: fulfill does),
    "pygments",  # nor httpx's command line (click, Rich, Pygments)
    "httpx._main",
)

_SERVE_APP = """
import json, os, sys
for name in [n for n in os.environ if n.startswith(("FULFILL_", "OTEL_"))]:
    del os.environ[name]
os.environ.update({settings})
import typer
import fulfill.cli

# What `fulfill serve` runs through (fulfill.cli.main), up to running the command.
typer.main.get_command(fulfill.cli.command_line(["serve"]))
from fulfill.api.app import create_app
from fulfill.config import Settings
from fulfill.service import Service

app = create_app(Service(Settings()))
{then}
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
"""


def _modules_after_building_the_app(settings: dict[str, str], then: str = "") -> set[str]:
    code = _SERVE_APP.format(settings=repr(settings), then=textwrap.dedent(then))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.splitlines()[-1]))


def _default(tmp: str) -> dict[str, str]:
    return {"FULFILL_DATABASE_URL": f"sqlite:///{tmp}/fulfill.db", "FULFILL_JWT_SECRET": "s" * 40}


def test_a_default_service_does_not_import_what_it_does_not_use(tmp_path: Path) -> None:
    loaded = _modules_after_building_the_app(_default(str(tmp_path)))
    assert "fulfill.api.app" in loaded  # the app was built
    assert "dbos" in loaded
    assert sorted(name for name in NOT_CONFIGURED if name in loaded) == []


def test_console_login_loads_authlib_when_an_issuer_is_configured(tmp_path: Path) -> None:
    settings = {
        **_default(str(tmp_path)),
        "FULFILL_OIDC_ISSUER": "http://127.0.0.1:9/realm",
        "FULFILL_OIDC_CLIENT_ID": "console",
        "FULFILL_JWKS_URL": "http://127.0.0.1:9/jwks",
        "FULFILL_CONSOLE_SESSION_SECRET": "c" * 40,
    }
    loaded = _modules_after_building_the_app(settings)
    assert "authlib.integrations.starlette_client" in loaded


def test_a_policy_expression_loads_cel_and_is_checked(tmp_path: Path) -> None:
    then = """
        from fulfill.domain import policies

        assert "cel" not in sys.modules
        policies.check_expression("params.amount > 100")
        try:
            policies.check_expression("params.amount >")
        except ValueError:
            pass
        else:
            raise AssertionError("a broken expression was accepted")
    """
    loaded = _modules_after_building_the_app(_default(str(tmp_path)), then)
    assert "cel" in loaded


def test_span_export_loads_the_otlp_exporter_when_configured(tmp_path: Path) -> None:
    then = """
        from fulfill import tracing

        assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" not in sys.modules
        tracing.OtlpExport("http://127.0.0.1:9/v1/traces").stop()
    """
    loaded = _modules_after_building_the_app(_default(str(tmp_path)), then)
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in loaded


# What DBOS's own OTLP set-up would load to export nothing (fulfill installs its own provider).
DBOS_OTLP = (
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.sdk._logs",
    "google.protobuf",
)


def test_a_started_service_does_not_load_dboss_otlp_exporters_yet_traces_workflows(
    tmp_path: Path,
) -> None:
    then = """
        from dbos import DBOS

        started = Service(Settings())
        started.start()
        try:
            assert DBOS.tracer.disable_otlp is False, "DBOS's spans are off"
        finally:
            started.stop()
    """
    loaded = _modules_after_building_the_app(_default(str(tmp_path)), then)
    assert "dbos._dbos" in loaded
    assert sorted(name for name in DBOS_OTLP if name in loaded) == []


def _fulfill(*arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fulfill", *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )


def test_fulfill_serve_alone_is_the_same_command_as_in_the_whole_command_line() -> None:
    # `fulfill --debug serve …` goes through the whole application, `fulfill serve …` builds only
    # its own command: the same help, and the same refusal of a wrong option.
    alone, whole = _fulfill("serve", "--help"), _fulfill("--debug", "serve", "--help")
    assert alone.returncode == whole.returncode == 0
    assert "--role" in alone.stdout
    assert alone.stdout == whole.stdout
    alone, whole = _fulfill("serve", "--no-such-option"), _fulfill("--debug", "serve", "--no-such-option")
    assert alone.returncode == whole.returncode == 2
    assert "No such option" in alone.stderr
    assert alone.stderr == whole.stderr


def test_the_other_commands_still_run_through_the_whole_command_line() -> None:
    listed = _fulfill("--help")
    assert listed.returncode == 0
    assert "kill-switch" in listed.stdout
    assert "serve" in listed.stdout
    from fulfill.cli import CLI_CHANGED_BY, app

    assert type(app).__name__ == "Typer"
    assert CLI_CHANGED_BY


def test_an_mcp_server_built_by_fulfill_leaves_logging_and_rich_alone() -> None:
    code = """
import logging, sys
import fulfill.gateway.server  # what builds the gateway's server (the agent's imports the same)
from mcp.server.mcpserver import MCPServer

MCPServer("probe", log_level="DEBUG")
print(logging.getLogger().handlers, logging.getLogger().level, "rich" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["[]", str(logging.WARNING), "False"]
