"""A worker that never comes back under its executor id: its executions are taken over by a live
worker once it has been silent for ``FULFILL_EXECUTOR_LOST_SECONDS``, and end with one write.

The process test runs real ``fulfill serve`` processes (an ``api`` and two ``worker`` ones, the
first killed with SIGKILL in the middle of a tool call, the second started under another executor
id, as a container restarted under a new hostname would be). The claim test drives three
heartbeats in this process against one real database: a slow but live executor is never taken
over, and of two live workers only one takes over a silent one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from fulfill import __version__
from fulfill.client import default_limits
from fulfill.config import Settings
from fulfill.domain.execution import execution_workflow_id
from fulfill.engine.heartbeat import Heartbeat
from fulfill.store import heartbeats
from fulfill.store.tables import executor_heartbeats
from fulfill.tokens import mint_token
from fulfill_tools.launch import free_port, kill, start_serve, stop_all
from tests.integration.test_crash_recovery import _count, _executors
from tests.support.harness import (
    ALL_SCOPES,
    TEST_SECRET,
    Harness,
    colleague_headers,
    fresh_database_url,
    make_settings,
)
from tests.support.http_doubles import Fault, FaultyProxy, wait_for

pytestmark = pytest.mark.slow

HEARTBEAT_SECONDS = 0.5
LOST_SECONDS = 3.0


def test_a_worker_back_under_another_id_has_its_execution_taken_over_with_one_write(tmp_path: Path) -> None:
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    proxy = FaultyProxy(upstream=f"{base}/mcp")  # every worker reaches the api's gateway through it
    proxy.add_faults(Fault("hold"))  # the tool writes, then its answer is held back
    db = fresh_database_url(tmp_path)
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": db,
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_GATEWAY_URL": proxy.url,
        "FULFILL_RETRY_BACKOFF_BASE_SECONDS": "0.05",
        "FULFILL_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "FULFILL_EXECUTOR_LOST_SECONDS": str(LOST_SECONDS),
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "service.log"
    token = mint_token(Settings(jwt_secret=TEST_SECRET), tenant_id="t1", scopes=ALL_SCOPES)
    client = httpx.Client(
        limits=default_limits(), base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
    )

    def worker(executor_id: str) -> dict[str, str]:
        return {
            **env,
            "FULFILL_ROLE": "worker",
            "FULFILL_PORT": str(free_port()),
            "FULFILL_EXECUTOR_ID": executor_id,
        }

    processes = [start_serve({**env, "FULFILL_ROLE": "api", "FULFILL_PORT": str(api_port)}, log)]
    try:
        first = start_serve(worker("worker-before-restart"), log)
        processes.append(first)
        created = client.post(
            "/intents",
            json={"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {"title": "x"}},
        )
        intent_id = created.json()["action_intent_id"]
        assert (
            client.post(f"/intents/{intent_id}/approve", headers=colleague_headers(client)).status_code == 202
        )
        assert proxy.state.forwarded.wait(timeout=60), "the tool call never reached the gateway"
        assert _count(db, "internal_tasks", intent_id) == 1  # the write happened...
        kill(first)  # ...and its worker dies before hearing about it, never to return under its id
        killed_at = time.monotonic()
        proxy.state.release.set()

        processes.append(start_serve(worker("worker-after-restart"), log))
        ready_at = time.monotonic()

        def finished() -> dict[str, object] | None:
            body = client.get(f"/executions/{intent_id}/status").json()
            return body if body.get("status") == "SUCCEEDED" else None

        # Without a takeover it would stay RUNNING for its whole budget (300 s), then fail.
        status = wait_for(finished, timeout=120)
        done_at = time.monotonic()
        print(
            f"lost executor: kill -> SUCCEEDED {done_at - killed_at:.1f} s, of which the new worker's "
            f"start {ready_at - killed_at:.1f} s (lost after {LOST_SECONDS} s, beat {HEARTBEAT_SECONDS} s)"
        )
        assert status["attempt_count"] == 1
        assert proxy.state.tool_calls_forwarded == 2  # the taken-over workflow called the tool again
        assert _count(db, "internal_tasks", intent_id) == 1  # and the tool did not write again
        assert _count(db, "execution_outcomes", intent_id) == 1
        assert _count(db, "execution_signals", intent_id) == 1
        assert _executors(db, [execution_workflow_id("t1", intent_id)]) == {"worker-after-restart"}
    finally:
        client.close()
        stop_all(processes)
        proxy.close()


def test_a_slow_executor_is_not_taken_over_and_a_silent_one_by_one_worker_only(tmp_path: Path) -> None:
    # The service's own heartbeat beats once at start and then waits 10 minutes: it stays out.
    harness = Harness(make_settings(tmp_path, heartbeat_seconds=600, executor_lost_seconds=1800)).start()
    try:
        quick = harness.settings.model_copy(update={"heartbeat_seconds": 0.5, "executor_lost_seconds": 3.0})
        taken: list[tuple[str, str]] = []

        def observer(name: str) -> Heartbeat:
            return Heartbeat(
                harness.service.store, quick, name, recover=lambda lost: taken.append((name, lost)) or 0
            )

        first, second, slow = observer("live-a"), observer("live-b"), observer("slow-x")
        # The slow executor beats every 0.9 s (late beats, but within the bound) for 6 s.
        began = time.monotonic()
        last_slow_beat = 0.0
        while time.monotonic() - began < 6.0:
            if time.monotonic() - last_slow_beat >= 0.9:
                slow.beat_once()
                last_slow_beat = time.monotonic()
            first.beat_once()
            second.beat_once()
            time.sleep(0.1)
        assert [lost for _name, lost in taken if lost == "slow-x"] == []

        # Then it stops: both live workers watch it go silent, one takes it over.
        def taken_over() -> bool:
            first.beat_once()
            second.beat_once()
            return any(lost == "slow-x" for _name, lost in taken)

        wait_for(taken_over, timeout=30, interval=0.1)
        for _ in range(5):
            first.beat_once()
            second.beat_once()
            time.sleep(0.1)
        assert len([name for name, lost in taken if lost == "slow-x"]) == 1
        with harness.db.read() as conn:
            left = set(conn.execute(select(executor_heartbeats.c.executor_id)).scalars())
            assert "slow-x" not in left
            assert {"live-a", "live-b"} <= set(heartbeats.all_beats(conn, version=__version__))
    finally:
        harness.stop()
