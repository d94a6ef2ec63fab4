"""Heartbeats: the executions of a worker that stopped beating are taken over by a live one.

DBOS recovers a worker's unfinished workflows when a process with the same executor id starts
again. A worker that comes back under another id (the default ``{hostname}:{port}`` changes with
every container) would leave them ``PENDING`` until the reconciler gives up on them past their
budget. So every worker beats (``executor_heartbeats``, every ``FULFILL_HEARTBEAT_SECONDS``), and
watches the others' beats; an executor watched silent for ``FULFILL_EXECUTOR_LOST_SECONDS``
(``domain/executors.py``) is claimed with a compare-and-set on the beat that was watched, so a
late beat wins and of two live workers only one takes it, and its workflows are handed back to
their queue (DBOS recovery for that executor id: a ``PENDING`` → ``ENQUEUED`` update that only
matches rows still owned by the lost id, so even a repeated recovery re-enqueues nothing twice).
A workflow resumes at its first unfinished step; a repeated tool call carries the same
idempotency key.

Bound: an executor's executions resume within ``lost + heartbeat`` seconds (plus a queue poll)
after its last beat, or after a live worker started watching, whichever is later. Only workers of
the same version watch each other: DBOS replays a workflow only on the version that started it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fulfill import __version__, metrics
from fulfill.config import Settings
from fulfill.domain.executors import Sighting, lost, watch
from fulfill.engine.periodic import PeriodicPass
from fulfill.ports.store import Store

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self, store: Store, settings: Settings, executor_id: str, recover: Callable[[str], int]
    ) -> None:
        """``recover(executor_id)`` hands that executor's unfinished workflows back to their queue
        and answers how many there were."""
        self._store = store
        self._settings = settings
        self._me = executor_id
        self._recover = recover
        self._seen: dict[str, Sighting] = {}
        self._last_look = time.monotonic()
        self._beats = PeriodicPass(
            "heartbeat", self.beat_once, lambda: self._settings.heartbeat_seconds, run_first=True
        )

    def start(self) -> None:
        self._beats.start()

    def stop(self) -> None:
        self._beats.stop()

    def beat_once(self) -> list[str]:
        """Beat, look at the others, take over the lost ones; answers the executors taken over."""
        try:
            with self._store.write() as uow:
                uow.heartbeats.beat(self._me, version=__version__)
                beats = uow.heartbeats.all_beats(version=__version__)
        except Exception:
            # Whatever silence this worker could not watch does not count.
            self._seen = {}
            raise
        now = time.monotonic()
        if now - self._last_look > self._settings.executor_lost_seconds / 2:
            # This worker itself was held up for much of the bound (a slow database, a paused
            # process): it did not watch the others meanwhile, and they may have been held up too.
            self._seen = {}
        self._last_look = now
        self._seen = watch(self._seen, beats, me=self._me, now=now)
        taken: list[str] = []
        for executor in lost(self._seen, now=now, lost_seconds=self._settings.executor_lost_seconds):
            sighting = self._seen.pop(executor)
            with self._store.write() as uow:
                won = uow.heartbeats.claim(
                    executor,
                    seen_beat=sighting.beat,
                    by=self._me,
                    lease_seconds=self._settings.executor_lost_seconds,
                )
            if not won:
                continue  # it beat again, or another worker is taking it over
            recovered = self._recover(executor)
            with self._store.write() as uow:
                uow.heartbeats.forget(executor, seen_beat=sighting.beat)
            metrics.LOST_EXECUTOR_WORKFLOWS.inc(recovered)
            log.warning(
                "executor %s silent for %.0f s: %d unfinished workflows handed back to the queue",
                executor,
                now - sighting.since,
                recovered,
            )
            taken.append(executor)
        return taken
