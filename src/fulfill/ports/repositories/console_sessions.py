"""Console sessions on the server: the repository port (``store/console_sessions.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.records import StoredSession


class ConsoleSessionsRepository(Protocol):
    def insert(
        self,
        *,
        session_hash: str,
        tenant_id: str,
        subject: str,
        sealed_token: str,
        now: float,
        expires_epoch: float,
    ) -> None: ...

    def get_live(self, session_hash: str, *, now: float) -> StoredSession | None:
        """The session, unless it is unknown, revoked or expired."""
        ...

    def revoke(self, session_hash: str, *, now: float) -> bool:
        """End a session for good; True when a live one was ended. Its sealed bearer is dropped too."""
        ...

    def purge_expired(self, *, now: float) -> int:
        """Delete the rows that expired more than a day ago; returns how many."""
        ...
