"""The transactional outbox: messages and their deliveries: the repository port (``store/outbox.py`` implements it over SQL)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from fulfill.domain.records import DeadLetter, Delivery


class OutboxRepository(Protocol):
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
        """Store a message once (its id is deterministic) with one delivery row per destination.

        A message without a destination is not stored: nothing would ever read it."""
        ...

    def due_destinations(
        self, *, now_epoch: float, exclude: Collection[str] = ..., only: Collection[str] | None = ...
    ) -> list[str]:
        """The destinations with a delivery due now and not leased (the relay's lanes to wake);
        with ``only``, among those destinations."""
        ...

    def claim_due(
        self,
        *,
        now_epoch: float,
        lease_seconds: float,
        owner: str,
        limit: int = ...,
        only: Collection[str] | None = ...,
        exclude: Collection[str] | None = ...,
    ) -> list[Delivery]:
        """Lease due deliveries to ``owner`` (one relay), so that concurrent relays never take the same one.

        On PostgreSQL the due rows are locked with ``FOR UPDATE SKIP LOCKED``: concurrent relays take
        disjoint sets without waiting for each other. Each lease is also conditional (the row must
        still be due), so a row another relay leased in the meantime is never taken over. SQLite
        serialises write transactions, so there the condition alone decides.

        ``only`` and ``exclude`` pick a lane: the engine's own destinations, or one external one."""
        ...

    def renew_lease(self, delivery: Delivery, *, owner: str, now_epoch: float, lease_seconds: float) -> bool:
        """Extend ``owner``'s lease right before a delivery; False when the lease is no longer its own
        (another relay took the delivery over after the lease ran out, or it was settled)."""
        ...

    def mark_delivered(self, delivery: Delivery, *, owner: str, now: str) -> bool:
        """Record an accepted delivery; only while ``owner`` still holds the lease (else False, and
        the try is counted in the delivery's attempts all the same: the destination saw it)."""
        ...

    def mark_failed(
        self,
        delivery: Delivery,
        *,
        owner: str,
        error: str,
        next_attempt_epoch: float,
        dead_letter_at: str | None = ...,
    ) -> bool:
        """Record a refused delivery and when to try again, or, with ``dead_letter_at``, that it is
        given up (DEAD_LETTER); only while ``owner`` holds the lease (else False, and the try is
        counted in the delivery's attempts all the same)."""
        ...

    def release_leases(self, *, owner: str) -> int:
        """Give back ``owner``'s unsettled leases (a stopping relay), so others need not wait them out."""
        ...

    def pending_count(self) -> int: ...

    def oldest_pending_created_at(self) -> str | None:
        """When the oldest message that still has an undelivered delivery was written (None: none).
        Timestamps are ISO-8601 strings of one format, so the smallest is the oldest."""
        ...

    def deliveries_for(self, message_id: str) -> list[dict[str, Any]]: ...

    def dead_letters(
        self,
        *,
        tenant_id: str | None = ...,
        message_id: str | None = ...,
        destination: str | None = ...,
        limit: int = ...,
    ) -> list[DeadLetter]:
        """Dead-lettered deliveries, oldest message first (``tenant_id`` None: every tenant's)."""
        ...

    def redeliver(
        self,
        *,
        now_epoch: float,
        tenant_id: str | None = ...,
        message_id: str | None = ...,
        destination: str | None = ...,
        limit: int = ...,
    ) -> list[DeadLetter]:
        """Put dead-lettered deliveries back in line, due now with a fresh count of tries; returns
        those this call moved (a concurrent redelivery of the same one moves it only once)."""
        ...

    def dead_letter_destinations(self) -> dict[str, int]:
        """How many deliveries are dead-lettered, by destination."""
        ...

    def delete_delivered(self, *, cutoff_epoch: float, cutoff: str, limit: int) -> tuple[int, int]:
        """Delete up to ``limit`` deliveries an external destination accepted before the cutoff
        (``cutoff_epoch``, and ``cutoff`` as a timestamp), then those of their messages that have
        no delivery left; answers (deliveries, messages) deleted. Pending and dead-lettered
        deliveries, and the engine's own lane, are never deleted."""
        ...
