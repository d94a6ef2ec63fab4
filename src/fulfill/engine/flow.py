"""Flow control: every tool call passes its connector's gate, shared by every process.

A connector (or remote target) has a rate limit, a concurrency limit and a circuit breaker
(``domain/flowcontrol.py``). Before a call is made, :meth:`FlowControl.admit` gets it a
:class:`Permit`; once the call has answered, :meth:`Permit.finish` hands the slot back and tells
the circuit breaker what the answer said.

Why the limits hold across processes: an admission is one database transaction that locks the
connector's ``connector_state`` row (PostgreSQL: ``SELECT … FOR UPDATE``; SQLite: the write lock
every write transaction takes), reads the database clock, counts the calls in flight and the call
starts in the rate window, and inserts its own call only if both are below the limits. Admissions
to one connector are therefore serialised, whichever process makes them, and each sees every
admission committed before it: no two processes can both take the last slot. A call's row holds
its concurrency slot until the call finishes, or until its lease runs out if its process died.

Waiting: a call that may not start yet waits, inside its InvokeTool step, for as long as its
execution's budget allows; when the budget is spent it ends with :class:`WaitExpired`, which
InvokeTool records as ``FAILED``/``TIMEOUT``/``EXECUTION_TIMEOUT``. The callers of one process wait
in line per connector: only the first asks the database, for all of them (a rate-limited one
sleeps exactly until its slot; a full or open connector is asked again every
``FULFILL_CONNECTOR_POLL_SECONDS``, and a release in the same process wakes it at once), so a
crowd of waiting executions costs the database one query per poll, not one each. Each caller
sleeps on its own condition and is woken only when it must act: when it is handed its permit, or
when it comes to the front of the line (and, at the front, when a call of this process finishes).
The rest sleep until their own budget or re-check is due, so an admission costs the same however
many wait behind it.

Ahead of the slot: the rate window counts from the moment calls are sent, so a call admitted
late, after its slot opened, would push every later slot back by that lateness (at 10 calls per
second, a few milliseconds each time add up to a lower rate, and more so the busier the process).
The first caller therefore asks a little before the next slot opens (``_ADMIT_AHEAD_SECONDS``);
a call admitted ahead is handed its permit at once and waits until its slot before it returns, so
it is sent at the slot, never before it (``domain/flowcontrol.py``: ``Admit.at``). Until it is
sent, this process's next decisions count it as sent at its slot (``_Line.planned``), so the
calls after it keep their spacing.

Fair share: who gets a free slot is not whoever asks first. Every process's waiting calls are rows
of ``connector_waiters`` (leased by their process, renewed at each ask); the admission picks among
all of them round robin by tenant (``domain/fairness.py``), skipping tenants whose own cap is full.
If the pick is one of the asking process's callers, it is admitted and handed its permit; if it is
another process's, that process takes the slot at its next ask.

A connector with no limits and a closed circuit takes a fast path: one read, no lease, no write
(and a write only when its call fails, for the circuit breaker). Its calls are bounded by each
worker's ``FULFILL_WORKER_CONCURRENCY`` alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType

from fulfill import metrics
from fulfill.config import Settings
from fulfill.domain.errors import ErrorClass
from fulfill.domain.fairness import Waiter, next_in_line, tenant_decision
from fulfill.domain.flowcontrol import (
    Admit,
    CallResult,
    Circuit,
    CircuitPolicy,
    CircuitState,
    ConnectorLimits,
    Wait,
    WaitReason,
    admitted,
    after_call,
    decide,
    rate_span,
)
from fulfill.domain.ports import Clock, ToolCallOutcome
from fulfill.logging_setup import describe_failure
from fulfill.ports.repositories.connectors import GateView
from fulfill.ports.store import Store, UnitOfWork

log = logging.getLogger("fulfill.flow")

# A waiting caller looks at its own budget (and the connector's state) at least this often.
_LONGEST_SLEEP_SECONDS = 1.0
# How often a waiting caller re-reads what could stop its execution (kill switches, cancellation).
_RECHECK_SECONDS = 1.0
# Forget admitted calls this long after they left every rate window (and waiting calls this long
# after their process stopped renewing them).
_KEEP_CALLS_SECONDS = 60.0
# A waiting call in the shared line stops counting this long after its process last renewed it
# (each admission renews them; the first caller of a line asks at least once a second), so a
# process that died holds nobody's turn for longer than this.
_WAITER_LEASE_SECONDS = 5.0
_RENEW_SECONDS = 1.0
# A rate-limited call is admitted up to this long before its slot opens, and sent at the slot.
_ADMIT_AHEAD_SECONDS = 0.1


class WaitExpired(Exception):
    """The execution's budget ran out while its call waited for the connector's gate."""

    def __init__(self, connector: str, reason: WaitReason | None) -> None:
        super().__init__(connector, reason)
        self.connector = connector
        self.reason = reason

    def describe(self) -> str:
        why = self.reason.value if self.reason else "waiting in line"
        return f"waiting for connector '{self.connector}' ({why})"


class FlowControlClosed(BaseException):
    """The process is shutting down while a call waits for its connector.

    A ``BaseException`` on purpose: neither DBOS (which records a step's ``Exception``) nor the
    workflow (which turns one into an outcome) catches it, so the execution is left exactly as a
    crash would leave it, unfinished, and recovery resumes it (after a restart, or elsewhere
    through the reconciler). Waiting on would hold the process up for the rest of the budget.
    """


def call_lease_seconds(call_timeout: float) -> float:
    """How long an admitted call holds its concurrency slot at most: its timeout, plus as much
    again (at least 10 s) for a call whose answer is late. A process that dies mid-call frees its
    slots when their leases run out."""
    return call_timeout + max(10.0, call_timeout)


def call_result(answer: ToolCallOutcome, *, timeout_cut_by_budget: bool = False) -> CallResult:
    """What an answer says about the target. A timeout the budget imposed (shorter than the
    configured call timeout) is not the target's fault."""
    if answer.success or answer.error is None or not answer.error.retryable:
        return CallResult.ANSWERED
    if timeout_cut_by_budget and answer.error.error_class is ErrorClass.TIMEOUT:
        return CallResult.NOT_MADE
    return CallResult.FAILED


@dataclass(eq=False)
class _Ticket:
    """A call of this process waiting for a connector."""

    waiter_id: str
    tenant_id: str
    lease_seconds: float
    wake: threading.Condition  # on its line's lock: notified when this caller must act
    since: float | None = None  # database clock, once its row is in the shared line
    permit: Permit | None = None  # admitted, by whichever of this process's callers asked
    gone: bool = False  # it stopped waiting


@dataclass
class _Line:
    """The callers of this process waiting for one connector. Only the first asks the database, for
    all of them at once: the admission picks whichever of every process's waiting calls has the
    turn (``domain/fairness.py``) and, when it is one of these, hands it its permit. Everything
    here is guarded by ``lock``."""

    connector: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    tickets: deque[_Ticket] = field(default_factory=deque)  # in their order of arrival
    # The same, by tenant (each tenant's first is its candidate for the next slot).
    by_tenant: dict[str, deque[_Ticket]] = field(default_factory=dict)
    # Those whose row is not in the shared line yet (the next admission adds them), by id.
    unjoined: dict[str, _Ticket] = field(default_factory=dict)
    reason: WaitReason | None = None  # why the calls of this line wait
    # The first caller sleeps until a known rate slot: a call that finishes after it was sent
    # changes nothing it waits for, so it is not woken for that.
    until_slot: bool = False
    # The slots (database clock) of this process's calls admitted ahead and not sent yet, by call.
    planned: dict[str, float] = field(default_factory=dict)
    renewed_at: float = 0.0  # monotonic: when its rows' lease in the shared line was last renewed

    def join(self, ticket: _Ticket) -> None:
        self.tickets.append(ticket)
        self.by_tenant.setdefault(ticket.tenant_id, deque()).append(ticket)
        self.unjoined[ticket.waiter_id] = ticket

    def leave(self, ticket: _Ticket) -> None:
        """Take ``ticket`` out of the line; if it was the first, the next one takes over asking."""
        was_first = self.tickets[0] is ticket
        ticket.gone = True
        self.tickets.remove(ticket)
        own = self.by_tenant[ticket.tenant_id]
        own.remove(ticket)
        if not own:
            del self.by_tenant[ticket.tenant_id]
        self.unjoined.pop(ticket.waiter_id, None)
        if not self.tickets:
            self.reason = None
            self.until_slot = False
        elif was_first:
            self.tickets[0].wake.notify()

    def candidates(self) -> list[_Ticket]:
        """Each tenant's first call not handed a permit yet (it is about to leave the line)."""
        firsts: list[_Ticket] = []
        for own in self.by_tenant.values():
            first = next((ticket for ticket in own if ticket.permit is None), None)
            if first is not None:
                firsts.append(first)
        return firsts

    def wake_first(self) -> None:
        if self.tickets:
            self.tickets[0].wake.notify()


@dataclass(frozen=True)
class _Asked:
    """What one admission transaction decided: a permit for ``chosen``, or why nobody here starts."""

    decision: Admit | Wait
    chosen: _Ticket | None = None
    call_id: str | None = None
    offset: float | None = None
    start_at: float | None = None  # this process's clock: the chosen call's rate slot (None: now)
    slot: float | None = None  # the same on the database clock


class Permit:
    """One admitted call. ``finish`` it with the call's result (a ``with`` block finishes it as not
    made if the block ends without doing so, e.g. when a kill switch stopped the call)."""

    def __init__(
        self,
        flow: FlowControl,
        connector: str,
        call_id: str | None,
        *,
        waited: bool,
        failures: int,
        clock_offset: float | None = None,
        start_at: float | None = None,
    ) -> None:
        self.connector = connector
        self.call_id = call_id  # None: no lease (fast path)
        self.waited = waited  # it did not start at its first ask
        self.sent_at: float | None = None  # database clock
        self._flow = flow
        self._failures = failures
        # Database clock minus this process's clock; None: no rate limit, sends are not tracked.
        self._clock_offset = clock_offset
        # This process's clock (epoch seconds): not to be sent before (its rate slot). None: now.
        self.start_at = start_at
        self._finished = False

    def sent(self) -> None:
        """The call is leaving now (the gateway client calls this, on its own thread): the rate
        window counts it from this moment. Until that is stored it counts as sent "now"."""
        if self.call_id is None or self._clock_offset is None or self.sent_at is not None:
            return
        self.sent_at = time.time() + self._clock_offset
        self._flow._mark_sent(self.connector, self.call_id, self.sent_at)

    def finish(self, result: CallResult) -> None:
        if self._finished:
            return
        self._finished = True
        self._flow._finish(self, result, self._failures)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.finish(CallResult.NOT_MADE)


class FlowControl:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._policy = CircuitPolicy(
            failure_threshold=settings.circuit_failure_threshold,
            window_seconds=settings.circuit_window_seconds,
            cooldown_seconds=settings.circuit_cooldown_seconds,
        )
        self._margin = settings.connector_rate_margin_seconds
        self._poll = settings.connector_poll_seconds
        self._lines: dict[str, _Line] = {}
        # This process's calls in the shared line of each connector are its rows under this name.
        self._owner = uuid.uuid4().hex
        self._lines_lock = threading.Lock()
        self._marks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fulfill-flow-marks")
        self._closed = threading.Event()

    @property
    def policy(self) -> CircuitPolicy:
        return self._policy

    def admit(
        self,
        connector: str,
        *,
        tenant_id: str,
        deadline: float,
        lease_seconds: float,
        recheck: Callable[[], None] | None = None,
        view: GateView | None = None,
    ) -> Permit:
        """Wait until a call of ``tenant_id`` to ``connector`` may start, at the latest until
        ``deadline`` (epoch seconds of the service clock; then :class:`WaitExpired`). ``recheck``
        runs about once a second while it waits, and may raise to stop waiting (a kill switch, a
        cancellation). ``view``: the connector's gate view (``uow.connectors.gate_view``) as the
        caller has just read it in its own read of the store (None: read here)."""
        try:
            if view is None:
                with self._store.read() as uow:
                    view = uow.connectors.gate_view(connector, tenant_id)
            stored, circuit, cap = view
            limits = stored.limits
            if limits.unlimited and circuit.state is CircuitState.CLOSED and (cap is None or cap.unlimited):
                metrics.CONNECTOR_CALLS_IN_FLIGHT.labels(connector).inc()
                return Permit(self, connector, None, waited=False, failures=circuit.failures)
        except Exception as exc:
            if not self._store.is_transient(exc):
                raise
        permit = self._wait_in_line(connector, tenant_id, deadline, lease_seconds, recheck)
        self._until_slot(permit)
        return permit

    def _until_slot(self, permit: Permit) -> None:
        """A call admitted ahead of its rate slot waits for it here, out of the line (so that the
        next caller asks meanwhile); it is sent at the slot, never before."""
        delay = 0.0 if permit.start_at is None else permit.start_at - time.time()
        if delay > 0 and self._closed.wait(delay):
            permit.finish(CallResult.NOT_MADE)
            raise FlowControlClosed(permit.connector)

    def _wait_in_line(
        self,
        connector: str,
        tenant_id: str,
        deadline: float,
        lease_seconds: float,
        recheck: Callable[[], None] | None,
    ) -> Permit:
        line = self._line(connector)
        ticket = _Ticket(
            waiter_id=uuid.uuid4().hex,
            tenant_id=tenant_id,
            lease_seconds=lease_seconds,
            wake=threading.Condition(line.lock),
        )
        began = time.monotonic()
        last_recheck = began
        waited = False
        taken = False
        reason: WaitReason | None = None
        with line.lock:
            line.join(ticket)
        metrics.CONNECTOR_WAITING.labels(connector).inc()
        try:
            while True:
                with line.lock:
                    if ticket.permit is not None:  # admitted by the caller that asked for the line
                        taken = True
                        return self._taken(ticket.permit, began, waited=True)
                if self._closed.is_set():
                    raise FlowControlClosed(connector)
                remaining = deadline - self._clock.now()
                if remaining <= 0:
                    raise WaitExpired(connector, reason or line.reason)
                if waited and recheck is not None and time.monotonic() - last_recheck >= _RECHECK_SECONDS:
                    recheck()
                    last_recheck = time.monotonic()
                with line.lock:
                    if ticket.permit is not None:
                        continue
                    if line.tickets[0] is not ticket:
                        # Woken when handed a permit or when it comes first; else its own
                        # budget and re-check wake it.
                        waited = True
                        ticket.wake.wait(min(remaining, _LONGEST_SLEEP_SECONDS))
                        continue
                    candidates = line.candidates()
                    joining = list(line.unjoined.values())
                    renewing = (
                        [waiting.waiter_id for waiting in line.tickets if waiting.since is not None]
                        if time.monotonic() - line.renewed_at >= _RENEW_SECONDS
                        else None
                    )
                asked = self._try_admit(line, candidates, joining, renewing)
                if asked.chosen is not None and asked.call_id is not None:
                    permit = Permit(
                        self,
                        connector,
                        asked.call_id,
                        waited=waited or asked.chosen is not ticket,
                        failures=0,
                        clock_offset=asked.offset,
                        start_at=asked.start_at,
                    )
                    metrics.CONNECTOR_CALLS_IN_FLIGHT.labels(connector).inc()
                    if asked.slot is not None:
                        with line.lock:
                            line.planned[asked.call_id] = asked.slot
                    if asked.chosen is ticket:
                        taken = True
                        return self._taken(permit, began, waited=waited)
                    with line.lock:
                        handed = not asked.chosen.gone and asked.chosen.permit is None
                        if handed:
                            asked.chosen.permit = permit
                            asked.chosen.wake.notify()
                    if not handed:  # it stopped waiting meanwhile: give the slot back
                        permit.finish(CallResult.NOT_MADE)
                    continue  # ask again at once: the connector may have room for more
                decision = asked.decision
                assert isinstance(decision, Wait)
                waited = True
                reason = line.reason = decision.reason
                sleep = self._poll if decision.seconds is None else max(decision.seconds, 0.001)
                with line.lock:
                    line.until_slot = decision.reason is WaitReason.RATE and decision.seconds is not None
                    if line.tickets[0] is ticket and ticket.permit is None:
                        ticket.wake.wait(min(sleep, remaining, _LONGEST_SLEEP_SECONDS))
                    line.until_slot = False
        finally:
            with line.lock:
                line.leave(ticket)
                unused = None if taken else ticket.permit
                in_shared_line = ticket.since is not None
            metrics.CONNECTOR_WAITING.labels(connector).dec()
            if unused is not None:  # admitted just as it stopped waiting
                unused.finish(CallResult.NOT_MADE)
            if in_shared_line:
                self._leave(connector, ticket)

    def _taken(self, permit: Permit, began: float, *, waited: bool) -> Permit:
        permit.waited = permit.waited or waited
        metrics.CONNECTOR_WAIT_SECONDS.labels(permit.connector).observe(time.monotonic() - began)
        return permit

    def _leave(self, connector: str, ticket: _Ticket) -> None:
        """Take a call that stopped waiting out of the shared line. If this fails, its row stops
        counting when its lease runs out (nobody renews it any more)."""
        try:
            with self._store.write() as uow:
                uow.connectors.fast_commit()
                uow.connectors.remove_waiters([ticket.waiter_id])
        except Exception as exc:  # never hide why the caller stopped waiting
            log.warning("flow control: leaving the line of %s failed (%s)", connector, describe_failure(exc))

    def _try_admit(
        self,
        line: _Line,
        tickets: list[_Ticket],
        joining: list[_Ticket],
        renewing: list[str] | None,
    ) -> _Asked:
        """One admission transaction, holding the connector's row lock, on behalf of every caller
        of this process waiting for ``connector``: ``tickets`` are each tenant's first, ``joining``
        those not in the shared line yet, ``renewing`` (when their lease is due) the ids of those
        in it. Admits the one whose turn it is, if the turn is this process's, and brings the
        shared line up to date. The answer's offset, when the connector has a rate limit (its
        calls' sending times are tracked), is the database clock's offset from this process's;
        else None."""
        connector = line.connector
        call_id = uuid.uuid4().hex
        chosen: _Ticket | None = None
        renew = renewing is not None
        with line.lock:
            planned = list(line.planned.values())
        try:
            with self._store.write() as uow:
                circuit = uow.connectors.lock_state(connector)
                now = uow.connectors.database_now()
                offset = now - time.time()
                limits = uow.connectors.get_limits(connector).limits
                window = limits.rate_window()
                span = rate_span(limits, self._margin)
                decision: Admit | Wait = decide(
                    now=now,
                    limits=limits,
                    circuit=circuit,
                    policy=self._policy,
                    in_flight=0
                    if limits.concurrency is None
                    else uow.connectors.count_in_flight(connector, now),
                    not_sent=0 if window is None else uow.connectors.count_not_sent(connector, now),
                    recent_sends=[]
                    if window is None or span is None
                    else uow.connectors.recent_sends(connector, since=now - span, limit=window.limit),
                    margin=self._margin,
                    lead=_ADMIT_AHEAD_SECONDS,
                    planned=planned,
                )
                tracks_sends = window is not None
                if isinstance(decision, Admit):
                    decision, chosen, capped_rate = self._whose_turn(uow, connector, tickets, decision, now)
                    tracks_sends = tracks_sends or capped_rate
                joining = self._keep_in_line(uow, connector, joining, renewing, chosen, now)
                changed = circuit
                if chosen is None or not isinstance(decision, Admit):
                    asked = _Asked(decision)
                else:
                    uow.connectors.insert_call(
                        call_id=call_id,
                        name=connector,
                        tenant_id=chosen.tenant_id,
                        admitted=now,
                        lease_until=now + chosen.lease_seconds,
                    )
                    changed = admitted(
                        circuit, decision, call_id=call_id, now=now, lease_seconds=chosen.lease_seconds
                    )
                    if changed != circuit:
                        uow.connectors.save_circuit(connector, changed, now=now)
                    uow.connectors.prune_calls(
                        connector, before=now - (span or 0.0) - _KEEP_CALLS_SECONDS, now=now
                    )
                    uow.connectors.prune_waiters(connector, before=now - _KEEP_CALLS_SECONDS)
                    asked = _Asked(
                        decision,
                        chosen,
                        call_id,
                        offset if tracks_sends else None,
                        None if decision.at is None else decision.at - offset,
                        decision.at,
                    )
        except Exception as exc:
            if not self._store.is_transient(exc):
                raise
            log.warning("flow control: admission to %s failed (%s)", connector, describe_failure(exc))
            return _Asked(Wait(WaitReason.STORE, None))
        if changed.state is not circuit.state:
            self._transition(connector, changed)
        # After the commit: what happens next may write (a ticket that left meanwhile).
        return self._asked(line, joining, now, renew, asked)

    def _asked(self, line: _Line, joining: list[_Ticket], now: float, renew: bool, asked: _Asked) -> _Asked:
        if renew:
            line.renewed_at = time.monotonic()
        self._joined(line, joining, asked.chosen, now)
        return asked

    def _whose_turn(
        self, uow: UnitOfWork, connector: str, tickets: list[_Ticket], decision: Admit, now: float
    ) -> tuple[Admit | Wait, _Ticket | None, bool]:
        """The connector has room for one more call: whose is it? Every process's waiting calls
        take turns by tenant (``domain/fairness.py``); a tenant whose own cap is full is skipped.
        Also answers whether the chosen call's tenant has a rate cap (its sends must be tracked)."""
        local = {ticket.waiter_id: ticket for ticket in tickets}
        # Each tenant's first call of this process stands for all of them (the rest come after it).
        line = [
            Waiter(ticket.waiter_id, ticket.tenant_id, now if ticket.since is None else ticket.since)
            for ticket in tickets
        ]
        # This process's own waiting calls are the tickets (its rows may lag behind them).
        line += uow.connectors.waiting(connector, now=now, other_than=self._owner)
        tenants = {waiter.tenant_id for waiter in line}
        held: dict[str, Wait] = {}
        caps = uow.connectors.tenant_caps(connector)
        for tenant in sorted(tenants & caps.keys()):
            verdict = self._tenant_verdict(uow, connector, tenant, caps[tenant], now)
            if isinstance(verdict, Wait):
                held[tenant] = verdict
        free = tenants - held.keys()
        last = uow.connectors.last_admitted(connector, free) if len(free) > 1 else {}
        turn = next_in_line(line, last, held.keys())
        if turn is None:  # everyone waiting is held by their tenant's own cap
            soonest = [wait.seconds for wait in held.values() if wait.seconds is not None]
            return Wait(WaitReason.TENANT_LIMIT, min(soonest) if soonest else None), None, False
        chosen = local.get(turn.waiter_id)
        if chosen is None:  # another process's call has the turn: it takes the slot
            mine = [ticket for ticket in tickets if ticket.tenant_id not in held]
            return Wait(WaitReason.TURN if mine else WaitReason.TENANT_LIMIT, None), None, False
        cap = caps.get(chosen.tenant_id)
        return decision, chosen, cap is not None and cap.rate_per_second is not None

    def _tenant_verdict(
        self, uow: UnitOfWork, connector: str, tenant: str, cap: ConnectorLimits, now: float
    ) -> Admit | Wait:
        window = cap.rate_window()
        span = rate_span(cap, self._margin)
        return tenant_decision(
            now=now,
            cap=cap,
            in_flight=0
            if cap.concurrency is None
            else uow.connectors.count_in_flight(connector, now, tenant_id=tenant),
            not_sent=0 if window is None else uow.connectors.count_not_sent(connector, now, tenant_id=tenant),
            recent_sends=[]
            if window is None or span is None
            else uow.connectors.recent_sends(
                connector, since=now - span, limit=window.limit, tenant_id=tenant
            ),
            margin=self._margin,
        )

    def _keep_in_line(
        self,
        uow: UnitOfWork,
        connector: str,
        joining: list[_Ticket],
        renewing: list[str] | None,
        chosen: _Ticket | None,
        now: float,
    ) -> list[_Ticket]:
        """Bring the shared line up to date with this process's waiting calls: the chosen one
        leaves it, new ones join it (since now), and the lease of those in it (``renewing``, when
        due) is renewed. Answers those that joined (their ``since`` is set once this commits)."""
        joining = [ticket for ticket in joining if ticket is not chosen]
        if chosen is not None and chosen.since is not None:
            uow.connectors.remove_waiters([chosen.waiter_id])
        lease_until = now + _WAITER_LEASE_SECONDS
        if renewing:
            # By id, not every row of this process: a row whose removal failed is not kept alive.
            uow.connectors.renew_waiters(
                [waiter_id for waiter_id in renewing if chosen is None or waiter_id != chosen.waiter_id],
                lease_until=lease_until,
            )
        uow.connectors.add_waiters(
            connector,
            [Waiter(ticket.waiter_id, ticket.tenant_id, now) for ticket in joining],
            owner=self._owner,
            lease_until=lease_until,
        )
        return joining

    def _joined(self, line: _Line, joining: list[_Ticket], chosen: _Ticket | None, now: float) -> None:
        """After the admission committed: the tickets that joined the shared line know it (only
        the asking caller changes ``since``); one that stopped waiting meanwhile, whose leaving
        could not see its row yet, has it removed now."""
        gone: list[_Ticket] = []
        with line.lock:
            for ticket in joining:
                ticket.since = now
                line.unjoined.pop(ticket.waiter_id, None)
                if ticket.gone:
                    gone.append(ticket)
            if chosen is not None:
                chosen.since = None
                line.unjoined.pop(chosen.waiter_id, None)
        for ticket in gone:
            self._leave(line.connector, ticket)

    def _mark_sent(self, connector: str, call_id: str, sent_at: float) -> None:
        """Store when a call was sent, off the caller's thread (it must not delay the call)."""
        self._unplan(connector, call_id)
        with contextlib.suppress(RuntimeError):  # shutting down: the call's release stores it
            self._marks.submit(self._store_mark, connector, call_id, sent_at)

    def _store_mark(self, connector: str, call_id: str, sent_at: float) -> None:
        try:
            with self._store.write() as uow:
                uow.connectors.fast_commit()
                uow.connectors.mark_dispatched(call_id, at=sent_at)
        except Exception as exc:
            # Unmarked, the call counts as sent "now" until it finishes: later calls wait longer.
            log.warning(
                "flow control: storing when a call to %s was sent failed (%s)",
                connector,
                describe_failure(exc),
            )

    def close(self) -> None:
        """Release every waiting caller (with :class:`FlowControlClosed`), then store the marks
        still queued and stop their thread."""
        self._closed.set()
        with self._lines_lock:
            lines = list(self._lines.values())
        for line in lines:
            with line.lock:
                for ticket in line.tickets:
                    ticket.wake.notify()
        self._marks.shutdown(wait=True)

    def _finish(self, permit: Permit, result: CallResult, failures_seen: int) -> None:
        connector = permit.connector
        try:
            if permit.call_id is None and (
                result is CallResult.NOT_MADE or (result is CallResult.ANSWERED and not failures_seen)
            ):
                return  # fast path, nothing for the circuit breaker to learn
            with self._store.write() as uow:
                circuit = uow.connectors.lock_state(connector)
                now = uow.connectors.database_now()
                if permit.call_id is not None:
                    uow.connectors.finish_call(permit.call_id, now=now, sent_at=permit.sent_at)
                changed = after_call(circuit, result, call_id=permit.call_id, now=now, policy=self._policy)
                if changed != circuit:
                    uow.connectors.save_circuit(connector, changed, now=now)
            if changed.state is not circuit.state:
                self._transition(connector, changed)
        except Exception as exc:
            # Never turn a made call into a failure: an unreleased slot frees itself when its
            # lease runs out.
            log.warning("flow control: release of %s failed (%s)", connector, describe_failure(exc))
        finally:
            metrics.CONNECTOR_CALLS_IN_FLIGHT.labels(connector).dec()
            line = self._lines.get(connector)
            if line is not None:
                with line.lock:
                    if permit.call_id is not None:
                        line.planned.pop(permit.call_id, None)
                    # The first caller asks again: a slot may be free (not for a sent call while
                    # it sleeps until a rate slot, which that call does not change).
                    if not (line.until_slot and permit.sent_at is not None):
                        line.wake_first()

    def _unplan(self, connector: str, call_id: str) -> None:
        """A call admitted ahead has been sent: it counts as sent (now, until its mark is
        stored), no longer at its slot."""
        line = self._lines.get(connector)
        if line is not None:
            with line.lock:
                line.planned.pop(call_id, None)

    def _transition(self, connector: str, circuit: Circuit) -> None:
        metrics.CONNECTOR_CIRCUIT_TRANSITIONS.labels(connector, circuit.state.value).inc()
        log.warning(
            "circuit of connector %s is now %s (%d failures in a row)",
            connector,
            circuit.state.value,
            circuit.failures,
        )

    def _line(self, connector: str) -> _Line:
        with self._lines_lock:
            line = self._lines.get(connector)
            if line is None:
                line = self._lines[connector] = _Line(connector)
            return line
