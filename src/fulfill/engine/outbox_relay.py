"""Relays outbox messages to their destinations until each one accepts (at-least-once).

Destinations: ``intake`` (this service's own ACTION_APPROVED intake; approvals no longer go
through the outbox, they take the execution lock in their own transaction, but messages written
before that change are still delivered), ``engine`` (starting a rerun
or a compensation workflow), ``eventbridge:<bus>`` (a PutEvents on an Amazon EventBridge bus, in
the reference's event shape; see ``engine/eventbridge.py``) and webhook URLs. Webhook
POSTs carry ``X-Fulfill-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`` with the
shared ``FULFILL_WEBHOOK_SECRET``, plus ``X-Fulfill-Timestamp`` and ``X-Fulfill-Event-Id`` (the
message id, stable across retries, for the receiver's deduplication). A non-2xx answer, a
refused or failed PutEvents (``FailedEntryCount > 0``) or a network error is retried with
exponential backoff, capped at ``FULFILL_OUTBOX_BACKOFF_MAX_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import uuid

import httpx

from fulfill import metrics
from fulfill.domain.execution import CompensationRequest, ExecutionRequest
from fulfill.engine.eventbridge import EventBridgePublisher, bus_of
from fulfill.engine.intake import EventRejected, accept_approved_event, parse_approved_event
from fulfill.engine.runtime import Runtime
from fulfill.engine.workflow import start_compensation, start_execution
from fulfill.logging_setup import describe_failure
from fulfill.store import outbox

log = logging.getLogger(__name__)

INTAKE_DESTINATION = "intake"
ENGINE_DESTINATION = "engine"  # start a workflow: topic EXECUTION_RERUN or COMPENSATION
RERUN_TOPIC = "EXECUTION_RERUN"
COMPENSATION_TOPIC = "COMPENSATION"
LEASE_SECONDS = 60.0  # at least; see OutboxRelay.lease_seconds


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class OutboxRelay:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._http = httpx.Client(timeout=rt.settings.webhook_timeout_seconds)
        self._eventbridge = EventBridgePublisher(rt.settings)
        # Who holds a lease: one token per relay (a relay delivers one message at a time).
        self.owner = f"relay-{uuid.uuid4().hex}"
        # Much longer than one delivery can take (httpx applies the timeout per connect, write and
        # read; botocore per connect and read, with no retry of its own), so a delivery never
        # outlives the lease renewed right before it.
        slowest = max(rt.settings.webhook_timeout_seconds, rt.settings.eventbridge_timeout_seconds)
        self.lease_seconds = max(LEASE_SECONDS, 6 * slowest)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fulfill-outbox-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._rt.outbox_wakeup.set()
        self._thread.join(timeout=10)
        self._http.close()
        self._eventbridge.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while self.deliver_due() and not self._stop.is_set():
                    pass
            except Exception as exc:
                log.error("outbox relay pass failed; retrying at the next poll: %s", describe_failure(exc))
            self._rt.outbox_wakeup.wait(timeout=self._rt.settings.outbox_poll_seconds)
            self._rt.outbox_wakeup.clear()

    def deliver_due(self) -> int:
        """Deliver what is due now; returns how many deliveries were claimed.

        Leases are per delivery: the batch is claimed with one lease, and each delivery's lease is
        renewed right before it is sent, so one that waited behind slow deliveries past its first
        lease is sent only if no other relay has taken it over meanwhile. Only the lease owner
        records the result; a delivery whose lease was lost is left to the relay that holds it
        (at least once: the receiver deduplicates on ``X-Fulfill-Event-Id``).
        """
        rt = self._rt
        with rt.db.write() as conn:
            claimed = outbox.claim_due(
                conn, now_epoch=rt.clock.now(), lease_seconds=self.lease_seconds, owner=self.owner
            )
        for delivery in claimed:
            if self._stop.is_set():
                with rt.db.write() as conn:
                    outbox.release_leases(conn, owner=self.owner)  # the rest waits for the next relay
                break
            with rt.db.write() as conn:
                renewed = outbox.renew_lease(
                    conn,
                    delivery,
                    owner=self.owner,
                    now_epoch=rt.clock.now(),
                    lease_seconds=self.lease_seconds,
                )
            if not renewed:
                log.info("outbox delivery %s was taken over by another relay", delivery.message_id)
                continue
            error = self._deliver(delivery)
            metrics.OUTBOX_DELIVERIES.labels(delivery.topic, "ok" if error is None else "retry").inc()
            with rt.db.write() as conn:
                if error is None:
                    settled = outbox.mark_delivered(conn, delivery, owner=self.owner, now=rt.clock.now_iso())
                else:
                    delay = min(
                        rt.settings.outbox_backoff_max_seconds,
                        rt.settings.outbox_backoff_base_seconds * (2**delivery.attempts),
                    )
                    settled = outbox.mark_failed(
                        conn,
                        delivery,
                        owner=self.owner,
                        error=error,
                        next_attempt_epoch=rt.clock.now() + delay,
                    )
            if not settled:
                log.warning(
                    "outbox delivery %s outlived its lease; the relay holding it now delivers it again",
                    delivery.message_id,
                )
        with rt.db.read() as conn:
            metrics.OUTBOX_PENDING.set(outbox.pending_count(conn))
        return len(claimed)

    def _deliver(self, delivery: outbox.Delivery) -> str | None:
        """None when the destination accepted the message, else why it did not."""
        if delivery.destination == ENGINE_DESTINATION:
            try:
                if delivery.topic == RERUN_TOPIC:
                    start_execution(ExecutionRequest.model_validate(delivery.payload))
                else:
                    start_compensation(CompensationRequest.model_validate(delivery.payload))
            except Exception as exc:
                log.warning("starting %s failed: %s", delivery.message_id, type(exc).__name__)
                return f"start failed: {type(exc).__name__}"
            return None
        if delivery.destination == INTAKE_DESTINATION:
            try:
                accept_approved_event(self._rt, parse_approved_event(delivery.payload), caller=None)
            except EventRejected:
                return None  # rejected events are audited; retrying cannot change the answer
            except Exception as exc:
                log.warning("intake of %s failed: %s", delivery.message_id, type(exc).__name__)
                return f"intake failed: {type(exc).__name__}"
            return None
        bus = bus_of(delivery.destination)
        if bus is not None:
            error = self._eventbridge.publish(delivery.topic, delivery.payload, bus)
            if error is not None:
                log.warning("EventBridge delivery of %s failed: %s", delivery.message_id, error)
            return error
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        timestamp = str(int(self._rt.clock.now()))
        headers = {
            "Content-Type": "application/json",
            "X-Fulfill-Event-Id": delivery.message_id,
            "X-Fulfill-Event-Type": delivery.topic,
            "X-Fulfill-Timestamp": timestamp,
            "X-Fulfill-Signature": sign(self._rt.settings.webhook_secret, timestamp, body),
        }
        try:
            response = self._http.post(delivery.destination, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"webhook unreachable: {type(exc).__name__}"
        if 200 <= response.status_code < 300:
            return None
        return f"webhook answered HTTP {response.status_code}"
