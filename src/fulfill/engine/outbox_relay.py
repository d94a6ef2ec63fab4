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
exponential backoff, capped at ``FULFILL_OUTBOX_BACKOFF_MAX_SECONDS``, up to
``FULFILL_OUTBOX_MAX_ATTEMPTS`` tries: then the delivery is DEAD_LETTER until redelivered.

A tenant's notification channels are destinations too (``slack:<tenant>``, ``email:<tenant>``,
``notify:<tenant>:<n>``): ``engine/notify.py`` sends them, with the same retries and dead letters;
a destination that answers with a ``Retry-After`` (Slack's ``ratelimited``) is not tried again
sooner, and its lane rests as long.

Lanes. The engine's own messages (``engine``, ``intake``) are relayed by a thread of their own,
so a compensation or a rerun never waits behind a webhook. Every external destination (one webhook
URL, one event bus) has its own lane: at most ``FULFILL_OUTBOX_DESTINATION_CONCURRENCY`` deliveries
in flight at once in this process, and after refusals in a row the lane rests (exponential
backoff) before its next try, so a destination that hangs or refuses holds only its own messages.
Leases keep several processes from sending one delivery at the same time.

What the relay costs the database. A lane's thread claims up to ``LANE_BATCH`` due deliveries in
one transaction while its destination answers fast (one at a time while it does not) and records
each result as it comes (one transaction per delivery); a lease taken less than
``FRESH_LEASE_FRACTION`` of its length ago is not renewed before its send (the claim is that
renewal), one older than that is. A pass of the engine's lane first reads whether
one of its destinations has a delivery due, and claims (a write) only then: an idle relay only
reads. The backlog for ``fulfill_outbox_pending`` is read at most once per poll interval.
Wake-ups that arrive while a pass runs, or within ``WAKE_COALESCE_SECONDS`` of its start, make
one more pass, not one each.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from dataclasses import replace

import httpx

from fulfill import metrics
from fulfill.domain.execution import CompensationRequest, ExecutionRequest
from fulfill.domain.notifications import NOTICE_TOPICS, parse_destination
from fulfill.domain.outbox import (
    DESTINATION_KINDS,
    ENGINE_DESTINATIONS,
    after_refusal,
    backoff_seconds,
    destination_kind,
)
from fulfill.domain.records import Delivery
from fulfill.engine.eventbridge import EventBridgePublisher, bus_of
from fulfill.engine.intake import EventRejected, accept_approved_event, parse_approved_event
from fulfill.engine.notify import NoticeSender, Refusal
from fulfill.engine.runtime import Runtime
from fulfill.engine.webhook_http import post_for_status, webhook_client
from fulfill.engine.workflow import start_compensation, start_execution
from fulfill.logging_setup import describe_failure
from fulfill.ports.store import UnitOfWork

log = logging.getLogger(__name__)

INTAKE_DESTINATION = "intake"
ENGINE_DESTINATION = "engine"  # start a workflow: topic EXECUTION_RERUN or COMPENSATION
assert {INTAKE_DESTINATION, ENGINE_DESTINATION} == ENGINE_DESTINATIONS
RERUN_TOPIC = "EXECUTION_RERUN"
COMPENSATION_TOPIC = "COMPENSATION"
# What the outbox carries (labels of fulfill_outbox_deliveries_total, present at 0 from start-up).
TOPICS = (
    "SIGNAL_CREATED",
    RERUN_TOPIC,
    COMPENSATION_TOPIC,
    "ACTION_APPROVED",
    "APPROVAL_ESCALATED",
    *NOTICE_TOPICS,
)
DELIVERY_RESULTS = ("ok", "retry", "dead_letter")
LEASE_SECONDS = 60.0  # at least; see OutboxRelay.lease_seconds
IDLE_LANE_WAIT_SECONDS = 30.0  # a lane with nothing due looks again at the latest after this
# A lane's thread claims this many due deliveries of its destination at once (its leases) while
# the destination answers within SLOW_SEND_SECONDS; one at a time before its first answer and
# after a slower one, so that a slow destination's deliveries spread over the lane's threads as
# they did. The ones a thread has not sent when it must stop or rest, or after a slow send, go
# back in line at once (release_leases).
LANE_BATCH = 10
SLOW_SEND_SECONDS = 0.1
# A lease taken less than this share of its length ago (1 s of the default 60 s) is as good as
# renewed: renewing it would move its end by less than that. An older one (behind slow deliveries
# of its batch) is renewed right before it is sent, as every one was before.
FRESH_LEASE_FRACTION = 1 / 60
# Passes of the engine's lane (and the dispatcher's reads) start at most this often while wake-ups
# keep coming (one per recorded outcome when signals go to webhooks): the wake-ups in between
# make one pass, at most this much later.
WAKE_COALESCE_SECONDS = 0.1


def queue_rerun(uow: UnitOfWork, request: ExecutionRequest, *, now_iso: str, now: float) -> None:
    """Queue a rerun's start in the caller's transaction: the relay starts it once it commits."""
    uow.outbox.enqueue(
        message_id=f"rerun:{request.workflow_id}",
        topic=RERUN_TOPIC,
        tenant_id=request.tenant_id,
        payload=request.model_dump(mode="json"),
        destinations=[ENGINE_DESTINATION],
        now=now_iso,
        now_epoch=now,
    )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class _DestinationLane:
    """One external destination: its worker threads (at most ``concurrency``, started when it first
    has something due) and its rest after refusals in a row (shared by its threads)."""

    def __init__(self, relay: OutboxRelay, destination: str, concurrency: int) -> None:
        self.destination = destination
        self._relay = relay
        self._concurrency = concurrency
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._refusals = 0
        self._rest_until = 0.0  # monotonic
        self._batch = 1  # how many to claim at once: LANE_BATCH once the destination answers fast
        self.threads: list[threading.Thread] = []

    def wake(self) -> None:
        """Something is due: start another thread if the lane has fewer than its concurrency."""
        with self._lock:
            if len(self.threads) < self._concurrency and not self._relay.stopping:
                # Each thread holds its own leases, under an owner of its own.
                owner = f"{self._relay.owner}-{uuid.uuid4().hex[:12]}"
                thread = threading.Thread(
                    target=self._run,
                    args=(owner,),
                    name=f"fulfill-outbox-lane-{len(self.threads)}",
                    daemon=True,
                )
                self.threads.append(thread)
                thread.start()
        self._wake.set()

    def _resting(self) -> float:
        with self._lock:
            return max(0.0, self._rest_until - time.monotonic())

    def _record(self, accepted: bool) -> None:
        settings = self._relay.settings
        # A destination that said how long to wait (Slack's Retry-After) rests at least that long.
        asked = self._relay.take_retry_after(self.destination)
        with self._lock:
            self._refusals = 0 if accepted else self._refusals + 1
            rest = backoff_seconds(
                self._refusals,
                base=settings.outbox_backoff_base_seconds,
                cap=settings.outbox_backoff_max_seconds,
            )
            self._rest_until = time.monotonic() + max(rest, asked)

    def _run(self, owner: str) -> None:
        relay = self._relay
        while not relay.stopping:
            rest = self._resting()
            if rest > 0:
                relay.wait_stop(rest)
                continue
            # A wake-up from now on is news: the claim below sees whatever was due before it.
            self._wake.clear()
            limit = self._batch
            try:
                claimed = relay.claim_for(self.destination, owner=owner, limit=limit)
            except Exception as exc:
                log.error("outbox lane pass failed; retrying at the next poll: %s", describe_failure(exc))
                claimed = []
            if claimed:
                self._send_claimed(claimed, owner)
            if len(claimed) < limit:
                # Nothing more was due (or the store failed): the dispatcher, which only reads,
                # wakes the lane when something is; a lane never polls with claims (writes) while
                # idle.
                self._wake.wait(timeout=IDLE_LANE_WAIT_SECONDS)

    def _send_claimed(self, claimed: list[Delivery], owner: str) -> None:
        """Send a claimed batch in its order, each result recorded as it comes; when the lane must
        rest (a refusal, by this thread or another of the lane), when the relay stops, or after a
        send slower than SLOW_SEND_SECONDS, the rest of the batch goes back in line."""
        relay = self._relay
        claimed_at = time.monotonic()
        for index, delivery in enumerate(claimed):
            if relay.stopping or self._resting() > 0:
                relay.release(owner)
                return
            began = time.monotonic()
            try:
                accepted = relay.send(delivery, owner=owner, claimed_at=claimed_at)
            except Exception as exc:
                log.error("outbox lane pass failed; retrying at the next poll: %s", describe_failure(exc))
                relay.release(owner)
                return
            slow = time.monotonic() - began >= SLOW_SEND_SECONDS
            self._batch = 1 if slow else LANE_BATCH
            if accepted is not None:
                self._record(accepted)
            if slow and index + 1 < len(claimed):
                relay.release(owner)  # for the lane's other threads, and other processes
                return


class OutboxRelay:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self.settings = rt.settings
        self._http = webhook_client(rt.settings.webhook_timeout_seconds)
        self._eventbridge = EventBridgePublisher(rt.settings)
        self._notices = NoticeSender(rt.settings, rt.store, rt.clock, self._http)
        self._retry_after: dict[str, float] = {}
        self._retry_after_lock = threading.Lock()
        # Who holds a lease: one token for the engine lane (and deliver_due), and one per thread of
        # each destination's lane, made from it.
        self.owner = f"relay-{uuid.uuid4().hex}"
        # Much longer than one delivery can take (httpx applies the timeout per connect, write and
        # read; botocore per connect and read, with no retry of its own), so a delivery never
        # outlives the lease renewed right before it.
        slowest = max(
            rt.settings.webhook_timeout_seconds,
            rt.settings.eventbridge_timeout_seconds,
            rt.settings.smtp_timeout_seconds,
        )
        self.lease_seconds = max(LEASE_SECONDS, 6 * slowest)
        self._stop = threading.Event()
        self._dispatch = threading.Event()
        self._engine_thread = threading.Thread(
            target=self._run_engine_lane, name="fulfill-outbox-engine", daemon=True
        )
        self._dispatch_thread = threading.Thread(
            target=self._run_dispatcher, name="fulfill-outbox-dispatch", daemon=True
        )
        self._lanes: dict[str, _DestinationLane] = {}
        # Present at 0 from start-up, so that increase() sees the first one after every restart.
        for topic in TOPICS:
            for result in DELIVERY_RESULTS:
                metrics.OUTBOX_DELIVERIES.labels(topic, result)
        for kind in DESTINATION_KINDS:
            metrics.OUTBOX_DEAD_LETTERED.labels(kind)

    def take_retry_after(self, destination: str) -> float:
        """How long ``destination`` last asked to be left alone (0: it did not); asked once."""
        with self._retry_after_lock:
            return self._retry_after.pop(destination, 0.0)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait_stop(self, seconds: float) -> None:
        self._stop.wait(timeout=seconds)

    def start(self) -> None:
        self._engine_thread.start()
        self._dispatch_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._rt.outbox_wakeup.set()
        self._dispatch.set()
        self._engine_thread.join(timeout=10)
        self._dispatch_thread.join(timeout=10)
        # A lane's thread may be held by a destination that hangs: it keeps its lease (another relay
        # must not send that delivery while this one may still be sending it) and gives up at its
        # timeout. Wait for the lanes only briefly.
        deadline = time.monotonic() + 5
        for lane in list(self._lanes.values()):
            lane.wake()
            for thread in lane.threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._http.close()
        self._eventbridge.close()

    def _run_engine_lane(self) -> None:
        """The engine's own messages, oldest first; also wakes the external lanes' dispatcher.

        Each pass first reads whether one of the engine's destinations has a delivery due, and
        claims (a write) only then, so an idle relay writes nothing; the backlog for
        ``fulfill_outbox_pending`` is read at most once per ``FULFILL_OUTBOX_POLL_SECONDS``."""
        counted = float("-inf")
        while not self._stop.is_set():
            began = time.monotonic()
            self._dispatch.set()
            try:
                with self._rt.store.read() as uow:
                    due = uow.outbox.due_destinations(
                        now_epoch=self._rt.clock.now(), only=ENGINE_DESTINATIONS
                    )
                    if began - counted >= self._rt.settings.outbox_poll_seconds:
                        metrics.OUTBOX_PENDING.set(uow.outbox.pending_count())
                        counted = began
                if due:
                    while self.deliver_due(only=ENGINE_DESTINATIONS) and not self._stop.is_set():
                        pass
            except Exception as exc:
                log.error("outbox relay pass failed; retrying at the next poll: %s", describe_failure(exc))
            if self._rt.outbox_wakeup.wait(timeout=self._rt.settings.outbox_poll_seconds):
                self._coalesce(began)
            self._rt.outbox_wakeup.clear()

    def _coalesce(self, began: float) -> None:
        """Woken sooner than WAKE_COALESCE_SECONDS after the last pass began: wait out the rest,
        so that the wake-ups of that time make one pass."""
        wait = WAKE_COALESCE_SECONDS - (time.monotonic() - began)
        if wait > 0:
            self._stop.wait(timeout=wait)

    def _run_dispatcher(self) -> None:
        """Wakes the lane of every external destination that has a delivery due."""
        began = float("-inf")
        while not self._stop.is_set():
            if self._dispatch.wait(timeout=self._rt.settings.outbox_poll_seconds):
                self._coalesce(began)
            began = time.monotonic()
            self._dispatch.clear()
            if self._stop.is_set():
                break
            try:
                with self._rt.store.read() as uow:
                    due = uow.outbox.due_destinations(
                        now_epoch=self._rt.clock.now(), exclude=ENGINE_DESTINATIONS
                    )
            except Exception as exc:
                log.error("outbox dispatch failed; retrying at the next poll: %s", describe_failure(exc))
                continue
            for destination in due:
                lane = self._lanes.get(destination)
                if lane is None:
                    lane = self._lanes[destination] = _DestinationLane(
                        self, destination, self._rt.settings.outbox_destination_concurrency
                    )
                lane.wake()

    def deliver_due(
        self, *, only: frozenset[str] | None = None, exclude: frozenset[str] | None = None
    ) -> int:
        """Deliver what is due now (on the lane ``only``/``exclude`` pick; all by default), one at
        a time, oldest first; returns how many deliveries were claimed.

        Leases are per delivery: the batch is claimed with one lease, and each delivery's lease is
        renewed right before it is sent, so one that waited behind slow deliveries past its first
        lease is sent only if no other relay has taken it over meanwhile. Only the lease owner
        records the result; a delivery whose lease was lost is left to the relay that holds it
        (at least once: the receiver deduplicates on ``X-Fulfill-Event-Id``).
        """
        rt = self._rt
        with rt.store.write() as uow:
            claimed = uow.outbox.claim_due(
                now_epoch=rt.clock.now(),
                lease_seconds=self.lease_seconds,
                owner=self.owner,
                only=only,
                exclude=exclude,
            )
        claimed_at = time.monotonic()
        for delivery in claimed:
            if self._stop.is_set():
                self.release(self.owner)  # the rest waits for the next relay
                break
            self.send(delivery, owner=self.owner, claimed_at=claimed_at)
        return len(claimed)

    def claim_for(self, destination: str, *, owner: str, limit: int = 1) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries to ``destination`` to ``owner``, oldest first."""
        rt = self._rt
        with rt.store.write() as uow:
            return uow.outbox.claim_due(
                now_epoch=rt.clock.now(),
                lease_seconds=self.lease_seconds,
                owner=owner,
                limit=limit,
                only=(destination,),
            )

    def release(self, owner: str) -> None:
        """Give back ``owner``'s unsent leases (they are due again at once, for any relay); when the
        store fails, they wait for their leases to run out instead."""
        try:
            with self._rt.store.write() as uow:
                uow.outbox.release_leases(owner=owner)
        except Exception as exc:
            log.error("outbox leases not released; they run out instead: %s", describe_failure(exc))

    def deliver_one(self, destination: str, *, owner: str) -> bool | None:
        """Deliver the oldest due delivery to ``destination``: True accepted, False refused, None
        when none was due (or another relay took it)."""
        claimed = self.claim_for(destination, owner=owner)
        if not claimed:
            return None
        return self.send(claimed[0], owner=owner, claimed_at=time.monotonic())

    def send(self, delivery: Delivery, *, owner: str, claimed_at: float | None = None) -> bool | None:
        """Renew the lease (unless it was taken at the monotonic ``claimed_at`` less than
        FRESH_LEASE_FRACTION of its length ago), deliver, record the result; None when the lease
        was lost first."""
        rt = self._rt
        if claimed_at is None or time.monotonic() - claimed_at >= self.lease_seconds * FRESH_LEASE_FRACTION:
            with rt.store.write() as uow:
                renewed = uow.outbox.renew_lease(
                    delivery,
                    owner=owner,
                    now_epoch=rt.clock.now(),
                    lease_seconds=self.lease_seconds,
                )
            if not renewed:
                log.info("outbox delivery %s was taken over by another relay", delivery.message_id)
                return None
        refusal = self._refusal(delivery)
        error = None if refusal is None else refusal.error
        decision = (
            None
            if refusal is None
            else after_refusal(
                delivery.attempts + 1,
                max_attempts=rt.settings.outbox_max_attempts,
                base=rt.settings.outbox_backoff_base_seconds,
                cap=rt.settings.outbox_backoff_max_seconds,
            )
        )
        if refusal is not None and decision is not None and refusal.retry_after_seconds > 0:
            # Never sooner than the destination asked (Slack's Retry-After).
            decision = replace(
                decision, delay_seconds=max(decision.delay_seconds, refusal.retry_after_seconds)
            )
            with self._retry_after_lock:
                self._retry_after[delivery.destination] = refusal.retry_after_seconds
        with rt.store.write() as uow:
            if decision is None:
                settled = uow.outbox.mark_delivered(delivery, owner=owner, now=rt.clock.now_iso())
            else:
                settled = uow.outbox.mark_failed(
                    delivery,
                    owner=owner,
                    error=error or "",
                    next_attempt_epoch=rt.clock.now() + decision.delay_seconds,
                    dead_letter_at=rt.clock.now_iso() if decision.dead_letter else None,
                )
        result = "ok" if decision is None else "dead_letter" if decision.dead_letter else "retry"
        metrics.OUTBOX_DELIVERIES.labels(delivery.topic, result).inc()
        if not settled:
            log.warning(
                "outbox delivery %s outlived its lease; the relay holding it now delivers it again",
                delivery.message_id,
            )
        elif decision is not None and decision.dead_letter:
            kind = destination_kind(delivery.destination)
            metrics.OUTBOX_DEAD_LETTERED.labels(kind).inc()
            log.error(
                "outbox delivery %s to a %s destination is DEAD_LETTER after %d tries (%s); "
                "redeliver it with `fulfill outbox redeliver` or the admin API",
                delivery.message_id,
                kind,
                delivery.attempts + 1,
                error,
            )
        return decision is None

    def _refusal(self, delivery: Delivery) -> Refusal | None:
        """None when the destination accepted the message, else why not: a tenant's notification
        channel (``engine/notify.py``), or any other destination (:meth:`_deliver`)."""
        channel = parse_destination(delivery.destination)
        if channel is not None:
            refusal = self._notices.send(channel, delivery.payload, delivery.message_id)
            if refusal is not None:
                log.warning("%s delivery of %s refused: %s", channel.kind, delivery.message_id, refusal.error)
            return refusal
        error = self._deliver(delivery)
        return None if error is None else Refusal(error)

    def _deliver(self, delivery: Delivery) -> str | None:
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
            status = post_for_status(self._http, delivery.destination, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"webhook unreachable: {type(exc).__name__}"
        if 200 <= status < 300:
            return None
        return f"webhook answered HTTP {status}"
