"""Flow control of one connector: its limits, its rate window and its circuit breaker. Pure rules.

A connector (the internal one, a SaaS connector, a remote MCP target) is named by the part of a
tool name before its first dot: ``internal`` for ``internal.create_task``, ``tickets`` for a remote
target named ``tickets``. Every tool call passes its connector's gate first; :func:`decide` says
whether the call may start now, and :func:`after_call` moves the circuit breaker on what the
call's answer says about the target. The engine runs both inside one database transaction that
holds the connector's row lock, which is what makes the limits hold across processes
(``engine/flow.py``).

* **Rate**: at most ``limit`` calls are sent in any window of ``period`` seconds
  (``rate_per_second`` 5 → 5 per second; 0.5 → 1 per 2 seconds). A call counts from the moment it
  is sent (an admitted call not sent yet counts as sent now), and the window the gate counts is
  ``period + margin``: a call reaches the target a little after it is sent, by a varying amount,
  and the margin keeps the target's own count inside the limit too. A call may be admitted a
  little (``lead``) before its slot, as :class:`Admit` with the slot's time: it is then sent at
  that time, not at the admission. The window counts from the actual sends, so an admission that
  came late would push every later slot back by its lateness; one made ahead of the slot does not.
* **Concurrency**: at most ``concurrency`` calls in flight at once (admitted and not finished).
* **Circuit breaker**: ``failure_threshold`` target failures in a row, within ``window_seconds`` of
  the first, open it; while it is open no call starts; after ``cooldown_seconds`` one call, the
  probe, is let through (half-open): its answer closes the circuit, its failure opens it again
  for another cool-down. Only failures that say the target is in trouble count (unavailable,
  overloaded, rate limited, timed out); a business error is an answer, so it counts as one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

MAX_RATE_PER_SECOND = 10_000
MIN_RATE_PER_SECOND = 0.001  # one call every 1,000 seconds
MAX_CONCURRENCY = 10_000
CONNECTOR_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


def connector_of(tool_name: str) -> str:
    """The connector (or remote target) a tool belongs to: the part of its name before the first dot."""
    return tool_name.split(".", 1)[0]


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    HALF_OPEN = "HALF_OPEN"
    OPEN = "OPEN"


# The value of the ``fulfill_connector_circuit_state`` gauge.
CIRCUIT_STATE_VALUES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


@dataclass(frozen=True)
class RateWindow:
    """At most ``limit`` call starts in any ``period`` seconds."""

    limit: int
    period: float


class ConnectorLimits(BaseModel):
    """A connector's limits; ``None`` is no limit of its own."""

    model_config = ConfigDict(frozen=True)

    rate_per_second: float | None = None
    concurrency: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.rate_per_second is None and self.concurrency is None

    def rate_window(self) -> RateWindow | None:
        if self.rate_per_second is None:
            return None
        if self.rate_per_second >= 1:
            return RateWindow(limit=int(self.rate_per_second), period=1.0)
        return RateWindow(limit=1, period=1.0 / self.rate_per_second)


def rate_problem(rate: float) -> str | None:
    """Why ``rate`` cannot be a connector's ``rate_per_second``, or None when it can."""
    if not math.isfinite(rate) or rate < MIN_RATE_PER_SECOND or rate > MAX_RATE_PER_SECOND:
        return f"rate_per_second must be between {MIN_RATE_PER_SECOND:g} and {MAX_RATE_PER_SECOND} (or null for no limit)"
    if rate >= 1 and rate != int(rate):
        return (
            "rate_per_second of 1 or more must be a whole number (a one-second window holds whole "
            "calls); below 1 any value works, e.g. 0.5 = one call every 2 seconds"
        )
    return None


def concurrency_problem(concurrency: int) -> str | None:
    if concurrency < 1 or concurrency > MAX_CONCURRENCY:
        return f"concurrency must be between 1 and {MAX_CONCURRENCY} (or null for no limit)"
    return None


@dataclass(frozen=True)
class CircuitPolicy:
    failure_threshold: int  # 0: the breaker never opens
    window_seconds: float
    cooldown_seconds: float


@dataclass(frozen=True)
class Circuit:
    """A connector's circuit breaker, as stored. Times are epoch seconds of the database clock."""

    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    window_started: float | None = None
    opened_at: float | None = None
    probe_call_id: str | None = None
    probe_until: float | None = None


class CallResult(StrEnum):
    """What one call says about its target, for the circuit breaker."""

    ANSWERED = "answered"  # success, or a business error: the target is up
    FAILED = "failed"  # unavailable, overloaded, rate limited, timed out: the target is in trouble
    NOT_MADE = "not_made"  # admitted, then never made (stopped before it): says nothing


class WaitReason(StrEnum):
    CIRCUIT_OPEN = "circuit open"
    CIRCUIT_PROBE = "circuit half-open, its probe call is in flight"
    CONCURRENCY = "concurrency limit reached"
    RATE = "rate limit reached"
    TURN = "other tenants' turn (fair share)"
    TENANT_LIMIT = "the tenant's own limit on this connector reached"
    STORE = "the database did not answer"


@dataclass(frozen=True)
class Admit:
    probe: bool  # this call is the half-open circuit's probe
    # Not to be sent before this time (its rate slot; admitted up to ``lead`` ahead of it). None: now.
    at: float | None = None


@dataclass(frozen=True)
class Wait:
    reason: WaitReason
    seconds: float | None  # when to try again at the earliest; None: when something changes


def decide(
    *,
    now: float,
    limits: ConnectorLimits,
    circuit: Circuit,
    policy: CircuitPolicy,
    in_flight: int,
    not_sent: int,
    recent_sends: Sequence[float],
    margin: float,
    lead: float = 0.0,
    planned: Sequence[float] = (),
) -> Admit | Wait:
    """May a call start now? ``in_flight``: calls admitted and not finished; ``not_sent``: calls
    admitted and not sent yet (each counts as sent now: it will be, any moment); ``recent_sends``:
    when the latest calls were sent, at least the rate limit's count of them if there are that many.
    ``lead``: a call whose rate slot opens at most this many seconds from now is admitted now, to be
    sent at its slot (``Admit.at``); a later one waits until ``lead`` before its slot. ``planned``:
    the slots of calls among ``not_sent`` that were admitted ahead and are not sent yet, when
    known (they count as sent at their slot, so the calls after them keep their spacing)."""
    probe = False
    if circuit.state is CircuitState.OPEN:
        reopens_at = (circuit.opened_at or now) + policy.cooldown_seconds
        if now < reopens_at:
            return Wait(WaitReason.CIRCUIT_OPEN, reopens_at - now)
        probe = True
    elif circuit.state is CircuitState.HALF_OPEN:
        if circuit.probe_until is not None and now < circuit.probe_until:
            return Wait(WaitReason.CIRCUIT_PROBE, None)
        probe = True  # the probe's holder is gone (its lease ran out): this call probes instead
    if limits.concurrency is not None and in_flight >= limits.concurrency:
        return Wait(WaitReason.CONCURRENCY, None)
    slot = next_slot(
        now=now, limits=limits, not_sent=not_sent, recent_sends=recent_sends, margin=margin, planned=planned
    )
    if slot is None:
        return Wait(WaitReason.RATE, None)  # free once the calls not sent yet are sent and have aged
    if slot - now > lead:
        return Wait(WaitReason.RATE, slot - lead - now)
    return Admit(probe=probe, at=slot if slot > now else None)


def next_slot(
    *,
    now: float,
    limits: ConnectorLimits,
    not_sent: int,
    recent_sends: Sequence[float],
    margin: float,
    planned: Sequence[float] = (),
) -> float | None:
    """When the connector's rate limit lets the next call be sent (``now`` at the earliest; always
    ``now`` without a rate limit), or None while the calls admitted and not sent yet fill a window
    by themselves (it is known only once they are sent). Of the ``not_sent`` calls, those whose
    slot is ``planned`` count as sent at that slot (never before now), the others as sent now."""
    window = limits.rate_window()
    if window is None:
        return now
    span = window.period + margin
    sent = sorted((when for when in recent_sends if when > now - span), reverse=True)
    ahead = sorted((max(when, now) for when in planned), reverse=True)[:not_sent]
    inside = ahead + [now] * (not_sent - len(ahead)) + sent
    slot = now
    if len(inside) >= window.limit:
        if window.limit <= not_sent:
            return None
        # Free again once the limit-th latest send has left the window.
        slot = max(now, inside[window.limit - 1] + span)
    # Spread a window's calls over at least half of it instead of sending them all at once: the
    # target (and everything on the way) sees no bursts, so the time calls take to reach it varies
    # less. The window above still decides how many go per period.
    gap = span / window.limit / 2
    if inside and window.limit > 1:
        slot = max(slot, inside[0] + gap)
    return slot


def rate_span(limits: ConnectorLimits, margin: float) -> float | None:
    """How far back the gate looks for call starts (None: the connector has no rate limit)."""
    window = limits.rate_window()
    return None if window is None else window.period + margin


def admitted(circuit: Circuit, decision: Admit, *, call_id: str, now: float, lease_seconds: float) -> Circuit:
    """The circuit once a call is admitted: a probe marks it half-open, held by that call."""
    if not decision.probe:
        return circuit
    return replace(
        circuit, state=CircuitState.HALF_OPEN, probe_call_id=call_id, probe_until=now + lease_seconds
    )


def after_call(
    circuit: Circuit, result: CallResult, *, call_id: str | None, now: float, policy: CircuitPolicy
) -> Circuit:
    """The circuit once a call has finished with ``result``."""
    is_probe = (
        circuit.state is CircuitState.HALF_OPEN and call_id is not None and circuit.probe_call_id == call_id
    )
    if result is CallResult.NOT_MADE:
        if is_probe:  # nothing learnt: open again, already cooled down, so the next call probes
            return replace(circuit, state=CircuitState.OPEN, probe_call_id=None, probe_until=None)
        return circuit
    if result is CallResult.ANSWERED:
        if is_probe or (circuit.state is CircuitState.CLOSED and circuit.failures):
            return Circuit()
        return circuit  # a call admitted before the circuit opened: only the probe closes it
    if policy.failure_threshold <= 0:
        return circuit
    if is_probe:
        return Circuit(state=CircuitState.OPEN, failures=circuit.failures, opened_at=now)
    if circuit.state is not CircuitState.CLOSED:
        return circuit  # already open: a late failure of a call admitted before it opened
    if circuit.window_started is None or now - circuit.window_started > policy.window_seconds:
        failures, started = 1, now
    else:
        failures, started = circuit.failures + 1, circuit.window_started
    if failures >= policy.failure_threshold:
        return Circuit(state=CircuitState.OPEN, failures=failures, window_started=started, opened_at=now)
    return Circuit(failures=failures, window_started=started)
