"""``uow.outbox`` in memory (``fulfill.store.outbox``): a message once, one delivery per
destination. The relay's leasing is not held in memory (the relay runs against SQL)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fulfill.domain.records import DeadLetter, Delivery
from tests.support.memory_store.tables import DeliveryRow, MessageRow, Tables

PENDING = "PENDING"


class MemoryOutboxRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def enqueue(
        self,
        *,
        message_id: str,
        topic: str,
        tenant_id: str,
        payload: dict[str, Any],
        destinations: list[str],
        now: str,
        now_epoch: float,
    ) -> bool:
        if not destinations or message_id in self._t.messages:
            return False
        self._t.messages[message_id] = MessageRow(message_id, topic, tenant_id, payload, now)
        for destination in destinations:
            self._t.deliveries.setdefault(
                (message_id, destination), DeliveryRow(message_id, destination, PENDING, 0, now_epoch)
            )
        return True

    def message(self, message_id: str) -> MessageRow | None:
        """Not a port method: one stored message (for assertions)."""
        return self._t.messages.get(message_id)

    def due_destinations(
        self, *, now_epoch: float, exclude: Collection[str] = (), only: Collection[str] | None = None
    ) -> list[str]:
        return sorted(
            {
                row.destination
                for row in self._t.deliveries.values()
                if row.status == PENDING
                and row.next_attempt_epoch <= now_epoch
                and row.destination not in exclude
                and (only is None or row.destination in only)
            }
        )

    def claim_due(
        self,
        *,
        now_epoch: float,
        lease_seconds: float,
        owner: str,
        limit: int = 50,
        only: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
    ) -> list[Delivery]:
        raise NotImplementedError("the in-memory store does not lease deliveries")

    def renew_lease(self, delivery: Delivery, *, owner: str, now_epoch: float, lease_seconds: float) -> bool:
        raise NotImplementedError("the in-memory store does not lease deliveries")

    def mark_delivered(self, delivery: Delivery, *, owner: str, now: str) -> bool:
        raise NotImplementedError("the in-memory store does not lease deliveries")

    def mark_failed(
        self,
        delivery: Delivery,
        *,
        owner: str,
        error: str,
        next_attempt_epoch: float,
        dead_letter_at: str | None = None,
    ) -> bool:
        raise NotImplementedError("the in-memory store does not lease deliveries")

    def release_leases(self, *, owner: str) -> int:
        return 0

    def pending_count(self) -> int:
        return sum(1 for row in self._t.deliveries.values() if row.status == PENDING)

    def oldest_pending_created_at(self) -> str | None:
        pending = [
            self._t.messages[row.message_id].created_at
            for row in self._t.deliveries.values()
            if row.status == PENDING
        ]
        return min(pending) if pending else None

    def deliveries_for(self, message_id: str) -> list[dict[str, Any]]:
        return [vars(row).copy() for (message, _), row in self._t.deliveries.items() if message == message_id]

    def dead_letters(
        self,
        *,
        tenant_id: str | None = None,
        message_id: str | None = None,
        destination: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        return []

    def redeliver(
        self,
        *,
        now_epoch: float,
        tenant_id: str | None = None,
        message_id: str | None = None,
        destination: str | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        return []

    def dead_letter_destinations(self) -> dict[str, int]:
        return {}

    def delete_delivered(self, *, cutoff_epoch: float, cutoff: str, limit: int) -> tuple[int, int]:
        raise NotImplementedError("the in-memory store does not delete deliveries")
