"""Executor heartbeats: each worker's last beat, and the claim a live worker takes on a lost one."""

from __future__ import annotations

from sqlalchemy import Connection, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from fulfill.store.connectors import database_now
from fulfill.store.tables import executor_heartbeats as table


def beat(conn: Connection, executor_id: str, *, version: str) -> float:
    """Store this executor's beat (database clock), clearing any claim on it: it is alive."""
    now = database_now(conn)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(executor_id=executor_id, last_beat_epoch=now, version=version)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.executor_id],
            set_={
                "last_beat_epoch": now,
                "version": version,
                "claimed_by": None,
                "claimed_until_epoch": None,
            },
        )
    )
    return now


def all_beats(conn: Connection, *, version: str) -> dict[str, float]:
    """The last beat of every executor of ``version``."""
    query = select(table.c.executor_id, table.c.last_beat_epoch).where(table.c.version == version)
    rows = conn.execute(query).all()
    return {str(row.executor_id): float(row.last_beat_epoch) for row in rows}


def claim(conn: Connection, executor_id: str, *, seen_beat: float, by: str, lease_seconds: float) -> bool:
    """Compare-and-set: ``by`` takes over ``executor_id`` only if its beat is still the one ``by``
    watched (a late beat wins) and nobody else holds an unexpired claim on it."""
    now = database_now(conn)
    result = conn.execute(
        update(table)
        .where(
            table.c.executor_id == executor_id,
            table.c.last_beat_epoch == seen_beat,
            or_(table.c.claimed_until_epoch.is_(None), table.c.claimed_until_epoch < now),
        )
        .values(claimed_by=by, claimed_until_epoch=now + lease_seconds)
    )
    return result.rowcount == 1


def forget(conn: Connection, executor_id: str, *, seen_beat: float) -> None:
    """Drop a recovered executor's row, unless it beat again meanwhile."""
    conn.execute(
        delete(table).where(table.c.executor_id == executor_id, table.c.last_beat_epoch == seen_beat)
    )


class SqlHeartbeatsRepository:
    """The heartbeats repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def beat(self, executor_id: str, *, version: str) -> float:
        return beat(self._conn, executor_id, version=version)

    def all_beats(self, *, version: str) -> dict[str, float]:
        return all_beats(self._conn, version=version)

    def claim(self, executor_id: str, *, seen_beat: float, by: str, lease_seconds: float) -> bool:
        return claim(self._conn, executor_id, seen_beat=seen_beat, by=by, lease_seconds=lease_seconds)

    def forget(self, executor_id: str, *, seen_beat: float) -> None:
        return forget(self._conn, executor_id, seen_beat=seen_beat)
