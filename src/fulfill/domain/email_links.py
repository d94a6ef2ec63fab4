"""The signed, single-use, expiring link an email carries to open an intent in the console.
Pure: no I/O.

``{FULFILL_PUBLIC_URL}/console/open?link=<token>``: the token is ``<payload>.<signature>``, both
base64url, the payload JSON naming the tenant, the intent, the recipient, the expiry (Unix
seconds) and a random link id; the signature is HMAC-SHA256 of the payload with a key of the
service's (derived from the console's session secret). Opening it never approves anything: it
shows the intent in the console, after the console's login, once; the use is recorded (by link
id), so a second opening, or one after the expiry, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote

EMAIL_LINK_TTL_SECONDS = 3 * 86_400  # at most; sooner when the intent expires sooner
MAX_TOKEN_LENGTH = 2048
LINK_PATH = "/console/open"
_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class EmailLink:
    tenant_id: str
    action_intent_id: str
    recipient: str
    expires_at_epoch: int
    link_id: str


@dataclass(frozen=True)
class LinkRefused:
    """Why a link does not open: ``status`` 403 (not a link of this service) or 410 (expired)."""

    status: int
    message: str


def link_key(secret: str) -> bytes:
    """The links' signing key, derived from a service secret (never the secret itself)."""
    return hashlib.sha256(b"fulfill-email-link:" + secret.encode()).digest()


def new_link(
    *, tenant_id: str, action_intent_id: str, recipient: str, now: float, intent_expires_at: float | None
) -> EmailLink:
    expiry = now + EMAIL_LINK_TTL_SECONDS
    if intent_expires_at is not None:
        expiry = min(expiry, intent_expires_at)
    return EmailLink(
        tenant_id=tenant_id,
        action_intent_id=action_intent_id,
        recipient=recipient,
        expires_at_epoch=int(expiry),
        link_id=secrets.token_urlsafe(24),
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(key: bytes, link: EmailLink) -> str:
    payload = json.dumps(
        {
            "v": 1,
            "t": link.tenant_id,
            "i": link.action_intent_id,
            "r": link.recipient,
            "e": link.expires_at_epoch,
            "n": link.link_id,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    body = _b64(payload)
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def link_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{LINK_PATH}?link={quote(token, safe='')}"


def read_link(key: bytes, token: str, *, now: float) -> EmailLink | LinkRefused:
    """The link a token names, when this service signed it and it has not expired."""
    invalid = LinkRefused(
        403, "This link is not a valid link of this service (it may have been cut or changed)."
    )
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return invalid
    body, signature = token.split(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), signature.encode(errors="replace")):
        return invalid
    try:
        fields = json.loads(_unb64(body))
    except (ValueError, binascii.Error):
        return invalid
    if not isinstance(fields, dict) or fields.get("v") != 1:
        return invalid
    tenant, intent, recipient, expiry, link_id = (fields.get(k) for k in ("t", "i", "r", "e", "n"))
    if not (
        isinstance(tenant, str)
        and isinstance(intent, str)
        and isinstance(recipient, str)
        and isinstance(expiry, int)
        and isinstance(link_id, str)
        and _LINK_ID.match(link_id)
    ):
        return invalid
    if now >= expiry:
        return LinkRefused(410, "This link has expired. Open the intent from the console's approvals page.")
    return EmailLink(
        tenant_id=tenant,
        action_intent_id=intent,
        recipient=recipient,
        expires_at_epoch=expiry,
        link_id=link_id,
    )
