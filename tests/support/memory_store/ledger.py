"""``uow.ledger`` in memory: not held. The ledger's chain (positions, signed checkpoints) is tested
on SQLite and PostgreSQL; every method says so when called."""

from __future__ import annotations

from fulfill.domain.ledger_chain import Checkpoint, StoredEntry

_NOT_HELD = "the in-memory store does not hold the ledger's checkpoints"


class MemoryLedgerRepository:
    def __init__(self, tables: object) -> None:
        self._t = tables

    def lock_checkpoints(self, tenant_id: str) -> None:
        raise NotImplementedError(_NOT_HELD)

    def snapshot(self) -> None:
        raise NotImplementedError(_NOT_HELD)

    def unchecked_entries(self, tenant_id: str, *, limit: int) -> list[StoredEntry]:
        raise NotImplementedError(_NOT_HELD)

    def last_checkpoint(self, tenant_id: str) -> Checkpoint | None:
        raise NotImplementedError(_NOT_HELD)

    def checkpoint_page(self, tenant_id: str, after_number: int, *, limit: int) -> list[Checkpoint]:
        raise NotImplementedError(_NOT_HELD)

    def checkpoints_after(self, tenant_id: str, since: int, *, limit: int) -> list[Checkpoint]:
        raise NotImplementedError(_NOT_HELD)

    def entries_at(self, tenant_id: str, first: int, last: int) -> list[StoredEntry]:
        raise NotImplementedError(_NOT_HELD)

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        raise NotImplementedError(_NOT_HELD)

    def count_entries(self, tenant_id: str) -> tuple[int, int]:
        raise NotImplementedError(_NOT_HELD)

    def holds_position(self, tenant_id: str, entry_id: str) -> bool:
        raise NotImplementedError(_NOT_HELD)

    def first_entry_outside(self, tenant_id: str, last: int) -> StoredEntry | None:
        raise NotImplementedError(_NOT_HELD)

    def hashed_unpositioned(
        self, tenant_id: str, after_seq: int, *, limit: int
    ) -> list[tuple[int, StoredEntry]]:
        raise NotImplementedError(_NOT_HELD)

    def tenants_with_unchecked(self, *, limit: int = 1000) -> list[str]:
        raise NotImplementedError(_NOT_HELD)
