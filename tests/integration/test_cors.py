"""CORS: the allow-list from configuration, and CORS headers on error responses too."""

from __future__ import annotations

from typing import Any

from tests.support import plain_http
from tests.support.harness import Harness


def test_cors_headers_are_on_errors_too(tmp_path: Any) -> None:
    from tests.support.harness import make_settings

    harness = Harness(make_settings(tmp_path, cors_origins=["https://console.example"])).start()
    try:
        origin = {"Origin": "https://console.example"}
        unauthorized = plain_http.get(f"{harness.url}/executions/x/status", headers=origin)
        assert unauthorized.status_code == 401
        assert unauthorized.headers["access-control-allow-origin"] == "https://console.example"
        token = harness.token(scopes=["intents:read"])
        forbidden = plain_http.get(
            f"{harness.url}/executions/x/status", headers={**origin, "Authorization": f"Bearer {token}"}
        )
        assert forbidden.status_code == 403
        assert forbidden.headers["access-control-allow-origin"] == "https://console.example"
        preflight = plain_http.options(
            f"{harness.url}/intents",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        # A browser client of the reference sends its headers too (the service ignores them).
        reference_client = plain_http.options(
            f"{harness.url}/executions/x/status",
            headers={
                **origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,content-type,x-amz-date,x-api-key,x-tenant-id",
            },
        )
        assert reference_client.status_code == 200, reference_client.text
        refused = plain_http.options(
            f"{harness.url}/intents",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "CORS_PREFLIGHT_REFUSED"
        assert "FULFILL_CORS_ORIGINS" in refused.json()["detail"]
        stranger = plain_http.get(f"{harness.url}/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers
    finally:
        harness.stop()
