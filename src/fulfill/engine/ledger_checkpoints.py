"""Scheduled ledger checkpoints: every ``FULFILL_LEDGER_CHECKPOINT_SECONDS`` (0: never), each worker
checkpoints every tenant with entries no checkpoint covers yet (``usecases/ledger.checkpoint_all``).

Several workers may run it at once: a checkpoint is written by one checkpointer at a time per
tenant (``uow.ledger.lock_checkpoints``), and a checkpointer that finds nothing new writes nothing.
The interval bounds how long an entry stays unsigned (docs/SECURITY_AUDIT.md).

With ``FULFILL_LEDGER_EXPORT_DIR`` set, each pass then appends every new signed checkpoint, with
its entries, to ``<dir>/<tenant>.jsonl`` (:func:`export_to_directory`), for the tenants it just
checkpointed and those that already have a file there. A file resumes after the last checkpoint it
holds, under an exclusive lock on the file, so workers sharing the directory never write a
checkpoint twice nor skip one. With ``FULFILL_LEDGER_EXPORT_S3_URL`` set, each pass also exports to
S3 (``engine/ledger_s3_export.py``), resumed from each tenant's marker there.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
from pathlib import Path
from urllib.parse import quote, unquote

from fulfill.engine.ledger_s3_export import S3LedgerExporter
from fulfill.engine.runtime import Runtime
from fulfill.logging_setup import describe_failure
from fulfill.ports.store import Store
from fulfill.usecases.ledger import checkpoint_all, iter_export, signing_key

log = logging.getLogger(__name__)


class LedgerCheckpointer:
    """Runs :func:`checkpoint_all` every ``ledger_checkpoint_seconds`` on a thread of its own."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fulfill-ledger-checkpoints", daemon=True)
        self._s3 = S3LedgerExporter(rt.settings) if rt.settings.ledger_export_s3_url else None
        self._s3_pending: set[str] = set()

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
            written: list[str] = []
            try:
                written = checkpoint_all(self._rt)
                if written:
                    log.info("ledger: checkpoints signed for %d tenant(s)", len(written))
                directory = self._rt.settings.ledger_export_dir
                if directory:
                    export_to_directory(self._rt.store, Path(directory), written)
            except Exception as exc:
                log.error(
                    "ledger checkpoint pass failed; retrying at the next interval: %s", describe_failure(exc)
                )
            if self._s3 is not None:
                # A tenant checkpointed in a pass whose export fails is exported at the next one,
                # even before it has a marker there.
                self._s3_pending.update(written)
                try:
                    exported = self._s3.export(self._rt.store, sorted(self._s3_pending))
                    self._s3_pending.clear()
                    if exported:
                        log.info("ledger: %d checkpoint(s) exported to S3", exported)
                except Exception as exc:
                    log.error(
                        "ledger export to S3 failed; resuming from its marker at the next interval: %s",
                        describe_failure(exc),
                    )


def _last_position(path: Path) -> int:
    """The last position the file's checkpoints cover (0: none yet)."""
    last = 0
    with path.open("r", encoding="utf-8") as handle:
        for line in handle:
            if '"kind":"checkpoint"' in line:
                last = int(json.loads(line)["last_position"])
    return last


def export_to_directory(store: Store, directory: Path, tenants: list[str]) -> int:
    """Append each tenant's signed checkpoints not yet in ``<dir>/<tenant>.jsonl`` (the tenant id
    percent-encoded), for ``tenants`` and every tenant with a file there; returns the records written."""
    directory.mkdir(parents=True, exist_ok=True)
    known = {unquote(path.name.removesuffix(".jsonl")) for path in directory.glob("*.jsonl")}
    written = 0
    for tenant_id in sorted(known | set(tenants)):
        path = directory / f"{quote(tenant_id, safe='')}.jsonl"
        with path.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                for line in iter_export(store, tenant_id, _last_position(path)):
                    handle.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
                    written += 1
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    return written
