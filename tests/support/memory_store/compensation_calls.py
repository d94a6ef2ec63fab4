"""``uow.compensation_calls`` in memory (``fulfill.store.compensation_calls``)."""

from __future__ import annotations

from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.records import Sent
from tests.support.memory_store.tables import Tables


class MemoryCompensationCallsRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def get(self, tenant_id: str, account_id: str, idempotency_key: str) -> Sent | None:
        sent: Sent | None = self._t.compensation_calls.get((tenant_id, account_id, idempotency_key))
        return sent

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
        key = (tenant_id, account_id, idempotency_key)
        if key in self._t.compensation_calls:
            return False
        self._t.compensation_calls[key] = Sent(None)
        return True

    def settle(self, tenant_id: str, account_id: str, idempotency_key: str, answer: ToolCallOutcome) -> None:
        key = (tenant_id, account_id, idempotency_key)
        if key in self._t.compensation_calls:
            self._t.compensation_calls[key] = Sent(answer)

    def clear(self, tenant_id: str, account_id: str, idempotency_key: str) -> None:
        self._t.compensation_calls.pop((tenant_id, account_id, idempotency_key), None)
