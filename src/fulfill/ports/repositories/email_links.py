"""Signed email links that were opened: the repository port (``store/email_links.py``)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.email_links import EmailLink


class EmailLinksRepository(Protocol):
    def use_link(self, link: EmailLink, *, used_by: str, used_at: str) -> bool:
        """Record that ``link`` was opened; False when it was opened before (nothing written)."""
        ...
