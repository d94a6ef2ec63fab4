"""``uow.dashboard`` in memory: not held. The dashboard is tested over SQLite and PostgreSQL
(its counting is SQL); every method says so when called."""

from __future__ import annotations

from collections.abc import Collection

from fulfill.domain.dashboard import WaitingList

_NOT_HELD = "the in-memory store does not answer the dashboard's queries (tested over SQL)"


class MemoryDashboardRepository:
    def __init__(self, tables: object) -> None:
        self._t = tables

    def outcomes_per_minute(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = None
    ) -> list[tuple[str, str, int]]:
        raise NotImplementedError(_NOT_HELD)

    def failures_by_class(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = None
    ) -> dict[str, int]:
        raise NotImplementedError(_NOT_HELD)

    def approval_waits(
        self,
        *,
        since: str,
        until: str,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
        limit: int,
    ) -> tuple[int, list[tuple[str, str]]]:
        raise NotImplementedError(_NOT_HELD)

    def approval_to_outcome(
        self,
        *,
        since: str,
        until: str,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
        limit: int,
    ) -> tuple[int, list[tuple[str, str]]]:
        raise NotImplementedError(_NOT_HELD)

    def tool_outcome_counts(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = None
    ) -> list[tuple[str, str, int]]:
        raise NotImplementedError(_NOT_HELD)

    def tool_timings(
        self,
        *,
        since: str,
        until: str,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
        limit: int,
    ) -> list[tuple[str, str, str]]:
        raise NotImplementedError(_NOT_HELD)

    def retried_tries(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = None
    ) -> list[tuple[str, int]]:
        raise NotImplementedError(_NOT_HELD)

    def pending_by_age(
        self,
        *,
        bounds: list[str],
        now_epoch: float,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
    ) -> tuple[list[int], str | None]:
        raise NotImplementedError(_NOT_HELD)

    def stuck_attempts(
        self,
        *,
        now_epoch: float,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
        limit: int,
    ) -> WaitingList:
        raise NotImplementedError(_NOT_HELD)

    def unknown_outcomes(
        self, *, tenant_id: str | None, account_ids: Collection[str] | None = None, limit: int
    ) -> WaitingList:
        raise NotImplementedError(_NOT_HELD)

    def compensations_for_a_person(
        self, *, tenant_id: str | None, account_ids: Collection[str] | None = None, limit: int
    ) -> WaitingList:
        raise NotImplementedError(_NOT_HELD)

    def dead_letter_count(self, *, tenant_id: str | None) -> int:
        raise NotImplementedError(_NOT_HELD)

    def tenants(self, *, limit: int) -> list[str]:
        raise NotImplementedError(_NOT_HELD)
