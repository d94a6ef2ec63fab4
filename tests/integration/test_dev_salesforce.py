"""The local Salesforce server itself: its OAuth grants and their refusals, refresh-token reuse
detection, SOQL, the fault-control endpoints, and ``fulfill dev salesforce``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest

from fulfill_tools.dev.salesforce import JWT_BEARER_GRANT, DevSalesforce, DevSalesforceServer, parse_soql
from fulfill_tools.launch import free_port
from tests.support import plain_http
from tests.support.http_doubles import wait_for
from tests.support.salesforce import CLIENT_ID, CLIENT_SECRET, USERNAME, dev_config, rsa_key_pair

# The local Salesforce server alone: no database of the pass is touched.
pytestmark = pytest.mark.backend_free


@pytest.fixture(scope="module")
def server() -> Iterator[DevSalesforceServer]:
    running = DevSalesforceServer(DevSalesforce(dev_config())).start()
    yield running
    running.stop()


def token(server: DevSalesforceServer, **form: str) -> httpx.Response:
    return httpx.post(f"{server.url}/services/oauth2/token", data=form, timeout=10)


def assertion(server: DevSalesforceServer, **claims: object) -> str:
    values: dict[str, object] = {
        "iss": CLIENT_ID,
        "sub": USERNAME,
        "aud": server.url,
        "exp": int(time.time()) + 120,
    }
    values.update(claims)
    return jwt.encode(values, rsa_key_pair()[0], algorithm="RS256")


def test_client_credentials_answer_like_salesforce(server: DevSalesforceServer) -> None:
    ok = token(server, grant_type="client_credentials", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) >= {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    assert body["instance_url"] == server.url
    assert body["token_type"] == "Bearer"
    wrong = token(server, grant_type="client_credentials", client_id=CLIENT_ID, client_secret="nope")
    assert (wrong.status_code, wrong.json()) == (
        400,
        {"error": "invalid_client", "error_description": "invalid client credentials"},
    )
    unknown = token(server, grant_type="password")
    assert unknown.json()["error"] == "unsupported_grant_type"


def test_jwt_bearer_assertions_are_verified(server: DevSalesforceServer) -> None:
    assert token(server, grant_type=JWT_BEARER_GRANT, assertion=assertion(server)).status_code == 200
    login = assertion(server, aud="https://login.salesforce.com")
    assert token(server, grant_type=JWT_BEARER_GRANT, assertion=login).status_code == 200
    for claims, description in (
        ({"aud": "https://elsewhere.example"}, "audience is invalid"),
        ({"sub": "someone@else"}, "user hasn't approved this consumer"),
        ({"exp": int(time.time()) - 60}, "expired authorization code"),
        ({"exp": int(time.time()) + 3600}, "invalid assertion"),
    ):
        refused = token(server, grant_type=JWT_BEARER_GRANT, assertion=assertion(server, **claims))
        assert refused.status_code == 400
        assert refused.json()["error_description"] == description
    other_key = jwt.encode(
        {"iss": CLIENT_ID, "sub": USERNAME, "aud": server.url, "exp": int(time.time()) + 60},
        "not-an-rsa-key-but-hmac-0123456789abcdef",
        algorithm="HS256",
    )
    assert token(server, grant_type=JWT_BEARER_GRANT, assertion=other_key).json()["error"] == "invalid_grant"


def test_reusing_a_rotated_refresh_token_revokes_the_family(server: DevSalesforceServer) -> None:
    first = server.dev.issue_refresh_token()
    base = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    answer = token(server, **base, refresh_token=first).json()
    second, access = answer["refresh_token"], answer["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    query = f"{server.url}/services/data/v62.0/query"
    assert plain_http.get(query, params={"q": "SELECT Id FROM Task"}, headers=headers).status_code == 200
    replayed = token(server, **base, refresh_token=first)  # the spent one, again
    assert replayed.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}
    assert token(server, **base, refresh_token=second).status_code == 400  # the family is revoked
    assert plain_http.get(query, params={"q": "SELECT Id FROM Task"}, headers=headers).status_code == 401


def test_soql_subset() -> None:
    query = parse_soql(
        "select Id, Name from Opportunity where StageName = 'Closed\\'s' and Amount != 5 "
        "order by CreatedDate desc limit 3"
    )
    assert query.fields == ["Id", "Name"]
    assert query.sobject == "Opportunity"
    assert query.conditions == [("StageName", "=", "Closed's"), ("Amount", "!=", 5)]
    assert query.order_by == ("CreatedDate", True)
    assert query.limit == 3
    for malformed in (
        "SELECT FROM Task",
        "SELECT Id FROM Task WHERE",
        "SELECT Id FROM Task LIMIT x",
        "DROP Task",
    ):
        with pytest.raises(ValueError, match="unexpected token"):
            parse_soql(malformed)


def test_query_errors_and_the_fault_endpoint(server: DevSalesforceServer) -> None:
    access = token(server, grant_type="client_credentials", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    headers = {"Authorization": f"Bearer {access.json()['access_token']}"}
    query = f"{server.url}/services/data/v62.0/query"
    malformed = plain_http.get(query, params={"q": "SELECT Id FROM"}, headers=headers)
    assert (malformed.status_code, malformed.json()[0]["errorCode"]) == (400, "MALFORMED_QUERY")
    column = plain_http.get(query, params={"q": "SELECT Nope__c FROM Task"}, headers=headers)
    assert column.json()[0]["errorCode"] == "INVALID_FIELD"
    added = plain_http.post(
        f"{server.url}/__dev/faults", json={"kind": "error", "status": 503, "path": "/query"}
    )
    assert added.status_code == 201
    failed = plain_http.get(query, params={"q": "SELECT Id FROM Task"}, headers=headers)
    assert (failed.status_code, failed.json()[0]["errorCode"]) == (503, "SERVER_UNAVAILABLE")
    assert plain_http.get(query, params={"q": "SELECT Id FROM Task"}, headers=headers).status_code == 200
    assert plain_http.post(f"{server.url}/__dev/faults", json={"kind": "meteor"}).status_code == 400
    assert plain_http.post(f"{server.url}/__dev/expire-sessions").status_code == 204
    assert plain_http.get(query, params={"q": "SELECT Id FROM Task"}, headers=headers).status_code == 401
    assert plain_http.get(f"{server.url}/__dev/stats").json()["token_requests"]["client_credentials"] >= 1


def test_fulfill_dev_salesforce_serves_until_stopped() -> None:
    port = free_port()
    env = {**os.environ, "DBOS__DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fulfill", "dev", "salesforce", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{url}/services/data/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60)
        granted = plain_http.post(
            f"{url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "fulfill-dev-client",
                "client_secret": "fulfill-dev-secret",
            },
        )
        assert granted.status_code == 200
        assert (
            plain_http.get(f"{url}/__dev/records/Account").json()["records"][0]["Name"] == "Acme Corporation"
        )
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"local Salesforce on http://127.0.0.1:{port}" in output
