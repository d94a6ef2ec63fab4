"""A service started without FULFILL_SECRETS_KEY refuses to store credentials, and says why.

Its own module: the service under test is started without a key, and one process runs one
service at a time (the other credential tests share a module-wide service that has a key).
"""

from __future__ import annotations

from tests.support.harness import Harness
from tests.support.salesforce import CLIENT_ID, CLIENT_SECRET


def test_without_a_secrets_key_credentials_cannot_be_stored(harness: Harness) -> None:
    assert not harness.settings.secrets_key.get_secret_value()
    with harness.client(tenant="t-nokey", scopes=["admin"]) as client:
        response = client.put(
            "/admin/credentials/salesforce",
            json={"type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        )
        listed = client.get("/admin/credentials")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "SECRETS_KEY_NOT_CONFIGURED"
    assert CLIENT_SECRET not in response.text
    assert listed.status_code == 200
    assert listed.json() == {"credentials": []}  # nothing was stored
