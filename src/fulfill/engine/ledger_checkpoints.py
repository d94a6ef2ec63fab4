"""Scheduled ledger checkpoints: every ``FULFILL_LEDGER_CHECKPOINT_SECONDS`` (0: never), each worker
checkpoints every tenant with entries no checkpoint covers yet (``usecases/ledger.checkpoint_all``).

Several workers may run it at once: a checkpoint is written by one checkpointer at a time per
tenant (``uow.ledger.lock_checkpoints``), and a checkpointer that finds nothing new writes nothing.
The interval bounds how long an entry stays unsigned (docs/SECURITY_AUDIT.md).
"""

from __future__ import annotations

import logging
import threading

from fulfill.engine.runtime import Runtime
from fulfill.logging_setup import describe_failure
from fulfill.usecases.ledger import checkpoint_all, signing_key

log = logging.getLogger(__name__)


class LedgerCheckpointer:
    """Runs :func:`checkpoint_all` every ``ledger_checkpoint_seconds`` on a thread of its own."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fulfill-ledger-checkpoints", daemon=True)

    @property
    def enabled(self) -> bool:
        return self._rt.settings.ledger_checkpoint_seconds > 0 and signing_key(self._rt.settings) is not None

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._rt.settings.ledger_checkpoint_seconds):
            try:
                written = checkpoint_all(self._rt)
                if written:
                    log.info("ledger: %d checkpoint(s) signed", written)
            except Exception as exc:
                log.error(
                    "ledger checkpoint pass failed; retrying at the next interval: %s", describe_failure(exc)
                )
