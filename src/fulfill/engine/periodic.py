"""A background pass run on a thread of its own, again and again until the service stops: the
reconciler, the escalation sweep and the heartbeat are each one.

A pass that raises is logged and tried again at the next interval: a database outage or a bug in
one pass never stops the loop (the next pass starts from the store, not from the failed one).
Each pass is also counted by name (``fulfill_background_pass_*``): its failures, when it last
completed and its interval, so that a pass that keeps failing can be alerted on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fulfill import metrics
from fulfill.logging_setup import describe_failure

log = logging.getLogger(__name__)


class PeriodicPass:
    """Runs ``run_pass`` every ``interval()`` seconds (read before each wait, so a changed setting
    applies at the next one); with ``run_first``, once at start too."""

    def __init__(
        self,
        name: str,
        run_pass: Callable[[], object],
        interval: Callable[[], float],
        *,
        run_first: bool = False,
    ) -> None:
        self._name = name
        self._run_pass = run_pass
        self._interval = interval
        self._run_first = run_first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fulfill-{name}", daemon=True)

    def start(self) -> None:
        # Present from the start: failures at 0, and the pass as fresh as the process until its
        # first run (a retention pass first runs an interval after start).
        metrics.BACKGROUND_PASS_FAILURES.labels(self._name)
        metrics.BACKGROUND_PASS_LAST_SUCCESS.labels(self._name).set(time.time())
        metrics.BACKGROUND_PASS_INTERVAL.labels(self._name).set(self._interval())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def stopping(self) -> bool:
        """True once :meth:`stop` is called: a long pass checks it between its batches."""
        return self._stop.is_set()

    def _run(self) -> None:
        if self._run_first:
            self._once()
        while not self._stop.wait(self._waiting()):
            self._once()

    def _waiting(self) -> float:
        interval = self._interval()
        metrics.BACKGROUND_PASS_INTERVAL.labels(self._name).set(interval)
        return interval

    def _once(self) -> None:
        try:
            self._run_pass()
        except Exception as exc:
            metrics.BACKGROUND_PASS_FAILURES.labels(self._name).inc()
            log.error("%s pass failed; retrying at the next interval: %s", self._name, describe_failure(exc))
        else:
            metrics.BACKGROUND_PASS_LAST_SUCCESS.labels(self._name).set(time.time())
