"""``uow.email_links`` in memory (``fulfill.store.email_links``)."""

from __future__ import annotations

from fulfill.domain.email_links import EmailLink
from tests.support.memory_store.tables import Tables


class MemoryEmailLinksRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def use_link(self, link: EmailLink, *, used_by: str, used_at: str) -> bool:
        key = (link.tenant_id, link.link_id)
        if key in self._t.email_link_uses:
            return False
        self._t.email_link_uses[key] = (link, used_by, used_at)
        return True
