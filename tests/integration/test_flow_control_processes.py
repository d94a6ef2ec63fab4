"""Connector limits hold across processes: real ``fulfill serve`` processes (one ``--role api``,
two ``--role worker``) on one database, every tool call of both workers going through one proxy in
this test process that holds each call 0.3 s (a slow target) and records when it arrived.

With a limit of 5 calls per second and 2 at once, the target never sees more than 5 calls in any
one-second window nor more than 2 at once, although both workers are calling; then the limits are
changed through the API (to 2 per second, 1 at once) and the workers apply them without a
restart. Runs on both backends: on SQLite the three processes share one database file, and an
admission takes SQLite's write lock, which is as exclusive across processes as PostgreSQL's row
lock.

Two views are checked. The gate's own record (when each call was sent, stored by the workers):
never more than the limit within ``1 s + margin``, exactly. And the target's (when each call
arrived at the proxy): never more than the limit within 1 s. Between the two lies the time a call
takes from leaving the worker to being seen by the proxy; on this shared two-core machine, with
three service processes, PostgreSQL and the proxy's own threads competing, that has been measured
at up to about 115 ms, so the test runs with a margin of 0.15 s (the default is 0.05 s). A
warm-up without limits comes first, so that a fresh process's first connections are not measured.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from fulfill.client import default_limits
from fulfill.config import Settings
from fulfill.store.tables import connector_calls, connector_waiters
from fulfill.tokens import mint_token
from fulfill_tools.launch import free_port, start_serve, stop_all
from tests.support.harness import ALL_SCOPES, TERMINAL, TEST_SECRET, colleague_headers, fresh_database_url
from tests.support.http_doubles import FaultyProxy, most_in_any_window, wait_for
from tests.support.topology import WORKERS

pytestmark = pytest.mark.slow

MARGIN = 0.15


class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.proxy = FaultyProxy()
        self.proxy.state.latency = 0.3
        self.api_port = free_port()
        self.worker_ports = [free_port() for _ in range(WORKERS)]  # deploy/compose.yaml's too
        self.env = {
            **os.environ,
            "FULFILL_DATABASE_URL": fresh_database_url(tmp_path),
            "FULFILL_JWT_SECRET": TEST_SECRET,
            "FULFILL_GATEWAY_URL": self.proxy.url,
            # Small enough that neither worker takes every queued execution: both call the target.
            "FULFILL_WORKER_CONCURRENCY": "4",
            "FULFILL_CONNECTOR_RATE_MARGIN_SECONDS": str(MARGIN),
            "FULFILL_LOG_LEVEL": "WARNING",
        }
        self.proxy.upstream = f"http://127.0.0.1:{self.api_port}/mcp"
        self.log = tmp_path / "cluster.log"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        # The api process migrates first; the workers find the database at head.
        self.processes.append(self._serve("api", self.api_port))
        for index, port in enumerate(self.worker_ports):
            self.processes.append(self._serve("worker", port, f"flow-worker-{index}"))

    def _serve(self, role: str, port: int, executor: str = "flow-api") -> subprocess.Popen[bytes]:
        env = {**self.env, "FULFILL_ROLE": role, "FULFILL_PORT": str(port), "FULFILL_EXECUTOR_ID": executor}
        return start_serve(env, self.log)

    def client(self, tenant: str = "t1") -> httpx.Client:
        token = mint_token(Settings(jwt_secret=TEST_SECRET), tenant_id=tenant, scopes=ALL_SCOPES)
        return httpx.Client(
            limits=default_limits(),
            base_url=f"http://127.0.0.1:{self.api_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )

    def calls_made_by(self, port: int) -> float:
        """The calls to internal.create_task this worker made so far (0 before its first: a
        warm-up's few executions may all be taken by the other worker)."""
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("fulfill_tool_calls_total{") and 'tool="internal.create_task"' in line
        )

    def sends(self) -> list[float]:
        """When the gate recorded each call to ``internal`` as sent (the database's clock)."""
        engine = create_engine(self.env["FULFILL_DATABASE_URL"])
        try:
            with engine.connect() as conn:
                query = select(connector_calls.c.dispatched_epoch).where(
                    connector_calls.c.name == "internal", connector_calls.c.dispatched_epoch.is_not(None)
                )
                ordered = query.order_by(connector_calls.c.dispatched_epoch)
                return [float(value) for value in conn.execute(ordered).scalars()]
        finally:
            engine.dispose()

    def stop(self) -> None:
        stop_all(self.processes)
        self.proxy.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def wide_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Workers that each take up to 8 executions: a backlog of 12 waits at the gate in both."""
    running = Cluster(tmp_path)
    running.env["FULFILL_WORKER_CONCURRENCY"] = "8"
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _warm_up(cluster: Cluster, client: httpx.Client, count: int) -> None:
    """Run ``count`` executions at a time until each worker has made calls: which worker takes a
    queued execution is a race, and a worker's first calls are slow (connections, MCP sessions)."""
    for round_ in range(5):
        assert {o["status"] for o in _run(client, count, f"warm-up {round_}")} == {"SUCCEEDED"}
        if all(cluster.calls_made_by(port) > 0 for port in cluster.worker_ports):
            return
    raise AssertionError("a worker took none of 5 rounds of warm-up executions")


def _run(client: httpx.Client, count: int, label: str) -> list[dict[str, Any]]:
    return _wait(client, _approve(client, count, label))


def _approve(client: httpx.Client, count: int, label: str) -> list[str]:
    ids = []
    for index in range(count):
        created = client.post(
            "/intents",
            json={
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": f"{label} {index}"},
            },
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["action_intent_id"])
    for intent_id in ids:
        assert (
            client.post(f"/intents/{intent_id}/approve", headers=colleague_headers(client)).status_code == 202
        )
    return ids


def _wait(client: httpx.Client, ids: list[str]) -> list[dict[str, Any]]:
    def outcome(intent_id: str) -> dict[str, Any] | None:
        body = client.get(f"/executions/{intent_id}/status").json()
        return body if body.get("status") in TERMINAL and "attempt_count" in body else None

    return [wait_for(lambda intent_id=intent_id: outcome(intent_id), timeout=120) for intent_id in ids]


def test_limits_hold_across_two_worker_processes_and_change_without_a_restart(cluster: Cluster) -> None:
    proxy = cluster.proxy
    with cluster.client() as client:
        # Warm up, without limits: a fresh process's first calls take longer to reach the target
        # (connections, first MCP sessions) than the rate window's margin allows for.
        _warm_up(cluster, client, 8)
        with proxy.state.lock:
            proxy.state.calls.clear()
            proxy.state.max_in_flight = 0
        warm = [cluster.calls_made_by(port) for port in cluster.worker_ports]

        limits = {"rate_per_second": 5, "concurrency": 2}
        assert client.put("/admin/connectors/internal/limits", json=limits).status_code == 200
        outcomes = _run(client, 30, "limited")
        assert {outcome["status"] for outcome in outcomes} == {"SUCCEEDED"}
        arrivals = [arrived for arrived, _ in proxy.state.calls]
        assert len(arrivals) == 30
        sends = cluster.sends()
        assert len(sends) == 30
        assert most_in_any_window(sends, 1.0 + MARGIN) <= 5
        # At the target: a call reaches it some time after the gate let it go, and on a loaded
        # machine that delay varies between calls by up to the margin, so two calls the gate spaced
        # a second apart can arrive a little less than a second apart.
        assert most_in_any_window(arrivals, 1.0 - MARGIN) <= 5
        assert proxy.state.max_in_flight <= 2
        assert max(arrivals) - min(arrivals) >= 5.0  # 30 calls at 5 per second
        # Both workers made calls: the limits held across processes, not within one.
        made = [
            cluster.calls_made_by(port) - before
            for port, before in zip(cluster.worker_ports, warm, strict=True)
        ]
        assert all(count > 0 for count in made), made
        assert sum(made) == 30

        # Changed through the api process; the workers apply it at their next admission.
        with proxy.state.lock:
            proxy.state.calls.clear()
            proxy.state.max_in_flight = 0
        limits = {"rate_per_second": 2, "concurrency": 1}
        assert client.put("/admin/connectors/internal/limits", json=limits).status_code == 200
        outcomes = _run(client, 8, "changed")
        assert {outcome["status"] for outcome in outcomes} == {"SUCCEEDED"}
        arrivals = [arrived for arrived, _ in proxy.state.calls]
        assert len(arrivals) == 8
        assert most_in_any_window(cluster.sends()[30:], 1.0 + MARGIN) <= 2
        assert most_in_any_window(arrivals, 1.0 - MARGIN) <= 2  # the same allowance as above
        assert proxy.state.max_in_flight == 1
        assert max(arrivals) - min(arrivals) >= 3.0  # 8 calls at 2 per second


def test_tenants_take_turns_across_worker_processes(wide_cluster: Cluster) -> None:
    """``internal`` at 2 calls per second; tenant A's 12 executions wait at the gate in both
    workers; tenant B's single one, approved after them, is served within a few turns, not after
    A's backlog: the turns come from the line in the database, which every worker reads."""
    cluster = wide_cluster
    with cluster.client("tenant-a") as a, cluster.client("tenant-b") as b:
        _warm_up(cluster, a, 4)
        with cluster.proxy.state.lock:
            cluster.proxy.state.calls.clear()
        assert (
            a.put(
                "/admin/connectors/internal/limits", json={"rate_per_second": 2, "concurrency": None}
            ).status_code
            == 200
        )
        warm = [cluster.calls_made_by(port) for port in cluster.worker_ports]
        a_ids = _approve(a, 12, "backlog")
        wait_for(lambda: len(cluster.proxy.state.calls) >= 1, timeout=60)  # A's backlog is in line
        b_ids = _approve(b, 1, "single")
        outcomes = _wait(b, b_ids) + _wait(a, a_ids)
        made = [
            cluster.calls_made_by(port) - before
            for port, before in zip(cluster.worker_ports, warm, strict=True)
        ]
    assert {outcome["status"] for outcome in outcomes} == {"SUCCEEDED"}
    assert all(count > 0 for count in made), made  # both workers called: the line spans processes
    engine = create_engine(cluster.env["FULFILL_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(connector_calls.c.tenant_id, connector_calls.c.admitted_epoch).where(
                    connector_calls.c.name == "internal", connector_calls.c.tenant_id.is_not(None)
                )
            ).all()
            unfinished = conn.execute(
                select(connector_calls.c.call_id).where(connector_calls.c.finished_epoch.is_(None))
            ).all()
            still_waiting = conn.execute(select(connector_waiters.c.waiter_id)).all()
    finally:
        engine.dispose()
    order = [tenant for tenant, _ in sorted(rows, key=lambda row: row[1])]
    assert sorted(order) == ["tenant-a"] * 12 + ["tenant-b"]  # one admission per call, no more
    assert unfinished == []
    assert still_waiting == []
    after_b = order[order.index("tenant-b") + 1 :]
    assert after_b.count("tenant-a") >= 6, order
