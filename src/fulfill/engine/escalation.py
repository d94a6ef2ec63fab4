"""The escalation sweep: an approval whose first window ended under an ESCALATE policy is escalated
once, and its second approver group told.

Every worker process runs it every ``FULFILL_ESCALATION_INTERVAL_SECONDS``, like the reconciler.
A pass reads the due intents through the ``(approval_status, escalates_at_epoch)`` index, then
escalates each one in a transaction of its own: the intent's row is locked, the rule is checked
again on what is stored now (``domain/escalation.escalation_due``), and the write is a
compare-and-set that clears the row's escalation column. So when several processes sweep at once,
exactly one of them escalates a given intent; the others find it escalated and move on.

Escalating writes, in that one transaction: the intent's ``escalated_at``, the ``APPROVAL_ESCALATED``
ledger entry, and the notification (:func:`announce_escalation`).
"""

from __future__ import annotations

import logging

from fulfill.config import Settings
from fulfill.domain.escalation import (
    ESCALATION_TOPIC,
    escalated,
    escalation_due,
    escalation_message,
    escalation_message_id,
    intent_console_url,
    select_due,
)
from fulfill.domain.ledger import approval_escalated_entry
from fulfill.domain.models import ActionIntentV1
from fulfill.domain.notifications import approval_escalated_notice
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.periodic import PeriodicPass
from fulfill.engine.runtime import Runtime
from fulfill.logging_setup import describe_failure
from fulfill.ports.store import UnitOfWork
from fulfill.usecases.notifications import enqueue_notices

log = logging.getLogger(__name__)

# Intents read per query; a pass reads again while full batches are all escalated.
BATCH = 200


def announce_escalation(
    uow: UnitOfWork, settings: Settings, intent: ActionIntentV1, *, now_epoch: float
) -> bool:
    """Tell the second approver group that ``intent`` was escalated, in the escalating transaction:
    an ``APPROVAL_ESCALATED`` event through the outbox to the event bus (``FULFILL_EVENTBRIDGE_BUS``),
    linking the intent's console page when ``FULFILL_PUBLIC_URL`` is set, and the notice to the
    tenant's notification channels (``usecases/notifications.py``). True when a message was written
    (there is nowhere to send it without a bus or a channel)."""
    occurred_at = intent.escalated_at or iso_from_epoch(now_epoch)
    notified = enqueue_notices(uow, settings, approval_escalated_notice(intent, occurred_at=occurred_at))
    published = uow.outbox.enqueue(
        message_id=escalation_message_id(intent),
        topic=ESCALATION_TOPIC,
        tenant_id=intent.tenant_id,
        payload=escalation_message(intent, console_url=intent_console_url(settings.public_url, intent)),
        destinations=settings.escalation_destinations,
        now=intent.escalated_at or iso_from_epoch(now_epoch),
        now_epoch=now_epoch,
    )
    return published or bool(notified)


def escalate(rt: Runtime, tenant_id: str, action_intent_id: str) -> bool:
    """Escalate one intent if it is (still) due; True when this call escalated it."""
    announced = False
    with rt.store.write() as uow:
        intent = uow.intents.get_intent(tenant_id, action_intent_id, for_update=True)
        now = rt.clock.now()
        if intent is None or not escalation_due(intent, now):
            return False  # approved, rejected, expired or escalated meanwhile
        updated = escalated(intent, now=iso_from_epoch(now))
        if not uow.intents.mark_escalated(updated):
            return False
        uow.executions.append_ledger(approval_escalated_entry(updated))
        announced = announce_escalation(uow, rt.settings, updated, now_epoch=now)
    if announced:
        rt.outbox_wakeup.set()
    log.info("approval of %s escalated (until %s)", action_intent_id, updated.expires_at)
    return True


def escalate_due(rt: Runtime) -> int:
    """One pass: escalate every intent whose escalation is due; returns how many this pass did."""
    done = 0
    while True:
        now = rt.clock.now()
        with rt.store.read() as uow:
            candidates = uow.intents.escalation_candidates(now_epoch=now, limit=BATCH)
        progressed = 0
        for intent in select_due(candidates, now):
            try:
                if escalate(rt, intent.tenant_id, intent.action_intent_id):
                    progressed += 1
            except Exception as exc:
                log.error("could not escalate %s: %s", intent.action_intent_id, describe_failure(exc))
        done += progressed
        # A full batch all escalated may have more behind it; anything else waits for the next pass.
        if len(candidates) < BATCH or progressed < len(candidates):
            return done


class Escalator(PeriodicPass):
    """Runs :func:`escalate_due` every ``escalation_interval_seconds``."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(
            "escalation", lambda: escalate_due(rt), lambda: rt.settings.escalation_interval_seconds
        )
