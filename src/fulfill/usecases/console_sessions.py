"""The console's sign-ins on the server: open (clearing out long-expired ones), find a live one,
revoke. What a row holds about the user's bearer is sealed by the console
(:mod:`fulfill.console.session`); this layer only keeps it."""

from __future__ import annotations

from fulfill.domain.records import StoredSession
from fulfill.usecases.context import UseCaseContext

__all__ = ["StoredSession", "live_session", "open_session", "revoke_session"]


def open_session(
    rt: UseCaseContext,
    *,
    session_hash: str,
    tenant_id: str,
    subject: str,
    sealed_token: str,
    now: float,
    expires_epoch: float,
) -> None:
    with rt.store.write() as uow:
        uow.console_sessions.purge_expired(now=now)
        uow.console_sessions.insert(
            session_hash=session_hash,
            tenant_id=tenant_id,
            subject=subject,
            sealed_token=sealed_token,
            now=now,
            expires_epoch=expires_epoch,
        )


def live_session(rt: UseCaseContext, session_hash: str, *, now: float) -> StoredSession | None:
    with rt.store.read() as uow:
        return uow.console_sessions.get_live(session_hash, now=now)


def revoke_session(rt: UseCaseContext, session_hash: str, *, now: float) -> None:
    with rt.store.write() as uow:
        uow.console_sessions.revoke(session_hash, now=now)
