"""Reconcile probes: looking an AMBIGUOUS execution's write up at its target, and what follows.

An execution is AMBIGUOUS when its call may have written and its answer was lost. A target that
declares how to look an action up by its idempotency key (``ActionLookup``: the Salesforce
connector by the marker field it writes, the internal connector by its table, a gateway target by
the ``lookup_tool`` of its registration) is probed with backoff; the answer is one of:

- :class:`Found`: the write is there, with the refs of what it wrote;
- :class:`Absent`: the target says, in the shape it declared, that no write carries the key;
- :class:`Inconclusive`: anything else (an error, a timeout, an answer in another shape, a
  huge or garbled body). Never taken as "absent";
- :class:`Undeclared`: the target declares no lookup; a person resolves the execution.

:func:`decide` turns the answer and the attempt's probe history into what the probe does
(the loop that applies it is a thin shell: ``engine/probes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fulfill.domain.models import ExternalObjectRef

# A lookup tool of a gateway target is called with this one argument: the idempotency key.
LOOKUP_KEY_ARGUMENT = "idempotency_key"
# The error code a lookup tool answers (``isError``) when no write carries the key: "absent".
LOOKUP_NOT_FOUND = "NOT_FOUND"
# What a probe is called on the ledger: ``probe:<connector>``.
PROBE_DECIDER_PREFIX = "probe:"


@dataclass(frozen=True)
class Found:
    refs: tuple[ExternalObjectRef, ...]


@dataclass(frozen=True)
class Absent:
    pass


@dataclass(frozen=True)
class Inconclusive:
    reason: str


@dataclass(frozen=True)
class Undeclared:
    reason: str = "the target declares no lookup by idempotency key"


ProbeResult = Found | Absent | Inconclusive | Undeclared


@dataclass(frozen=True)
class ProbeHistory:
    """What the decision needs to know besides the answer.

    ``probes``: how many probes of this attempt came before (the backoff grows with them);
    ``resent_before``: a probe already sent this intent's call again once (after an earlier
    ``Absent``), so another absence is not resent: a person looks; ``stopped``: a kill switch
    stops the intent's action now (a resend would not leave: the probe waits instead).
    """

    probes: int = 0
    resent_before: bool = False
    stopped: bool = False


@dataclass(frozen=True)
class Commit:
    """Resolve the attempt ``committed`` with the refs found."""

    refs: tuple[ExternalObjectRef, ...]


@dataclass(frozen=True)
class Resend:
    """Resolve the attempt ``not_committed``: its call is sent once more under the same key."""


@dataclass(frozen=True)
class Wait:
    """Probe again at ``next_probe_epoch``."""

    next_probe_epoch: float
    reason: str


@dataclass(frozen=True)
class HandOver:
    """Leave the execution AMBIGUOUS for a person; look again (a lookup declared meanwhile) at
    ``next_probe_epoch``."""

    next_probe_epoch: float
    reason: str


ProbeDecision = Commit | Resend | Wait | HandOver


def backoff_seconds(probes: int, *, interval_seconds: float, max_backoff_seconds: float) -> float:
    """The pause after the ``probes``-th probe (1-based): interval, twice it, four times it, … at most the maximum."""
    exponent = max(0, min(probes - 1, 30))
    return float(min(max_backoff_seconds, interval_seconds * (2**exponent)))


def decide(
    result: ProbeResult,
    history: ProbeHistory,
    *,
    now: float,
    interval_seconds: float,
    max_backoff_seconds: float,
) -> ProbeDecision:
    """What a probe does with its answer (pure: the shell applies it)."""
    this_probe = history.probes + 1
    pause = backoff_seconds(
        this_probe, interval_seconds=interval_seconds, max_backoff_seconds=max_backoff_seconds
    )
    if isinstance(result, Undeclared):
        return HandOver(now + max_backoff_seconds, result.reason)
    if isinstance(result, Found):
        if not result.refs:
            return Wait(now + pause, "the lookup found the write but named no object")
        return Commit(result.refs)
    if isinstance(result, Absent):
        if history.resent_before:
            return HandOver(
                now + max_backoff_seconds,
                "the call was already sent once more after a probe found it absent; a person decides",
            )
        if history.stopped:
            return Wait(now + pause, "absent, but a kill switch stops the action: it is not resent now")
        return Resend()
    return Wait(now + pause, f"inconclusive: {result.reason}")


def decided_by(connector: str) -> str:
    return f"{PROBE_DECIDER_PREFIX}{connector}"


@dataclass(frozen=True)
class DueProbe:
    """An AMBIGUOUS attempt whose probe is due: ``probes`` probes of it came before."""

    tenant_id: str
    account_id: str
    action_intent_id: str
    attempt_count: int
    probes: int
    next_probe_epoch: float | None


@dataclass(frozen=True)
class ProbeRecord:
    """What a probe leaves on its attempt's row: ``last_result`` is ``found``, ``absent``,
    ``inconclusive``, ``undeclared`` or ``resent``."""

    probes: int
    next_probe_epoch: float
    last_result: str
    last_reason: str | None
    resent: bool
