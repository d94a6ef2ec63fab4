"""Reconcile probes: every worker, every ``FULFILL_PROBE_INTERVAL_SECONDS``, looks the writes of
AMBIGUOUS executions up at their targets and resolves what it can.

A pass reads the attempts whose probe is due (``uow.probes.due_probes``: AMBIGUOUS for at least
the interval, or past the next probe time their backoff set), then for each one:

1. **claims** it: a compare-and-set on its next probe time, which becomes the claimant's lease.
   Of several workers passing at once, one probes it; the others find it not due. A worker that
   dies while probing leaves the lease to run out, and another probes it then;
2. **looks it up** (``Runtime.lookup``: ``gateway/lookups.py``) by the attempt's tool and
   idempotency key, with the gateway's call timeout;
3. **decides** (``domain/probes.decide``, pure) from the answer and the attempt's history;
4. **applies** the decision. ``Commit`` and ``Resend`` go through the same use case a person's
   resolution does (``usecases/resolutions.resolve_by_probe``): the compare-and-set on the
   outcome's AMBIGUOUS status under the intent's row lock, a ``EXECUTION_RESOLVED`` ledger entry
   naming ``probe:<connector>`` as the decider and, for a resend, the rerun under the same key,
   with the probe's record in the same transaction. A person (or another worker) who resolved it
   meanwhile wins: the probe then writes and sends nothing. ``Wait`` and ``HandOver`` record the
   probe and its next time.

A probe resends an intent's call at most once: a resend is recorded on the probe's row with the
resolution (one transaction), and a later absence of the same intent is handed to a person.
While a kill switch stops the intent's action, an absence is not resent (the probe waits).
"""

from __future__ import annotations

import logging

from fulfill.domain.flowcontrol import connector_of
from fulfill.domain.killswitch import evaluate_kill_switches
from fulfill.domain.models import ActionOutcomeV1, ExecutionStatus
from fulfill.domain.probes import (
    Absent,
    Commit,
    DueProbe,
    Found,
    HandOver,
    Inconclusive,
    ProbeHistory,
    ProbeRecord,
    ProbeResult,
    Resend,
    Undeclared,
    decide,
    decided_by,
)
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.periodic import PeriodicPass
from fulfill.engine.runtime import Runtime
from fulfill.logging_setup import describe_failure
from fulfill.ports.store import UnitOfWork
from fulfill.usecases.resolutions import ResolveRequest, resolve_by_probe

log = logging.getLogger(__name__)

# Attempts probed per pass (the rest wait for the next one).
BATCH = 50


def probe_due(rt: Runtime) -> int:
    """One pass; returns how many executions it resolved."""
    settings = rt.settings
    with rt.store.read() as uow:
        due = uow.probes.due_probes(
            now_epoch=rt.clock.now(), first_after_seconds=settings.probe_interval_seconds, limit=BATCH
        )
    resolved = 0
    for item in due:
        try:
            resolved += int(probe_one(rt, item))
        except Exception as exc:
            log.error(
                "could not probe the AMBIGUOUS execution %s: %s", item.action_intent_id, describe_failure(exc)
            )
    return resolved


def probe_one(rt: Runtime, due: DueProbe) -> bool:
    """Claim, look up, decide, apply; True when this probe resolved the execution."""
    now = rt.clock.now()
    timeout = rt.settings.gateway_call_timeout_seconds
    # The lease outlasts the lookup (and the resolution after it).
    lease_until = now + timeout * 2 + 30.0
    with rt.store.write() as uow:
        if not uow.probes.claim_probe(due, lease_until_epoch=lease_until, now=iso_from_epoch(now)):
            return False
        outcome = uow.executions.get_outcome(
            due.tenant_id, due.account_id, due.action_intent_id, due.attempt_count
        )
        intent = uow.intents.get_intent(due.tenant_id, due.action_intent_id)
        resent_before = uow.probes.resent_before(due.tenant_id, due.account_id, due.action_intent_id)
        switches = uow.killswitches.get_global(), uow.killswitches.get_tenant(due.tenant_id)
    if outcome is None or intent is None or outcome.status is not ExecutionStatus.AMBIGUOUS:
        return False
    stopped = not evaluate_kill_switches(
        environment_stop=rt.settings.global_execution_stop,
        global_config=switches[0],
        tenant_config=switches[1],
        action_type=intent.action_type,
    ).allowed
    result = _look_up(rt, outcome, timeout)
    decision = decide(
        result,
        ProbeHistory(probes=due.probes, resent_before=resent_before, stopped=stopped),
        now=rt.clock.now(),
        interval_seconds=rt.settings.probe_interval_seconds,
        max_backoff_seconds=rt.settings.probe_max_backoff_seconds,
    )
    connector = connector_of(outcome.tool_name or "")
    probes = due.probes + 1
    if isinstance(decision, Commit):
        record = ProbeRecord(probes, lease_until, "found", None, resent=False)
        body = ResolveRequest(resolution="committed", external_object_refs=list(decision.refs))
    elif isinstance(decision, Resend):
        record = ProbeRecord(probes, lease_until, "resent", "the lookup found no write", resent=True)
        body = ResolveRequest(
            resolution="not_committed", reason=f"{connector}'s lookup found no write with the key"
        )
    else:
        kind = "undeclared" if isinstance(result, Undeclared) else _kind(result)
        record = ProbeRecord(probes, decision.next_probe_epoch, kind, decision.reason, resent=False)
        with rt.store.write() as uow:
            uow.probes.record_probe(
                due.tenant_id,
                due.account_id,
                due.action_intent_id,
                due.attempt_count,
                record,
                now=iso_from_epoch(rt.clock.now()),
            )
        if not isinstance(decision, HandOver) or due.probes == 0:
            log.info(
                "probe of %s (%s): %s; next in %.0fs",
                outcome.action_intent_id,
                outcome.tool_name,
                decision.reason,
                decision.next_probe_epoch - rt.clock.now(),
            )
        return False

    def also(uow: UnitOfWork) -> None:
        uow.probes.record_probe(
            due.tenant_id,
            due.account_id,
            due.action_intent_id,
            due.attempt_count,
            record,
            now=iso_from_epoch(rt.clock.now()),
        )

    view = resolve_by_probe(
        rt,
        tenant_id=due.tenant_id,
        account_id=due.account_id,
        action_intent_id=due.action_intent_id,
        attempt_count=due.attempt_count,
        body=body,
        decided_by=decided_by(connector),
        also=also,
    )
    if view is None:
        log.info("probe of %s: resolved meanwhile; nothing done", outcome.action_intent_id)
        return False
    log.warning(
        "probe resolved the AMBIGUOUS execution %s: %s",
        outcome.action_intent_id,
        "committed" if isinstance(decision, Commit) else "not committed, sent once more under the same key",
    )
    return True


def _look_up(rt: Runtime, outcome: ActionOutcomeV1, timeout: float) -> ProbeResult:
    if not outcome.tool_name or not outcome.idempotency_key:
        return Undeclared("the outcome names no tool or idempotency key")
    try:
        return rt.lookup.lookup(
            tenant_id=outcome.tenant_id,
            account_id=outcome.account_id,
            action_intent_id=outcome.action_intent_id,
            tool_name=outcome.tool_name,
            idempotency_key=outcome.idempotency_key,
            timeout_seconds=timeout,
        )
    except Exception as exc:  # a lookup that raises proves nothing
        return Inconclusive(f"the lookup failed: {describe_failure(exc)}")


def _kind(result: ProbeResult) -> str:
    if isinstance(result, Found):
        return "found"
    if isinstance(result, Absent):
        return "absent"
    return "inconclusive"


class Prober(PeriodicPass):
    """Runs :func:`probe_due` every ``probe_interval_seconds``."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__("probes", lambda: probe_due(rt), lambda: rt.settings.probe_interval_seconds)
