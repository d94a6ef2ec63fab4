"""``uow.external_writes`` in memory: not held. The steps and use cases tested in memory do not touch
reservations of external writes (a connector's, behind the gateway); every method says so when called."""

from __future__ import annotations

from typing import Any

from fulfill.domain.records import ExternalWrite, Reservation

_NOT_HELD = (
    "the in-memory store does not hold reservations of external writes (a connector's, behind the gateway)"
)


class MemoryExternalWritesRepository:
    def __init__(self, tables: object) -> None:
        self._t = tables

    def get(self, tenant_id: str, account_id: str, idempotency_key: str) -> ExternalWrite | None:
        raise NotImplementedError(_NOT_HELD)

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
    ) -> tuple[Reservation, ExternalWrite]:
        raise NotImplementedError(_NOT_HELD)

    def renew(
        self, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str, until: float
    ) -> bool:
        raise NotImplementedError(_NOT_HELD)

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
        raise NotImplementedError(_NOT_HELD)

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
        raise NotImplementedError(_NOT_HELD)

    def release(self, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str) -> None:
        raise NotImplementedError(_NOT_HELD)

    def expire(self, tenant_id: str, account_id: str, idempotency_key: str, *, owner: str) -> None:
        raise NotImplementedError(_NOT_HELD)

    def mark_compensated(
        self, tenant_id: str, account_id: str, idempotency_key: str, *, now_iso: str
    ) -> None:
        raise NotImplementedError(_NOT_HELD)

    def committed_write_of(
        self, tenant_id: str, account_id: str, *, action_intent_id: str, tool_name: str, object_id: str
    ) -> ExternalWrite | None:
        raise NotImplementedError(_NOT_HELD)
