"""Dead letters of the outbox: list them, and put them back in line (redeliver).

Who sees what. A platform admin (``platform:admin``: the webhooks and the event bus are the
platform's configuration) lists and redelivers every tenant's dead letters, by message or by
destination, and sees the destinations. A tenant's admin (``admin``) lists and redelivers only
its own tenant's, by message; it sees the kind of each destination but never its URL (it may carry
the platform's credentials). Nothing shows a message's payload. The command line
(``fulfill outbox``) acts on the database as a platform admin would.
"""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.outbox import destination_kind
from fulfill.domain.ports import Clock
from fulfill.domain.records import DeadLetter
from fulfill.ports.store import Store
from fulfill.usecases.errors import Invalid, NotFound

log = logging.getLogger(__name__)

MessageId = Annotated[str, Field(min_length=1, max_length=255)]
Destination = Annotated[str, Field(min_length=1, max_length=1024)]


class DestinationNotAllowed(Invalid):
    """A tenant's admin named a destination (422)."""


class DeadLetterView(BaseModel):
    message_id: str
    topic: str
    tenant_id: str
    destination_kind: str  # engine, webhook or eventbridge
    destination: str | None = None  # only for a platform admin
    attempts: int
    last_error: str | None
    created_at: str
    dead_lettered_at: str | None


class DeadLetterListing(BaseModel):
    dead_letters: list[DeadLetterView]


class RedeliverBody(BaseModel):
    """Which dead letters to put back in line; none named: every one in the caller's reach."""

    model_config = ConfigDict(extra="forbid")

    message_id: MessageId | None = None
    destination: Destination | None = None  # platform admins only


class Redelivered(BaseModel):
    redelivered: list[DeadLetterView]


def _view(letter: DeadLetter, *, platform: bool) -> DeadLetterView:
    return DeadLetterView(
        message_id=letter.message_id,
        topic=letter.topic,
        tenant_id=letter.tenant_id,
        destination_kind=destination_kind(letter.destination),
        destination=letter.destination if platform else None,
        attempts=letter.attempts,
        last_error=letter.last_error,
        created_at=letter.created_at,
        dead_lettered_at=letter.dead_lettered_at,
    )


def list_dead_letters(
    store: Store,
    *,
    tenant_id: str | None,
    platform: bool,
    destination: str | None = None,
    limit: int = 100,
) -> DeadLetterListing:
    """``tenant_id`` None: every tenant's (platform admins only)."""
    with store.read() as uow:
        letters = uow.outbox.dead_letters(tenant_id=tenant_id, destination=destination, limit=limit)
    return DeadLetterListing(dead_letters=[_view(letter, platform=platform) for letter in letters])


def redeliver(
    store: Store,
    clock: Clock,
    body: RedeliverBody,
    *,
    tenant_id: str | None,
    platform: bool,
    requested_by: str,
) -> Redelivered:
    """Put the chosen dead letters back in line, due now with a fresh count of tries. A named
    message that has no dead letter in the caller's reach is a 404 (another tenant's included)."""
    with store.write() as uow:
        moved = uow.outbox.redeliver(
            now_epoch=clock.now(),
            tenant_id=tenant_id,
            message_id=body.message_id,
            destination=body.destination if platform else None,
        )
    if body.message_id is not None and not moved:
        raise NotFound("no dead letter of this message", code="DEAD_LETTER_NOT_FOUND")
    for letter in moved:
        log.warning(
            "outbox delivery %s to a %s destination redelivered by %s",
            letter.message_id,
            destination_kind(letter.destination),
            requested_by,
        )
    return Redelivered(redelivered=[_view(letter, platform=platform) for letter in moved])
