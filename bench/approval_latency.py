"""Approval → outcome latency of fulfill on SQLite, next to a bare DBOS workflow with the same
number of no-op steps, in the same process and run.

    python -m bench.approval_latency --intents 500 [--queued-too]

Latency of one intent = ``completed_at`` of its outcome minus its ``approval_timestamp``, both
written by the service itself (so the client's own timing does not count). Intents are approved one
at a time, each after the previous one finished, so the numbers are latency, not queueing.

While an execution runs, this process waits for it as it waits for the floor's workflow: asleep
on a condition, woken by the end of the RecordOutcome step (:class:`OutcomeWaiter`), and then
reads the outcome once. It used to read the database every 2 ms until the outcome was there:
CPU in the service's own interpreter, taken from the execution it measured, which the floor
never paid (``--polled-too`` times that way too, in the same run, for comparison).

The floors, same process and run (the series are measured in turn, one of each at a time): the bare workflow enqueued on the service's queue
(``bare_dbos_workflow``), and started directly with ``DBOS.start_workflow``
(``bare_dbos_direct_start``: what an approval that finds a free worker can reach).

The two API clients (the proposer's and the approver's) are opened once for the whole run, as a
console or an agent keeps its client: an HTTP client opened per execution in the service's own
process (an SSL context each, about 20 ms of CPU: ``bench.micro_costs``) made the service's young collections five to
ten times longer and was in the tail of every series (``api_clients_opened`` in the report).

The process's garbage collector runs as a ``fulfill serve`` process's does (``fulfill.collector``),
so that the series measure what a deployed service pays; ``--default-collector`` keeps Python's
defaults instead (the floors run in the same process, under the same settings, either way).
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import emit, running_service
from fulfill import __version__
from fulfill.client import FulfillClient
from fulfill.domain.models import ActionOutcomeV1
from fulfill.domain.scopes import Scope
from fulfill.domain.time import epoch_from_iso
from fulfill.engine.workflow import EXECUTION_QUEUE
from fulfill.server import BackgroundServer
from fulfill.store import executions, intents
from fulfill.store.db import Database
from fulfill.tokens import mint_token
from fulfill_tools.floor import STEPS, measure_bare_direct
from fulfill_tools.floor import measure_bare as _measure_bare
from fulfill_tools.loadtest import percentile, summary

# API clients this process opened against the service (reported: two for the whole run).
CLIENTS_OPENED = Counter[str]()


@contextmanager
def proposer_and_approver(server: BackgroundServer) -> Iterator[tuple[FulfillClient, FulfillClient]]:
    """Clients of tenant ``bench``: one that proposes, one of another person who approves (nobody
    approves a proposal made with their own subject)."""
    scopes = [Scope.INTENTS_WRITE, Scope.INTENTS_APPROVE, Scope.EXECUTIONS_READ]
    token = mint_token(server.settings, tenant_id="bench", scopes=scopes)
    approver = mint_token(server.settings, tenant_id="bench", scopes=scopes, subject="bench-approver")
    CLIENTS_OPENED["api"] += 2
    with (
        FulfillClient(server.url, token, timeout=30) as client,
        FulfillClient(server.url, approver, timeout=30) as reviewer,
    ):
        yield client, reviewer


class OutcomeWaiter:
    """Wakes a waiting thread when RecordOutcome has written an intent's outcome, instead of
    having it read the database in a loop meanwhile (CPU taken from the execution it waits for,
    in the same interpreter). Wraps ``steps.record_outcome``, which the workflow looks up on the
    module when it runs the step. Also counts the workflows running in this process (DBOS's
    thread entry point), so that a series waits for the previous one's workflow to end (its
    last checkpoint and status) before it starts timing its own: one at a time, really."""

    def __init__(self) -> None:
        self._recorded: set[str] = set()
        self._running = 0
        self._condition = threading.Condition()

    def install(self) -> OutcomeWaiter:
        import dbos._core as dbos_core

        from fulfill.engine import steps

        run_workflow = dbos_core._execute_workflow_wthread

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._condition:
                self._running += 1
            try:
                return run_workflow(*args, **kwargs)
            finally:
                with self._condition:
                    self._running -= 1
                    self._condition.notify_all()

        dbos_core._execute_workflow_wthread = counted  # looked up at each start
        record = steps.record_outcome

        def recorded(*args: Any) -> Any:
            answer = record(*args)  # a try that raised is retried by the workflow: not woken yet
            with self._condition:
                self._recorded.add(args[1].context.action_intent_id)
                self._condition.notify_all()
            return answer

        steps.record_outcome = recorded
        return self

    def wait(self, intent_id: str, timeout: float) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: intent_id in self._recorded, timeout=timeout)

    def settle(self, timeout: float = 30) -> None:
        """Until no workflow runs in this process."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._running == 0, timeout=timeout):
                raise RuntimeError("a workflow did not end")


# Reads of the outcome made while waiting for it, by series: the ``waiter`` series reads once.
OUTCOME_READS: Counter[str] = Counter()


Clients = tuple[FulfillClient, FulfillClient]


def measure_fulfill(
    server: BackgroundServer,
    count: int,
    waiter: OutcomeWaiter | None = None,
    *,
    clients: Clients | None = None,
) -> list[float]:
    """Approval → outcome of ``count`` intents, one at a time; waited for with ``waiter`` (no
    poll), or, without one, by reading the database every 2 ms as this benchmark did before.
    Proposed and approved with ``clients`` (:func:`proposer_and_approver`), or a pair opened for
    these ``count`` alone."""
    if clients is None:
        with proposer_and_approver(server) as opened:
            return measure_fulfill(server, count, waiter, clients=opened)
    client, reviewer = clients
    latencies: list[float] = []
    db = server.server.config.app.state.service.db
    for index in range(count):
        intent_id, outcome = approve_and_wait(client, reviewer, db, index, poll_seconds=0.002, waiter=waiter)
        with db.read() as conn:
            intent = intents.get_intent(conn, "bench", intent_id)
        assert intent is not None
        assert intent.approval_timestamp is not None
        if outcome.status.value != "SUCCEEDED":
            raise RuntimeError(f"{intent_id} ended {outcome.status}")
        latencies.append(
            (epoch_from_iso(outcome.completed_at) - epoch_from_iso(intent.approval_timestamp)) * 1000
        )
    return latencies


def approve_and_wait(
    client: FulfillClient,
    reviewer: FulfillClient,
    db: Database,
    index: int,
    *,
    poll_seconds: float,
    waiter: OutcomeWaiter | None = None,
) -> tuple[str, ActionOutcomeV1]:
    """One internal-task intent created, approved, and its outcome read once it is stored: woken
    by ``waiter`` when given, else read every ``poll_seconds``."""
    created = client.create_intent(
        {
            "action_type": "CREATE_INTERNAL_TASK",
            "account_id": "acc",
            "parameters": {"title": f"t{index}"},
        }
    )
    intent_id = created.value.action_intent_id
    reviewer.approve(intent_id)
    if waiter is not None and not waiter.wait(intent_id, timeout=30):
        raise RuntimeError(f"{intent_id} did not finish")
    deadline = time.monotonic() + 30
    while True:
        with db.read() as conn:
            outcome = executions.get_outcome(conn, "bench", "acc", intent_id, 1)
        OUTCOME_READS["woken" if waiter is not None else "polled"] += 1
        if outcome is not None:
            return intent_id, outcome
        if time.monotonic() > deadline:
            raise RuntimeError(f"{intent_id} did not finish")
        time.sleep(poll_seconds)


def measure_queued(
    server: BackgroundServer, count: int, waiter: OutcomeWaiter, *, clients: Clients | None = None
) -> list[float]:
    """The same, with this process's direct start off: every execution waits on the queue."""
    runtime = server.server.config.app.state.service.runtime
    slots, runtime.direct_starts = runtime.direct_starts, None
    try:
        return measure_fulfill(server, count, waiter, clients=clients)
    finally:
        runtime.direct_starts = slots


def measure_bare(count: int) -> list[float]:
    """The bare workflow (fulfill_tools.floor), enqueued on the service's own queue, one at a time."""
    return _measure_bare(count, EXECUTION_QUEUE)


STEP_FUNCTIONS = (
    "start_execution",
    "validate_preflight",
    "map_action_to_tool",
    "invoke_tool",
    "record_outcome",
)


def time_steps() -> dict[str, list[float]]:
    """Wrap each step function (the workflow looks them up on the module at call time) with a timer."""
    from fulfill.engine import steps

    timings: dict[str, list[float]] = {name: [] for name in STEP_FUNCTIONS}
    for name in STEP_FUNCTIONS:
        function = getattr(steps, name)

        def timed(*args: Any, _function: Any = function, _name: str = name) -> Any:
            started = time.perf_counter()
            try:
                return _function(*args)
            finally:
                timings[_name].append((time.perf_counter() - started) * 1000)

        setattr(steps, name, timed)
    return timings


class CollectorPauses:
    """The garbage collector's work in this process, by generation (``gc.callbacks``).

    Each collection is timed in the collecting thread's CPU time rather than wall time: the
    callbacks are Python code, where the interpreter may hand its lock to another thread, whose
    work a wall-clock interval would count too."""

    def __init__(self) -> None:
        self._started = 0.0
        self.ms: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def install(self) -> CollectorPauses:
        gc.callbacks.append(self._observe)
        return self

    def remove(self) -> None:
        gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.ms[info["generation"]].append((time.thread_time() - self._started) * 1000)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per generation: how many collections, their total, and p50 / p95 / max (ms; to the
        microsecond, since a young collection takes a fraction of a millisecond)."""
        report: dict[str, dict[str, float]] = {}
        for generation, samples in self.ms.items():
            report[f"generation_{generation}"] = {
                "collections": len(samples),
                "total_ms": round(sum(samples), 1),
            }
            if samples:
                report[f"generation_{generation}"].update(
                    p50_ms=round(percentile(samples, 0.50), 3),
                    p95_ms=round(percentile(samples, 0.95), 3),
                    max_ms=round(max(samples), 3),
                )
        return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intents", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--step-times", action="store_true", help="also report each step's median duration")
    parser.add_argument(
        "--queued-too",
        action="store_true",
        help="also time the service with direct start off (every execution through the queue), same run",
    )
    parser.add_argument(
        "--polled-too",
        action="store_true",
        help="also time it waited for as before: the database read every 2 ms until the outcome is there",
    )
    parser.add_argument(
        "--queue-poll-seconds",
        type=float,
        help="the service's FULFILL_QUEUE_POLL_SECONDS (default: its own); a long one keeps the queue's "
        "polls out of the series (the executions one at a time start directly); the series that wait "
        "for the queue (--queued-too, the bare workflow enqueued) are then left out",
    )
    parser.add_argument(
        "--default-collector",
        action="store_true",
        help="run the service with Python's default garbage collector settings, not those of a "
        "`fulfill serve` process (fulfill.collector)",
    )
    args = parser.parse_args()
    if args.queue_poll_seconds is not None and args.queued_too:
        parser.error("--queue-poll-seconds and --queued-too: the queued series would wait for the polls")
    enqueued_floor = args.queue_poll_seconds is None
    overrides = {} if args.queue_poll_seconds is None else {"queue_poll_seconds": args.queue_poll_seconds}
    step_timings = time_steps() if args.step_times else None
    waiter = OutcomeWaiter().install()
    with (
        tempfile.TemporaryDirectory() as directory,
        running_service(directory, serving_collector=not args.default_collector, **overrides) as server,
        proposer_and_approver(server) as clients,
    ):
        measure_fulfill(server, args.warmup, waiter, clients=clients)
        if enqueued_floor:
            measure_bare(args.warmup)
        measure_bare_direct(args.warmup)
        for samples in (step_timings or {}).values():
            samples.clear()
        OUTCOME_READS.clear()
        threshold = list(gc.get_threshold())
        pauses = CollectorPauses().install()
        # One of each in turn, so that a busy moment of the machine falls on every series alike.
        fulfill_ms: list[float] = []
        queued_ms: list[float] | None = [] if args.queued_too else None
        polled_ms: list[float] | None = [] if args.polled_too else None
        bare_ms: list[float] = []
        direct_ms: list[float] = []
        for _ in range(args.intents):
            fulfill_ms += measure_fulfill(server, 1, waiter, clients=clients)
            waiter.settle()
            if queued_ms is not None:
                queued_ms += measure_queued(server, 1, waiter, clients=clients)
                waiter.settle()
            if polled_ms is not None:
                polled_ms += measure_fulfill(server, 1, clients=clients)
                waiter.settle()
            if enqueued_floor:
                bare_ms += measure_bare(1)
                waiter.settle()
            direct_ms += measure_bare_direct(1)
            waiter.settle()
        pauses.remove()
    result: dict[str, Any] = {
        "fulfill_version": __version__,
        "queue_poll_seconds": server.settings.queue_poll_seconds,
        "collector": "default" if args.default_collector else "fulfill serve",
        "gc_threshold": threshold,
        # Every collection in this process while the series ran (the service's, the floors' and
        # this benchmark's own allocations alike), by generation.
        "collector_pauses": pauses.summary(),
        "api_clients_opened": CLIENTS_OPENED["api"],
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}",
        "intents": args.intents,
        "approval_to_outcome": summary(fulfill_ms),
        "bare_dbos_direct_start": {"steps": STEPS, **summary(direct_ms)},
    }
    if enqueued_floor:
        result["bare_dbos_workflow"] = {"steps": STEPS, **summary(bare_ms)}
    if queued_ms is not None:
        result["approval_to_outcome_direct_start_off"] = summary(queued_ms)
    if polled_ms is not None:
        result["approval_to_outcome_polled"] = summary(polled_ms)
    # How often the waiting thread read the database per execution (the measured series: once,
    # after it was woken; the polled one: every 2 ms while the execution ran).
    result["outcome_reads_per_execution"] = {
        "approval_to_outcome": round(OUTCOME_READS["woken"] / (len(fulfill_ms) + len(queued_ms or [])), 2),
        **(
            {"approval_to_outcome_polled": round(OUTCOME_READS["polled"] / len(polled_ms), 2)}
            if polled_ms
            else {}
        ),
    }
    if enqueued_floor:
        result["ratio_p50"] = round(
            result["approval_to_outcome"]["p50_ms"] / result["bare_dbos_workflow"]["p50_ms"], 2
        )
        result["ratio_p95"] = round(
            result["approval_to_outcome"]["p95_ms"] / result["bare_dbos_workflow"]["p95_ms"], 2
        )
    result["ratio_p95_direct_start"] = round(
        result["approval_to_outcome"]["p95_ms"] / result["bare_dbos_direct_start"]["p95_ms"], 2
    )
    if step_timings is not None:
        result["step_median_ms"] = {
            name: round(statistics.median(samples), 1) for name, samples in step_timings.items() if samples
        }
    emit(result, args.json)


if __name__ == "__main__":
    main()
