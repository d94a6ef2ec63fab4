"""``uow.console_sessions`` in memory: not held. The steps and use cases tested in memory do not touch
console sessions; every method says so when called."""

from __future__ import annotations

from fulfill.domain.records import StoredSession

_NOT_HELD = "the in-memory store does not hold console sessions"


class MemoryConsoleSessionsRepository:
    def __init__(self, tables: object) -> None:
        self._t = tables

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
        raise NotImplementedError(_NOT_HELD)

    def get_live(self, session_hash: str, *, now: float) -> StoredSession | None:
        raise NotImplementedError(_NOT_HELD)

    def revoke(self, session_hash: str, *, now: float) -> bool:
        raise NotImplementedError(_NOT_HELD)

    def purge_expired(self, *, now: float) -> int:
        raise NotImplementedError(_NOT_HELD)
