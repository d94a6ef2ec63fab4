"""Marks of compensation calls to targets that do not deduplicate: the repository port (``store/compensation_calls.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.records import Sent


class CompensationCallsRepository(Protocol):
    def get(self, tenant_id: str, account_id: str, idempotency_key: str) -> Sent | None: ...

    def mark(
        self,
        *,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        action_intent_id: str,
        attempt_count: int,
        tool_name: str,
        object_id: str,
        now: str,
    ) -> bool:
        """Before sending; False when a mark exists already."""
        ...

    def settle(
        self, tenant_id: str, account_id: str, idempotency_key: str, answer: ToolCallOutcome
    ) -> None: ...

    def clear(self, tenant_id: str, account_id: str, idempotency_key: str) -> None: ...
