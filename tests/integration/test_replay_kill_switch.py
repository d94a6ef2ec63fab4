"""A kill switch turned on while a process is down stops the replay of its unfinished tool call.

The process is killed with SIGKILL while its tool call is held before reaching the gateway; the
global stop is turned on; the process starts again and DBOS replays InvokeTool, which reads the
switches before calling: the execution ends CANCELLED and nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from fulfill.client import default_limits
from fulfill.config import Settings
from fulfill.domain.models import GlobalExecutionConfig
from fulfill.store import killswitches
from fulfill.store.db import Database
from fulfill.store.tables import internal_tasks
from fulfill.tokens import mint_token
from fulfill_tools.launch import free_port, kill, start_serve, stop_all
from tests.support.harness import ALL_SCOPES, TEST_SECRET, colleague_headers, fresh_database_url
from tests.support.http_doubles import Fault, FaultyProxy, wait_for

pytestmark = pytest.mark.slow


def test_a_replayed_tool_call_reads_the_kill_switches_first(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proxy = FaultyProxy(upstream=f"{base}/mcp")
    proxy.add_faults(Fault("hold_before"))
    database_url = fresh_database_url(tmp_path)
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": database_url,
        "FULFILL_PORT": str(port),
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_GATEWAY_URL": proxy.url,
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "service.log"
    token = mint_token(Settings(jwt_secret=TEST_SECRET), tenant_id="t1", scopes=ALL_SCOPES)
    client = httpx.Client(
        limits=default_limits(), base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
    )
    db = Database(database_url)

    process = start_serve(env, log)
    try:
        created = client.post(
            "/intents",
            json={"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {"title": "x"}},
        )
        intent_id = created.json()["action_intent_id"]
        assert (
            client.post(f"/intents/{intent_id}/approve", headers=colleague_headers(client)).status_code == 202
        )
        assert proxy.state.held_before.wait(timeout=30), "the tool call never left the engine"
        kill(process)
        with db.write() as conn:
            killswitches.put_global(
                conn, GlobalExecutionConfig(global_stop=True), now="2026-01-01T00:00:00.000Z"
            )

        process = start_serve(env, log)

        def finished() -> dict[str, object] | None:
            body = client.get(f"/executions/{intent_id}/status").json()
            return body if "attempt_count" in body and body["status"] != "RUNNING" else None

        status = wait_for(finished, timeout=60)
        assert (status["status"], status["error_code"]) == ("CANCELLED", "KILL_SWITCH_ENABLED")
        assert proxy.state.tool_calls_forwarded == 0
        with db.read() as conn:
            written = conn.execute(
                select(func.count())
                .select_from(internal_tasks)
                .where(internal_tasks.c.action_intent_id == intent_id)
            ).scalar_one()
        assert written == 0
    finally:
        client.close()
        stop_all([process])
        proxy.close()
        db.dispose()
