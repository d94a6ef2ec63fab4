"""A process killed with SIGKILL in the middle of InvokeTool resumes the workflow on restart and
ends with one external write and one outcome."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import bindparam, create_engine, text

from fulfill.client import default_limits
from fulfill.config import Settings
from fulfill.domain.execution import execution_workflow_id
from fulfill.tokens import mint_token
from fulfill_tools.launch import free_port, kill, log_tail, start_serve, stop_all
from tests.support.harness import ALL_SCOPES, TEST_SECRET, colleague_headers, fresh_database_url
from tests.support.http_doubles import Fault, FaultyProxy, wait_for

pytestmark = pytest.mark.slow


def _count(db: str, table: str, intent_id: str) -> int:
    """Rows of ``table`` for the intent, read straight from the service's database."""
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            query = text(f"SELECT count(*) FROM {table} WHERE action_intent_id = :intent_id")
            return int(conn.execute(query, {"intent_id": intent_id}).scalar_one())
    finally:
        engine.dispose()


def _executors(db: str, workflow_ids: list[str]) -> set[str]:
    """The DBOS executors that ran these workflows: DBOS keeps its tables in the ``dbos`` schema of
    a PostgreSQL database, and in the sibling ``.dbos.sqlite`` file of a SQLite one."""
    settings = Settings(database_url=db)
    table = "workflow_status" if settings.is_sqlite else "dbos.workflow_status"
    engine = create_engine(settings.system_database_url)
    try:
        with engine.connect() as conn:
            query = text(f"SELECT executor_id FROM {table} WHERE workflow_uuid IN :ids").bindparams(
                bindparam("ids", expanding=True)
            )
            return {row[0] for row in conn.execute(query, {"ids": workflow_ids})}
    finally:
        engine.dispose()


def test_sigkill_during_invoke_tool_resumes_with_one_write(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proxy = FaultyProxy(upstream=f"{base}/mcp")
    proxy.add_faults(Fault("hold"))  # the tool writes, then its answer is held back
    db = fresh_database_url(tmp_path)  # SQLite, or PostgreSQL on the PostgreSQL pass
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": db,
        "FULFILL_PORT": str(port),
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_GATEWAY_URL": proxy.url,
        "FULFILL_RETRY_BACKOFF_BASE_SECONDS": "0.05",
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "service.log"
    token = mint_token(Settings(jwt_secret=TEST_SECRET), tenant_id="t1", scopes=ALL_SCOPES)
    client = httpx.Client(
        limits=default_limits(), base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
    )

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

        assert proxy.state.forwarded.wait(timeout=30), (
            f"the tool call never reached the gateway:\n{log_tail(log)}"
        )
        assert _count(db, "internal_tasks", intent_id) == 1  # the write happened...
        kill(process)  # ...and the process dies before hearing about it
        proxy.state.release.set()
        assert _count(db, "execution_outcomes", intent_id) == 0

        process = start_serve(env, log)

        def finished() -> dict[str, object] | None:
            body = client.get(f"/executions/{intent_id}/status").json()
            return body if body.get("status") == "SUCCEEDED" else None

        status = wait_for(finished, timeout=60)
        assert status["attempt_count"] == 1
        assert proxy.state.tool_calls_forwarded == 2  # the resumed workflow called the tool again
        assert _count(db, "internal_tasks", intent_id) == 1  # and the tool did not write again
        assert _count(db, "execution_outcomes", intent_id) == 1
        assert _count(db, "execution_signals", intent_id) == 1
        time.sleep(0.2)
    finally:
        client.close()
        stop_all([process])
        proxy.close()


def test_split_roles_an_api_process_never_runs_workflows_and_a_worker_resumes_them(tmp_path: Path) -> None:
    """`--role api` serves HTTP and the gateway only; `--role worker` runs (and resumes) workflows."""
    api_port, worker_port = free_port(), free_port()
    base = f"http://127.0.0.1:{api_port}"
    proxy = FaultyProxy(upstream=f"{base}/mcp")  # every process reaches the api's gateway through it
    proxy.add_faults(Fault("hold"))
    db = fresh_database_url(tmp_path)
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": db,
        "FULFILL_PORT": str(api_port),
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_GATEWAY_URL": proxy.url,
        "FULFILL_RETRY_BACKOFF_BASE_SECONDS": "0.05",
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "service.log"
    token = mint_token(Settings(jwt_secret=TEST_SECRET), tenant_id="t1", scopes=ALL_SCOPES)
    client = httpx.Client(
        limits=default_limits(), base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
    )

    processes = [start_serve(env, log)]  # first one process with every role
    try:
        created = client.post(
            "/intents",
            json={"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {"title": "x"}},
        )
        intent_id = created.json()["action_intent_id"]
        assert (
            client.post(f"/intents/{intent_id}/approve", headers=colleague_headers(client)).status_code == 202
        )
        assert proxy.state.forwarded.wait(timeout=30), (
            f"the tool call never reached the gateway:\n{log_tail(log)}"
        )
        kill(processes[0])  # the workflow is left unfinished
        proxy.state.release.set()

        processes.append(start_serve({**env, "FULFILL_ROLE": "api"}, log))
        assert client.get("/readyz").json()["checks"] == {"database": "ok", "workers": "not in this role"}
        time.sleep(3)  # an api process that resumed workflows would have called the tool by now
        assert proxy.state.tool_calls_forwarded == 1
        assert client.get(f"/executions/{intent_id}/status").json()["status"] == "RUNNING"

        processes.append(
            start_serve({**env, "FULFILL_ROLE": "worker", "FULFILL_PORT": str(worker_port)}, log)
        )

        def finished() -> dict[str, object] | None:
            body = client.get(f"/executions/{intent_id}/status").json()  # answered by the api process
            return body if body.get("status") == "SUCCEEDED" else None

        status = wait_for(finished, timeout=60)
        assert status["attempt_count"] == 1
        assert proxy.state.tool_calls_forwarded == 2
        worker_ready = httpx.get(f"http://127.0.0.1:{worker_port}/readyz", timeout=10.0)
        assert worker_ready.json()["checks"] == {"database": "ok", "workers": "ok"}
        assert _count(db, "internal_tasks", intent_id) == 1
        assert _count(db, "execution_outcomes", intent_id) == 1

        # A new intent through the split pair: the api stores it, the worker relays and runs it.
        second = client.post(
            "/intents",
            json={"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {"title": "y"}},
        ).json()["action_intent_id"]
        assert client.post(f"/intents/{second}/approve", headers=colleague_headers(client)).status_code == 202
        wait_for(
            lambda: client.get(f"/executions/{second}/status").json().get("status") == "SUCCEEDED", timeout=60
        )
        executors = _executors(
            db, [execution_workflow_id("t1", intent_id), execution_workflow_id("t1", second)]
        )
        assert executors
        assert not any(executor.startswith("fulfill-api-") for executor in executors)
    finally:
        client.close()
        stop_all(processes)
        proxy.close()
