"""Direct start: an accepted execution whose worker process has a free slot starts at once.

An execution used to be enqueued on the execution queue, always, and to wait there for the
queue's next poll (``FULFILL_QUEUE_POLL_SECONDS``) and its claim transaction before its first
step. When the process that accepts it runs workers and has a free slot, that wait buys nothing:
the workflow is started right there (``DBOS.start_workflow``), under the same deterministic
workflow id it would have on the queue. The queue stays for everything else: a process that runs
no workers (``--role api``), a full process (the overflow waits on the queue, in the queue's
fair order), and the reconciler's restarts.

Exactly once: DBOS keeps one workflow per id. A direct start and an enqueue of the same attempt,
in any order and from any process, are one workflow: the second finds the first's row and runs
nothing. A crash between the commit of the execution lock (the QUEUED attempt) and the start
leaves the row with no workflow, which the reconciler starts (as it did for a lost enqueue).

Recovery: a directly started workflow's row names no queue (DBOS names one only on an enqueue),
and DBOS's recovery would hand such a row to its internal queue, which every process polls, an
api process too. Every recovery of an executor id is preceded by naming the execution queue on
that executor's unfinished, directly started executions (``service.py``: at a process's start,
before DBOS recovers its own id; in the heartbeat's takeover of a lost one), so they go back to
workers only. The name is not written at each start: that was one more commit of DBOS's file on
every approval's path, read only by a recovery.

Slots: a directly started execution counts in this process's share of the execution queue from
the moment its slot is taken, so the queue's own dispatch sees it, and the two together keep this
process at ``FULFILL_WORKER_CONCURRENCY`` executions. (The queue takes its count once per poll:
a direct start during a poll can overshoot the limit by the starts made during that poll.)
Flow control, kill switches and cancellation are checked by the steps, so they apply to an
execution however it was started.

Order: once this process has been full, a later execution must not overtake those that went to
the queue meanwhile. A slot freed between two of the queue's polls would otherwise go to the next
approval, ahead of every execution waiting on the queue (of any tenant, whatever the queue's fair
order says): under a sustained load the first executions to overflow waited until the arrivals
stopped. So after an overflow every execution goes to the queue, until a look at the queue (at most
once per ``recheck_seconds``, the queue's own poll interval) finds none of its executions waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

_log = logging.getLogger(__name__)


class _Entry(Protocol):
    def release(self) -> None: ...


class _ActiveSet(Protocol):
    """DBOS's own count of the workflows running in this process, by queue."""

    def add(self, key: str, queue_name: str | None = None) -> _Entry: ...

    def count_for_queue(self, queue_name: str) -> int: ...


def dbos_active_set() -> _ActiveSet:
    """The running DBOS instance's set of active workflows (the queue's per-worker count)."""
    import dbos._dbos as dbos_internals

    instance = dbos_internals._dbos_global_instance
    if instance is None:
        raise RuntimeError("DBOS is not running")
    active: _ActiveSet = instance._active_workflows_set
    return active


def dbos_queue_waiting(queue_name: str, app_version: str | None = None) -> bool:
    """Whether ``queue_name`` holds an execution not started yet (ENQUEUED), for any process:
    one indexed read of DBOS's system database (queue name and status). ``app_version``: only
    those of that application version, the only ones DBOS dequeues in this process (executions of
    another version, left on the queue by a rolling upgrade, are not this process's to start and
    would otherwise keep it behind the queue for good)."""
    from dbos import DBOS

    waiting = DBOS.list_queued_workflows(
        queue_name=queue_name,
        status="ENQUEUED",
        app_version=app_version,
        limit=1,
        load_input=False,
        load_output=False,
    )
    return bool(waiting)


class DirectStarts:
    """This process's free worker slots, shared with its execution queue's dispatch."""

    def __init__(
        self,
        capacity: int,
        queue_name: str,
        active: Callable[[], _ActiveSet] = dbos_active_set,
        *,
        queue_waiting: Callable[[str], bool] = dbos_queue_waiting,
        recheck_seconds: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.capacity = capacity
        self.queue_name = queue_name
        self._active = active
        self._queue_waiting = queue_waiting
        self._recheck_seconds = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, _Entry] = {}
        # Behind the queue: set by an overflow, cleared by a look that finds the queue empty.
        self._behind = False
        self._overflows = 0  # an overflow during a look keeps the process behind the queue
        self._looked_at = 0.0

    def take(self, workflow_id: str) -> bool:
        """Take a slot for ``workflow_id``; False when this process is full or executions wait on
        the queue since it was (enqueue it instead: it goes after them)."""
        if self._behind_the_queue():
            return False
        active = self._active()
        with self._lock:
            if workflow_id in self._held:
                return False
            if active.count_for_queue(self.queue_name) >= self.capacity:
                self._behind = True
                self._overflows += 1
                # Its enqueue commits after this answer: the first look waits one interval.
                self._looked_at = self._clock()
                return False
            self._held[workflow_id] = active.add(workflow_id, self.queue_name)
            return True

    @property
    def overflowed(self) -> bool:
        """Whether this process has been full since a look last found the queue empty: until such
        a look, every start goes to the queue. Read without looking: a hint for work worth doing
        before a start (the start itself decides in :meth:`take`)."""
        return self._behind

    def _behind_the_queue(self) -> bool:
        with self._lock:
            if not self._behind:
                return False
            now = self._clock()
            if now - self._looked_at < self._recheck_seconds:
                return True
            self._looked_at = now
            overflows = self._overflows
        try:
            waiting = self._queue_waiting(self.queue_name)
        except Exception as exc:  # the queue cannot be read: stay behind it (the enqueue decides)
            _log.debug("direct start: the execution queue could not be read (%s)", exc)
            return True
        with self._lock:
            if not waiting and self._overflows == overflows:
                self._behind = False
            return self._behind

    def release(self, workflow_id: str) -> None:
        """Hand the slot of ``workflow_id`` back (idempotent)."""
        with self._lock:
            entry = self._held.pop(workflow_id, None)
        if entry is not None:
            entry.release()

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def started(self, workflow_id: str, handle: Any) -> None:
        """After ``DBOS.start_workflow``: the slot is held until the workflow ends, or handed back
        now when the call ran nothing (the workflow already existed: queued, or already run)."""
        future = getattr(handle, "future", None)
        if isinstance(future, Future):
            future.add_done_callback(lambda _done: self.release(workflow_id))
        else:
            self.release(workflow_id)
