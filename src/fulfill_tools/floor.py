"""The bare-DBOS floor: a DBOS workflow with as many no-op steps as an execution has checkpoints,
timed one at a time and as a burst, to set next to the service's numbers.

Importing this module registers the workflow with DBOS; only the load test's floor run
(``fulfill bench load``, unless ``--no-floor``) and ``bench/approval_latency.py`` import it.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from dbos import DBOS, SetWorkflowID
from rich.console import Console

from fulfill_tools.loadtest import summary, throughput

STEPS = 3  # checkpoints: PrepareToolCall (Start, Preflight, Map), InvokeTool, RecordOutcome
FLOOR_QUEUE = "bench-floor"


@DBOS.step(name="bench.noop")
def _noop_step(value: int) -> int:
    return value + 1


bare_finished: dict[str, float] = {}  # workflow id → seconds from ``started`` to the last step
bare_completed_at: dict[str, float] = {}  # workflow id → epoch of the last step
bare_done = threading.Condition()


@DBOS.workflow(name="bench.bare_workflow")
def bare_workflow(started: float) -> float:
    value = 0
    for _ in range(STEPS):
        value = _noop_step(value)
    now = time.time()
    elapsed = now - started
    with bare_done:  # handle.get_result() polls the database; this wakes the bench at once
        workflow_id = DBOS.workflow_id or ""
        bare_finished[workflow_id] = elapsed
        bare_completed_at[workflow_id] = now
        bare_done.notify_all()
    return elapsed


def _finished(workflow_id: str) -> Callable[[], bool]:
    return lambda: workflow_id in bare_finished


def measure_bare(count: int, queue_name: str, timeout: float = 30) -> list[float]:
    """Enqueue the bare workflow ``count`` times, one at a time; milliseconds each, enqueue → last step."""
    queue = DBOS.retrieve_queue(queue_name)
    assert queue is not None
    return _one_at_a_time(count, "bench-bare", lambda: queue.enqueue(bare_workflow, time.time()), timeout)


def measure_bare_direct(count: int, timeout: float = 30) -> list[float]:
    """Start the bare workflow directly (``DBOS.start_workflow``, no queue) ``count`` times, one at
    a time; milliseconds each, start → last step: the floor of an approval that finds a free worker."""
    return _one_at_a_time(
        count, "bench-bare-direct", lambda: DBOS.start_workflow(bare_workflow, time.time()), timeout
    )


def _one_at_a_time(count: int, prefix: str, start: Callable[[], object], timeout: float) -> list[float]:
    latencies: list[float] = []
    for index in range(count):
        workflow_id = f"{prefix}-{time.time_ns()}-{index}"
        with SetWorkflowID(workflow_id):
            start()
        with bare_done:
            if not bare_done.wait_for(_finished(workflow_id), timeout=timeout):
                raise RuntimeError(f"{workflow_id} did not finish")
        latencies.append(bare_finished[workflow_id] * 1000)
    return latencies


def measure_bare_burst(
    count: int, queue_name: str, timeout: float = 300
) -> tuple[list[float], list[float], float]:
    """Enqueue ``count`` bare workflows at once; (latencies in ms, completion epochs, CPU-seconds
    this process spent from the first enqueue to the last completion, every thread counted: the
    enqueues, the queue's claims and the workflows)."""
    queue = DBOS.retrieve_queue(queue_name)
    assert queue is not None
    stamp = time.time_ns()
    ids = [f"bench-bare-burst-{stamp}-{index}" for index in range(count)]
    cpu_before = time.process_time()
    started = time.time()
    for workflow_id in ids:
        with SetWorkflowID(workflow_id):
            queue.enqueue(bare_workflow, started)
    with bare_done:
        if not bare_done.wait_for(lambda: all(w in bare_finished for w in ids), timeout=timeout):
            raise RuntimeError("the bare burst did not finish")
    cpu_s = time.process_time() - cpu_before
    return [bare_finished[w] * 1000 for w in ids], [bare_completed_at[w] for w in ids], cpu_s


def run_floor(serial: int, burst: int, console: Console) -> dict[str, Any]:
    """Launch DBOS in this process on a temporary SQLite database and time the bare workflow."""
    from fulfill.config import Settings
    from fulfill.store.db import Database

    defaults = Settings()
    with tempfile.TemporaryDirectory(prefix="fulfill-floor-") as directory:
        url = f"sqlite:///{directory}/floor.dbos.sqlite"
        database = Database(url, pool_size=1)  # WAL and synchronous=FULL, as the service's file
        with database.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        database.dispose()
        DBOS(
            config={
                "name": "fulfill-bench-floor",
                "system_database_url": url,
                "log_level": "WARNING",
                "max_executor_threads": defaults.worker_concurrency + 16,
            }
        )
        DBOS.listen_queues([FLOOR_QUEUE])
        DBOS.launch()
        DBOS.register_queue(
            FLOOR_QUEUE,
            worker_concurrency=defaults.worker_concurrency,
            polling_interval_sec=defaults.queue_poll_seconds,
            on_conflict="always_update",
        )
        try:
            with console.status("bare DBOS floor: one at a time…"):
                measure_bare(10, FLOOR_QUEUE)
                serial_ms = measure_bare(serial, FLOOR_QUEUE)
                measure_bare_direct(10)
                direct_ms = measure_bare_direct(serial)
            with console.status(f"bare DBOS floor: burst of {burst}…"):
                burst_ms, completed, burst_cpu_s = measure_bare_burst(burst, FLOOR_QUEUE)
        finally:
            DBOS.destroy(workflow_completion_timeout_sec=5)
    return {
        "steps": STEPS,
        "worker_concurrency": defaults.worker_concurrency,
        "queue_poll_seconds": defaults.queue_poll_seconds,
        "serial": {"count": serial, **summary(serial_ms)},
        "serial_direct": {"count": serial, **summary(direct_ms)},
        "burst": {
            "count": burst,
            "executions_per_s": round(throughput(completed), 1),
            "cpu_s": round(burst_cpu_s, 2),
            "cpu_ms_per_execution": round(1000 * burst_cpu_s / burst, 2),
            **summary(burst_ms),
        },
    }
