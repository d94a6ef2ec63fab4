"""What the calls waiting at their connectors' gates re-read about once a second — the kill
switches and whether their intent is still approved (a cancellation) — read once for all of them.

Each waiting call used to read both for itself: with N executions waiting at a rate-limited
connector (a tenant's backlog), N reads of the store every second (on PostgreSQL three
transactions each, with the pool's ping), for what almost never changes. Here one read answers
every call of the process that waits: the switches of each tenant waiting, and the approval
status of every waiting intent in one statement (its column, not its document: a call whose
intent is no longer approved reads its own to say why it stops). A call is answered from
a read started at most ``max_age`` seconds before it asked, so a stop is still seen within about
a second and a half of being written (the call asks once a second). A call that joins the line
reads its own the first time, and is in the next shared read: executions start waiting all the
time while a backlog drains, and a new read of the whole line for each of them would cost more
than the reads it saves.

What this decides is only how soon a wait ends. The check right before the call itself is read
fresh by the call alone (``engine/steps/invoke.py``), so nothing shared here decides what is sent.

One caller reads at a time: the others wait for its answer, and if its read fails (the database is
away) each of them tries on its own, as its own budget allows (``engine/steps/checks``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fulfill.domain.models import ApprovalStatus, GlobalExecutionConfig, TenantExecutionConfig
from fulfill.ports.store import Store

Switches = tuple[GlobalExecutionConfig, TenantExecutionConfig]
Key = tuple[str, str]  # (tenant_id, action_intent_id)

# A waiting call asks once a second: one that has not asked for this long stopped waiting, and
# its intent is read no more.
_FORGET_AFTER_SECONDS = 3.0


@dataclass(frozen=True)
class _Read:
    started: float  # monotonic: when the read began (what it says is at least this recent)
    keys: frozenset[Key]
    switches: dict[str, Switches | None]  # by tenant; None: its row could not be parsed
    statuses: dict[Key, ApprovalStatus]


class SharedWaitingReads:
    """The switches and the approval status of every waiting call of this process, read
    together."""

    def __init__(
        self, store: Store, *, max_age: float = 0.5, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._max_age = max_age
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._asked: dict[Key, float] = {}  # each waiting call's key, and when it last asked
        self._last: _Read | None = None
        self._reading = False
        self.reads = 0  # reads of the store made (what a test and a benchmark count)

    def read(
        self, tenant_id: str, action_intent_id: str
    ) -> tuple[Switches | None, ApprovalStatus | None] | None:
        """The global and the tenant's switches (None: a row that cannot be parsed) and the
        intent's approval status as it is now (None: there is no such intent), from a read
        started at most ``max_age`` ago; None when the latest read is that recent but was made
        before this call first asked: the call reads its own this time and is in the next read.
        Raises what the store raises (a transient error: the caller tries again as its budget
        allows)."""
        key = (tenant_id, action_intent_id)
        with self._lock:
            self._asked[key] = self._monotonic()
            while True:
                last = self._last
                if last is not None and self._monotonic() - last.started <= self._max_age:
                    if key not in last.keys:
                        return None
                    return last.switches[tenant_id], last.statuses.get(key)
                if not self._reading:
                    break
                self._done.wait(timeout=1.0)
            self._reading = True
            now = self._monotonic()
            self._asked = {
                asked: at for asked, at in self._asked.items() if now - at <= _FORGET_AFTER_SECONDS
            }
            keys = frozenset(self._asked)
        answer: _Read | None = None
        try:
            answer = self._read_all(keys, started=now)
        finally:
            with self._lock:
                self._reading = False
                if answer is not None:
                    self._last = answer
                    self.reads += 1
                self._done.notify_all()
        return answer.switches[tenant_id], answer.statuses.get(key)

    def _read_all(self, keys: frozenset[Key], *, started: float) -> _Read:
        tenants = sorted({tenant for tenant, _ in keys})
        switches: dict[str, Switches | None] = {}
        with self._store.read() as uow:
            for tenant in tenants:
                try:
                    switches[tenant] = uow.killswitches.get_global_and_tenant(tenant)
                except Exception as exc:
                    if self._store.is_transient(exc):
                        raise
                    switches[tenant] = None  # fail closed: the caller stops (LOOKUP_FAILED)
            statuses = uow.intents.get_approval_statuses(keys)
        return _Read(started=started, keys=keys, switches=switches, statuses=statuses)
