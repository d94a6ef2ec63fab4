"""Action intents and the queries over them: the repository port (``store/intents.py`` implements it over SQL)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from fulfill.domain.models import ActionIntentV1, ApprovalStatus, ExecutionStatus, RegistryEntry
from fulfill.domain.records import ListedExecution, PendingFilter


class IntentsRepository(Protocol):
    def insert_intent(self, intent: ActionIntentV1, request_hash: str) -> bool: ...

    def get_intent(
        self, tenant_id: str, action_intent_id: str, *, for_update: bool = ...
    ) -> ActionIntentV1 | None:
        """One intent of one tenant. ``for_update`` locks the row until the transaction ends, so that
        transactions deciding on the intent's state (cancel, RecordOutcome) serialise."""
        ...

    def get_approval_statuses(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], ApprovalStatus]:
        """The approval status of several intents, each named by its ``(tenant_id,
        action_intent_id)``, read together; a key with no intent of that tenant is absent."""
        ...

    def get_intent_with_request_hash(
        self, tenant_id: str, action_intent_id: str
    ) -> tuple[ActionIntentV1, str] | None: ...

    def get_intent_with_entry(
        self, tenant_id: str, action_intent_id: str
    ) -> tuple[ActionIntentV1, RegistryEntry | None] | None:
        """The intent and the registry entry it is pinned to (None when there is none), read
        together: what ``get_intent`` and then ``registry.get_entry`` of its version give."""
        ...

    def transition_approval(
        self,
        intent: ActionIntentV1,
        *,
        to_status: ApprovalStatus,
        now: str,
        approved_by: str | None = ...,
        action_hash: str | None = ...,
        execution_status: ExecutionStatus | None = ...,
    ) -> ActionIntentV1 | None:
        """Move an intent to a new approval status, only if nobody moved it meanwhile; becoming
        APPROVED records who approved it, when, and the hash of the action approved."""
        ...

    def save_intent(self, intent: ActionIntentV1, *, execution_status: ExecutionStatus | None = ...) -> None:
        """Write an intent read in the same transaction with ``for_update``."""
        ...

    def escalation_candidates(self, *, now_epoch: float, limit: int) -> list[ActionIntentV1]:
        """Intents of every tenant still waiting for approval whose first approval window ended by
        ``now_epoch`` and which are not escalated yet (nor expired), the longest overdue first."""
        ...

    def mark_escalated(self, intent: ActionIntentV1) -> bool:
        """Write the escalated intent (read in the same transaction with ``for_update``), only if it
        still waits for approval and nobody escalated it meanwhile; True when this call did."""
        ...

    def mark_execution(
        self, tenant_id: str, action_intent_id: str, *, status: ExecutionStatus | None, at: str
    ) -> None:
        """Record the execution's latest status (or only its latest change) for the account listing."""
        ...

    def lock_and_mark_execution(
        self, tenant_id: str, action_intent_id: str, *, status: ExecutionStatus, at: str
    ) -> ActionIntentV1 | None:
        """``mark_execution`` returning the intent as it is now, its row locked until the
        transaction ends (``get_intent(for_update=True)`` and ``mark_execution`` in one statement)."""
        ...

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
        """An account's executions, newest change first, starting after ``(last_update_at, id)``.

        Keyset pagination on the ``(tenant, account[, status], last_update_at, id)`` index: the cost
        is O(limit) whatever the number of executions. Attempts and outcomes are joined on their
        primary keys for the rows of the page only."""
        ...

    def list_pending_approval(
        self, *, tenant_id: str, account_ids: frozenset[str] | None, limit: int
    ) -> list[ActionIntentV1]:
        """A tenant's intents waiting for approval (expired ones included), newest first; only the
        given accounts when ``account_ids`` is a set."""
        ...

    def page_pending_approval(
        self,
        *,
        tenant_id: str,
        wanted: PendingFilter,
        oldest_first: bool,
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[ActionIntentV1], bool]:
        """One page of a tenant's intents waiting for approval (expired ones included), by creation
        time, newest or oldest first, after the (created_at, id) of the last row of the previous page;
        and whether more follow. Keyset paging: rows approved meanwhile shift nothing."""
        ...

    def count_pending_approval(self, *, tenant_id: str, wanted: PendingFilter) -> int: ...

    def list_accounts(self, *, tenant_id: str, limit: int) -> list[str]:
        """The accounts of a tenant that have intents, in name order (at most ``limit``)."""
        ...

    def list_recent(self, tenant_id: str, limit: int) -> list[ActionIntentV1]:
        """A tenant's most recently created intents (every account and status), newest first."""
        ...
