"""What the console's dashboard reads (counts and bounded samples, read-only): the repository
port (``store/dashboard.py`` implements it over SQL). ``tenant_id`` None: every tenant;
``account_ids`` None: every account."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from fulfill.domain.dashboard import WaitingList


class DashboardRepository(Protocol):
    def outcomes_per_minute(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = ...
    ) -> list[tuple[str, str, int]]:
        """(minute ``YYYY-MM-DDTHH:MM``, status, count) of the outcomes recorded in ``[since, until)``."""
        ...

    def failures_by_class(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = ...
    ) -> dict[str, int]:
        """FAILED outcomes recorded in ``[since, until)`` by error class (``""``: none recorded)."""
        ...

    def approval_waits(
        self,
        *,
        since: str,
        until: str,
        tenant_id: str | None,
        account_ids: Collection[str] | None = ...,
        limit: int,
    ) -> tuple[int, list[tuple[str, str]]]:
        """Intents a person approved in the window: how many, and (created_at, approval_timestamp)
        of the ``limit`` most recent."""
        ...

    def approval_to_outcome(
        self,
        *,
        since: str,
        until: str,
        tenant_id: str | None,
        account_ids: Collection[str] | None = ...,
        limit: int,
    ) -> tuple[int, list[tuple[str, str]]]:
        """First attempts of approved intents whose outcome was recorded in the window: how many,
        and (approval_timestamp, completed_at) of the ``limit`` most recent."""
        ...

    def tool_outcome_counts(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = ...
    ) -> list[tuple[str, str, int]]:
        """(tool name, status, count) of the SUCCEEDED and FAILED outcomes naming a tool."""
        ...

    def tool_timings(
        self,
        *,
        since: str,
        until: str,
        tenant_id: str | None,
        account_ids: Collection[str] | None = ...,
        limit: int,
    ) -> list[tuple[str, str, str]]:
        """(tool name, started_at, completed_at) of the ``limit`` most recent of those outcomes."""
        ...

    def retried_tries(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = ...
    ) -> list[tuple[str, int]]:
        """(tool name, count) of failed tries of a tool call that were retried."""
        ...

    def pending_by_age(
        self,
        *,
        bounds: list[str],
        now_epoch: float,
        tenant_id: str | None,
        account_ids: Collection[str] | None = ...,
    ) -> tuple[list[int], str | None]:
        """Intents waiting for approval and not expired, counted between ``bounds`` (newest first),
        and the oldest's created_at."""
        ...

    def stuck_attempts(
        self,
        *,
        now_epoch: float,
        tenant_id: str | None,
        account_ids: Collection[str] | None = ...,
        limit: int,
    ) -> WaitingList:
        """Attempts still QUEUED or RUNNING after their whole budget ran out."""
        ...

    def unknown_outcomes(
        self, *, tenant_id: str | None, account_ids: Collection[str] | None = ..., limit: int
    ) -> WaitingList:
        """Executions whose latest attempt is AMBIGUOUS (its OUTCOME_UNKNOWN ledger entry)."""
        ...

    def compensations_for_a_person(
        self, *, tenant_id: str | None, account_ids: Collection[str] | None = ..., limit: int
    ) -> WaitingList:
        """Compensations nobody will try again (FAILED with no next try, or MANUAL)."""
        ...

    def dead_letter_count(self, *, tenant_id: str | None) -> int:
        """Dead-lettered outbox deliveries (of the tenant's messages, or everyone's)."""
        ...

    def tenants(self, *, limit: int) -> list[str]:
        """The tenants that have intents, in name order."""
        ...
