"""The schema the migrations build is the one ``store/tables.py`` declares: every table's indexes,
by name, columns and whether they are partial. The code reads the declarations (the index names
in ``INDEXED BY`` hints, the conditions in ``tables.py``'s query helpers), the database has what
the migrations made; a declaration that no migration made, or a migration that no declaration
follows, is found here. SQLite, and PostgreSQL on its pass."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from fulfill.store.tables import metadata
from tests.support.harness import fresh_database


def _partial(options: dict[str, object]) -> bool:
    return any(options.get(key) is not None for key in ("sqlite_where", "postgresql_where"))


def test_every_declared_index_is_the_migrated_one(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as db:
        found_tables = inspect(db.engine)
        for table in metadata.sorted_tables:
            declared = {
                index.name: ([column.name for column in index.columns], _partial(index.dialect_kwargs))
                for index in table.indexes
            }
            built = {
                index["name"]: (index["column_names"], _partial(dict(index.get("dialect_options", {}))))
                for index in found_tables.get_indexes(table.name)
                # PostgreSQL lists a unique constraint's index too; the constraint is declared as such.
                if not index.get("duplicates_constraint")
            }
            assert declared == built, table.name
