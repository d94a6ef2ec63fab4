"""The store port's adapters side by side, for tests that hold each to the same answers: the
in-memory store (what fast tests of the steps run) and the SQL store on the pass's backend (what
the service runs: SQLite, or a fresh PostgreSQL database on the PostgreSQL pass)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fulfill.ports.store import Store
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from tests.support import postgres
from tests.support.harness import make_settings
from tests.support.memory_store import MemoryStore

KINDS = ["memory", "sql"]


@contextmanager
def store_of_kind(kind: str, tmp_path: Path) -> Iterator[Store]:
    """A new, empty store of ``kind`` (one of :data:`KINDS`), the SQL one migrated to head and
    dropped afterwards."""
    if kind == "memory":
        yield MemoryStore()
        return
    settings = make_settings(tmp_path)
    db = Database(settings.database_url)
    upgrade_to_head(db)
    try:
        yield SqlStore(db)
    finally:
        db.dispose()
        if postgres.is_postgres_url(settings.database_url):
            postgres.drop_database(settings.database_url)
