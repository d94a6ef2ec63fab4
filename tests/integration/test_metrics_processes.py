"""``/metrics`` across processes: real ``fulfill serve`` processes (one ``--role api``, two
``--role worker``) on one database, each scraped on its own port, as Prometheus would.

Each process counts only what it did itself, so the per-process counters of all of them add up to
the whole (nothing counted twice, nothing lost), and the api process, which runs no workflow,
counts no execution. The store gauges are read from the shared database by every process, so all
three report the same value: aggregated with max, never sum.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fulfill.client import default_limits
from fulfill.config import Settings
from fulfill.tokens import mint_token
from fulfill_tools.launch import free_port, start_serve, stop_all
from tests.support.harness import ALL_SCOPES, TERMINAL, TEST_SECRET, colleague_headers, fresh_database_url
from tests.support.http_doubles import wait_for
from tests.support.metrics import Samples, scrape, value
from tests.support.topology import WORKERS

pytestmark = pytest.mark.slow

TENANT = "tenant-procs"


class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.api_port = free_port()
        self.worker_ports = [free_port() for _ in range(WORKERS)]  # deploy/compose.yaml's too
        self.env = {
            **os.environ,
            "FULFILL_DATABASE_URL": fresh_database_url(tmp_path),
            "FULFILL_JWT_SECRET": TEST_SECRET,
            "FULFILL_WORKER_CONCURRENCY": "4",
            "FULFILL_METRICS_CACHE_SECONDS": "0",
            "FULFILL_LOG_LEVEL": "WARNING",
        }
        self.log = tmp_path / "cluster.log"
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def ports(self) -> list[int]:
        return [self.api_port, *self.worker_ports]

    def start(self) -> None:
        self.processes.append(self._serve("api", self.api_port, "metrics-api"))
        for index, port in enumerate(self.worker_ports):
            self.processes.append(self._serve("worker", port, f"metrics-worker-{index}"))

    def _serve(self, role: str, port: int, executor: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "FULFILL_ROLE": role, "FULFILL_PORT": str(port), "FULFILL_EXECUTOR_ID": executor}
        return start_serve(env, self.log)

    def client(self) -> httpx.Client:
        token = mint_token(Settings(jwt_secret=TEST_SECRET), tenant_id=TENANT, scopes=ALL_SCOPES)
        return httpx.Client(
            limits=default_limits(),
            base_url=f"http://127.0.0.1:{self.api_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )

    def scrape(self, port: int) -> Samples:
        return scrape(f"http://127.0.0.1:{port}")

    def stop(self) -> None:
        stop_all(self.processes)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _run(client: httpx.Client, count: int) -> None:
    ids = []
    for index in range(count):
        created = client.post(
            "/intents",
            json={
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": f"m {index}"},
            },
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["action_intent_id"])
    for intent_id in ids:
        assert (
            client.post(f"/intents/{intent_id}/approve", headers=colleague_headers(client)).status_code == 202
        )

    def finished(intent_id: str) -> bool:
        body = client.get(f"/executions/{intent_id}/status").json()
        return body.get("status") in TERMINAL and "attempt_count" in body

    for intent_id in ids:
        wait_for(lambda intent_id=intent_id: finished(intent_id), timeout=120)


def test_counters_add_up_over_processes_and_store_gauges_agree(cluster: Cluster) -> None:
    succeeded = {"status": "SUCCEEDED", "error_class": ""}
    with cluster.client() as client:
        _run(client, 12)
        per_process = {port: cluster.scrape(port) for port in cluster.ports}
        # The api process ran no workflow: it counted no execution, no step and no connector call.
        api = per_process[cluster.api_port]
        assert value(api, "fulfill_executions_total", **succeeded) == 0
        assert value(api, "fulfill_connector_calls_total", connector="internal", result="success") == 0
        # The workers' own counts add up to every execution, each counted once.
        workers = [per_process[port] for port in cluster.worker_ports]
        assert sum(value(s, "fulfill_executions_total", **succeeded) for s in workers) == 12
        assert (
            sum(
                value(s, "fulfill_connector_calls_total", connector="internal", result="success")
                for s in workers
            )
            == 12
        )
        assert (
            sum(
                value(s, "fulfill_step_seconds_count", step="RecordOutcome", result="success")
                for s in workers
            )
            == 12
        )

        # The switches, changed through the api process, read the same from every process.
        stopped = client.put(
            f"/admin/tenants/{TENANT}/execution",
            json={"execution_enabled": False, "disabled_action_types": ["CREATE_INTERNAL_NOTE"]},
        )
        assert stopped.status_code == 200, stopped.text
        switched = client.put("/admin/kill-switches", json={"global_stop": True, "disabled_action_types": []})
        assert switched.status_code == 200, switched.text
        gauges = [cluster.scrape(port) for port in cluster.ports]
        for name, labels, expected in (
            ("fulfill_kill_switch_global_stop", {}, 1),
            ("fulfill_kill_switch_tenants_stopped", {}, 1),
            ("fulfill_kill_switch_disabled_action_types", {"scope": "tenant"}, 1),
            ("fulfill_attempts_past_budget", {"state": "RUNNING"}, 0),
            ("fulfill_outbox_backlog", {}, 0),
        ):
            assert [value(s, name, **labels) for s in gauges] == [expected] * 3, name
        assert (
            client.put(
                "/admin/kill-switches", json={"global_stop": False, "disabled_action_types": []}
            ).status_code
            == 200
        )
        off = [cluster.scrape(port) for port in cluster.ports]
    assert [value(s, "fulfill_kill_switch_global_stop") for s in off] == [0, 0, 0]
