"""Email links (``domain/email_links.py``): made for each recipient of an email about an intent,
and opened in the console (``GET /console/open?link=…``), once.

The signing key is derived from the console's session secret (``FULFILL_CONSOLE_SESSION_SECRET``;
in dev mode, as the console's, from the dev JWT secret): without it the console cannot be signed
in to, and emails carry the plain console link instead.
"""

from __future__ import annotations

import hashlib

from fulfill.config import Settings
from fulfill.domain.email_links import (
    EmailLink,
    LinkRefused,
    link_key,
    link_url,
    new_link,
    read_link,
    sign_link,
)
from fulfill.domain.notifications import Notice
from fulfill.domain.time import epoch_from_iso
from fulfill.tokens import Principal
from fulfill.usecases.context import UseCaseContext


def _link_secret(settings: Settings) -> str | None:
    configured = settings.console_session_secret.get_secret_value()
    if configured:
        return configured
    if settings.auth_mode == "dev":
        return hashlib.sha256(b"fulfill-console-session:" + settings.jwt_secret.encode()).hexdigest()
    return None


def email_link(settings: Settings, notice: Notice, recipient: str, *, now: float) -> str | None:
    """The signed link for ``recipient`` to open the notice's intent; None without an intent,
    ``FULFILL_PUBLIC_URL`` or a console secret (then the email carries the plain console link)."""
    secret = _link_secret(settings)
    if not notice.action_intent_id or not settings.public_url or secret is None:
        return None
    expires = epoch_from_iso(notice.expires_at) if notice.expires_at else None
    link = new_link(
        tenant_id=notice.tenant_id,
        action_intent_id=notice.action_intent_id,
        recipient=recipient,
        now=now,
        intent_expires_at=expires,
    )
    return link_url(settings.public_url, sign_link(link_key(secret), link))


def open_link(rt: UseCaseContext, principal: Principal, token: str) -> EmailLink | LinkRefused:
    """The intent a link opens for the signed-in ``principal``, recording its one use; a link
    not signed by this service or of another tenant is refused (403), an expired or used one too
    (410). Nothing else changes: opening a link never approves."""
    secret = _link_secret(rt.settings)
    if secret is None:
        return LinkRefused(403, "This service signs no email links (no console session secret is set).")
    link = read_link(link_key(secret), token, now=rt.clock.now())
    if isinstance(link, LinkRefused):
        return link
    if link.tenant_id != principal.tenant_id:
        return LinkRefused(
            403, "This link opens an intent of another tenant than the one you are signed in to."
        )
    with rt.store.write() as uow:
        first = uow.email_links.use_link(link, used_by=principal.subject, used_at=rt.clock.now_iso())
    if not first:
        return LinkRefused(
            410, "This link was already used: each email link opens once. Find the intent in the console."
        )
    return link
