"""The ledger's chain: positions and signed checkpoints (``store/ledger.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.ledger_chain import Checkpoint, StoredEntry


class LedgerRepository(Protocol):
    def lock_checkpoints(self, tenant_id: str) -> None:
        """Make this transaction the tenant's only checkpointer until it ends; appends never wait on it."""
        ...

    def snapshot(self) -> None:
        """Called first in a read transaction: what it reads next is one consistent snapshot."""
        ...

    def unchecked_entries(self, tenant_id: str, *, limit: int) -> list[StoredEntry]:
        """The tenant's entries no checkpoint covers yet, in the order they were appended."""
        ...

    def last_checkpoint(self, tenant_id: str) -> Checkpoint | None: ...

    def checkpoint_page(self, tenant_id: str, after_number: int, *, limit: int) -> list[Checkpoint]:
        """A page of the tenant's checkpoints numbered after ``after_number``, by number."""
        ...

    def checkpoints_after(self, tenant_id: str, since: int, *, limit: int) -> list[Checkpoint]:
        """A page of the tenant's checkpoints that cover positions after ``since``, by number."""
        ...

    def entries_at(self, tenant_id: str, first: int, last: int) -> list[StoredEntry]:
        """The tenant's entries at positions ``first``..``last``, in position order."""
        ...

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Store it and give its entries their positions; False (nothing written) when its number is taken."""
        ...

    def count_entries(self, tenant_id: str) -> tuple[int, int]:
        """``(entries, entries without a position)`` of the tenant."""
        ...

    def holds_position(self, tenant_id: str, entry_id: str) -> bool:
        """Whether the entry is stored with a position (any)."""
        ...

    def first_entry_outside(self, tenant_id: str, last: int) -> StoredEntry | None:
        """The tenant's entry at the lowest position below 1 or above ``last``, if any."""
        ...

    def hashed_unpositioned(
        self, tenant_id: str, after_seq: int, *, limit: int
    ) -> list[tuple[int, StoredEntry]]:
        """A page of the entries without a position that carry a hash, ``(seq, entry)`` by seq."""
        ...

    def tenants_with_unchecked(self, *, limit: int = ...) -> list[str]:
        """Tenants with entries no checkpoint covers yet."""
        ...
