"""Chaos: real `fulfill serve` processes sharing one database, one of them killed with SIGKILL at a
random moment and started again (same port, same executor id, as a supervisor would).

Afterwards every intent is terminal, each wrote exactly one task, each attempt has one outcome and
one signal, and no attempt is left QUEUED or RUNNING.

* PostgreSQL: one ``--role api`` process and three ``--role worker`` processes, 300 intents.
* SQLite: two processes (``all`` and ``worker``) on one database file, 100 intents.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from fulfill.client import default_limits
from fulfill.config import Settings
from fulfill.store.tables import (
    execution_attempts,
    execution_outcomes,
    execution_signals,
    internal_tasks,
)
from fulfill.tokens import mint_token
from fulfill_tools.launch import free_port, kill, start_serve, stop_all
from tests.support import postgres
from tests.support.harness import ALL_SCOPES, TEST_SECRET, colleague_headers, fresh_database_url
from tests.support.http_doubles import wait_for

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    database_url: str
    log: Path
    env: dict[str, str]
    processes: dict[str, tuple[int, str, subprocess.Popen[bytes]]] = field(default_factory=dict)

    def start(self, name: str, role: str, port: int | None = None) -> int:
        port = port or free_port()
        env = {
            **self.env,
            "FULFILL_ROLE": role,
            "FULFILL_PORT": str(port),
            "FULFILL_EXECUTOR_ID": f"chaos-{name}",
        }
        self.processes[name] = (port, role, start_serve(env, self.log))
        return port

    def kill(self, name: str) -> None:
        kill(self.processes[name][2])

    def restart(self, name: str) -> None:
        port, role, _process = self.processes[name]
        self.start(name, role, port)

    def stop(self) -> None:
        stop_all(process for _port, _role, process in self.processes.values())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": fresh_database_url(tmp_path),
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_RETRY_BACKOFF_BASE_SECONDS": "0.05",
        "FULFILL_OUTBOX_POLL_SECONDS": "0.2",
        "FULFILL_RECONCILE_INTERVAL_SECONDS": "2",
        "FULFILL_RECONCILE_GRACE_SECONDS": "5",
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    running = Cluster(env["FULFILL_DATABASE_URL"], tmp_path / "cluster.log", env)
    yield running
    running.stop()


def _run(cluster: Cluster, *, api: str, victim: str, intents: int) -> None:
    port = cluster.processes[api][0]
    token = mint_token(Settings(jwt_secret=TEST_SECRET), tenant_id="t1", scopes=ALL_SCOPES)
    client = httpx.Client(
        limits=default_limits(),
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    )
    kill_after = random.Random().randint(intents // 10, intents // 2)

    def submit(index: int) -> str:
        created = client.post(
            "/intents",
            json={
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": f"chaos {index}"},
            },
        )
        assert created.status_code == 201, created.text
        intent_id = str(created.json()["action_intent_id"])
        assert (
            client.post(f"/intents/{intent_id}/approve", headers=colleague_headers(client)).status_code == 202
        )
        return intent_id

    engine = create_engine(cluster.database_url)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(submit, range(kill_after)))
            cluster.kill(victim)  # mid-flight: approvals relayed, workflows queued and running
            ids += list(pool.map(submit, range(kill_after, intents)))
        cluster.restart(victim)

        def finished() -> bool:
            with engine.connect() as conn:
                active = conn.execute(
                    select(func.count())
                    .select_from(execution_attempts)
                    .where(execution_attempts.c.status.in_(["QUEUED", "RUNNING"]))
                ).scalar_one()
                outcomes = conn.execute(select(func.count()).select_from(execution_outcomes)).scalar_one()
            return active == 0 and outcomes >= intents

        wait_for(finished, timeout=240, interval=0.5)
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(text("SELECT status, count(*) FROM execution_attempts GROUP BY status")).all()
            )
            per_intent = {
                table.name: dict(
                    conn.execute(
                        select(table.c.action_intent_id, func.count()).group_by(table.c.action_intent_id)
                    ).all()
                )
                for table in (internal_tasks, execution_outcomes, execution_signals)
            }
    finally:
        engine.dispose()
        client.close()
    assert statuses == {"SUCCEEDED": intents}, statuses
    for table, counts in per_intent.items():
        assert set(counts) == set(ids), table
        assert set(counts.values()) == {1}, table  # one task, one outcome, one signal per intent


@postgres.postgres_only
def test_chaos_three_workers_on_postgresql_one_killed(cluster: Cluster) -> None:
    cluster.start("api", "api")
    for index in range(3):
        cluster.start(f"worker-{index}", "worker")
    _run(cluster, api="api", victim=f"worker-{random.Random().randrange(3)}", intents=300)


@postgres.sqlite_only("two processes on one SQLite file; PostgreSQL has its own chaos test")
def test_chaos_two_processes_on_one_sqlite_file_one_killed(cluster: Cluster) -> None:
    cluster.start("all", "all")
    cluster.start("worker", "worker")
    _run(cluster, api="all", victim="worker", intents=100)
