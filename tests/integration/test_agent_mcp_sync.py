"""``/agent/mcp`` for a client without the Tasks extension: an outcome within
``FULFILL_AGENT_WAIT_SECONDS`` is the call's result (a service of its own, with a long wait)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from fulfill.store.tables import action_intents
from tests.integration.test_agent_mcp import TASK_ARGS, agent_token, call_tool
from tests.support.agent_mcp import agent_client
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for


def test_without_tasks_an_outcome_within_the_wait_is_the_result(tmp_path: Path) -> None:
    h = Harness(make_settings(tmp_path, agent_wait_seconds=20.0)).start()
    try:
        token = agent_token(h)

        def approve_when_proposed() -> None:
            with h.client() as http:

                def pending() -> Any:
                    return h.count(action_intents, approval_status="PENDING_APPROVAL") or None

                wait_for(pending, timeout=15)
                with h.db.read() as conn:
                    intent_id = conn.execute(action_intents.select()).mappings().first()["action_intent_id"]
                assert http.post(f"/intents/{intent_id}/approve").status_code == 202

        approver = threading.Thread(target=approve_when_proposed)
        approver.start()
        result = call_tool(h, token, "create_internal_task", TASK_ARGS, tasks=False)
        approver.join()
        assert result.is_error is not True
        assert result.structured_content["status"] == "SUCCEEDED"
        assert result.structured_content["external_object_refs"]
    finally:
        h.stop()


def readme_agent_loop() -> str:
    """The Python block of README's "Let an agent act through fulfill"."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Let an agent act through fulfill", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_agent_loop_runs_as_written(tmp_path: Path) -> None:
    code = readme_agent_loop()
    assert len(code.splitlines()) < 30
    h = Harness(make_settings(tmp_path, agent_wait_seconds=0.5)).start()
    try:
        approver = threading.Thread(target=_approve_first_pending, args=(h,))
        approver.start()
        env = {
            **os.environ,
            "FULFILL_AGENT_URL": f"{h.url}/agent/mcp",
            "FULFILL_TOKEN": h.token(
                "t1", ["intents:write", "intents:read", "executions:read"], subject="bot"
            ),
        }
        ran = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        approver.join()
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert "create_internal_task" in ran.stdout
        assert '"status": "SUCCEEDED"' in ran.stdout
        assert '"external_object_refs"' in ran.stdout
    finally:
        h.stop()


def _approve_first_pending(h: Harness) -> None:
    wait_for(lambda: h.count(action_intents, approval_status="PENDING_APPROVAL") or None, timeout=30)
    with h.db.read() as conn:
        intent_id = conn.execute(action_intents.select()).mappings().first()["action_intent_id"]
    with h.client() as http:
        assert http.post(f"/intents/{intent_id}/approve").status_code == 202


def test_a_call_waiting_for_its_outcome_answers_when_the_service_stops(tmp_path: Path) -> None:
    """The call waits up to a minute for its outcome; the service is stopped meanwhile. The call
    answers at once that the action awaits approval (it is committed), instead of holding the stop
    until the grace period cuts it without an answer."""
    h = Harness(make_settings(tmp_path, agent_wait_seconds=60.0, shutdown_grace_seconds=30)).start()
    stopped = False
    try:
        token = agent_token(h)

        def stop_once_proposed() -> None:
            nonlocal stopped
            wait_for(lambda: h.count(action_intents, approval_status="PENDING_APPROVAL") or None, timeout=30)
            h.server.stop()
            stopped = True

        async def call() -> Any:
            async with agent_client(h.url, token, tasks=False) as client:
                await client.list_tools()  # the client checks the result against it: listed first
                stopper.start()
                return await client.call_tool("create_internal_task", TASK_ARGS)

        stopper = threading.Thread(target=stop_once_proposed)
        result = asyncio.run(call())
        stopper.join(timeout=60)
        assert stopped
        assert result.is_error is not True
        assert result.structured_content["status"] == "PENDING"
        assert result.structured_content["approval_status"] == "PENDING_APPROVAL"
        assert "get_action_status" in result.content[0].text
        assert h.count(action_intents, approval_status="PENDING_APPROVAL") == 1
    finally:
        h.stop()
