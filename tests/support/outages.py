"""A database outage as a store function sees it, for tests that put one in a function's place."""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy.exc import OperationalError


def database_down(*_args: object, **_kwargs: object) -> NoReturn:
    """Raise what SQLAlchemy raises when the database does not answer (a transient error)."""
    raise OperationalError("SELECT 1", {}, Exception("database is unavailable"))
