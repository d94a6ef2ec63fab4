"""``uow.connectors`` in memory: not held. The steps and use cases tested in memory do not touch
connectors' flow control (the steps reach it through their ConnectorGate); every method says so when
called, except the gate view InvokeTool reads with its checks: nothing is held, so it is what the
SQL store gives for a connector with nothing stored (unlimited, circuit closed, no tenant cap)."""

from __future__ import annotations

from collections.abc import Iterable

from fulfill.domain.fairness import Waiter
from fulfill.domain.flowcontrol import Circuit, ConnectorLimits
from fulfill.domain.records import StoredLimits, TenantCap

_NOT_HELD = "the in-memory store does not hold connectors' flow control (the steps reach it through their ConnectorGate)"


class MemoryConnectorsRepository:
    def __init__(self, tables: object) -> None:
        self._t = tables

    def database_now(self) -> float:
        raise NotImplementedError(_NOT_HELD)

    def get_limits(self, name: str) -> StoredLimits:
        raise NotImplementedError(_NOT_HELD)

    def list_limits(self) -> dict[str, StoredLimits]:
        raise NotImplementedError(_NOT_HELD)

    def put_limits(self, name: str, limits: ConnectorLimits, *, now: str) -> StoredLimits:
        raise NotImplementedError(_NOT_HELD)

    def gate_view(self, name: str, tenant_id: str) -> tuple[StoredLimits, Circuit, ConnectorLimits | None]:
        return StoredLimits(limits=ConnectorLimits()), Circuit(), None

    def get_circuit(self, name: str) -> Circuit:
        raise NotImplementedError(_NOT_HELD)

    def list_circuits(self) -> dict[str, Circuit]:
        raise NotImplementedError(_NOT_HELD)

    def fast_commit(self) -> None:
        raise NotImplementedError(_NOT_HELD)

    def lock_state(self, name: str) -> Circuit:
        raise NotImplementedError(_NOT_HELD)

    def save_circuit(self, name: str, circuit: Circuit, *, now: float) -> None:
        raise NotImplementedError(_NOT_HELD)

    def count_in_flight(self, name: str, now: float, *, tenant_id: str | None = ...) -> int:
        raise NotImplementedError(_NOT_HELD)

    def count_not_sent(self, name: str, now: float, *, tenant_id: str | None = ...) -> int:
        raise NotImplementedError(_NOT_HELD)

    def recent_sends(
        self, name: str, *, since: float, limit: int, tenant_id: str | None = ...
    ) -> list[float]:
        raise NotImplementedError(_NOT_HELD)

    def last_admitted(self, name: str, tenants: Iterable[str]) -> dict[str, float]:
        raise NotImplementedError(_NOT_HELD)

    def insert_call(
        self, *, call_id: str, name: str, admitted: float, lease_until: float, tenant_id: str | None = ...
    ) -> None:
        raise NotImplementedError(_NOT_HELD)

    def mark_dispatched(self, call_id: str, *, at: float) -> None:
        raise NotImplementedError(_NOT_HELD)

    def finish_call(self, call_id: str, *, now: float, sent_at: float | None) -> None:
        raise NotImplementedError(_NOT_HELD)

    def prune_calls(self, name: str, *, before: float, now: float) -> None:
        raise NotImplementedError(_NOT_HELD)

    def waiting(self, name: str, *, now: float, other_than: str) -> list[Waiter]:
        raise NotImplementedError(_NOT_HELD)

    def add_waiters(self, name: str, waiters: Iterable[Waiter], *, owner: str, lease_until: float) -> None:
        raise NotImplementedError(_NOT_HELD)

    def renew_waiters(self, waiter_ids: Iterable[str], *, lease_until: float) -> None:
        raise NotImplementedError(_NOT_HELD)

    def remove_waiters(self, waiter_ids: Iterable[str]) -> None:
        raise NotImplementedError(_NOT_HELD)

    def prune_waiters(self, name: str, *, before: float) -> None:
        raise NotImplementedError(_NOT_HELD)

    def tenant_caps(self, name: str) -> dict[str, ConnectorLimits]:
        raise NotImplementedError(_NOT_HELD)

    def tenant_cap(self, name: str, tenant_id: str) -> ConnectorLimits | None:
        raise NotImplementedError(_NOT_HELD)

    def list_tenant_caps(self, *, tenant_id: str | None = ...) -> list[TenantCap]:
        raise NotImplementedError(_NOT_HELD)

    def put_tenant_cap(
        self, name: str, tenant_id: str, cap: ConnectorLimits, *, now: str, by: str
    ) -> TenantCap:
        raise NotImplementedError(_NOT_HELD)

    def delete_tenant_cap(self, name: str, tenant_id: str) -> bool:
        raise NotImplementedError(_NOT_HELD)
