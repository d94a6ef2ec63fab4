"""Signed email links that were opened (``domain/email_links.py``): each opens once."""

from __future__ import annotations

from sqlalchemy import Connection

from fulfill.domain.email_links import EmailLink
from fulfill.store.db import insert_ignore
from fulfill.store.tables import email_link_uses


def use_link(conn: Connection, link: EmailLink, *, used_by: str, used_at: str) -> bool:
    """Record that ``link`` was opened; False when it was opened before (nothing written)."""
    return insert_ignore(
        conn,
        email_link_uses,
        {
            "tenant_id": link.tenant_id,
            "link_id": link.link_id,
            "action_intent_id": link.action_intent_id,
            "recipient": link.recipient,
            "used_by": used_by,
            "used_at": used_at,
        },
    )


class SqlEmailLinksRepository:
    """The email links repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def use_link(self, link: EmailLink, *, used_by: str, used_at: str) -> bool:
        return use_link(self._conn, link, used_by=used_by, used_at=used_at)
