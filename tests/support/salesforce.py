"""The local Salesforce server and a Salesforce connector on a real, migrated database.

The connector talks real HTTP to :class:`fulfill_tools.dev.salesforce.DevSalesforceServer` on
127.0.0.1; its database is a SQLite file in the test's temporary directory, or a fresh
PostgreSQL database on the PostgreSQL pass (``tests/support/postgres.py``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.types import CallToolResult

from fulfill.clock import SystemClock
from fulfill.config import Settings
from fulfill.connectors.salesforce import SalesforceConnector
from fulfill.domain.credentials import ClientCredentialsInput
from fulfill.service import credential_vault
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from fulfill_tools.dev.salesforce import DevSalesforce, DevSalesforceConfig, DevSalesforceServer
from tests.support import postgres
from tests.support.harness import fresh_database_url

# A fixed, valid FULFILL_SECRETS_KEY for the tests (32 bytes, URL-safe base64).
SECRETS_KEY = "dGVzdC1zZWNyZXRzLWtleS0wMTIzNDU2Nzg5YWJjZGU="
OTHER_SECRETS_KEY = "b3RoZXItc2VjcmV0cy1rZXktMDEyMzQ1Njc4OWFiY2Q="
CLIENT_ID = "test-client-id-3MVG9"
CLIENT_SECRET = "test-client-secret-8f2a1c77e0"
USERNAME = "integration@tests.example"


@functools.cache
def rsa_key_pair() -> tuple[str, str]:
    """A 2048-bit RSA key pair (private PEM, public PEM), made once per test session."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def dev_config(**overrides: Any) -> DevSalesforceConfig:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": USERNAME,
        "jwt_public_key_pem": rsa_key_pair()[1],
    }
    values.update(overrides)
    return DevSalesforceConfig(**values)


def key_for(name: str) -> str:
    """An idempotency key as the engine derives them: 64 lowercase hex characters."""
    return hashlib.sha256(name.encode()).hexdigest()


def answer(result: CallToolResult) -> tuple[bool, dict[str, Any]]:
    """(success, payload) of a tool's answer."""
    payload = json.loads(result.content[0].text)  # type: ignore[union-attr]
    return not result.is_error, payload


@dataclass
class Rig:
    dev: DevSalesforce
    server: DevSalesforceServer
    connector: SalesforceConnector
    db: Database
    settings: Settings

    def bindings(self, name: str, tenant: str = "t1", account: str = "acc-1") -> dict[str, str]:
        return {
            "tenant_id": tenant,
            "account_id": account,
            "action_intent_id": f"ai_{name}",
            "idempotency_key": key_for(f"{tenant}:{name}"),
        }

    def use_client_credentials(
        self, tenant: str = "t1", account: str | None = None, **overrides: Any
    ) -> None:
        body = {
            "type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "login_url": self.server.url,
            **overrides,
        }
        self.connector.vault.put(tenant, account, "salesforce", ClientCredentialsInput.model_validate(body))


@contextmanager
def salesforce_rig(tmp_path: Path, dev: DevSalesforce | None = None, **settings: Any) -> Iterator[Rig]:
    """A local Salesforce server, a migrated database and a connector with client credentials
    for tenant t1 (tenant-wide)."""
    server = DevSalesforceServer(dev or DevSalesforce(dev_config())).start()
    database_url = fresh_database_url(tmp_path)
    db = Database(database_url)
    upgrade_to_head(db)
    values: dict[str, Any] = {
        "database_url": database_url,
        "secrets_key": SECRETS_KEY,
        "salesforce_login_url": server.url,
        # A call and its token's exchange answer in milliseconds; the room is for a loaded machine
        # (a first call's token exchange took longer than 1 s once, in a whole run).
        "salesforce_timeout_seconds": 3.0,
        # The local server is on loopback, which the egress rules refuse unless allowed, and a
        # credential may name it (over http) only when the platform says so.
        "gateway_egress_allow": ["127.0.0.1"],
        "salesforce_login_http_hosts": ["127.0.0.1"],
    }
    values.update(settings)
    config = Settings(**values)
    clock = SystemClock()
    connector = SalesforceConnector(SqlStore(db), clock, config, vault=credential_vault(db, config, clock))
    rig = Rig(server.dev, server, connector, db, config)
    rig.use_client_credentials()
    try:
        yield rig
    finally:
        connector.close()
        server.stop()
        db.dispose()
        if postgres.is_postgres_url(database_url):
            postgres.drop_database(database_url)
