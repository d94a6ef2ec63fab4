"""The retention passes: DBOS's rows of finished workflows, and the outbox's delivered messages,
are deleted once they are no longer needed.

DBOS keeps each workflow's status row, inputs, output and step checkpoints until they are deleted;
without this pass its tables grow by every execution for as long as a deployment lives. Which
workflows may go is decided by ``domain/retention.py``: finished, unchanged for
``FULFILL_WORKFLOW_RETENTION_DAYS``, and their intent at rest in fulfill's own records (asked of
the store in the same batch). fulfill's records themselves (attempts, outcomes, the ledger) are
never touched.

Workers run it every ``FULFILL_WORKFLOW_RETENTION_INTERVAL_SECONDS``, in batches, oldest first,
one worker at a time (``store.exclusive``): a worker whose turn comes while another's pass runs
skips its own. Two passes at once would list the same batches and delete them twice, and since
``DBOS.delete_workflows`` does not say what it deleted, both would count them. A pass that fails
(the database away) deletes nothing more and is tried again at the next interval.

The outbox keeps every message and its deliveries after an external destination (a webhook, the
event bus, a tenant's notification channel) accepted them; nothing reads them again. Workers
delete the deliveries accepted more than ``FULFILL_OUTBOX_RETENTION_DAYS`` ago, and a message
once none of its deliveries is left (``store/outbox.delete_delivered``): pending and dead-lettered
deliveries stay, and so do the engine's own messages.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from dbos import DBOS

from fulfill import metrics
from fulfill.domain.retention import (
    FINISHED_STATUSES,
    WORKFLOW_NAMES,
    FinishedWorkflow,
    deletable,
    intents_of,
)
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.periodic import PeriodicPass
from fulfill.engine.runtime import Runtime

log = logging.getLogger(__name__)

# Workflows listed, checked and deleted per batch: one read of DBOS's rows, one of fulfill's, one
# delete transaction in DBOS's database.
BATCH = 200
_DAY = 86_400.0
# What a worker holds while its pass runs (``Store.exclusive``).
RETENTION_LOCK = "fulfill-workflow-retention"


def delete_finished_workflows(
    rt: Runtime, *, stopping: Callable[[], bool] = lambda: False, batch: int = BATCH
) -> int:
    """One pass: delete every workflow that may go (see the module's docstring), oldest first, a
    batch at a time until none is left or ``stopping()``; answers how many were deleted."""
    days = rt.settings.workflow_retention_days
    if days <= 0:
        return 0
    with rt.store.exclusive(RETENTION_LOCK) as alone:
        if not alone:
            log.debug("workflow retention: another worker's pass is running; this one is skipped")
            return 0
        return _delete_finished_workflows(rt, days, stopping, batch)


def _delete_finished_workflows(rt: Runtime, days: float, stopping: Callable[[], bool], batch: int) -> int:
    cutoff = rt.clock.now() - days * _DAY
    deleted = kept = 0
    while not stopping():
        # Rows kept stay in front (oldest first), so the next batch starts after them; a row
        # deleted meanwhile by another worker only makes a later one wait for the next pass.
        listed = DBOS.list_workflows(
            status=list(FINISHED_STATUSES),
            name=list(WORKFLOW_NAMES),
            end_time=iso_from_epoch(cutoff),
            limit=batch,
            offset=kept,
            load_input=False,
            load_output=False,
        )
        workflows = [
            FinishedWorkflow(
                workflow_id=status.workflow_id,
                name=status.name,
                status=status.status,
                # A row without its time is never old enough (DBOS writes it on every change).
                updated_at_epoch=status.updated_at / 1000 if status.updated_at is not None else math.inf,
            )
            for status in listed
        ]
        with rt.store.read() as uow:
            busy = uow.executions.intents_with_work_outstanding(intents_of(workflows))
        chosen = deletable(workflows, busy=busy, cutoff_epoch=cutoff)
        if chosen:
            DBOS.delete_workflows(chosen)
            metrics.WORKFLOWS_DELETED.inc(len(chosen))
        deleted += len(chosen)
        kept += len(listed) - len(chosen)
        if len(listed) < batch:
            break
    if deleted or kept:
        log.info(
            "workflow retention: deleted %d finished workflows older than %g days; kept %d (their "
            "intent has work outstanding, or they changed since)",
            deleted,
            days,
            kept,
        )
    return deleted


def delete_delivered_messages(
    rt: Runtime, *, stopping: Callable[[], bool] = lambda: False, batch: int = BATCH
) -> int:
    """One pass over the outbox: delete the deliveries accepted before the retention period and
    the messages left without any, a batch (one write transaction) at a time until none is left
    or ``stopping()``; answers how many messages were deleted."""
    days = rt.settings.outbox_retention_days
    if days <= 0:
        return 0
    cutoff = rt.clock.now() - days * _DAY
    deliveries = messages = 0
    while not stopping():
        with rt.store.write() as uow:
            batch_deliveries, batch_messages = uow.outbox.delete_delivered(
                cutoff_epoch=cutoff, cutoff=iso_from_epoch(cutoff), limit=batch
            )
        metrics.OUTBOX_MESSAGES_DELETED.inc(batch_messages)
        deliveries += batch_deliveries
        messages += batch_messages
        if batch_deliveries < batch:
            break
    if deliveries:
        log.info(
            "outbox retention: deleted %d deliveries accepted more than %g days ago and %d messages "
            "left without any",
            deliveries,
            days,
            messages,
        )
    return messages


class WorkflowRetention(PeriodicPass):
    """Runs :func:`delete_finished_workflows` every ``workflow_retention_interval_seconds``."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(
            "workflow-retention",
            lambda: delete_finished_workflows(rt, stopping=self.stopping),
            lambda: rt.settings.workflow_retention_interval_seconds,
        )


class OutboxRetention(PeriodicPass):
    """Runs :func:`delete_delivered_messages` every ``outbox_retention_interval_seconds``."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(
            "outbox-retention",
            lambda: delete_delivered_messages(rt, stopping=self.stopping),
            lambda: rt.settings.outbox_retention_interval_seconds,
        )
