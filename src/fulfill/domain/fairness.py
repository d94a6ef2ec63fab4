"""Fair share of one connector between tenants: who of the calls waiting for it goes next. Pure rules.

A connector's limits are shared by every tenant. Served first come, first served, one tenant's
backlog would hold every other tenant's calls behind all of it (300 waiting calls at 1 per
second: five minutes for anyone's single call). So the calls waiting for a connector are served
**round robin across tenants**: when a slot frees, the tenant among those waiting whose call was
admitted least recently (never: first of all) goes next, with its oldest waiting call; within one
tenant, first come, first served. A tenant's single call therefore waits for at most about one
slot per other waiting tenant, whatever their backlogs.

A tenant may also have its own cap on a connector (``rate_per_second`` and/or ``concurrency`` for
that tenant alone, see :func:`tenant_decision`). A tenant held by its own cap is skipped: it
never blocks the tenants after it.

The same holds one step earlier, in the execution queue that feeds the workers: each execution is
enqueued with a priority that is its rank among its tenant's executions queued or running
(:func:`queue_priority`), and the queue starts the lowest priority first (oldest first among
equals), so a tenant's single execution is started next, not after another tenant's 300.

The engine (``engine/flow.py``) reads the waiting calls of every process and each tenant's last
admission from the database inside the connector's admission transaction, so the order holds
across every worker process, not only within one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from fulfill.domain.flowcontrol import Admit, Circuit, CircuitPolicy, ConnectorLimits, Wait, decide

# The queue's priorities run from 1 (first); a rank beyond this is as late as it gets. It is also
# as far as a tenant's attempts in flight are counted, at every enqueue: a tenant's first 1,000
# executions in flight interleave with every other tenant's, its later ones wait behind all of
# those in the order they came (the queue starts equals oldest first), and the size of its
# backlog beyond that costs none of its approvals anything.
MAX_QUEUE_PRIORITY = 1_000


def queue_priority(active_of_tenant: int) -> int:
    """The execution queue's priority of a tenant's execution that is the ``active_of_tenant``-th of
    it queued or running (itself included): its first goes with every other tenant's first, its
    second after those, and so on."""
    return min(max(1, active_of_tenant), MAX_QUEUE_PRIORITY)


@dataclass(frozen=True)
class Waiter:
    """A call waiting for a connector: its id, its tenant, and since when it waits (database clock)."""

    waiter_id: str
    tenant_id: str
    since: float


def next_in_line(
    waiting: Sequence[Waiter],
    last_admitted: Mapping[str, float],
    held: Collection[str] = (),
) -> Waiter | None:
    """The waiting call that gets the next free slot, or None when every waiting tenant is held by
    its own cap (or nobody waits). ``last_admitted``: when each tenant's latest call to this
    connector was admitted (absent: not recently, it goes first); ``held``: tenants whose own cap
    is full right now."""
    oldest: dict[str, Waiter] = {}
    for waiter in waiting:
        if waiter.tenant_id in held:
            continue
        first = oldest.get(waiter.tenant_id)
        if first is None or (waiter.since, waiter.waiter_id) < (first.since, first.waiter_id):
            oldest[waiter.tenant_id] = waiter
    if not oldest:
        return None
    # The tenant served least recently; among equals (e.g. none served yet), the one whose oldest
    # call waits longest; the ids only make the order total, so that every process agrees on it.
    return min(
        oldest.values(),
        key=lambda waiter: (
            last_admitted.get(waiter.tenant_id, float("-inf")),
            waiter.since,
            waiter.tenant_id,
            waiter.waiter_id,
        ),
    )


# A tenant's own cap has no circuit breaker of its own (the connector's is shared by everyone).
_NO_BREAKER = CircuitPolicy(failure_threshold=0, window_seconds=1.0, cooldown_seconds=1.0)


def tenant_decision(
    *,
    now: float,
    cap: ConnectorLimits,
    in_flight: int,
    not_sent: int,
    recent_sends: Sequence[float],
    margin: float,
) -> Admit | Wait:
    """May one more call of a tenant with its own ``cap`` on a connector start now? The same rules
    as the connector's own limits (:func:`~fulfill.domain.flowcontrol.decide`), counting only this
    tenant's calls to it."""
    return decide(
        now=now,
        limits=cap,
        circuit=Circuit(),
        policy=_NO_BREAKER,
        in_flight=in_flight,
        not_sent=not_sent,
        recent_sends=recent_sends,
        margin=margin,
    )
