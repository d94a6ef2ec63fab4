"""Reservations of external writes: reserve → call → commit, keyed by the idempotency key: the repository port (``store/external_writes.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Any, Protocol

from fulfill.domain.records import ExternalWrite, Reservation


class ExternalWritesRepository(Protocol):
    def get(self, tenant_id: str, account_id: str, idempotency_key: str) -> ExternalWrite | None: ...

    def reserve(
        self,
        *,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        connector: str,
        tool_name: str,
        action_intent_id: str,
        owner: str,
        now: float,
        now_iso: str,
        lease_seconds: float,
    ) -> tuple[Reservation, ExternalWrite]: ...

    def renew(
        self, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str, until: float
    ) -> bool:
        """Extend this owner's lease; False when it is no longer the owner."""
        ...

    def record_values(
        self,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        *,
        owner: str,
        previous: dict[str, Any],
        written: dict[str, Any],
    ) -> bool:
        """An update's values before and after, recorded before it writes (once: never overwritten)."""
        ...

    def commit(
        self,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        *,
        object_type: str,
        object_id: str,
        object_url: str | None,
        now_iso: str,
    ) -> ExternalWrite:
        """Record the written object (the first commit wins) and return the row as stored."""
        ...

    def release(self, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str) -> None:
        """Drop a reservation whose write certainly did not happen."""
        ...

    def expire(self, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str) -> None:
        """End this owner's lease now: the write's result is unknown, the next call looks it up."""
        ...

    def mark_compensated(
        self, tenant_id: str, account_id: str, idempotency_key: str, *, now_iso: str
    ) -> None: ...

    def committed_write_of(
        self, tenant_id: str, account_id: str, *, action_intent_id: str, tool_name: str, object_id: str
    ) -> ExternalWrite | None:
        """The committed write of ``object_id`` by one intent's ``tool_name``, found by what a
        compensation call carries: its own idempotency key is not the write's (it is derived from it)."""
        ...
