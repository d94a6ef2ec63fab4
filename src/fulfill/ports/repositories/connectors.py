"""Stored flow control of each connector: limits, circuit breaker, admitted calls, waiters, tenant caps: the repository port (``store/connectors.py`` implements it over SQL)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from fulfill.domain.fairness import Waiter
from fulfill.domain.flowcontrol import Circuit, ConnectorLimits
from fulfill.domain.records import StoredLimits, TenantCap

GateView = tuple[StoredLimits, Circuit, ConnectorLimits | None]
"""What a call's admission looks at first (:meth:`ConnectorsRepository.gate_view`): the connector's
limits, its circuit and the tenant's own cap (None: none of its own)."""


class ConnectorsRepository(Protocol):
    def database_now(self) -> float:
        """The database server's clock, in epoch seconds (read after any lock this transaction holds)."""
        ...

    def get_limits(self, name: str) -> StoredLimits: ...

    def gate_view(self, name: str, tenant_id: str) -> GateView:
        """``get_limits``, ``get_circuit`` and ``tenant_cap`` in one statement."""
        ...

    def list_limits(self) -> dict[str, StoredLimits]: ...

    def put_limits(self, name: str, limits: ConnectorLimits, *, now: str) -> StoredLimits:
        """Replace a connector's limits atomically (one upsert); returns what was stored."""
        ...

    def get_circuit(self, name: str) -> Circuit: ...

    def list_circuits(self) -> dict[str, Circuit]: ...

    def fast_commit(self) -> None:
        """Let this transaction commit without waiting for its WAL flush (PostgreSQL): flow control
        rows are short-lived bookkeeping, visible to others at commit all the same, and a call must
        not wait for a disk flush between its admission and its sending. A database crash loses at
        most the last moments of them, which only makes the next calls wait less."""
        ...

    def lock_state(self, name: str) -> Circuit:
        """Lock the connector's row for the rest of this write transaction (creating it if needed)."""
        ...

    def save_circuit(self, name: str, circuit: Circuit, *, now: float) -> None: ...

    def count_in_flight(self, name: str, now: float, *, tenant_id: str | None = ...) -> int:
        """Calls admitted and not finished, except those whose lease ran out (their process died)."""
        ...

    def count_not_sent(self, name: str, now: float, *, tenant_id: str | None = ...) -> int:
        """Calls admitted and not sent yet (nor given up, nor of a process that died)."""
        ...

    def recent_sends(
        self, name: str, *, since: float, limit: int, tenant_id: str | None = ...
    ) -> list[float]:
        """When the ``limit`` latest calls sent after ``since`` were sent, latest first."""
        ...

    def last_admitted(self, name: str, tenants: Iterable[str]) -> dict[str, float]:
        """When each of ``tenants``' latest call to ``name`` still on record was admitted (a tenant
        with none is absent)."""
        ...

    def insert_call(
        self, *, call_id: str, name: str, admitted: float, lease_until: float, tenant_id: str | None = ...
    ) -> None: ...

    def mark_dispatched(self, call_id: str, *, at: float) -> None: ...

    def finish_call(self, call_id: str, *, now: float, sent_at: float | None) -> None:
        """The call is over; ``sent_at`` (if it was sent) is stored with it, in case the separate
        write of it has not landed yet, so the rate window never loses sight of a sent call."""
        ...

    def prune_calls(self, name: str, *, before: float, now: float) -> None:
        """Forget calls no window needs any more: finished before ``before``, or admitted before it by
        a process that died (lease run out)."""
        ...

    def waiting(self, name: str, *, now: float, other_than: str) -> list[Waiter]:
        """The calls waiting for ``name`` whose process still renews their lease, except those of the
        process ``other_than`` (it knows its own)."""
        ...

    def add_waiters(
        self, name: str, waiters: Iterable[Waiter], *, owner: str, lease_until: float
    ) -> None: ...

    def renew_waiters(self, waiter_ids: Iterable[str], *, lease_until: float) -> None:
        """Extend the lease of these waiting calls (their process is alive and they still wait)."""
        ...

    def remove_waiters(self, waiter_ids: Iterable[str]) -> None: ...

    def prune_waiters(self, name: str, *, before: float) -> None:
        """Forget the waiting calls of processes that died (lease run out before ``before``)."""
        ...

    def tenant_caps(self, name: str) -> dict[str, ConnectorLimits]:
        """Every tenant's own cap on ``name``, by tenant."""
        ...

    def tenant_cap(self, name: str, tenant_id: str) -> ConnectorLimits | None: ...

    def list_tenant_caps(self, *, tenant_id: str | None = ...) -> list[TenantCap]: ...

    def put_tenant_cap(
        self, name: str, tenant_id: str, cap: ConnectorLimits, *, now: str, by: str
    ) -> TenantCap: ...

    def delete_tenant_cap(self, name: str, tenant_id: str) -> bool: ...
