"""The transactional outbox: messages are written in the same transaction as the fact they
announce, then relayed to each destination until it accepts them (at-least-once delivery)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from fulfill.store.db import insert_ignore
from fulfill.store.tables import outbox_deliveries, outbox_messages

PENDING = "PENDING"
DELIVERED = "DELIVERED"


@dataclass(frozen=True)
class Delivery:
    message_id: str
    destination: str
    topic: str
    tenant_id: str
    payload: dict[str, Any]
    attempts: int


def enqueue(
    conn: Connection,
    *,
    message_id: str,
    topic: str,
    tenant_id: str,
    payload: dict[str, Any],
    destinations: list[str],
    now: str,
    now_epoch: float,
) -> bool:
    """Store a message once (its id is deterministic) with one delivery row per destination."""
    if not insert_ignore(
        conn,
        outbox_messages,
        {
            "message_id": message_id,
            "topic": topic,
            "tenant_id": tenant_id,
            "payload": payload,
            "created_at": now,
        },
    ):
        return False
    for destination in destinations:
        insert_ignore(
            conn,
            outbox_deliveries,
            {
                "message_id": message_id,
                "destination": destination,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_epoch": now_epoch,
            },
        )
    return True


def _due(now_epoch: float) -> Any:
    return and_(
        outbox_deliveries.c.status == PENDING,
        outbox_deliveries.c.next_attempt_epoch <= now_epoch,
        or_(
            outbox_deliveries.c.lease_until_epoch.is_(None), outbox_deliveries.c.lease_until_epoch < now_epoch
        ),
    )


def claim_due(conn: Connection, *, now_epoch: float, lease_seconds: float, limit: int = 50) -> list[Delivery]:
    """Lease due deliveries to this relay so that concurrent relays never send the same one at once."""
    rows = conn.execute(
        select(
            outbox_deliveries.c.message_id,
            outbox_deliveries.c.destination,
            outbox_deliveries.c.attempts,
            outbox_messages.c.topic,
            outbox_messages.c.tenant_id,
            outbox_messages.c.payload,
        )
        .join(outbox_messages, outbox_messages.c.message_id == outbox_deliveries.c.message_id)
        .where(_due(now_epoch))
        .order_by(outbox_deliveries.c.next_attempt_epoch)
        .limit(limit)
    ).all()
    claimed: list[Delivery] = []
    for row in rows:
        result = conn.execute(
            update(outbox_deliveries)
            .where(
                outbox_deliveries.c.message_id == row.message_id,
                outbox_deliveries.c.destination == row.destination,
                _due(now_epoch),
            )
            .values(lease_until_epoch=now_epoch + lease_seconds)
        )
        if result.rowcount == 1:
            claimed.append(
                Delivery(row.message_id, row.destination, row.topic, row.tenant_id, row.payload, row.attempts)
            )
    return claimed


def mark_delivered(conn: Connection, delivery: Delivery, *, now: str) -> None:
    conn.execute(
        update(outbox_deliveries)
        .where(
            outbox_deliveries.c.message_id == delivery.message_id,
            outbox_deliveries.c.destination == delivery.destination,
        )
        .values(status=DELIVERED, delivered_at=now, attempts=delivery.attempts + 1, lease_until_epoch=None)
    )


def mark_failed(conn: Connection, delivery: Delivery, *, error: str, next_attempt_epoch: float) -> None:
    conn.execute(
        update(outbox_deliveries)
        .where(
            outbox_deliveries.c.message_id == delivery.message_id,
            outbox_deliveries.c.destination == delivery.destination,
        )
        .values(
            attempts=delivery.attempts + 1,
            last_error=error[:500],
            next_attempt_epoch=next_attempt_epoch,
            lease_until_epoch=None,
        )
    )


def pending_count(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(outbox_deliveries).where(outbox_deliveries.c.status == PENDING)
        ).scalar_one()
    )


def deliveries_for(conn: Connection, message_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(outbox_deliveries).where(outbox_deliveries.c.message_id == message_id)).all()
    return [dict(row._mapping) for row in rows]
