"""A runtime on a migrated database without a service: all the outbox relay needs to deliver a
webhook or an EventBridge put, for tests of the relay alone on either backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fulfill.clock import SystemClock
from fulfill.config import Settings
from fulfill.engine.runtime import Runtime
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from tests.support import postgres


@contextmanager
def relay_runtime(settings: Settings, *, wrap: Callable[[SqlStore], Any] | None = None) -> Iterator[Runtime]:
    """The runtime on ``settings``' database, migrated to head; ``wrap`` may put the store in a
    wrapper (one that counts its transactions, say). The database is dropped after (PostgreSQL)."""
    db = Database(settings.database_url)
    upgrade_to_head(db)
    try:
        store = SqlStore(db)
        yield Runtime(
            settings=settings,
            clock=SystemClock(),
            gateway=None,  # type: ignore[arg-type]
            store=store if wrap is None else wrap(store),
        )
    finally:
        db.dispose()
        if postgres.is_postgres_url(settings.database_url):
            postgres.drop_database(settings.database_url)


def enqueue_signals(runtime: Runtime, destination: str, *message_ids: str, staggered: bool = False) -> None:
    """One ``SIGNAL_CREATED`` message of tenant t1 per id, for ``destination``, due now; with
    ``staggered``, each due a second after the one before (all in the past: the claim's order is
    the ids' order)."""
    now = runtime.clock.now()
    with runtime.store.write() as uow:
        for index, message_id in enumerate(message_ids):
            uow.outbox.enqueue(
                message_id=message_id,
                topic="SIGNAL_CREATED",
                tenant_id="t1",
                payload={"n": message_id},
                destinations=[destination],
                now=runtime.clock.now_iso(),
                now_epoch=now - len(message_ids) + index if staggered else now,
            )
