"""Which of DBOS's finished workflows may be deleted: a pure decision, run by ``engine/retention.py``.

DBOS keeps every workflow's row, inputs, output and step checkpoints until someone deletes them.
fulfill's own records (the attempt, the write-once outcome, the ledger) say everything a client,
an operator or an auditor reads about an execution, so DBOS's copy is needed only while the
engine may still act on it:

- the workflow is unfinished (DBOS recovers it, the reconciler resumes it);
- its intent's attempt is QUEUED or RUNNING (the reconciler forks a failed workflow from its
  failed step, which reads that workflow's checkpoints), or AMBIGUOUS (a person is still deciding
  what happened, and the checkpoints show what the call did);
- its intent has a compensation PENDING, or FAILED with a next try due (the reconciler checks the
  compensation's workflow).

Anything else is deleted once it is older than the retention period: finished, and its intent at
rest. Deleting never lets a workflow run twice: every start of an execution goes through
StartExecution, which carries on only while the attempt row holds the lock (a finished attempt
never does again), and every new attempt or compensation try runs under a new workflow id.

A workflow's id names its intent (``execution_workflow_id`` and ``CompensationRequest`` in
``domain/execution.py``). Reading the intent back from an id is exact except for one case: an
intent id may itself end in ``-r<n>``, like a rerun's workflow id, so both readings are returned,
and the workflow is deleted only when neither intent has work outstanding. A workflow this module
cannot read is never deleted.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

# The names of fulfill's two DBOS workflows (``engine/workflow.py`` registers them by these).
EXECUTION_WORKFLOW = "fulfill.execute_intent"
COMPENSATION_WORKFLOW = "fulfill.compensate"
WORKFLOW_NAMES = (EXECUTION_WORKFLOW, COMPENSATION_WORKFLOW)

# DBOS's statuses of a workflow that will not run again unless someone resumes or forks it.
FINISHED_STATUSES = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")

# An identifier (``domain/models.Identifier``): never ``/`` nor ``~``.
_ID = r"[A-Za-z0-9_.:@-]+"
# exec-{tenant}/{intent}, a rerun's …-r{n}, a reconciler's fork …~{k}.
_EXECUTION_ID = re.compile(rf"exec-(?P<tenant>{_ID})/(?P<rest>{_ID})(?:~[0-9]+)?")
_RERUN_SUFFIX = re.compile(r"(?P<intent>.+)-r[0-9]+")
# compensate-{tenant}/{intent}-a{attempt}-c{try}.
_COMPENSATION_ID = re.compile(rf"compensate-(?P<tenant>{_ID})/(?P<intent>{_ID})-a[0-9]+-c[0-9]+")

IntentKey = tuple[str, str]
"""(tenant_id, action_intent_id)."""


@dataclass(frozen=True)
class FinishedWorkflow:
    """One of DBOS's workflow rows, as the retention pass lists it."""

    workflow_id: str
    name: str
    status: str
    updated_at_epoch: float


def owners(workflow_id: str, name: str) -> frozenset[IntentKey]:
    """The intents a workflow of fulfill's may belong to, read from its id (two readings at most,
    see the module's docstring); empty for a workflow fulfill does not name this way."""
    if name == EXECUTION_WORKFLOW:
        match = _EXECUTION_ID.fullmatch(workflow_id)
        if match is None:
            return frozenset()
        tenant, rest = match["tenant"], match["rest"]
        rerun = _RERUN_SUFFIX.fullmatch(rest)
        intents = {rest} | ({rerun["intent"]} if rerun else set())
        return frozenset((tenant, intent) for intent in intents)
    if name == COMPENSATION_WORKFLOW:
        match = _COMPENSATION_ID.fullmatch(workflow_id)
        return frozenset() if match is None else frozenset({(match["tenant"], match["intent"])})
    return frozenset()


def intents_of(workflows: Iterable[FinishedWorkflow]) -> set[IntentKey]:
    """Every intent the workflows may belong to: what the store is asked about."""
    return {key for workflow in workflows for key in owners(workflow.workflow_id, workflow.name)}


def deletable(
    workflows: Iterable[FinishedWorkflow], *, busy: Collection[IntentKey], cutoff_epoch: float
) -> list[str]:
    """The ids of the workflows that may be deleted: finished, unchanged since ``cutoff_epoch``,
    named by fulfill, and none of whose possible intents is ``busy`` (has work outstanding)."""
    chosen = []
    for workflow in workflows:
        if workflow.status not in FINISHED_STATUSES or workflow.updated_at_epoch > cutoff_epoch:
            continue
        intents = owners(workflow.workflow_id, workflow.name)
        if intents and not any(intent in busy for intent in intents):
            chosen.append(workflow.workflow_id)
    return chosen
