"""What the workflow of one execution costs, counted rather than timed: the CPU of the threads
that run it, and the statements and commits it makes on each SQLite file, next to the bare DBOS
workflow of 3 no-op steps started directly, in the same process and run.

    python -m bench.step_cost --executions 300

One ``fulfill serve`` in this process (SQLite, in-memory gateway). Intents are created and
approved over HTTP one at a time, each waited for until its workflow has ended. Measured per
execution:

* ``thread_cpu_ms``: CPU time (``time.thread_time``) of the DBOS executor thread running the
  workflow, from its start to its end (every step's body and DBOS's checkpoints), split into each
  step's body (PrepareToolCall: StartExecution, ValidatePreflight, MapActionToTool; InvokeTool;
  RecordOutcome) and the rest (DBOS's own work around them); and ``start_ms``: the approving
  thread's CPU for the start of the workflow (``engine/workflow._start_directly``);
* ``statements`` and ``commits`` (``write_commits``: commits of a transaction that wrote, each
  one a sync of the file's log at ``synchronous=FULL``) on fulfill's file and on DBOS's, made by
  the workflow's thread and by the start, counted with SQLAlchemy's events (the HTTP requests'
  own statements, the approval's transaction, and the background passes are not counted).

Thread CPU and counts do not depend on what else the machine runs (unlike wall times): compare
runs of two versions of the code by these figures, each with its own floor.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from bench.approval_latency import approve_and_wait, proposer_and_approver
from bench.common import emit, running_service
from fulfill import __version__
from fulfill.server import BackgroundServer
from fulfill_tools.floor import measure_bare_direct

STEP_FUNCTIONS = (
    "start_execution",
    "validate_preflight",
    "map_action_to_tool",
    "invoke_tool",
    "record_outcome",
)
_READ_ONLY = ("SELECT", "BEGIN", "PRAGMA", "COMMIT", "ROLLBACK")


class Tally:
    """Per-thread counters switched on for the threads that run (or start) a measured workflow."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.cpu: dict[str, list[float]] = {}

    def on(self) -> bool:
        return bool(getattr(self.local, "on", False))

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def cpu_sample(self, key: str, ms: float) -> None:
        with self.lock:
            self.cpu.setdefault(key, []).append(ms)

    def watch(self, engine: Engine, name: str) -> None:
        def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if not self.on():
                return
            self.add(f"{name}.statements")
            if not statement.lstrip().upper().startswith(_READ_ONLY):
                conn.info["bench_wrote"] = True

        def commit(conn: Any) -> None:
            if not self.on():
                return
            self.add(f"{name}.commits")
            if conn.info.pop("bench_wrote", False):
                self.add(f"{name}.write_commits")

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "commit", commit)

    def timed(self, key: str, function: Callable[..., Any], *, switch_on: bool = False) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            was = self.on()
            if switch_on:
                self.local.on = True
            began = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                if switch_on or was:
                    self.cpu_sample(key, (time.thread_time() - began) * 1000)
                self.local.on = was

        return run


def instrument(tally: Tally, store_engine: Engine) -> threading.Event:
    """Count on the threads running a workflow (all of it: DBOS's thread entry point) and starting
    one; time each step's body. Answers an event set when a workflow's thread is done."""
    import dbos._core as dbos_core
    import dbos._dbos as dbos_internals

    from fulfill.engine import steps
    from fulfill.engine import workflow as workflow_module

    done = threading.Event()
    run_workflow = tally.timed("workflow", dbos_core._execute_workflow_wthread, switch_on=True)

    def workflow_thread(*args: Any, **kwargs: Any) -> Any:
        try:
            return run_workflow(*args, **kwargs)
        finally:
            done.set()

    dbos_core._execute_workflow_wthread = workflow_thread  # looked up at each start
    workflow_module._start_directly = tally.timed("start", workflow_module._start_directly, switch_on=True)  # type: ignore[assignment]
    for name in STEP_FUNCTIONS:
        setattr(steps, name, tally.timed(name, getattr(steps, name)))
    instance = dbos_internals._dbos_global_instance
    assert instance is not None
    tally.watch(store_engine, "fulfill_file")
    tally.watch(instance._sys_db.engine, "dbos_file")
    return done


def run_executions(server: BackgroundServer, tally: Tally, done: threading.Event, count: int) -> None:
    db = server.server.config.app.state.service.db
    with proposer_and_approver(server) as (client, reviewer):
        for index in range(count):
            done.clear()
            approve_and_wait(client, reviewer, db, index, poll_seconds=0.005)
            if not done.wait(30):
                raise RuntimeError("a workflow did not end")
            time.sleep(0.005)  # its thread's last statements are counted before the next starts


def bare(tally: Tally, done: threading.Event, count: int) -> None:
    start = tally.timed("start", measure_bare_direct, switch_on=True)  # its thread only starts it
    for _ in range(count):
        done.clear()
        start(1)
        if not done.wait(30):
            raise RuntimeError("a bare workflow did not end")


def report(tally: Tally, count: int) -> dict[str, Any]:
    def median(key: str) -> float:
        samples = tally.cpu.get(key, [])
        return round(statistics.median(samples), 3) if samples else 0.0

    def mean(key: str) -> float:
        samples = tally.cpu.get(key, [])
        return round(statistics.fmean(samples), 3) if samples else 0.0

    steps = {name: median(name) for name in STEP_FUNCTIONS if name in tally.cpu}
    result: dict[str, Any] = {
        "thread_cpu_ms_median": {"workflow": median("workflow"), "start": median("start"), **steps},
        "thread_cpu_ms_mean": {"workflow": mean("workflow"), "start": mean("start")},
        "per_execution": {key: round(n / count, 2) for key, n in sorted(tally.counts.items())},
    }
    if steps:
        result["thread_cpu_ms_median"]["outside_step_bodies"] = round(
            median("workflow") - sum(steps.values()), 3
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as directory,
        running_service(
            directory,
            queue_poll_seconds=5.0,  # one at a time is started directly, never through the queue
        ) as server,
    ):
        tally = Tally()
        done = instrument(tally, server.server.config.app.state.service.db.engine)
        run_executions(server, tally, done, args.warmup)
        bare(tally, done, args.warmup)
        tally.counts.clear()
        tally.cpu.clear()
        run_executions(server, tally, done, args.executions)
        fulfill = report(tally, args.executions)
        tally.counts.clear()
        tally.cpu.clear()
        bare(tally, done, args.executions)
        floor = report(tally, args.executions)
    result = {
        "fulfill_version": __version__,
        "executions": args.executions,
        "execution": fulfill,
        "bare_direct_start": floor,
        "workflow_cpu_ratio_to_bare": round(
            fulfill["thread_cpu_ms_median"]["workflow"] / floor["thread_cpu_ms_median"]["workflow"], 2
        ),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
