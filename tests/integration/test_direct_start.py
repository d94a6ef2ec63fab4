"""Direct start: an approval accepted by a worker with a free slot starts its execution at once,
without waiting for the queue; the queue keeps the overflow; one attempt is one workflow however
many times, and however, it is started (engine/direct_start.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from dbos import DBOS

from fulfill import __version__
from fulfill.domain.execution import request_for
from fulfill.domain.models import GlobalExecutionConfig
from fulfill.engine import workflow
from fulfill.engine.direct_start import DirectStarts, dbos_queue_waiting
from fulfill.engine.reconciler import reconcile_once
from fulfill.engine.workflow import EXECUTION_QUEUE
from fulfill.store import executions, killswitches
from fulfill.usecases import intents as intent_usecases
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for

# The queue looks for work this seldom in these tests: an execution that finishes well before
# it did not wait for it (and one that went through the queue says so in its DBOS status).
SLOW_POLL = 10.0


def _service(tmp_path: Path, **overrides: Any) -> Harness:
    settings = make_settings(tmp_path, reconcile_grace_seconds=0, **overrides)
    return Harness(settings).start()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Harness]:
    running = _service(tmp_path, queue_poll_seconds=SLOW_POLL)
    yield running
    running.stop()


@pytest.fixture
def single_slot(tmp_path: Path) -> Iterator[Harness]:
    # One slot, and a queue that polls as usual: while the test holds the slot, the queue (which
    # counts it) leaves the execution ENQUEUED.
    running = _service(tmp_path, worker_concurrency=1)
    yield running
    running.stop()


def _slots(harness: Harness) -> DirectStarts:
    slots = harness.service.runtime.direct_starts
    assert slots is not None
    return slots


def _attempt(harness: Harness, intent_id: str) -> Any:
    with harness.db.read() as conn:
        return executions.get_attempt(conn, "t1", "acc-1", intent_id)


def _workflow(harness: Harness, intent_id: str) -> Any:
    attempt = _attempt(harness, intent_id)
    return None if attempt is None else DBOS.get_workflow_status(attempt.workflow_id)


def _ended(harness: Harness, intent_id: str) -> Any:
    """The attempt's DBOS workflow once DBOS has recorded its end (None before)."""
    row = _workflow(harness, intent_id)
    return row if row is not None and row.status == "SUCCESS" else None


def _approved(harness: Harness, client: Any) -> str:
    intent_id: str = harness.create_intent(client)["action_intent_id"]
    harness.approve(client, intent_id)
    return intent_id


def test_an_approved_intent_runs_without_waiting_for_the_queue(service: Harness) -> None:
    with service.client() as client:
        intent_id = _approved(service, client)
        status = service.wait_terminal(client, intent_id)
    assert status["status"] == "SUCCEEDED"
    # DBOS records the workflow's end just after its last step has recorded the outcome.
    started = wait_for(lambda: _ended(service, intent_id))
    assert started.dequeued_at is None  # started by the approval, not dequeued
    # Its row names no queue: no second commit of DBOS's file after the start (a recovery of its
    # executor names the execution queue first: see the test below).
    assert started.queue_name is None
    assert service.task_rows(intent_id) == 1
    # Its slot is handed back when its future completes, a moment after DBOS recorded its end.
    wait_for(lambda: _slots(service).held() == 0)


def test_a_full_worker_leaves_the_execution_on_the_queue_which_counts_the_direct_slots(
    single_slot: Harness,
) -> None:
    slots = _slots(single_slot)
    assert slots.take("held-by-the-test")  # the one slot is busy
    assert not slots.take("another")
    with single_slot.client() as client:
        intent_id = _approved(single_slot, client)
        queued = _workflow(single_slot, intent_id)
        assert queued is not None
        assert queued.status == "ENQUEUED"
        assert queued.queue_name == EXECUTION_QUEUE
        slots.release("held-by-the-test")
        status = single_slot.wait_terminal(client, intent_id, timeout=30)
    assert status["status"] == "SUCCEEDED"
    assert single_slot.task_rows(intent_id) == 1
    assert _workflow(single_slot, intent_id).dequeued_at is not None  # it went through the queue


def test_an_execution_approved_after_an_overflow_does_not_overtake_the_queued_ones(tmp_path: Path) -> None:
    # One slot; the queue polls seldom, so a slot freed by the test stays free until the next
    # approval: before, that approval took it and ran ahead of the execution waiting on the queue.
    harness = _service(tmp_path, worker_concurrency=1, queue_poll_seconds=1.0)
    try:
        slots = _slots(harness)
        assert slots.take("held-by-the-test")
        with harness.client() as client:
            first = _approved(harness, client)  # the process is full: it waits on the queue
            assert _workflow(harness, first).status == "ENQUEUED"
            slots.release("held-by-the-test")
            second = _approved(harness, client)  # a slot is free, but `first` waits for it
            assert harness.wait_terminal(client, first)["status"] == "SUCCEEDED"
            assert harness.wait_terminal(client, second)["status"] == "SUCCEEDED"
            ran_first = wait_for(lambda: _ended(harness, first))
            ran_second = wait_for(lambda: _ended(harness, second))
            assert ran_second.dequeued_at is not None  # it went through the queue too
            assert ran_first.dequeued_at <= ran_second.dequeued_at
            assert _attempt(harness, first).started_at < _attempt(harness, second).started_at
            # The queue is empty again: the next approval starts at once (the process looks at the
            # queue at most once per poll interval, so a probe takes a slot once it has looked).
            wait_for(lambda: slots.take("probe"))
            slots.release("probe")
            third = _approved(harness, client)
            assert harness.wait_terminal(client, third)["status"] == "SUCCEEDED"
            assert wait_for(lambda: _ended(harness, third)).dequeued_at is None
        for intent_id in (first, second, third):
            assert harness.task_rows(intent_id) == 1
    finally:
        harness.stop()


def test_a_look_at_the_queue_sees_only_this_version_s_executions(single_slot: Harness) -> None:
    # DBOS dequeues only its own application version's executions: another version's, left on
    # the queue by a rolling upgrade, must not keep this process behind the queue for good.
    slots = _slots(single_slot)
    assert slots.take("held-by-the-test")
    with single_slot.client() as client:
        intent_id = _approved(single_slot, client)
        assert _workflow(single_slot, intent_id).status == "ENQUEUED"
        assert dbos_queue_waiting(EXECUTION_QUEUE, app_version=__version__)
        assert not dbos_queue_waiting(EXECUTION_QUEUE, app_version=f"{__version__}-older")
        assert not dbos_queue_waiting("another-queue", app_version=__version__)
        slots.release("held-by-the-test")
        assert single_slot.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    assert not dbos_queue_waiting(EXECUTION_QUEUE, app_version=__version__)


def test_a_direct_start_of_a_queued_attempt_runs_nothing_more(single_slot: Harness) -> None:
    slots = _slots(single_slot)
    assert slots.take("held-by-the-test")
    with single_slot.client() as client:
        intent_id = _approved(single_slot, client)
        assert _workflow(single_slot, intent_id).status == "ENQUEUED"
        slots.release("held-by-the-test")
        # The same attempt started directly (another approval, a redelivered event) by a process
        # with a free slot that was never full (this one, having been full, now enqueues until its
        # queue is empty: see the test below) while it waits on the queue: the workflow exists, so
        # nothing runs here and the slot is handed back.
        never_full = DirectStarts(1, EXECUTION_QUEUE)
        single_slot.service.runtime.direct_starts = never_full
        workflow.start_execution(request_for(_attempt(single_slot, intent_id)))
        assert never_full.held() == 0
        status = single_slot.wait_terminal(client, intent_id, timeout=30)
    assert status["status"] == "SUCCEEDED"
    assert single_slot.task_rows(intent_id) == 1
    assert single_slot.outcome_rows(intent_id) == 1
    assert _workflow(single_slot, intent_id).dequeued_at is not None  # it went through the queue


def test_an_enqueue_of_a_directly_started_attempt_runs_nothing_more(
    service: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service.client() as client:
        intent_id = _approved(service, client)
        assert service.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
        # Another process (one without a free slot, or an api process) enqueues the same attempt.
        monkeypatch.setattr(service.service.runtime, "direct_starts", None)
        workflow.start_execution(request_for(_attempt(service, intent_id)))
        monkeypatch.undo()
        assert reconcile_once(service.service.runtime) == 0
    started = _workflow(service, intent_id)
    assert started.dequeued_at is None
    assert started.status == "SUCCESS"
    assert service.task_rows(intent_id) == 1
    assert service.outcome_rows(intent_id) == 1


def test_a_crash_between_the_commit_and_the_direct_start_is_recovered(
    service: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def died(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionError("the process died between the commit and the start")

    monkeypatch.setattr(workflow.DBOS, "start_workflow", died)
    with service.client() as client:
        intent_id = _approved(service, client)  # accepted: the lock is committed
        assert _attempt(service, intent_id).status.value == "QUEUED"
        assert _workflow(service, intent_id) is None
        assert _slots(service).held() == 0  # the failed start handed its slot back
        monkeypatch.undo()
        assert reconcile_once(service.service.runtime) == 1
        status = service.wait_terminal(client, intent_id)
    assert status["status"] == "SUCCEEDED"
    assert service.task_rows(intent_id) == 1
    assert reconcile_once(service.service.runtime) == 0


def test_with_direct_start_off_every_execution_goes_through_the_queue(tmp_path: Path) -> None:
    harness = _service(tmp_path, direct_start=False, queue_poll_seconds=0.05)
    try:
        assert harness.service.runtime.direct_starts is None
        with harness.client() as client:
            intent_id = _approved(harness, client)
            assert harness.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
        assert _workflow(harness, intent_id).dequeued_at is not None  # it went through the queue
    finally:
        harness.stop()


def test_an_api_process_starts_nothing_itself(tmp_path: Path) -> None:
    harness = _service(tmp_path, role="api")
    try:
        assert harness.service.runtime.direct_starts is None
        with harness.client() as client:
            intent_id = _approved(harness, client)
        queued = _workflow(harness, intent_id)
        assert queued.status == "ENQUEUED"  # for a worker process to dequeue
        assert queued.queue_name == EXECUTION_QUEUE
    finally:
        harness.stop()


def _count_store_reads(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, one entry in the returned list for each read an approval opens on the service's
    store (in ``approve_intent`` or below it). The service's own loops (the reconciler, the
    sweepers) read it on their own threads meanwhile, more often on a busy machine: not counted."""
    store = harness.service.runtime.store
    reads: list[int] = []
    read = store.read
    approving = intent_usecases.approve_intent.__code__

    def counted_read() -> Any:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code is not approving:
            frame = frame.f_back
        if frame is not None:
            reads.append(1)
        return read()

    monkeypatch.setattr(store, "read", counted_read)
    return reads


def test_an_api_process_ranks_each_execution_in_the_transaction_that_approves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every start of an api process goes to the queue, so the fair rank its priority comes from
    (the tenant's executions queued or running) is read in the approval's own transaction: an
    approval reads the store once (the intent, before its write), not a second time after the
    commit; and the ranks are the queue's fair order, tenant by tenant."""
    harness = _service(tmp_path, role="api")
    try:
        with harness.client("t1") as first, harness.client("t2") as second:
            ids = [harness.create_intent(first)["action_intent_id"] for _ in range(3)]
            other = harness.create_intent(second)["action_intent_id"]
            reads = _count_store_reads(harness, monkeypatch)
            harness.approve(first, ids[0])
            assert len(reads) == 1  # the approval's read of the intent; none after the commit
            for intent_id in ids[1:]:
                harness.approve(first, intent_id)
            harness.approve(second, other)
        with harness.db.read() as conn:
            workflows = [
                DBOS.get_workflow_status(executions.get_attempt(conn, tenant, "acc-1", intent_id).workflow_id)
                for tenant, intent_id in [("t1", ids[0]), ("t1", ids[1]), ("t1", ids[2]), ("t2", other)]
            ]
        assert [w.status for w in workflows] == ["ENQUEUED"] * 4
        assert [w.priority for w in workflows] == [1, 2, 3, 1]  # t2's first goes with t1's first
    finally:
        harness.stop()


def test_a_process_behind_its_queue_ranks_the_execution_in_the_approving_transaction(
    single_slot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once full, a worker process sends every start to the queue until it sees the queue empty:
    an approval then reads the fair rank in its own transaction too, as an api process does."""
    slots = _slots(single_slot)
    assert not slots.overflowed
    assert slots.take("held-by-the-test")
    assert not slots.take("another")  # full: behind the queue from now on
    assert slots.overflowed
    with single_slot.client() as client:
        intent_id = single_slot.create_intent(client)["action_intent_id"]
        reads = _count_store_reads(single_slot, monkeypatch)
        single_slot.approve(client, intent_id)
        assert len(reads) == 1  # the intent before the write; no read of the rank after the commit
        monkeypatch.undo()
        queued = _workflow(single_slot, intent_id)
        assert (queued.status, queued.priority) == ("ENQUEUED", 1)
        slots.release("held-by-the-test")
        assert single_slot.wait_terminal(client, intent_id, timeout=30)["status"] == "SUCCEEDED"


def test_a_kill_switch_stops_a_directly_started_execution(service: Harness) -> None:
    with service.db.write() as conn:
        killswitches.put_global(
            conn, GlobalExecutionConfig(global_stop=True), now=service.service.clock.now_iso()
        )
    with service.client() as client:
        intent_id = _approved(service, client)
        status = service.wait_terminal(client, intent_id)
    assert status["status"] == "CANCELLED"
    assert status["error_code"] == "KILL_SWITCH_ENABLED"
    assert _workflow(service, intent_id).dequeued_at is None
    assert service.task_rows(intent_id) == 0


def test_an_intent_a_policy_approves_starts_at_once_too(service: Harness) -> None:
    with service.client() as client:
        policy = client.post(
            "/admin/policies",
            json={"name": "tasks approve themselves", "decision": "AUTO_APPROVE"},
        )
        assert policy.status_code == 201, policy.text
        created = service.create_intent(client)
        assert created["approval_status"] == "APPROVED"
        status = service.wait_terminal(client, created["action_intent_id"])
    assert status["status"] == "SUCCEEDED"
    assert _workflow(service, created["action_intent_id"]).dequeued_at is None
    assert service.task_rows(created["action_intent_id"]) == 1


def test_a_recovery_of_an_executor_hands_its_directly_started_executions_back_to_the_queue(
    service: Harness,
) -> None:
    """Before DBOS recovers an executor id (a process's own at its start, a lost one's in a
    takeover), the unfinished executions it started directly are named on the execution queue,
    so that DBOS hands them back to workers only, never to its internal queue (which api
    processes poll too). Only those: not a finished one, another executor's, nor another kind
    of workflow."""
    import sqlalchemy as sa
    from dbos import _dbos as dbos_internals

    from fulfill.service import _name_the_queue_of_started_executions, _recover_executor

    with service.client() as client:
        ids = [_approved(service, client) for _ in range(4)]
        for intent_id in ids:
            service.wait_terminal(client, intent_id)
    rows = [wait_for(lambda intent_id=intent_id: _ended(service, intent_id)) for intent_id in ids]
    instance = dbos_internals._dbos_global_instance
    assert instance is not None
    engine = instance._sys_db.engine
    table = instance._sys_db.tables.workflow_status

    def make(row: Any, *, executor: str, status: str = "PENDING", name: str | None = None) -> None:
        values: dict[str, Any] = {"executor_id": executor, "status": status, "queue_name": None}
        if name is not None:
            values["name"] = name
        with engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.workflow_uuid == row.workflow_id).values(**values))

    # As a process killed mid-execution leaves them (unfinished, no queue named), under ids that
    # never beat: the running service takes none of them over itself.
    make(rows[0], executor="gone-1")
    make(rows[1], executor="gone-1", status="SUCCESS")
    make(rows[2], executor="gone-2")
    make(rows[3], executor="gone-1", name="fulfill.compensate")

    def queue_of(row: Any) -> str | None:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(table.c.queue_name).where(table.c.workflow_uuid == row.workflow_id)
            ).scalar_one()

    assert _name_the_queue_of_started_executions(engine, ["gone-1"]) == 1
    assert [queue_of(row) for row in rows] == [EXECUTION_QUEUE, None, None, None]
    assert _name_the_queue_of_started_executions(engine, ["gone-1"]) == 0  # named once
    # The takeover of a lost executor names them before DBOS re-enqueues them.
    assert _recover_executor("gone-2") == 1
    recovered = DBOS.get_workflow_status(rows[2].workflow_id)
    assert recovered is not None
    assert recovered.queue_name == EXECUTION_QUEUE
