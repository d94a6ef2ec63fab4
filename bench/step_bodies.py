"""CPU of the PrepareToolCall and RecordOutcome step bodies, called directly in a loop (no DBOS,
no HTTP, no tool call), on SQLite, one `fulfill serve` in this process.

    python -m bench.step_bodies --executions 300

For each execution: an approved intent and its QUEUED attempt are written straight into the
store (as an approval leaves them), then ``steps.prepare_tool_call`` runs (StartExecution,
ValidatePreflight, MapActionToTool) and ``steps.record_outcome`` records a success; each is timed
with its thread's CPU (``time.thread_time``: a commit's wait for the disk is not CPU). The
minimum and the quartiles are reported: the minimum and the first quartile move little with the
machine's load, so two versions of the code are compared by them, run in turn.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit, running_service
from fulfill import __version__
from fulfill.domain.action_hash import action_hash
from fulfill.domain.execution import ToolCall, ToolResult, outcome_from_tool_result, tool_run_ref
from fulfill.domain.models import ActionIntentV1, ApprovalStatus, ExecutionPolicy, ExternalObjectRef
from fulfill.domain.time import iso_from_epoch
from fulfill.engine import steps
from fulfill.engine.intake import queued_attempt, request_for
from fulfill.engine.runtime import current
from fulfill.engine.workflow import step_deps


def _approved_intent(now: float, intent_id: str) -> ActionIntentV1:
    intent = ActionIntentV1(
        action_intent_id=intent_id,
        action_type="CREATE_INTERNAL_TASK",
        parameters={"title": "bench"},
        approved_by="upstream",
        approval_timestamp=iso_from_epoch(now),
        approval_status=ApprovalStatus.APPROVED,
        execution_policy=ExecutionPolicy(),
        expires_at=iso_from_epoch(now + 86_400),
        expires_at_epoch=int(now) + 86_400,
        tenant_id="bench",
        account_id="acc",
        trace_id="bench-trace",
        registry_version=1,
        created_at=iso_from_epoch(now),
        updated_at=iso_from_epoch(now),
    )
    return intent.model_copy(update={"action_hash": action_hash(intent)})


def _quartiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "min_ms": round(ordered[0], 3),
        "p25_ms": round(ordered[len(ordered) // 4], 3),
        "p50_ms": round(ordered[len(ordered) // 2], 3),
    }


def run(count: int, warmup: int) -> dict[str, Any]:
    prepare: list[float] = []
    record: list[float] = []
    with tempfile.TemporaryDirectory() as directory, running_service(directory, queue_poll_seconds=5.0):
        rt = current()
        deps = step_deps()
        for index in range(warmup + count):
            now = rt.clock.now()
            intent_id = f"ai_bench_{secrets.token_hex(6)}"
            with rt.store.write() as uow:
                intent = _approved_intent(now, intent_id)
                uow.intents.insert_intent(intent, "bench")
                attempt = queued_attempt(intent, now)
                uow.executions.insert_attempt(attempt, deadline_epoch=now + 300)
            began = time.thread_time()
            call = steps.prepare_tool_call(deps, request_for(attempt))
            prepared = time.thread_time()
            assert isinstance(call, ToolCall)
            result = ToolResult(
                call=call,
                success=True,
                tool_run_ref=tool_run_ref(call.context, call.tool_name),
                external_object_refs=[
                    ExternalObjectRef(system="INTERNAL", object_type="Task", object_id=f"task_{index}")
                ],
            )
            draft = outcome_from_tool_result(result)
            recording = time.thread_time()
            steps.record_outcome(deps, draft)
            recorded = time.thread_time()
            if index >= warmup:
                prepare.append((prepared - began) * 1000)
                record.append((recorded - recording) * 1000)
    return {"prepare_tool_call": _quartiles(prepare), "record_outcome": _quartiles(record)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = {
        "fulfill_version": __version__,
        "executions": args.executions,
        **run(args.executions, args.warmup),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
