"""The console with a service of its own per test: the global stop end to end, kill switches
written by the CLI on the database, and production mode (no dev login, a configured session
secret, secure cookies, identity-provider tokens in the session)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from typer.testing import CliRunner

from fulfill.cli import CLI_CHANGED_BY, app
from fulfill.domain.ledger import GLOBAL_SWITCHES_SUBJECT, PLATFORM_LEDGER_TENANT
from fulfill.store import executions as ledger_store
from tests.support.console import Console, is_login_redirect, session_cookie
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
        console.http.cookies.set("fulfill_console", session_cookie(harness, {"token": token, "csrf": "x"}))
        assert console.get("/console/approvals").status_code == 200
        # an HS256 token signed with the dev secret is no production user
        dev = session_cookie(harness, {"token": harness.token(), "csrf": "x"})
        console.http.cookies.clear()
        console.http.cookies.set("fulfill_console", dev)
        assert is_login_redirect(console.get("/console/approvals"))
        console.close()
    finally:
        harness.stop()
        jwks.close()
