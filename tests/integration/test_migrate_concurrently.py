"""Several processes starting at once migrate one database in turns: none fails, the schema ends
at head once (a PostgreSQL advisory lock, or a lock file beside the SQLite database)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic.script import ScriptDirectory

from fulfill.store.db import Database
from fulfill.store.migrate import alembic_config, current_revision, upgrade_to_head
from tests.support import postgres
from tests.support.harness import fresh_database_url


def test_concurrent_migrations_take_turns(tmp_path: Path) -> None:
    url = fresh_database_url(tmp_path)
    databases = [Database(url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for future in [pool.submit(upgrade_to_head, database) for database in databases]:
                future.result()  # raises if any migration failed (e.g. "table already exists")
        head = ScriptDirectory.from_config(alembic_config(databases[0])).get_current_head()
        assert current_revision(databases[0]) == head
    finally:
        for database in databases:
            database.dispose()
        if postgres.is_postgres_url(url):
            postgres.drop_database(url)
