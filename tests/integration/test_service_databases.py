"""The database a test's service starts on (``make_settings``) is a copy of one migrated once per
process: it must be what migrating an empty database gives, and a copy never replaces the data of
a service that restarts on its own SQLite file."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import func, insert, select

from fulfill.store.db import Database
from fulfill.store.migrate import alembic_config, current_revision, upgrade_to_head
from fulfill.store.tables import internal_notes, metadata
from tests.support import postgres
from tests.support.harness import fresh_database_url, make_settings
from tests.support.postgres import sqlite_only


def _rows(database: Database) -> dict[str, int]:
    with database.read() as conn:
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in metadata.sorted_tables
        }


def test_a_services_database_is_what_migrating_an_empty_one_gives(tmp_path: Path) -> None:
    copied = Database(make_settings(tmp_path / "copied").database_url)
    migrated = Database(fresh_database_url(tmp_path / "migrated"))
    try:
        upgrade_to_head(migrated)
        head = ScriptDirectory.from_config(alembic_config(migrated)).get_current_head()
        assert current_revision(copied) == current_revision(migrated) == head
        assert _rows(copied) == _rows(migrated)
    finally:
        for database in (copied, migrated):
            database.dispose()
            if postgres.is_postgres_url(database.url):
                postgres.drop_database(database.url)


@sqlite_only("each PostgreSQL database is new; a service that restarts names its database itself")
def test_a_service_restarting_on_its_sqlite_file_keeps_its_data(tmp_path: Path) -> None:
    first = make_settings(tmp_path)
    database = Database(first.database_url)
    try:
        with database.write() as conn:
            conn.execute(
                insert(internal_notes).values(
                    tenant_id="t1",
                    account_id="acc-1",
                    note_id="note-1",
                    idempotency_key="key-1",
                    action_intent_id="ai-1",
                    content="kept",
                    created_at="2026-01-01T00:00:00.000Z",
                )
            )
        again = make_settings(tmp_path)
        assert again.database_url == first.database_url
        assert _rows(database)["internal_notes"] == 1
    finally:
        database.dispose()
