"""The gateway with the official TypeScript MCP SDK (``@modelcontextprotocol/sdk`` 1.x, the client
MCP Inspector and most hosts use), run by the machine's Node.js against a live service.

That SDK validates a result's structured content against the tool's output schema, errors
included; an error must reach it as a readable ``isError`` result, not as a -32602 that hides the
reason. Needs ``node`` (20+) and ``npm``: the package in ``ts/`` is installed on first use
(``npm ci``, from ``package-lock.json``). Without them the test fails; it never skips.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fulfill.tokens import mint_service_token, mint_token
from tests.support.harness import ALL_SCOPES, Harness

TS_DIR = Path(__file__).parent / "ts"
TOOLS = [
    "crm.create_opportunity",
    "crm.create_task",
    "crm.delete_opportunity",
    "crm.delete_task",
    "crm.restore_field",
    "crm.update_field",
    "internal.create_note",
    "internal.create_task",
    "internal.delete_note",
    "internal.delete_task",
]
BINDING = ("tenant_id", "account_id", "action_intent_id", "idempotency_key")


def _required(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(
            f"'{program}' was not found: the MCP interoperability test needs Node.js 20+ and npm "
            "(it runs the official TypeScript MCP SDK against the gateway)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def ts_client() -> list[str]:
    node, npm = _required("node"), _required("npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"the MCP interoperability test needs Node.js 20+, found {version}", pytrace=False)
    if not (TS_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json").is_file():
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=TS_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if installed.returncode != 0:
            pytest.fail(f"npm ci in {TS_DIR} failed:\n{installed.stderr[-2000:]}", pytrace=False)
    return [node, str(TS_DIR / "client.mjs")]


def _run(ts_client: list[str], harness: Harness, calls: list[dict[str, Any]]) -> dict[str, Any]:
    request = {"url": f"{harness.url}/mcp", "calls": calls}
    done = subprocess.run(
        ts_client, input=json.dumps(request), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["sdk_version"].startswith("1.")
    return {call["label"]: call for call in answer["calls"]}


def _task(**changes: Any) -> dict[str, Any]:
    return {
        "title": "from the TypeScript SDK",
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": "ai_interop",
        "idempotency_key": secrets.token_hex(32),
        **changes,
    }


def _service_token(harness: Harness, arguments: dict[str, Any]) -> str:
    return mint_service_token(harness.settings, **{name: arguments[name] for name in BINDING})


def _call(
    label: str, token: str, arguments: dict[str, Any], name: str = "internal.create_task"
) -> dict[str, Any]:
    return {"label": label, "token": token, "name": name, "arguments": arguments}


def _tool_error(result: dict[str, Any]) -> dict[str, Any]:
    assert "thrown" not in result, result["thrown"]
    assert result["isError"] is True
    assert result["structuredContent"] is None
    error = json.loads(result["text"])
    assert set(error) >= {"error_code", "error_class", "error_message"}
    return dict(error)


def test_the_typescript_sdk_lists_calls_and_reads_tool_errors(ts_client: list[str], shared: Harness) -> None:
    good = _task()
    short_key = _task(action_intent_id="ai_interop_short", idempotency_key="too-short")
    bound = _task(action_intent_id="ai_interop_bound")
    admin = mint_token(shared.settings, tenant_id="t1", scopes=[*ALL_SCOPES, "gateway:invoke"])
    results = _run(
        ts_client,
        shared,
        [
            _call("success", _service_token(shared, good), good),
            _call("short key", _service_token(shared, short_key), short_key),
            _call("other account", _service_token(shared, bound), {**bound, "account_id": "acc-2"}),
            _call("user token", admin, _task(action_intent_id="ai_interop_user")),
        ],
    )

    success = results["success"]
    assert "thrown" not in success, success["thrown"]
    assert success["tools"] == TOOLS
    assert success["isError"] is False
    [ref] = success["structuredContent"]["external_object_refs"]
    assert ref == {
        "system": "INTERNAL",
        "object_type": "Task",
        "object_id": f"task_{good['idempotency_key'][:24]}",
    }
    assert shared.task_rows("ai_interop") == 1

    short = _tool_error(results["short key"])
    assert results["short key"]["tools"] == TOOLS
    # The tool's input schema says how long a key must be, so the gateway's guard refuses it.
    assert (short["error_class"], short["error_code"]) == ("VALIDATION", "INVALID_TOOL_ARGUMENTS")
    assert short["error_message"] == "idempotency_key: fails 'minLength'"
    assert shared.task_rows("ai_interop_short") == 0

    mismatch = _tool_error(results["other account"])
    assert (mismatch["error_class"], mismatch["error_code"]) == ("AUTH", "TOKEN_BINDING_MISMATCH")
    assert "account_id" in mismatch["error_message"]
    assert "acc-2" not in mismatch["error_message"]
    assert shared.task_rows("ai_interop_bound") == 0

    refused = results["user token"]
    assert (refused["code"], "invalid_token" in refused["thrown"]) == (401, True), refused
    assert shared.task_rows("ai_interop_user") == 0
