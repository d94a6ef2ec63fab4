"""The retention pass (``engine/retention.py``): DBOS's rows of finished workflows whose intent is
at rest are deleted after ``FULFILL_WORKFLOW_RETENTION_DAYS``, and nothing the engine may still
need is. fulfill's own records answer as before; a deleted workflow started again writes nothing.
SQLite, and PostgreSQL on its pass, through a real service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dbos import DBOS
from dbos import _dbos as dbos_internals
from sqlalchemy.exc import OperationalError

from fulfill.domain.retention import FINISHED_STATUSES, WORKFLOW_NAMES
from fulfill.engine.intake import request_for
from fulfill.engine.reconciler import reconcile_once
from fulfill.engine.retention import RETENTION_LOCK, delete_finished_workflows
from fulfill.engine.workflow import start_execution
from fulfill.store import executions
from fulfill.store.db import Database
from fulfill.store.sql_store import SqlStore
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for
from tests.support.metrics import delta, scrape
from tests.support.outages import database_down

# A retention of about 0.9 s: a workflow finished a second ago is old enough.
RETENTION_DAYS = 1e-5
# The thread of a worker's retention pass (``engine/periodic.PeriodicPass``).
RETENTION_THREAD = "fulfill-workflow-retention"
DBOS_TABLES = ("workflow_status", "workflow_input", "workflow_output", "operation_outputs")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path,
        workflow_retention_days=RETENTION_DAYS,
        reconcile_grace_seconds=0,
        compensation_retry_base_seconds=0,
    )
    running = Harness(settings).start()
    yield running
    running.stop()


def _dbos_rows(workflow_ids: list[str]) -> dict[str, int]:
    """DBOS's rows of these workflows, by table: the status row, inputs, output, step checkpoints."""
    sys_db = dbos_internals._get_dbos_instance()._sys_db
    with sys_db.engine.connect() as conn:
        return {
            name: int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table := getattr(sys_db.tables, name))
                    .where(table.c.workflow_uuid.in_(workflow_ids))
                ).scalar_one()
            )
            for name in DBOS_TABLES
        }


def _attempt(harness: Harness, intent_id: str) -> Any:
    with harness.db.read() as conn:
        return executions.get_attempt(conn, "t1", "acc-1", intent_id)


def _ledger(harness: Harness, intent_id: str) -> list[str]:
    with harness.db.read() as conn:
        return [entry.event_type for entry in executions.list_ledger(conn, "t1", intent_id)]


def _settled() -> None:
    """Every workflow of fulfill's has ended in DBOS's tables too. What a test waits for (the
    outcome, the compensation) is fulfill's commit; DBOS checkpoints that step and writes the
    workflow's end (the time the pass's cutoff compares) after it, and a loaded machine can take
    longer over that than the margin below."""
    sys_db = dbos_internals._get_dbos_instance()._sys_db
    status = sys_db.tables.workflow_status

    def unfinished() -> int:
        with sys_db.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(status)
                    .where(status.c.name.in_(WORKFLOW_NAMES), status.c.status.not_in(FINISHED_STATUSES))
                ).scalar_one()
            )

    wait_for(lambda: unfinished() == 0, timeout=30)


def _past_retention() -> None:
    """Every workflow ended, then old enough for the pass."""
    _settled()
    time.sleep(RETENTION_DAYS * 86_400 + 0.2)


def test_finished_executions_lose_their_dbos_rows_and_keep_their_records(service: Harness) -> None:
    rt = service.service.runtime
    with service.client() as client:
        done = [service.run_task(client) for _ in range(3)]
        ids = [status["action_intent_id"] for status in done]
        workflows = [_attempt(service, intent_id).workflow_id for intent_id in ids]
        _settled()
        before = _dbos_rows(workflows)
        assert before["workflow_status"] == 3
        assert before["operation_outputs"] >= 9
        ledgers = {intent_id: _ledger(service, intent_id) for intent_id in ids}
        _past_retention()
        assert delete_finished_workflows(rt) == 3
        assert _dbos_rows(workflows) == dict.fromkeys(DBOS_TABLES, 0)
        assert all(DBOS.get_workflow_status(workflow_id) is None for workflow_id in workflows)
        # What a client, an operator and an auditor read is fulfill's own, and unchanged.
        for status in done:
            intent_id = status["action_intent_id"]
            assert client.get(f"/executions/{intent_id}/status").json() == status
            assert _ledger(service, intent_id) == ledgers[intent_id]
            assert service.task_rows(intent_id) == 1
        assert reconcile_once(rt) == 0
    assert delete_finished_workflows(rt) == 0  # nothing left to delete


def test_a_deleted_workflow_started_again_writes_nothing(service: Harness) -> None:
    """Exactly once does not rest on DBOS's rows: the same workflow id started after its rows are
    gone runs StartExecution again, which finds the attempt finished and stops."""
    rt = service.service.runtime
    with service.client() as client:
        status = service.run_task(client)
        intent_id = status["action_intent_id"]
        attempt = _attempt(service, intent_id)
        _past_retention()
        assert delete_finished_workflows(rt) == 1
        start_execution(request_for(attempt))
        finished = wait_for(
            lambda: (s := DBOS.get_workflow_status(attempt.workflow_id)) and s.status == "SUCCESS"
        )
        assert finished
        assert client.get(f"/executions/{intent_id}/status").json() == status
    assert service.task_rows(intent_id) == 1
    assert service.outcome_rows(intent_id) == 1
    assert _ledger(service, intent_id).count("ACTION_EXECUTED") == 1


def test_an_active_attempts_failed_workflow_is_kept_until_it_is_reconciled(
    service: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A workflow in ERROR whose attempt is still QUEUED is what the reconciler forks from its
    failed step: kept, however old, while newer finished ones around it go (batches of one, so
    the kept one is passed over, not read again and again)."""
    rt = service.service.runtime
    real = executions.begin_attempt

    with service.client() as client:
        monkeypatch.setattr(executions, "begin_attempt", database_down)
        stuck = service.create_intent(client)["action_intent_id"]
        service.approve(client, stuck)
        stuck_workflow = wait_for(lambda: (a := _attempt(service, stuck)) and a.workflow_id)
        wait_for(lambda: (s := DBOS.get_workflow_status(stuck_workflow)) and s.status == "ERROR", timeout=30)
        monkeypatch.setattr(executions, "begin_attempt", real)
        done = [service.run_task(client)["action_intent_id"] for _ in range(3)]
        _past_retention()
        with caplog.at_level(logging.INFO, logger="fulfill.engine.retention"):
            assert delete_finished_workflows(rt, batch=1) == 3
        assert "deleted 3 finished workflows" in caplog.text
        assert "kept 1 (their intent has work outstanding" in caplog.text
        assert DBOS.get_workflow_status(stuck_workflow).status == "ERROR"
        assert _attempt(service, stuck).status.value == "QUEUED"
        assert reconcile_once(rt) == 1  # forked from its failed step
        status = service.wait_terminal(client, stuck)
        fork = _attempt(service, stuck).workflow_id
        assert fork == f"{stuck_workflow}~1"
        _past_retention()
        # Now at rest: the failed workflow and its fork go too.
        assert delete_finished_workflows(rt) == 2
    assert _dbos_rows([stuck_workflow, fork]) == dict.fromkeys(DBOS_TABLES, 0)
    assert status["status"] == "SUCCEEDED"
    assert service.task_rows(stuck) == 1
    assert all(service.task_rows(intent_id) == 1 for intent_id in done)


def test_two_passes_at_once_delete_everything_once_and_count_it_once(service: Harness) -> None:
    """Two workers' passes over the same backlog (here two threads, each with its own connections
    to both databases), in small batches: every workflow goes, no pass fails, and one pass does it
    all: the other, started while it runs or after it, finds the work held or done. Before the
    passes took turns, both listed the same rows, and a row deleted by both was counted by both."""
    rt = service.service.runtime
    with service.client() as client:
        ids = [service.run_task(client)["action_intent_id"] for _ in range(8)]
    workflows = [_attempt(service, intent_id).workflow_id for intent_id in ids]
    _past_retention()
    before = scrape(service.url)
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(lambda _: delete_finished_workflows(rt, batch=2), range(2)))
    assert sorted(counts) == [0, len(workflows)]
    assert delta(before, scrape(service.url), "fulfill_workflows_deleted_total") == len(workflows)
    assert _dbos_rows(workflows) == dict.fromkeys(DBOS_TABLES, 0)
    assert all(service.task_rows(intent_id) == 1 for intent_id in ids)


@pytest.mark.parametrize("holder", ["this process's store", "another process's connection"])
def test_a_pass_while_another_workers_pass_runs_is_skipped(service: Harness, holder: str) -> None:
    """While a pass holds the retention's lock, another worker's pass deletes nothing and says so
    (0); once it is given back, the next pass deletes. On PostgreSQL the lock is an advisory lock of
    the database, so a worker in another process (here: another engine, another session) holds it
    alike; on SQLite (one writer process per file set) it is the process's own."""
    if holder == "another process's connection" and service.db.is_sqlite:
        pytest.skip("on SQLite one process writes a file set: the lock is the process's own")
    rt = service.service.runtime
    with service.client() as client:
        ids = [service.run_task(client)["action_intent_id"] for _ in range(3)]
    workflows = [_attempt(service, intent_id).workflow_id for intent_id in ids]
    _past_retention()
    other = Database(service.settings.database_url) if holder == "another process's connection" else None
    try:
        store = SqlStore(other) if other is not None else rt.store
        with store.exclusive(RETENTION_LOCK) as held:
            assert held
            assert delete_finished_workflows(rt) == 0
            assert _dbos_rows(workflows)["workflow_status"] == len(workflows)
        assert delete_finished_workflows(rt) == len(workflows)
    finally:
        if other is not None:
            other.dispose()
    assert _dbos_rows(workflows) == dict.fromkeys(DBOS_TABLES, 0)


def test_a_pass_stops_between_batches_when_its_process_stops(service: Harness) -> None:
    """A worker stopping mid-pass finishes the batch it is in and deletes no more; the next pass
    (of any worker) deletes the rest."""
    rt = service.service.runtime
    with service.client() as client:
        ids = [service.run_task(client)["action_intent_id"] for _ in range(3)]
    workflows = [_attempt(service, intent_id).workflow_id for intent_id in ids]
    _past_retention()
    asked: list[int] = []

    def stopping_after_one_batch() -> bool:
        asked.append(1)
        return len(asked) > 1

    assert delete_finished_workflows(rt, stopping=stopping_after_one_batch, batch=1) == 1
    assert _dbos_rows(workflows)["workflow_status"] == 2
    assert delete_finished_workflows(rt) == 2
    assert _dbos_rows(workflows) == dict.fromkeys(DBOS_TABLES, 0)


def test_a_compensated_execution_loses_both_workflows(service: Harness) -> None:
    rt = service.service.runtime
    with service.client() as client:
        intent_id = service.run_task(client)["action_intent_id"]
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
        compensated = service.wait_compensated(client, intent_id)
        _past_retention()
        assert delete_finished_workflows(rt) == 2
        assert client.get(f"/executions/{intent_id}/status").json() == compensated
    execution = _attempt(service, intent_id).workflow_id
    compensation = f"compensate-t1/{intent_id}-a1-c1"
    assert _dbos_rows([execution, compensation]) == dict.fromkeys(DBOS_TABLES, 0)


def test_a_store_outage_deletes_nothing(service: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without fulfill's answer nothing is deleted: the pass fails, and the next one deletes."""
    rt = service.service.runtime
    with service.client() as client:
        intent_id = service.run_task(client)["action_intent_id"]
    workflow = _attempt(service, intent_id).workflow_id
    _past_retention()
    real = executions.intents_with_work_outstanding

    monkeypatch.setattr(executions, "intents_with_work_outstanding", database_down)
    with pytest.raises(OperationalError):
        delete_finished_workflows(rt)
    assert _dbos_rows([workflow])["workflow_status"] == 1
    monkeypatch.setattr(executions, "intents_with_work_outstanding", real)
    assert delete_finished_workflows(rt) == 1


def test_no_retention_keeps_every_workflow(tmp_path: Path) -> None:
    running = Harness(make_settings(tmp_path, workflow_retention_days=0)).start()
    try:
        with running.client() as client:
            intent_id = running.run_task(client)["action_intent_id"]
        workflow = _attempt(running, intent_id).workflow_id
        assert delete_finished_workflows(running.service.runtime) == 0
        assert _dbos_rows([workflow])["workflow_status"] == 1
    finally:
        running.stop()


def test_workers_run_the_pass_on_their_own(tmp_path: Path) -> None:
    """Wired into the service: a worker deletes on its interval, and counts what it deleted."""
    settings = make_settings(
        tmp_path, workflow_retention_days=RETENTION_DAYS, workflow_retention_interval_seconds=0.5
    )
    running = Harness(settings).start()
    try:
        before = scrape(running.url)
        with running.client() as client:
            intent_id = running.run_task(client)["action_intent_id"]
        workflow = _attempt(running, intent_id).workflow_id
        wait_for(lambda: _dbos_rows([workflow])["workflow_status"] == 0, timeout=30)
        # The pass counts a batch once DBOS's delete has returned, a moment after the rows went.
        wait_for(lambda: delta(before, scrape(running.url), "fulfill_workflows_deleted_total") == 1)
        with running.client() as client:
            assert client.get(f"/executions/{intent_id}/status").json()["status"] == "SUCCEEDED"
    finally:
        running.stop()


def test_an_api_process_runs_no_pass(tmp_path: Path) -> None:
    """Only processes that run workers delete: an api process, which runs no workflow, has no
    retention thread, whatever its settings; a worker has one."""
    settings = make_settings(
        tmp_path, role="api", workflow_retention_days=RETENTION_DAYS, workflow_retention_interval_seconds=0.5
    )
    running = Harness(settings).start()
    try:
        assert RETENTION_THREAD not in {thread.name for thread in threading.enumerate()}
    finally:
        running.stop()
    worker = Harness(make_settings(tmp_path / "worker", workflow_retention_days=RETENTION_DAYS)).start()
    try:
        assert RETENTION_THREAD in {thread.name for thread in threading.enumerate()}
    finally:
        worker.stop()
