"""The internal connector's tasks and notes: the repository port (``store/internal_objects.py``
implements it over SQL)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.records import InternalObject


class InternalObjectsRepository(Protocol):
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
        """Insert the object unless its idempotency key is taken; either way, the object stored
        under that key (which may belong to another owner, or be deleted: the caller decides)."""
        ...

    def find_by_key(self, kind: str, idempotency_key: str) -> InternalObject | None:
        """The object stored under the idempotency key (any owner, deleted or not), or None."""
        ...

    def restore(self, kind: str, idempotency_key: str) -> None:
        """Undelete the object stored under the key."""
        ...

    def delete(self, kind: str, *, tenant_id: str, account_id: str, object_id: str, now: str) -> bool:
        """Mark the owner's object deleted; True when this call deleted it."""
        ...
