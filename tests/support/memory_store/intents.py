"""``uow.intents`` in memory (``fulfill.store.intents``)."""

from __future__ import annotations

from collections.abc import Collection

from fulfill.domain.models import ActionIntentV1, ApprovalStatus, ExecutionStatus, RegistryEntry
from fulfill.domain.records import ListedExecution, PendingFilter
from tests.support.memory_store.tables import IntentRow, Tables


class MemoryIntentsRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def insert_intent(self, intent: ActionIntentV1, request_hash: str) -> bool:
        key = (intent.tenant_id, intent.action_intent_id)
        if key in self._t.intents:
            return False
        self._t.intents[key] = IntentRow(
            intent, request_hash, ExecutionStatus.PENDING.value, intent.updated_at
        )
        if intent.escalates_at_epoch is not None and intent.escalated_at is None:
            self._t.escalations[key] = intent.escalates_at_epoch
        return True

    def get_intent(
        self, tenant_id: str, action_intent_id: str, *, for_update: bool = False
    ) -> ActionIntentV1 | None:
        row = self._t.intents.get((tenant_id, action_intent_id))
        return row.intent if row else None

    def get_approval_statuses(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], ApprovalStatus]:
        rows = {key: self._t.intents.get(key) for key in keys}
        return {key: row.intent.approval_status for key, row in rows.items() if row is not None}

    def get_intent_with_request_hash(
        self, tenant_id: str, action_intent_id: str
    ) -> tuple[ActionIntentV1, str] | None:
        row = self._t.intents.get((tenant_id, action_intent_id))
        return (row.intent, row.request_hash) if row else None

    def get_intent_with_entry(
        self, tenant_id: str, action_intent_id: str
    ) -> tuple[ActionIntentV1, RegistryEntry | None] | None:
        row = self._t.intents.get((tenant_id, action_intent_id))
        if row is None:
            return None
        return row.intent, self._t.registry.get((row.intent.action_type, row.intent.registry_version))

    def transition_approval(
        self,
        intent: ActionIntentV1,
        *,
        to_status: ApprovalStatus,
        now: str,
        approved_by: str | None = None,
        action_hash: str | None = None,
        execution_status: ExecutionStatus | None = None,
    ) -> ActionIntentV1 | None:
        key = (intent.tenant_id, intent.action_intent_id)
        row = self._t.intents.get(key)
        if row is None or row.intent.approval_status is not intent.approval_status:
            return None  # moved meanwhile: compare-and-set on the approval status
        changes: dict[str, object] = {"approval_status": to_status, "updated_at": now}
        if to_status is ApprovalStatus.APPROVED:
            changes["approved_by"] = approved_by
            changes["approval_timestamp"] = now
            changes["action_hash"] = action_hash
        updated = intent.model_copy(update=changes)
        self._t.intents[key] = IntentRow(
            updated,
            row.request_hash,
            execution_status.value if execution_status else row.execution_status,
            now,
        )
        return updated

    def save_intent(self, intent: ActionIntentV1, *, execution_status: ExecutionStatus | None = None) -> None:
        key = (intent.tenant_id, intent.action_intent_id)
        row = self._t.intents[key]
        self._t.intents[key] = IntentRow(
            intent,
            row.request_hash,
            execution_status.value if execution_status else row.execution_status,
            intent.updated_at,
        )

    def escalation_candidates(self, *, now_epoch: float, limit: int) -> list[ActionIntentV1]:
        candidates = [
            (due, key)
            for key, due in self._t.escalations.items()
            if due <= now_epoch
            and self._t.intents[key].intent.approval_status is ApprovalStatus.PENDING_APPROVAL
            and self._t.intents[key].intent.expires_at_epoch > now_epoch
        ]
        candidates.sort(key=lambda item: (item[0], item[1][1]))
        return [self._t.intents[key].intent for _, key in candidates[:limit]]

    def mark_escalated(self, intent: ActionIntentV1) -> bool:
        key = (intent.tenant_id, intent.action_intent_id)
        row = self._t.intents.get(key)
        if (
            row is None
            or row.intent.approval_status is not ApprovalStatus.PENDING_APPROVAL
            or key not in self._t.escalations
        ):
            return False
        del self._t.escalations[key]
        self._t.intents[key] = IntentRow(intent, row.request_hash, row.execution_status, intent.updated_at)
        return True

    def mark_execution(
        self, tenant_id: str, action_intent_id: str, *, status: ExecutionStatus | None, at: str
    ) -> None:
        key = (tenant_id, action_intent_id)
        row = self._t.intents.get(key)
        if row is not None:
            self._t.intents[key] = IntentRow(
                row.intent, row.request_hash, status.value if status else row.execution_status, at
            )

    def lock_and_mark_execution(
        self, tenant_id: str, action_intent_id: str, *, status: ExecutionStatus, at: str
    ) -> ActionIntentV1 | None:
        self.mark_execution(tenant_id, action_intent_id, status=status, at=at)
        return self.get_intent(tenant_id, action_intent_id, for_update=True)

    def execution_status(self, tenant_id: str, action_intent_id: str) -> str | None:
        """Not a port method: what the account listing would show (for assertions)."""
        row = self._t.intents.get((tenant_id, action_intent_id))
        return row.execution_status if row else None

    def list_account_executions(
        self,
        *,
        tenant_id: str,
        account_id: str,
        status: ExecutionStatus | None,
        now_epoch: float,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[ListedExecution]:
        raise NotImplementedError("the in-memory store does not page the account listing")

    def list_pending_approval(
        self, *, tenant_id: str, account_ids: frozenset[str] | None, limit: int
    ) -> list[ActionIntentV1]:
        pending = [
            row.intent
            for (tenant, _), row in self._t.intents.items()
            if tenant == tenant_id
            and row.intent.approval_status is ApprovalStatus.PENDING_APPROVAL
            and (account_ids is None or row.intent.account_id in account_ids)
        ]
        pending.sort(key=lambda intent: (intent.created_at, intent.action_intent_id), reverse=True)
        return pending[:limit]

    def page_pending_approval(
        self,
        *,
        tenant_id: str,
        wanted: PendingFilter,
        oldest_first: bool,
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[ActionIntentV1], bool]:
        rows = self._pending(tenant_id, wanted)
        rows.sort(key=lambda i: (i.created_at, i.action_intent_id), reverse=not oldest_first)
        if after is not None:
            rows = [
                i
                for i in rows
                if ((i.created_at, i.action_intent_id) > after)
                == oldest_first  # strictly after the cursor, in the page's order
                and (i.created_at, i.action_intent_id) != after
            ]
        return rows[:limit], len(rows) > limit

    def count_pending_approval(self, *, tenant_id: str, wanted: PendingFilter) -> int:
        return len(self._pending(tenant_id, wanted))

    def _pending(self, tenant_id: str, wanted: PendingFilter) -> list[ActionIntentV1]:
        """The rows ``store.intents._pending_query`` selects."""
        selected: list[ActionIntentV1] = []
        for (tenant, _), row in self._t.intents.items():
            intent = row.intent
            rule = intent.approval_rule
            if (
                tenant == tenant_id
                and intent.approval_status is ApprovalStatus.PENDING_APPROVAL
                and (wanted.account_ids is None or intent.account_id in wanted.account_ids)
                and wanted.account_id in (None, intent.account_id)
                and wanted.action_type in (None, intent.action_type)
                and (wanted.created_before is None or intent.created_at < wanted.created_before)
                and wanted.proposed_by in (None, intent.proposed_by)
                and wanted.policy_id in (None, rule.policy_id if rule else None)
            ):
                selected.append(intent)
        return selected

    def list_accounts(self, *, tenant_id: str, limit: int) -> list[str]:
        accounts = {
            row.intent.account_id for (tenant, _), row in self._t.intents.items() if tenant == tenant_id
        }
        return sorted(accounts)[:limit]

    def list_recent(self, tenant_id: str, limit: int) -> list[ActionIntentV1]:
        rows = [row.intent for (tenant, _), row in self._t.intents.items() if tenant == tenant_id]
        rows.sort(key=lambda i: (i.created_at, i.action_intent_id), reverse=True)
        return rows[:limit]
