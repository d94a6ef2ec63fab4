"""CPU per execution and per in-memory tool call on SQLite, one `fulfill serve` in this process,
next to the bare DBOS workflow started directly (3 no-op steps) in the same run.

    python -m bench.invoke_cost --executions 300 --calls 300

CPU is this process's (``time.process_time``: every thread, the HTTP client included), minus
what the idle service spends meanwhile (its queue poll and periodic passes: the idle rate,
measured first over ``--idle-seconds``, times the series' wall time), so it is robust on a loaded
machine where times are not. Three series, in turn:

* ``tool_call``: ``--calls`` calls of ``internal.create_task`` through the service's own gateway
  client, in memory, from one thread, as InvokeTool makes them (token minted and checked, MCP
  client and server, the guard, the tool's write); also how many threads were started meanwhile;
* ``execution``: ``--executions`` intents created and approved over HTTP, one at a time, each
  waited for (a status read every 20 ms) until its outcome is written;
* ``invoke_step``: ``--calls`` runs of the InvokeTool step itself, from one thread, with the step
  dependencies and the tool call of one of the warm-up executions (a fresh idempotency key each
  time, so that each run writes its task): the checks right before the call (kill switches,
  intent, the connector's gate), the call, the metrics; its CPU per step and its median time;
* ``bare_direct_start``: the same number of bare workflows started with ``DBOS.start_workflow``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.approval_latency import approve_and_wait, proposer_and_approver
from bench.common import emit, running_service
from fulfill import __version__
from fulfill.server import BackgroundServer
from fulfill_tools.floor import measure_bare_direct

_started = 0
_start = threading.Thread.start


def _counting_start(thread: threading.Thread) -> None:
    global _started  # a count of the threads this process starts, for the report
    _started += 1
    _start(thread)


IDLE_CPU_PER_SECOND = 0.0


def idle_rate(seconds: float) -> float:
    """CPU seconds per second this process spends while nothing is asked of the service."""
    began, cpu = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    return (time.process_time() - cpu) / (time.perf_counter() - began)


def net_cpu_ms(cpu: float, began: float, count: int) -> float:
    """CPU-ms per item since ``cpu``/``began``, less the idle service's own over that wall time."""
    spent = (time.process_time() - cpu) - IDLE_CPU_PER_SECOND * (time.perf_counter() - began)
    return round(spent * 1000 / count, 2)


def tool_calls(server: BackgroundServer, count: int) -> dict[str, float]:
    gateway = server.server.config.app.state.service.tool_gateway
    global _started
    _started = 0
    began, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        arguments = {
            "title": f"t{index}",
            "tenant_id": "bench",
            "account_id": "acc",
            "action_intent_id": f"ai_bench_{secrets.token_hex(8)}",
            "idempotency_key": secrets.token_hex(32),
        }
        outcome = gateway.call_tool(
            tenant_id="bench", tool_name="internal.create_task", arguments=arguments, timeout_seconds=10
        )
        if not outcome.success:
            raise RuntimeError(f"the tool call failed: {outcome.error}")
    return {
        "cpu_ms_per_call": net_cpu_ms(cpu, began, count),
        "wall_ms_per_call": round((time.perf_counter() - began) * 1000 / count, 2),
        "threads_started": _started,
    }


# The step dependencies and the tool call of the first execution whose InvokeTool runs while
# :func:`capturing_a_call` is on.
_CAPTURED: list[tuple[Any, Any]] = []


def capturing_a_call() -> Callable[[], None]:
    """Keep the first InvokeTool's dependencies and call (its check before the call sees both);
    returns what puts the check back as it was."""
    from fulfill.engine.steps import invoke

    original = invoke.check_before_call

    def capture(deps: Any, call: Any, **options: Any) -> Any:
        if not _CAPTURED:
            _CAPTURED.append((deps, call))
        return original(deps, call, **options)

    invoke.check_before_call = capture

    def restore() -> None:
        invoke.check_before_call = original

    return restore


def invoke_steps(count: int) -> dict[str, float]:
    from fulfill.engine import steps

    deps, call = _CAPTURED[0]
    durations: list[float] = []
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        key = secrets.token_hex(32)
        context = call.context.model_copy(update={"deadline_epoch": time.time() + 3600})
        this = call.model_copy(
            update={
                "context": context,
                "idempotency_key": key,
                "arguments": {**call.arguments, "idempotency_key": key},
            }
        )
        started = time.perf_counter()
        result = steps.invoke_tool(deps, this)
        durations.append(time.perf_counter() - started)
        if not result.success:
            raise RuntimeError(f"the step failed: {result.error}")
    return {
        "cpu_ms_per_step": net_cpu_ms(cpu, began, count),
        "median_ms": round(statistics.median(durations) * 1000, 3),
    }


def run_executions(server: BackgroundServer, count: int) -> dict[str, float]:
    db = server.server.config.app.state.service.db
    with proposer_and_approver(server) as (client, reviewer):
        began, cpu = time.perf_counter(), time.process_time()
        for index in range(count):
            approve_and_wait(client, reviewer, db, index, poll_seconds=0.02)
        return {
            "cpu_ms_per_execution": net_cpu_ms(cpu, began, count),
            "wall_ms_per_execution": round((time.perf_counter() - began) * 1000 / count, 2),
        }


def bare(count: int) -> dict[str, float]:
    began, cpu = time.perf_counter(), time.process_time()
    measure_bare_direct(count)
    return {"cpu_ms_per_workflow": net_cpu_ms(cpu, began, count)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    threading.Thread.start = _counting_start  # type: ignore[method-assign]
    with (
        tempfile.TemporaryDirectory() as directory,
        running_service(
            directory,
            # One execution at a time is started directly, never through the queue: a slow poll
            # keeps the idle service's own CPU (subtracted below) small beside what is measured.
            queue_poll_seconds=5.0,
        ) as server,
    ):
        tool_calls(server, args.warmup)
        restore = capturing_a_call()
        try:
            run_executions(server, args.warmup)
        finally:
            restore()
        invoke_steps(args.warmup)
        bare(args.warmup)
        global IDLE_CPU_PER_SECOND
        IDLE_CPU_PER_SECOND = idle_rate(args.idle_seconds)
        result: dict[str, Any] = {
            "fulfill_version": __version__,
            "idle_cpu_ms_per_second": round(IDLE_CPU_PER_SECOND * 1000, 1),
            "tool_call": tool_calls(server, args.calls),
            "invoke_step": invoke_steps(args.calls),
            "execution": run_executions(server, args.executions),
            "bare_direct_start": bare(args.executions),
        }
    result["execution_cpu_ratio_to_bare"] = round(
        result["execution"]["cpu_ms_per_execution"] / result["bare_direct_start"]["cpu_ms_per_workflow"], 2
    )
    emit(result, args.json)


if __name__ == "__main__":
    main()
