"""A process starting on a database already at the newest revision recognises it without Alembic
(whose import it then never pays); a database behind, or new, is migrated by Alembic as before."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from fulfill.store.db import Database
from fulfill.store.migrate import alembic_config, at_head, current_revision, head_revision, upgrade_to_head
from tests.support.harness import fresh_database


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path, migrated=False) as db:
        yield db


def test_the_head_read_from_the_files_is_alembics(database: Database) -> None:
    heads = ScriptDirectory.from_config(alembic_config(database)).get_heads()
    assert [head_revision()] == heads


def test_a_new_database_is_migrated_to_head(database: Database) -> None:
    assert not at_head(database)
    upgrade_to_head(database)
    assert current_revision(database) == head_revision()
    assert at_head(database)


def test_a_database_behind_head_is_migrated(database: Database) -> None:
    upgrade_to_head(database)
    command.downgrade(alembic_config(database), "-1")
    assert current_revision(database) != head_revision()
    assert not at_head(database)
    upgrade_to_head(database)
    assert current_revision(database) == head_revision()


def test_a_database_at_head_is_left_without_importing_alembic(database: Database) -> None:
    upgrade_to_head(database)
    code = (
        "import sys\n"
        "from fulfill.store.db import Database\n"
        "from fulfill.store.migrate import upgrade_to_head\n"
        f"db = Database({database.url!r})\n"
        "upgrade_to_head(db)\n"
        "db.dispose()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    assert current_revision(database) == head_revision()
