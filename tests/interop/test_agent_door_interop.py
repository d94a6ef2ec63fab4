"""``/agent/mcp`` with the official TypeScript MCP SDK (``@modelcontextprotocol/sdk`` 1.x, the
client MCP Inspector and most hosts use): it lists the tools and calls an action tool without the
Tasks extension, and reads an answer that names the ``action_intent_id`` and
``get_action_status``; an agent's approval is a readable ``isError`` result."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.interop.test_mcp_interop import ts_client
from tests.support.harness import Harness, make_settings

__all__ = ["ts_client"]
AGENT_SCOPES = ["intents:write", "intents:read", "executions:read"]


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    running = Harness(make_settings(tmp_path_factory.mktemp("agent-ts"), agent_wait_seconds=0.2)).start()
    yield running
    running.stop()


def _run(client: list[str], harness: Harness, calls: list[dict[str, Any]]) -> dict[str, Any]:
    request = {"url": f"{harness.url}/agent/mcp", "calls": calls}
    done = subprocess.run(
        client, input=json.dumps(request), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["sdk_version"].startswith("1.")
    return {call["label"]: call for call in answer["calls"]}


def test_the_typescript_sdk_lists_the_tools_and_proposes_without_tasks(
    ts_client: list[str],
    door: Harness,
) -> None:
    agent = door.token("t1", AGENT_SCOPES, subject="ts-agent")
    answers = _run(
        ts_client,
        door,
        [
            {
                "label": "propose",
                "token": agent,
                "name": "create_internal_task",
                "arguments": {"account_id": "acc-1", "title": "from TypeScript"},
            }
        ],
    )
    proposed = answers["propose"]
    assert "thrown" not in proposed, proposed
    assert {"create_internal_task", "get_action_status", "cancel_action"} <= set(proposed["tools"])
    assert "approve_action" not in proposed["tools"]
    assert proposed["isError"] is False
    intent_id = proposed["structuredContent"]["action_intent_id"]
    assert intent_id in proposed["text"]
    assert "get_action_status" in proposed["text"]
    followed = _run(
        ts_client,
        door,
        [
            {
                "label": "status",
                "token": agent,
                "name": "get_action_status",
                "arguments": {"action_intent_id": intent_id},
            },
            {
                "label": "self-approve",
                "token": door.token("t1", ["intents:approve", "intents:read"], subject="ts-agent"),
                "name": "approve_action",
                "arguments": {"action_intent_id": intent_id},
            },
        ],
    )
    assert followed["status"]["structuredContent"]["status"] == "PENDING"
    refused = followed["self-approve"]
    assert refused["isError"] is True
    assert "SELF_APPROVAL" in refused["text"]
