"""The console with a service of its own per test: the global stop end to end, kill switches
written by the CLI on the database, and production mode (no dev login, a configured session
secret, secure cookies, identity-provider tokens in the session)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from fulfill.cli import CLI_CHANGED_BY, app
from fulfill.client import default_limits
from fulfill.config import DEV_JWT_SECRET
from fulfill.console.session import SESSION_COOKIE
from fulfill.domain.ledger import GLOBAL_SWITCHES_SUBJECT, PLATFORM_LEDGER_TENANT
from fulfill.store import executions as ledger_store
from fulfill.store.tables import console_sessions
from fulfill_tools.launch import free_port, start_serve, stop_all
from tests.support.console import Console, bearer_session_cookie, cookie_content, dev_login, is_login_redirect
from tests.support.harness import Harness, make_settings
from tests.unit.test_tokens_production import AUDIENCE, ISSUER, JwksServer, rsa_key, user_claims


def test_the_global_stop_from_the_console_cancels_a_newly_approved_intent(harness: Harness) -> None:
    console = Console(harness).login(subject="oncall")
    try:
        asked = console.post("/console/kill-switches/global", {"global_stop": "true"})
        assert "Are you sure?" in asked.text
        done = console.post("/console/kill-switches/global", {"global_stop": "true", "confirmed": "yes"})
        assert done.status_code == 303
        with harness.client() as api:
            intent = harness.create_intent(api)
        approved = console.post(f"/console/intents/{intent['action_intent_id']}/approve")
        assert approved.status_code == 303
        with harness.client() as api:
            status = harness.wait_terminal(api, intent["action_intent_id"])
        assert status["status"] == "CANCELLED"
        assert status["error_code"] == "KILL_SWITCH_ENABLED"
        page = console.get(f"/console/executions/{intent['action_intent_id']}").text
        assert "A kill switch stopped this execution" in page
        resumed = console.post("/console/kill-switches/global", {"global_stop": "false"})
        assert resumed.status_code == 303  # resuming asks nothing
    finally:
        console.close()
    with harness.db.read() as conn:
        history = ledger_store.list_ledger(conn, PLATFORM_LEDGER_TENANT, GLOBAL_SWITCHES_SUBJECT)
    assert [(e.data["changed_by"], e.data["global_stop"], e.attempt) for e in history] == [
        ("oncall", True, 1),
        ("oncall", False, 2),
    ]


def test_switches_written_by_the_cli_on_the_database_are_in_the_history(harness: Harness) -> None:
    result = CliRunner().invoke(
        app, ["kill-switch", "tenant", "t1", "stop", "--db", harness.settings.database_url]
    )
    assert result.exit_code == 0, result.output
    console = Console(harness).login()
    try:
        page = console.get("/console/kill-switches").text
    finally:
        console.close()
    tenant_part = page[page.index('id="tenant"') :]
    assert "STOPPED: no execution of this tenant runs." in tenant_part
    assert CLI_CHANGED_BY in tenant_part


def _production(tmp_path: Path, jwks: JwksServer, **overrides: object) -> Harness:
    return Harness(
        make_settings(
            tmp_path,
            auth_mode="production",
            jwks_url=jwks.url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            service_token_secret="s" * 40,
            **overrides,
        )
    )


def test_production_without_a_session_secret_refuses_the_console(tmp_path: Path) -> None:
    jwks = JwksServer([rsa_key("idp").jwk])
    harness = _production(tmp_path, jwks)
    try:
        harness.start()
        console = Console(harness)
        for path in ["/console/login", "/console/approvals"]:
            response = console.get(path)
            assert response.status_code == 503
            assert "FULFILL_CONSOLE_SESSION_SECRET" in response.text
        assert "set-cookie" not in console.get("/console/login").headers
        console.close()
    finally:
        harness.stop()
        jwks.close()


def test_production_console_has_no_dev_login_secure_cookies_and_takes_idp_tokens(tmp_path: Path) -> None:
    rsa = rsa_key("idp")
    jwks = JwksServer([rsa.jwk])
    harness = _production(
        tmp_path,
        jwks,
        console_session_secret=SecretStr("c" * 40),
        oidc_issuer="https://idp.example",
        oidc_client_id="console",
    )
    try:
        harness.start()
        console = Console(harness)
        page = console.get("/console/login")
        assert page.status_code == 200
        assert 'href="/console/login/oidc"' in page.text
        assert 'action="/console/login"' not in page.text
        assert "; secure" in page.headers["set-cookie"].lower()
        # the dev login does not exist here, whatever is posted
        csrf = "any"
        posted = console.http.post(
            "/console/login", data={"csrf": csrf, "tenant": "t1", "subject": "x", "scopes": ["admin"]}
        )
        assert posted.status_code == 404
        # an identity provider's token in the session is a user (what the OIDC callback stores)
        token = rsa.sign(user_claims(tenant_id="t1", scope="intents:read executions:read"))
        console.http.cookies.set("fulfill_console", bearer_session_cookie(harness, token))
        assert console.get("/console/approvals").status_code == 200
        # an HS256 token signed with the dev secret is no production user
        dev = bearer_session_cookie(harness, harness.token())
        console.http.cookies.clear()
        console.http.cookies.set("fulfill_console", dev)
        assert is_login_redirect(console.get("/console/approvals"))
        console.close()
    finally:
        harness.stop()
        jwks.close()


# --- sessions across api processes, and the local login -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_session_opened_on_one_process_is_revoked_for_every_process(tmp_path: Path) -> None:
    harness = Harness(make_settings(tmp_path)).start()
    port = free_port()
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": harness.settings.database_url,
        "FULFILL_JWT_SECRET": harness.settings.jwt_secret,  # the same cookie-signing secret
        "FULFILL_ROLE": "api",
        "FULFILL_PORT": str(port),
        "FULFILL_EXECUTOR_ID": "console-api-2",
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    console = Console(harness)
    other = httpx.Client(limits=default_limits(), base_url=f"http://127.0.0.1:{port}", timeout=30.0)
    try:
        processes.append(start_serve(env, tmp_path / "api-2.log"))
        console.login()
        cookie = console.http.cookies[SESSION_COOKIE]
        other.cookies.set(SESSION_COOKIE, cookie)
        page = other.get("/console/approvals")
        assert page.status_code == 200, page.text[:300]
        # Sign out on the second process: the first one refuses the same cookie.
        csrf = str(cookie_content(harness, cookie)["csrf"])
        assert other.post("/console/logout", data={"csrf": csrf}).status_code == 303
        stale = httpx.Client(limits=default_limits(), base_url=harness.url, timeout=30.0)
        stale.cookies.set(SESSION_COOKIE, cookie)
        assert is_login_redirect(stale.get("/console/approvals"))
        stale.close()
    finally:
        other.close()
        console.close()
        stop_all(processes)
        harness.stop()


# --- the local login ---------------------------------------------------------------------------------


def test_the_local_login_is_off_with_a_jwt_secret_of_ones_own(tmp_path: Path) -> None:
    harness = Harness(make_settings(tmp_path, console_dev_login=None)).start()
    console = Console(harness)
    try:
        page = console.get("/console/login")
        assert page.status_code == 200
        assert 'action="/console/login"' not in page.text
        assert "FULFILL_CONSOLE_DEV_LOGIN" in page.text
        refused = dev_login(console)
        assert refused.status_code == 404
        assert "FULFILL_CONSOLE_DEV_LOGIN" in refused.text
        assert is_login_redirect(console.get("/console/kill-switches"))
        with harness.db.read() as conn:
            assert conn.execute(select(console_sessions)).first() is None
    finally:
        console.close()
        harness.stop()


def test_the_local_login_is_on_in_the_quick_start(tmp_path: Path) -> None:
    """Dev mode, the development secret, a loopback listener: the README's first steps."""
    harness = Harness(make_settings(tmp_path, jwt_secret=DEV_JWT_SECRET, console_dev_login=None)).start()
    console = Console(harness)
    try:
        assert 'action="/console/login"' in console.get("/console/login").text
        assert dev_login(console).status_code == 303
        assert console.get("/console/kill-switches").status_code == 200
    finally:
        console.close()
        harness.stop()
