"""Whether this process can serve: its database answers."""

from __future__ import annotations

from sqlalchemy import text

from fulfill.usecases.context import UseCaseContext


def database_answers(rt: UseCaseContext) -> bool:
    try:
        with rt.db.read() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
