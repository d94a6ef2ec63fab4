"""Console sessions on the server: one row per sign-in, shared by every process of a deployment.

A row is found by ``session_hash`` (a hash of the random id the browser's cookie holds, never the
id itself) and is live while it is neither revoked nor expired. What the row holds about the
user's bearer is sealed by the caller (:mod:`fulfill.console.session`); this module only stores it.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from fulfill.domain.records import StoredSession as StoredSession
from fulfill.store.tables import console_sessions

# Rows that expired this long ago are deleted (a revoked or expired row keeps refusing its cookie
# meanwhile; afterwards the cookie itself has expired too).
PURGE_AFTER_SECONDS = 86_400.0


def insert(
    conn: Connection,
    *,
    session_hash: str,
    tenant_id: str,
    subject: str,
    sealed_token: str,
    now: float,
    expires_epoch: float,
) -> None:
    conn.execute(
        console_sessions.insert().values(
            session_hash=session_hash,
            tenant_id=tenant_id,
            subject=subject[:256],
            sealed_token=sealed_token,
            created_epoch=now,
            expires_epoch=expires_epoch,
            revoked_epoch=None,
        )
    )


def get_live(conn: Connection, session_hash: str, *, now: float) -> StoredSession | None:
    """The session, unless it is unknown, revoked or expired."""
    row = conn.execute(
        select(
            console_sessions.c.tenant_id,
            console_sessions.c.subject,
            console_sessions.c.sealed_token,
            console_sessions.c.expires_epoch,
        ).where(
            console_sessions.c.session_hash == session_hash,
            console_sessions.c.revoked_epoch.is_(None),
            console_sessions.c.expires_epoch > now,
        )
    ).first()
    if row is None:
        return None
    return StoredSession(row.tenant_id, row.subject, row.sealed_token, row.expires_epoch)


def revoke(conn: Connection, session_hash: str, *, now: float) -> bool:
    """End a session for good; True when a live one was ended. Its sealed bearer is dropped too."""
    result = conn.execute(
        update(console_sessions)
        .where(console_sessions.c.session_hash == session_hash, console_sessions.c.revoked_epoch.is_(None))
        .values(revoked_epoch=now, sealed_token="")
    )
    return bool(result.rowcount)


def purge_expired(conn: Connection, *, now: float) -> int:
    """Delete the rows that expired more than a day ago; returns how many."""
    result = conn.execute(
        delete(console_sessions).where(console_sessions.c.expires_epoch < now - PURGE_AFTER_SECONDS)
    )
    return int(result.rowcount or 0)


class SqlConsoleSessionsRepository:
    """The console sessions repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert(
        self,
        *,
        session_hash: str,
        tenant_id: str,
        subject: str,
        sealed_token: str,
        now: float,
        expires_epoch: float,
    ) -> None:
        return insert(
            self._conn,
            session_hash=session_hash,
            tenant_id=tenant_id,
            subject=subject,
            sealed_token=sealed_token,
            now=now,
            expires_epoch=expires_epoch,
        )

    def get_live(self, session_hash: str, *, now: float) -> StoredSession | None:
        return get_live(self._conn, session_hash, now=now)

    def revoke(self, session_hash: str, *, now: float) -> bool:
        return revoke(self._conn, session_hash, now=now)

    def purge_expired(self, *, now: float) -> int:
        return purge_expired(self._conn, now=now)
