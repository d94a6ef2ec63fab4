"""Schema migrations with Alembic, run programmatically (``fulfill migrate`` and on start).

A database already at the newest revision is recognised without Alembic (the revision ids are read
from the migration files' text), so a process starting on a migrated database never imports it.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from fulfill.store.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_REVISION = re.compile(r'^revision = "([^"]+)"$', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision = (?:"([^"]+)"|None)$', re.MULTILINE)


@cache
def head_revision() -> str | None:
    """The newest revision of the migration files, or None unless there is exactly one (a file
    whose ids are not written as plain strings counts as unreadable: None, Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text()
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def at_head(database: Database) -> bool:
    """Whether the database's schema is at :func:`head_revision` (read without Alembic)."""
    head = head_revision()
    if head is None:
        return False
    try:
        with database.engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError:  # no version table yet: a new database
        return False
    return list(rows) == [head]


def alembic_config(database: Database) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = database.engine
    return config


def upgrade_to_head(database: Database) -> None:
    """Migrate to the newest schema. Several processes starting at once take turns: a PostgreSQL
    advisory lock, or a lock file beside the SQLite database."""
    if at_head(database):
        return
    from alembic import command

    with _migration_lock(database):
        command.upgrade(alembic_config(database), "head")


_ADVISORY_LOCK_KEY = 0x66756C66  # "fulf"


@contextmanager
def _migration_lock(database: Database) -> Iterator[None]:
    if not database.is_sqlite:
        with database.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK_KEY})
                conn.commit()
        return
    path = make_url(database.url).database or ""
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
