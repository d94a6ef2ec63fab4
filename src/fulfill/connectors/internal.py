"""The internal connector: tasks and notes in fulfill's own database, and their compensations.

Idempotent on the execution idempotency key: the object id is derived from the key and the key
is unique, so the insert *is* the reservation. A repeated call (a retry after a lost answer, a
rerun, a concurrent duplicate) finds the row the first call wrote and returns the same ref.
Deletion is a soft delete; creating again with the same key restores the object.
"""

from __future__ import annotations

from typing import Annotated

from mcp.types import CallToolResult
from pydantic import Field

from fulfill.connectors.base import ConnectorTool, ToolSuccess, tool_failure, tool_success
from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import ExternalObjectRef
from fulfill.domain.ports import Clock
from fulfill.domain.probes import Absent, Found, Inconclusive, ProbeResult, Undeclared
from fulfill.ports.store import Store

ToolAnswer = Annotated[CallToolResult, ToolSuccess]
# Object ids are derived from the key's first 24 characters, so the input schema says so.
MIN_KEY_LENGTH = 24
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=MIN_KEY_LENGTH,
        description="The execution idempotency key (at least 24 characters; fulfill sends 64 hex digits).",
    ),
]

_STORE_UNAVAILABLE = "the internal store is unavailable, try again"
# What each creating tool writes, for reconcile probes: (kind, object_type).
_LOOKUPS = {"internal.create_task": ("task", "Task"), "internal.create_note": ("note", "Note")}


class InternalConnector:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def tools(self) -> list[ConnectorTool]:
        return [
            ConnectorTool(
                "internal.create_task", "Create a task in the internal task list.", self.create_task
            ),
            ConnectorTool("internal.create_note", "Create a note on an account.", self.create_note),
            ConnectorTool(
                "internal.delete_task",
                "Delete a task created by internal.create_task (compensation).",
                self.delete_task,
                compensates="internal.create_task",
            ),
            ConnectorTool(
                "internal.delete_note",
                "Delete a note created by internal.create_note (compensation).",
                self.delete_note,
                compensates="internal.create_note",
            ),
        ]

    def create_task(
        self,
        title: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: IdempotencyKey,
        description: str | None = None,
    ) -> ToolAnswer:
        if not title.strip():
            return tool_failure(ErrorClass.VALIDATION, "VALIDATION_FAILED", "title must not be empty")
        fields = {"title": title, "description": description}
        return self._create("task", "Task", tenant_id, account_id, action_intent_id, idempotency_key, fields)

    def create_note(
        self,
        content: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: IdempotencyKey,
    ) -> ToolAnswer:
        if not content.strip():
            return tool_failure(ErrorClass.VALIDATION, "VALIDATION_FAILED", "content must not be empty")
        return self._create(
            "note",
            "Note",
            tenant_id,
            account_id,
            action_intent_id,
            idempotency_key,
            {"content": content},
        )

    def lookup(
        self,
        *,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        tool_name: str,
        idempotency_key: str,
        timeout_seconds: float,
    ) -> ProbeResult:
        """A reconcile probe: the object a create wrote under the key, looked up in its table."""
        found = _LOOKUPS.get(tool_name)
        if found is None:
            return Undeclared(f"{tool_name} has no lookup by idempotency key")
        kind, object_type = found
        try:
            with self._store.read() as uow:
                stored = uow.internal_objects.find_by_key(kind, idempotency_key)
        except Exception as exc:
            if self._store.is_transient(exc):
                return Inconclusive(_STORE_UNAVAILABLE)
            raise
        if stored is None:
            return Absent()
        if (stored.tenant_id, stored.account_id) != (tenant_id, account_id):
            return Inconclusive("the idempotency key belongs to another owner")
        return Found(
            (ExternalObjectRef(system="INTERNAL", object_type=object_type, object_id=stored.object_id),)
        )

    # Compensation tools share one contract: the object to undo plus the trusted bindings.
    def delete_task(
        self,
        object_id: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: IdempotencyKey,
    ) -> ToolAnswer:
        return self._delete("task", "Task", object_id, tenant_id, account_id)

    def delete_note(
        self,
        object_id: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: IdempotencyKey,
    ) -> ToolAnswer:
        return self._delete("note", "Note", object_id, tenant_id, account_id)

    def _create(
        self,
        kind: str,
        object_type: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: IdempotencyKey,
        fields: dict[str, str | None],
    ) -> CallToolResult:
        if len(idempotency_key) < MIN_KEY_LENGTH:  # the gateway's schema check already refuses it
            return tool_failure(ErrorClass.VALIDATION, "VALIDATION_FAILED", "idempotency_key is too short")
        try:
            with self._store.write() as uow:
                stored = uow.internal_objects.create_once(
                    kind,
                    object_id=f"{kind}_{idempotency_key[:24]}",
                    tenant_id=tenant_id,
                    account_id=account_id,
                    idempotency_key=idempotency_key,
                    action_intent_id=action_intent_id,
                    created_at=self._clock.now_iso(),
                    fields=fields,
                )
                if (stored.tenant_id, stored.account_id) != (tenant_id, account_id):
                    return tool_failure(
                        ErrorClass.VALIDATION,
                        "IDEMPOTENCY_COLLISION",
                        "idempotency key belongs to another owner",
                    )
                if stored.deleted:  # created again after its compensation deleted it
                    uow.internal_objects.restore(kind, idempotency_key)
        except Exception as exc:
            if self._store.is_transient(exc):
                return tool_failure(ErrorClass.DOWNSTREAM, "STORE_UNAVAILABLE", _STORE_UNAVAILABLE)
            raise
        return tool_success(
            [ExternalObjectRef(system="INTERNAL", object_type=object_type, object_id=stored.object_id)]
        )

    def _delete(
        self, kind: str, object_type: str, object_id: str, tenant_id: str, account_id: str
    ) -> CallToolResult:
        try:
            with self._store.write() as uow:
                deleted = uow.internal_objects.delete(
                    kind,
                    tenant_id=tenant_id,
                    account_id=account_id,
                    object_id=object_id,
                    now=self._clock.now_iso(),
                )
        except Exception as exc:
            if self._store.is_transient(exc):
                return tool_failure(ErrorClass.DOWNSTREAM, "STORE_UNAVAILABLE", _STORE_UNAVAILABLE)
            raise
        ref = ExternalObjectRef(system="INTERNAL", object_type=object_type, object_id=object_id)
        # Deleting what is already gone is success: compensation must be safe to repeat.
        return tool_success([ref], deleted=deleted)
