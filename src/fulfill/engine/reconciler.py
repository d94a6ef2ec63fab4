"""The reconciler: finishes attempts left RUNNING with no live workflow behind them.

An attempt is looked at only once its ``timeout_seconds`` budget plus a grace period has passed
(a live workflow always records its own outcome before that). Its workflow is then either gone,
failed, cancelled, or stuck; the reconciler records a FAILED/TIMEOUT outcome through the same
RecordOutcome as the workflow, so ledger, signal and outbox are written exactly as usual.
"""

from __future__ import annotations

import logging
import threading

from dbos import DBOS

from fulfill import metrics
from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.execution import ExecutionContext, OutcomeDraft, pre_tool_ref
from fulfill.domain.models import ExecutionStatus
from fulfill.engine.runtime import Runtime
from fulfill.engine.steps import record_outcome
from fulfill.logging_setup import describe_failure
from fulfill.store import executions

log = logging.getLogger(__name__)

_FINISHED_WORKFLOW = {"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}


def reconcile_once(rt: Runtime) -> int:
    """Finish every abandoned attempt; returns how many were finished."""
    with rt.db.read() as conn:
        candidates = executions.running_attempts_past_deadline(
            conn, rt.clock.now() - rt.settings.reconcile_grace_seconds
        )
    finished = 0
    for attempt in candidates:
        status = DBOS.get_workflow_status(attempt.workflow_id)
        if status is not None and status.status not in _FINISHED_WORKFLOW:
            # Alive but far past its budget: stop it before recording, so it cannot race us.
            DBOS.cancel_workflow(attempt.workflow_id)
        with rt.db.read() as conn:
            deadline = executions.get_deadline(conn, attempt)
        context = ExecutionContext(
            action_intent_id=attempt.action_intent_id,
            tenant_id=attempt.tenant_id,
            account_id=attempt.account_id,
            workflow_id=attempt.workflow_id,
            attempt_count=attempt.attempt_count,
            attempt_id=attempt.attempt_id,
            trace_id=attempt.trace_id,
            started_at=attempt.started_at,
            deadline_epoch=deadline,
        )
        record_outcome(
            OutcomeDraft(
                context=context,
                status=ExecutionStatus.FAILED,
                error=ExecutionError(
                    error_class=ErrorClass.TIMEOUT,
                    error_code="EXECUTION_ABANDONED",
                    error_message="the execution did not finish within its budget and was closed by the reconciler",
                ),
                idempotency_key=attempt.idempotency_key,
                tool_run_ref=pre_tool_ref(context),
            )
        )
        metrics.RECONCILED.inc()
        log.warning(
            "reconciled abandoned attempt %s (workflow %s)", attempt.action_intent_id, attempt.workflow_id
        )
        finished += 1
    return finished


class Reconciler:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fulfill-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._rt.settings.reconcile_interval_seconds):
            try:
                reconcile_once(self._rt)
            except Exception as exc:
                log.error("reconciler pass failed; retrying at the next interval: %s", describe_failure(exc))
