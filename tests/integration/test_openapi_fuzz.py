"""Property-based conformance of the live API to its own OpenAPI document (schemathesis).

Every operation is called with generated valid and invalid input, as a caller of the right tenant
with every scope. No answer may be a 5xx, and every answer must match the status codes, content
types and schemas the document declares.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import plain_http
from tests.support.harness import Harness

pytestmark = pytest.mark.slow

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_every_operation_conforms_to_the_document(shared: Harness, tmp_path: Path) -> None:
    with shared.client() as client:
        intent_id = shared.run_task(client)["action_intent_id"]  # real data for the path parameters
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[parameters]\n"
        f'action_intent_id = "{intent_id}"\n'
        'account_id = "acc-1"\n'
        'tenant_id = "t1"\n'
        'action_type = "CREATE_INTERNAL_TASK"\n'
    )
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(config),
            "run",
            f"{shared.url}/openapi.json",
            "--checks",
            CHECKS,
            "--header",
            f"Authorization: Bearer {shared.token()}",
            "--max-examples",
            "30",
            "--seed",
            "20261124",
            # One worker: hypothesis's lambda-source parsing is not thread-safe on Python 3.11
            # (an occasional "AST constructor recursion depth mismatch" inside schemathesis).
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "passed" in result.stdout


def test_openapi_describes_every_route_and_the_security_scheme(shared: Harness) -> None:

    document = plain_http.get(f"{shared.url}/openapi.json").json()
    paths = document["paths"]
    expected = {
        ("/executions/{action_intent_id}/status", "get"),
        ("/accounts/{account_id}/executions", "get"),
        ("/executions/{action_intent_id}/timeline", "get"),
        ("/intents", "post"),
        ("/intents/{action_intent_id}", "get"),
        ("/intents/{action_intent_id}/approve", "post"),
        ("/intents/{action_intent_id}/reject", "post"),
        ("/intents/{action_intent_id}/cancel", "post"),
        ("/intents/{action_intent_id}/rerun", "post"),
        ("/events", "post"),
        ("/admin/kill-switches", "get"),
        ("/admin/kill-switches", "put"),
        ("/admin/tenants/{tenant_id}/execution", "get"),
        ("/admin/tenants/{tenant_id}/execution", "put"),
        ("/admin/registry", "get"),
        ("/admin/registry", "post"),
        ("/admin/gateway/targets", "get"),
        ("/admin/gateway/targets", "post"),
        ("/admin/gateway/targets/{name}/sync", "post"),
        ("/admin/gateway/targets/{name}", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/admin/ledger/checkpoint", "post"),
        ("/admin/ledger/verify", "get"),
        ("/admin/ledger/export", "get"),
        ("/.well-known/fulfill-ledger-keys.json", "get"),
    }
    assert expected <= {(path, method) for path, methods in paths.items() for method in methods}
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, methods in paths.items():
        for method, operation in methods.items():
            if path.startswith(("/healthz", "/readyz", "/metrics", "/.well-known/")):  # public by design
                continue
            assert "401" in operation["responses"], (method, path)
            if path == "/integrations/slack/{tenant_id}/interactions":
                # Slack's callback: authenticated by Slack's request signature, not a bearer token.
                headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
                assert {"x-slack-signature", "x-slack-request-timestamp"} <= headers
                assert not operation.get("security")
                continue
            assert operation.get("security"), (method, path)
