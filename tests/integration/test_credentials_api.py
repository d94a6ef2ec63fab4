"""``/admin/credentials`` and ``fulfill credentials``: a tenant admin sets, lists, rotates and
deletes its own connector credentials; reads and answers never carry a secret, and a service
whose database holds credentials refuses to start without the key that sealed them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.credentials.crypto import SecretBox
from fulfill.credentials.vault import ConfigurationError
from fulfill.gateway.target_auth import EncryptedTargetSecrets
from fulfill.service import Service
from fulfill.store import targets as targets_store
from fulfill.store.tables import connector_credentials
from fulfill_tools.launch import free_port
from tests.support import plain_http
from tests.support.harness import TEST_SECRET, Harness, make_settings
from tests.support.salesforce import OTHER_SECRETS_KEY, SECRETS_KEY, rsa_key_pair

SECRET = "cc-secret-value-7d1e9b"
NEW_SECRET = "cc-secret-rotated-44ac01"
REFRESH = "5Aep-refresh-token-value-91f0"
CREDENTIAL = {
    "type": "client_credentials",
    "client_id": "3MVG9-client",
    "client_secret": SECRET,
    "login_url": "https://acme.my.salesforce.com",
}
PRIVATE_KEY = rsa_key_pair()[0]
SECRETS = (SECRET, NEW_SECRET, REFRESH, PRIVATE_KEY.splitlines()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    running = Harness(make_settings(tmp_path_factory.mktemp("credentials"), secrets_key=SECRETS_KEY)).start()
    yield running
    running.stop()


def no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_put_list_rotate_delete(served: Harness) -> None:
    with served.client(tenant="t-crud", scopes=["admin"]) as client:
        created = client.put("/admin/credentials/salesforce", json=CREDENTIAL)
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["type"] == "client_credentials"
        assert body["client_id"] == "3MVG9-client"
        assert body["account_id"] is None
        assert body["secret_fields"] == ["client_secret"]
        assert body["revision"] == 1
        assert body["rotated_at"] is None

        replaced = client.put("/admin/credentials/salesforce", json=CREDENTIAL)
        assert replaced.status_code == 200
        assert replaced.json()["revision"] == 2
        assert replaced.json()["created_at"] == body["created_at"]

        refresh = {"type": "refresh_token", "client_id": "3MVG9-client", "refresh_token": REFRESH}
        own = client.put("/admin/credentials/salesforce", params={"account_id": "acc-7"}, json=refresh)
        assert own.status_code == 201
        assert own.json()["account_id"] == "acc-7"
        assert own.json()["secret_fields"] == ["refresh_token"]

        listed = client.get("/admin/credentials")
        assert listed.status_code == 200
        assert [(c["account_id"], c["type"]) for c in listed.json()["credentials"]] == [
            (None, "client_credentials"),
            ("acc-7", "refresh_token"),
        ]

        rotated = client.post("/admin/credentials/salesforce/rotate", json={"client_secret": NEW_SECRET})
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["rotated_at"] is not None
        assert rotated.json()["revision"] == 3

        wrong = client.post("/admin/credentials/salesforce/rotate", json={"private_key": PRIVATE_KEY})
        assert wrong.status_code == 422
        assert wrong.json()["code"] == "INVALID_ROTATION"
        missing = client.post(
            "/admin/credentials/salesforce/rotate",
            params={"account_id": "acc-none"},
            json={"refresh_token": "x"},
        )
        assert missing.status_code == 404

        assert (
            client.delete("/admin/credentials/salesforce", params={"account_id": "acc-7"}).status_code == 204
        )
        again = client.delete("/admin/credentials/salesforce", params={"account_id": "acc-7"})
        assert again.status_code == 404
        assert again.headers["content-type"].startswith("application/problem+json")
        for response in (created, replaced, own, listed, rotated, wrong, missing, again):
            no_secret_in(response.text)


def test_secrets_are_sealed_in_the_database(served: Harness) -> None:
    with served.client(tenant="t-sealed", scopes=["admin"]) as client:
        assert client.put("/admin/credentials/salesforce", json=CREDENTIAL).status_code == 201
    with served.db.read() as conn:
        [row] = conn.execute(
            select(connector_credentials).where(connector_credentials.c.tenant_id == "t-sealed")
        ).all()
    no_secret_in(json.dumps([str(value) for value in row]))
    assert row.secret_ciphertext.startswith("v1.")


@pytest.mark.parametrize(
    ("login_url", "fragment"),
    [
        ("https://tickets.corp.example", "tickets.corp.example is not a Salesforce login host"),
        ("https://login.salesforce.com.evil.example", "is not a Salesforce login host"),
        ("https://login.salesforce.com:8443", "port"),
        ("https://acme.my.salesforce.com/internal/admin", "no path"),
        ("http://127.0.0.1:9999", "FULFILL_SALESFORCE_LOGIN_HTTP_HOSTS"),
        ("https://10.0.0.5", "is not a Salesforce login host"),
    ],
    ids=["foreign-host", "lookalike", "port", "path", "http-loopback", "address"],
)
def test_a_login_url_outside_the_platform_s_login_hosts_is_422(
    served: Harness, login_url: str, fragment: str
) -> None:
    with served.client(tenant="t-login-url", scopes=["admin"]) as client:
        response = client.put("/admin/credentials/salesforce", json={**CREDENTIAL, "login_url": login_url})
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "LOGIN_URL_REFUSED"
        assert fragment in body["detail"]
        assert "FULFILL_SALESFORCE_LOGIN" in body["detail"] or fragment in ("port", "no path")
        no_secret_in(response.text)
        assert client.get("/admin/credentials").json()["credentials"] == []  # nothing stored
        # The provider's own hosts are accepted.
        for allowed in (
            "https://login.salesforce.com",
            "https://test.salesforce.com/",
            "https://x.my.salesforce.com",
        ):
            assert client.put(
                "/admin/credentials/salesforce", json={**CREDENTIAL, "login_url": allowed}
            ).status_code in (200, 201)
        assert client.delete("/admin/credentials/salesforce").status_code == 204


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**CREDENTIAL, "login_url": "http://acme.example.com"}, "https://"),
        ({**CREDENTIAL, "client_secret": ""}, "client_secret"),
        (
            {"type": "jwt_bearer", "client_id": "c", "username": "u", "private_key": "x" * 80},
            "RSA private key",
        ),
        ({"type": "jwt_bearer", "client_id": "c", "private_key": PRIVATE_KEY}, "username"),
        ({"type": "password", "client_id": "c"}, "type"),
        ({**CREDENTIAL, "extra": 1}, "extra"),
    ],
    ids=["http", "empty-secret", "bad-key", "no-username", "bad-type", "extra-field"],
)
def test_invalid_input_is_422_and_never_quoted(served: Harness, body: dict[str, Any], fragment: str) -> None:
    with served.client(scopes=["admin"]) as client:
        response = client.put("/admin/credentials/salesforce", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.text
    no_secret_in(response.text)
    assert "xxxxxxxx" not in response.text


def test_unknown_connector_and_malformed_json(served: Harness) -> None:
    with served.client(scopes=["admin"]) as client:
        unknown = client.put("/admin/credentials/hubspot", json=CREDENTIAL)
        assert unknown.status_code == 422
        assert unknown.json()["code"] == "UNKNOWN_CONNECTOR"
        malformed = client.put(
            "/admin/credentials/salesforce", content=b"{oops", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400


def test_only_a_tenants_own_admin(served: Harness) -> None:
    with served.client(tenant="t-owner", scopes=["admin"]) as owner:
        assert owner.put("/admin/credentials/salesforce", json=CREDENTIAL).status_code == 201
    with served.client(tenant="t-owner", scopes=["platform:admin", "intents:write"]) as platform:
        assert platform.get("/admin/credentials").status_code == 403
        assert (
            platform.put("/admin/credentials/salesforce", json=CREDENTIAL).json()["code"] == "MISSING_SCOPE"
        )
    with served.client(tenant="t-stranger", scopes=["admin"]) as stranger:
        assert stranger.get("/admin/credentials").json() == {"credentials": []}
        assert stranger.delete("/admin/credentials/salesforce").status_code == 404
        assert (
            stranger.post("/admin/credentials/salesforce/rotate", json={"client_secret": "x"}).status_code
            == 404
        )
    with served.client(tenant="t-owner", scopes=["admin"]) as owner:
        assert len(owner.get("/admin/credentials").json()["credentials"]) == 1

    assert plain_http.get(f"{served.url}/admin/credentials").status_code == 401


def test_a_token_limited_to_some_accounts_manages_only_those(served: Harness) -> None:
    with served.client(tenant="t-limited", scopes=["admin"], account_ids=["acc-a"]) as client:
        tenant_wide = client.put("/admin/credentials/salesforce", json=CREDENTIAL)
        assert tenant_wide.status_code == 403
        assert tenant_wide.json()["code"] == "ACCOUNT_NOT_ALLOWED"
        assert (
            client.put(
                "/admin/credentials/salesforce", params={"account_id": "acc-b"}, json=CREDENTIAL
            ).status_code
            == 403
        )
        assert (
            client.put(
                "/admin/credentials/salesforce", params={"account_id": "acc-a"}, json=CREDENTIAL
            ).status_code
            == 201
        )
        assert [c["account_id"] for c in client.get("/admin/credentials").json()["credentials"]] == ["acc-a"]


def test_the_cli_sets_lists_rotates_and_deletes(
    served: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FULFILL_DATABASE_URL", served.settings.database_url)
    monkeypatch.setenv("FULFILL_SECRETS_KEY", SECRETS_KEY)
    monkeypatch.setenv("COLUMNS", "200")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    key_file = tmp_path / "key.pem"
    key_file.write_text(PRIVATE_KEY)
    cli = CliRunner()
    common = ["--tenant", "t-cli"]
    created = cli.invoke(
        app,
        [
            "credentials",
            "set",
            "salesforce",
            *common,
            "--type",
            "client_credentials",
            "--client-id",
            "cid",
            "--client-secret-file",
            str(secret_file),
            "--login-url",
            "https://login.salesforce.com",
        ],
    )
    assert created.exit_code == 0, created.output
    assert "created" in created.output
    foreign = cli.invoke(
        app,
        [
            "credentials",
            "set",
            "salesforce",
            "--tenant",
            "t-cli-foreign",
            "--type",
            "client_credentials",
            "--client-id",
            "cid",
            "--client-secret-file",
            str(secret_file),
            "--login-url",
            "https://tickets.corp.example",
        ],
    )
    assert foreign.exit_code != 0
    assert "FULFILL_SALESFORCE_LOGIN_HOSTS" in foreign.output
    assert SECRET not in foreign.output
    jwt_set = cli.invoke(
        app,
        [
            "credentials",
            "set",
            "salesforce",
            *common,
            "--account",
            "acc-j",
            "--type",
            "jwt_bearer",
            "--client-id",
            "cid",
            "--username",
            "u@x",
            "--private-key-file",
            str(key_file),
        ],
    )
    assert jwt_set.exit_code == 0, jwt_set.output
    prompted = cli.invoke(
        app,
        [
            "credentials",
            "set",
            "salesforce",
            *common,
            "--account",
            "acc-r",
            "--type",
            "refresh_token",
            "--client-id",
            "cid",
        ],
        input=REFRESH + "\n",
    )
    assert prompted.exit_code == 0, prompted.output
    listed = cli.invoke(app, ["credentials", "list", *common])
    assert listed.exit_code == 0, listed.output
    assert [c["type"] for c in json.loads(listed.stdout)["credentials"]] == [
        "client_credentials",
        "jwt_bearer",
        "refresh_token",
    ]
    rotated = cli.invoke(
        app, ["credentials", "rotate", "salesforce", *common, "--client-secret-file", "-"], input=NEW_SECRET
    )
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["rotated_at"]
    invalid = cli.invoke(
        app,
        [
            "credentials",
            "set",
            "salesforce",
            *common,
            "--type",
            "jwt_bearer",
            "--client-id",
            "c",
            "--username",
            "u",
            "--private-key-file",
            str(secret_file),
        ],
    )
    assert invalid.exit_code == 2
    assert "private_key" in invalid.output
    deleted = cli.invoke(app, ["credentials", "delete", "salesforce", *common, "--account", "acc-j"])
    assert deleted.exit_code == 0, deleted.output
    gone = cli.invoke(app, ["credentials", "delete", "salesforce", *common, "--account", "acc-j"])
    assert gone.exit_code == 1
    for result in (created, jwt_set, prompted, listed, rotated, invalid, deleted, gone):
        no_secret_in(result.output)
    key = cli.invoke(app, ["credentials", "new-key"])
    assert key.exit_code == 0
    assert len(key.output.strip()) == 44


def _target_secrets(served: Harness, key: str) -> EncryptedTargetSecrets:
    return EncryptedTargetSecrets(served.db, SecretBox.from_setting(key), lambda: "2026-01-01T00:00:00Z")


def test_rekey_moves_every_secret_to_the_first_key(served: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    with served.client(tenant="t-rekey", scopes=["admin"]) as client:
        assert client.put("/admin/credentials/salesforce", json=CREDENTIAL).status_code == 201
    target_secret = {"client_secret": "target-client-secret"}
    _target_secrets(served, SECRETS_KEY).put("rekeyed", target_secret)
    monkeypatch.setenv("FULFILL_DATABASE_URL", served.settings.database_url)
    monkeypatch.setenv("FULFILL_SECRETS_KEY", f"{OTHER_SECRETS_KEY},{SECRETS_KEY}")
    result = CliRunner().invoke(app, ["credentials", "rekey"])
    assert result.exit_code == 0, result.output
    assert "and 1 gateway target secret(s) re-encrypted" in result.output
    assert _target_secrets(served, OTHER_SECRETS_KEY).get("rekeyed") == target_secret
    # Now the old key alone no longer opens them, and the new one alone does.
    with pytest.raises(ConfigurationError, match="does not hold"):
        _prepare(served, SECRETS_KEY)
    _prepare(served, OTHER_SECRETS_KEY)
    monkeypatch.setenv("FULFILL_SECRETS_KEY", f"{SECRETS_KEY},{OTHER_SECRETS_KEY}")
    assert CliRunner().invoke(app, ["credentials", "rekey"]).exit_code == 0
    _prepare(served, SECRETS_KEY)


def test_rekey_never_overwrites_a_target_secret_put_meanwhile(served: Harness) -> None:
    old_box, new_box = (
        _target_secrets(served, SECRETS_KEY),
        _target_secrets(served, f"{OTHER_SECRETS_KEY},{SECRETS_KEY}"),
    )
    old_box.put("raced", {"client_secret": "before"})
    with served.db.read() as conn:
        sealed = targets_store.all_secrets(conn)["raced"]
    new_box.put("raced", {"client_secret": "after"})  # an operator sets a new secret meanwhile
    with served.db.write() as conn:
        assert not targets_store.reseal_secret(
            conn, "raced", old=sealed, new=sealed, now="2026-01-01T00:00:00Z"
        )
    assert new_box.get("raced") == {"client_secret": "after"}


def _prepare(served: Harness, key: str) -> None:
    """A second service's start-up checks on the same database (without launching its engine)."""
    service = Service(served.settings.model_copy(update={"secrets_key": SecretStr(key)}))
    try:
        service.prepare_database()
    finally:
        service.tool_gateway.close()
        service.salesforce_connector.close()
        service.db.dispose()


def test_stored_credentials_without_the_key_stop_the_start(served: Harness) -> None:
    with served.client(tenant="t-start", scopes=["admin"]) as client:
        assert client.put("/admin/credentials/salesforce", json=CREDENTIAL).status_code == 201
    with pytest.raises(ConfigurationError, match="FULFILL_SECRETS_KEY is not set"):
        _prepare(served, "")
    with pytest.raises(ConfigurationError, match="does not hold"):
        _prepare(served, OTHER_SECRETS_KEY)


def test_fulfill_serve_exits_with_the_reason(served: Harness, tmp_path: Path) -> None:
    with served.client(tenant="t-serve", scopes=["admin"]) as client:
        assert client.put("/admin/credentials/salesforce", json=CREDENTIAL).status_code == 201
    env = {name: value for name, value in os.environ.items() if not name.startswith("FULFILL_")}
    env.update(
        {
            "FULFILL_DATABASE_URL": served.settings.database_url,
            "FULFILL_PORT": str(free_port()),
            "FULFILL_JWT_SECRET": TEST_SECRET,
            "DBOS__DISABLE_TELEMETRY": "true",
            "FULFILL_DATABSE_URL": "sqlite:///./misspelt.db",  # a typo is named, not ignored
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "fulfill", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "FULFILL_SECRETS_KEY is not set" in output
    assert "`fulfill credentials delete salesforce --tenant t-" in output  # the way out
    assert (
        "FULFILL_DATABSE_URL is not a fulfill setting and is ignored: did you mean FULFILL_DATABASE_URL?"
        in output
    )
    no_secret_in(output)
