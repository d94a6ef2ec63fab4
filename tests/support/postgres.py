"""The PostgreSQL pass: a fresh, empty database per service when ``TEST_POSTGRES_URL`` is set.

``TEST_POSTGRES_URL`` names a server and a maintenance database the tests may connect to, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5433/postgres`` (``scripts/test.sh`` starts such a
server itself). It is not a ``FULFILL_*`` variable on purpose: ``tests/conftest.py`` removes those.
Unset, every service runs on a SQLite file in the test's temporary directory.

Each database created here is dropped when its service stops (``Harness.stop``) and, whatever is
left, at the end of the session; a failed drop is tolerated (the server is thrown away anyway).

A service's database (``make_settings``) is a copy of a template this process migrated once:
fulfill's schema and DBOS's system tables at head, as a service's first start leaves them, and
nothing else. Migrating takes seconds on PostgreSQL and copying a fraction of that. Tests of
migrating itself, and the processes tests spawn, get empty databases (``create_database()``), as
the whole SQLite pass does.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy.engine import make_url

ENV = "TEST_POSTGRES_URL"
_lock = threading.Lock()
_counter = itertools.count(1)
_created: set[str] = set()
_template: str | None = None  # this process's migrated template (a database name)
_template_lock = threading.Lock()


def server_url() -> str | None:
    """The maintenance URL of the test server, or None on the SQLite pass."""
    value = os.environ.get(ENV, "").strip()
    return value or None


def enabled() -> bool:
    return server_url() is not None


def backend_name() -> str:
    return "postgresql" if enabled() else "sqlite"


# ``@postgres_only`` on a test (or ``pytestmark = postgres_only``): it is about PostgreSQL itself
# (row locks, READ COMMITTED races) and is skipped on the SQLite pass. ``sqlite_only(reason)`` is
# the opposite, for tests of SQLite specifics that have no PostgreSQL equivalent.
postgres_only = pytest.mark.postgres_only


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.sqlite_only(reason=reason)


def connect(database: str | None = None) -> Any:
    """A psycopg connection (autocommit) to the test server: its maintenance database, or
    ``database``."""
    import psycopg

    url = make_url(server_url() or "")
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        dbname=database or url.database or "postgres",
        autocommit=True,
        connect_timeout=10,
    )


def create_database(*, migrated: bool = False) -> str:
    """Create a database with a unique name; returns its SQLAlchemy URL. Empty, or with
    ``migrated`` a copy of this process's migrated template (see the module's docstring)."""
    base = server_url()
    if base is None:
        raise RuntimeError(f"{ENV} is not set")
    template = _migrated_template() if migrated else None
    name = f"fulfill_test_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:8]}"
    with connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    with _lock:
        _created.add(name)
    return _url(name)


def _url(name: str) -> str:
    return (
        make_url(server_url() or "")
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )


def _migrated_template() -> str:
    """This process's template, migrated on first use; nobody connects to it afterwards (a copy
    needs the template without connections)."""
    global _template
    with _template_lock:
        if _template is None:
            from dbos import DBOS

            from fulfill.store.db import Database
            from fulfill.store.migrate import upgrade_to_head

            url = create_database()
            database = Database(url)
            try:
                upgrade_to_head(database)
            finally:
                database.dispose()
            # Where the service keeps them (Settings.system_database_url: the same database).
            DBOS.migrate(url, schema="dbos")
            _template = make_url(url).database
        assert _template is not None
        return _template


def drop_database(url: str) -> None:
    """Drop a database created by :func:`create_database`; failures are ignored."""
    name = make_url(url).database or ""
    with _lock:
        if name not in _created:
            return
        _created.discard(name)
    _drop(name)


def _drop(name: str) -> None:
    try:
        with connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:
        pass  # best effort: the test server is temporary


def drop_leftovers() -> None:
    """Drop every database this process created and has not dropped yet (the template too)."""
    global _template
    with _template_lock:
        _template = None
    with _lock:
        names = sorted(_created)
        _created.clear()
    for name in names:
        _drop(name)


def is_postgres_url(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"
