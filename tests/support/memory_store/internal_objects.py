"""The internal connector's tasks and notes, in memory (``store/internal_objects.py`` semantics)."""

from __future__ import annotations

import dataclasses

from fulfill.domain.records import InternalObject
from tests.support.memory_store.tables import Tables

_KINDS = ("task", "note")


class MemoryInternalObjectsRepository:
    def __init__(self, tables: Tables) -> None:
        self._objects = tables.internal_objects

    def create_once(
        self,
        kind: str,
        *,
        object_id: str,
        tenant_id: str,
        account_id: str,
        idempotency_key: str,
        action_intent_id: str,
        created_at: str,
        fields: dict[str, str | None],
    ) -> InternalObject:
        if kind not in _KINDS:
            raise ValueError(f"unknown internal object kind '{kind}' (known: task, note)")
        key = (kind, idempotency_key)
        if key not in self._objects:
            self._objects[key] = (InternalObject(kind, object_id, tenant_id, account_id, deleted=False), None)
        return self._objects[key][0]

    def find_by_key(self, kind: str, idempotency_key: str) -> InternalObject | None:
        found = self._objects.get((kind, idempotency_key))
        return found[0] if found is not None else None

    def restore(self, kind: str, idempotency_key: str) -> None:
        key = (kind, idempotency_key)
        if key in self._objects:
            stored, _ = self._objects[key]
            self._objects[key] = (dataclasses.replace(stored, deleted=False), None)

    def delete(self, kind: str, *, tenant_id: str, account_id: str, object_id: str, now: str) -> bool:
        for key, (stored, deleted_at) in self._objects.items():
            if (stored.kind, stored.tenant_id, stored.account_id, stored.object_id) == (
                kind,
                tenant_id,
                account_id,
                object_id,
            ) and deleted_at is None:
                self._objects[key] = (dataclasses.replace(stored, deleted=True), now)
                return True
        return False
