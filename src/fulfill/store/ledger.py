"""The ledger's chain: positions and signed checkpoints of each tenant's entries
(``domain/ledger_chain.py`` says what they mean; ``usecases/ledger.py`` writes them).

Appending (``store/executions.append_ledger``) never touches this: an entry is inserted as it
always was, without hash or position; the checkpoint that covers it sets both. A checkpoint is written by one checkpointer at a time per tenant: on
PostgreSQL :func:`lock_checkpoints` takes a transaction-scoped advisory lock on the tenant, which
only checkpointers ask for; on SQLite the write transaction (``BEGIN IMMEDIATE``) already is the
only writer. The checkpoint's number is its primary key as well, so two checkpointers that got
past the lock anyway could not both write number N.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    bindparam,
    column,
    func,
    or_,
    select,
    text,
    update,
    values,
)

from fulfill.domain.ledger_chain import Checkpoint, StoredEntry
from fulfill.domain.models import LedgerEntry
from fulfill.store.db import advisory_key, in_autocommit, insert_ignore
from fulfill.store.tables import ledger_checkpoints, ledger_entries

_FIELDS = tuple(LedgerEntry.model_fields)
_CHUNK = 1000  # entries per UPDATE statement on PostgreSQL


def _entry(row: object) -> StoredEntry:
    mapping = row._mapping  # type: ignore[attr-defined]
    return StoredEntry(
        entry=LedgerEntry.model_validate({k: mapping[k] for k in _FIELDS}),
        entry_hash=mapping["entry_hash"],
        position=mapping["position"],
    )


def lock_checkpoints(conn: Connection, tenant_id: str) -> None:
    """Make this transaction the tenant's only checkpointer until it ends (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(f"fulfill-ledger:{tenant_id}")}
        )


def snapshot(conn: Connection) -> None:
    """Make the rest of this read transaction see one snapshot (the first statement of the
    transaction): the entries and the checkpoints that verification reads must agree even while a
    checkpoint commits in between. (A SQLite read transaction already is one snapshot.)"""
    if conn.dialect.name == "postgresql":
        if in_autocommit(conn):  # a read: no transaction block yet; this one ends with the read
            conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
        else:
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))


def unchecked_entries(conn: Connection, tenant_id: str, *, limit: int) -> list[StoredEntry]:
    """The tenant's entries no checkpoint covers yet, in the order they were appended."""
    rows = conn.execute(
        select(ledger_entries)
        .where(ledger_entries.c.tenant_id == tenant_id, ledger_entries.c.position.is_(None))
        .order_by(ledger_entries.c.seq)
        .limit(limit)
    ).all()
    return [_entry(row) for row in rows]


def last_checkpoint(conn: Connection, tenant_id: str) -> Checkpoint | None:
    row = conn.execute(
        select(ledger_checkpoints)
        .where(ledger_checkpoints.c.tenant_id == tenant_id)
        .order_by(ledger_checkpoints.c.number.desc())
        .limit(1)
    ).first()
    return Checkpoint.from_document(dict(row._mapping)) if row else None


def checkpoint_page(conn: Connection, tenant_id: str, after_number: int, *, limit: int) -> list[Checkpoint]:
    """A page of the tenant's checkpoints numbered after ``after_number``, by number."""
    rows = conn.execute(
        select(ledger_checkpoints)
        .where(ledger_checkpoints.c.tenant_id == tenant_id, ledger_checkpoints.c.number > after_number)
        .order_by(ledger_checkpoints.c.number)
        .limit(limit)
    ).all()
    return [Checkpoint.from_document(dict(row._mapping)) for row in rows]


def checkpoints_after(conn: Connection, tenant_id: str, since: int, *, limit: int) -> list[Checkpoint]:
    """A page of the tenant's checkpoints that cover positions after ``since``, by number."""
    rows = conn.execute(
        select(ledger_checkpoints)
        .where(
            ledger_checkpoints.c.tenant_id == tenant_id,
            ledger_checkpoints.c.first_position + ledger_checkpoints.c.size - 1 > since,
        )
        .order_by(ledger_checkpoints.c.number)
        .limit(limit)
    ).all()
    return [Checkpoint.from_document(dict(row._mapping)) for row in rows]


def entries_at(conn: Connection, tenant_id: str, first: int, last: int) -> list[StoredEntry]:
    """The tenant's entries at positions ``first``..``last``, in position order."""
    rows = conn.execute(
        select(ledger_entries)
        .where(
            ledger_entries.c.tenant_id == tenant_id,
            ledger_entries.c.position >= first,
            ledger_entries.c.position <= last,
        )
        .order_by(ledger_entries.c.position)
    ).all()
    return [_entry(row) for row in rows]


def add_checkpoint(conn: Connection, checkpoint: Checkpoint) -> bool:
    """Store the checkpoint and give its entries their positions; False (nothing written) when its
    number is taken."""
    doc = checkpoint.document()
    row = {column.name: doc[column.name] for column in ledger_checkpoints.columns}
    if not insert_ignore(conn, ledger_checkpoints, row):
        return False
    assigned = [
        {
            "leaf_id": leaf.entry_id,
            "leaf_position": checkpoint.first_position + offset,
            "leaf_hash": leaf.entry_hash,
        }
        for offset, leaf in enumerate(checkpoint.leaves)
    ]
    if conn.dialect.name == "postgresql":
        # One statement per chunk (UPDATE … FROM (VALUES …)): an executemany would be a round trip
        # per entry, all inside the write transaction.
        for start in range(0, len(assigned), _CHUNK):
            chunk = assigned[start : start + _CHUNK]
            leaves = values(
                column("leaf_id", String),
                column("leaf_position", BigInteger),
                column("leaf_hash", String),
                name="leaves",
            ).data([(row["leaf_id"], row["leaf_position"], row["leaf_hash"]) for row in chunk])
            conn.execute(
                update(ledger_entries)
                .where(
                    ledger_entries.c.tenant_id == checkpoint.tenant_id,
                    ledger_entries.c.entry_id == leaves.c.leaf_id,
                    ledger_entries.c.position.is_(None),
                )
                .values(position=leaves.c.leaf_position, entry_hash=leaves.c.leaf_hash)
            )
    elif assigned:
        conn.execute(
            update(ledger_entries)
            .where(
                ledger_entries.c.tenant_id == checkpoint.tenant_id,
                ledger_entries.c.entry_id == bindparam("leaf_id"),
                ledger_entries.c.position.is_(None),
            )
            .values(position=bindparam("leaf_position"), entry_hash=bindparam("leaf_hash")),
            assigned,
        )
    return True


def count_entries(conn: Connection, tenant_id: str) -> tuple[int, int]:
    """``(entries, entries without a position)`` of the tenant."""
    row = conn.execute(
        select(
            func.count(),
            func.count().filter(ledger_entries.c.position.is_(None)),
        ).where(ledger_entries.c.tenant_id == tenant_id)
    ).one()
    return int(row[0]), int(row[1])


def holds_position(conn: Connection, tenant_id: str, entry_id: str) -> bool:
    """Whether the entry is stored with a position (any)."""
    return (
        conn.execute(
            select(ledger_entries.c.seq).where(
                ledger_entries.c.tenant_id == tenant_id,
                ledger_entries.c.entry_id == entry_id,
                ledger_entries.c.position.is_not(None),
            )
        ).first()
        is not None
    )


def first_entry_outside(conn: Connection, tenant_id: str, last: int) -> StoredEntry | None:
    """The tenant's entry at the lowest position below 1 or above ``last``, if any."""
    row = conn.execute(
        select(ledger_entries)
        .where(
            ledger_entries.c.tenant_id == tenant_id,
            # Said outright, for the partial index of positions (SQLite does not infer it from an OR).
            ledger_entries.c.position.is_not(None),
            or_(ledger_entries.c.position < 1, ledger_entries.c.position > last),
        )
        .order_by(ledger_entries.c.position)
        .limit(1)
    ).first()
    return _entry(row) if row else None


def hashed_unpositioned(
    conn: Connection, tenant_id: str, after_seq: int, *, limit: int
) -> list[tuple[int, StoredEntry]]:
    """A page of the tenant's entries without a position that carry a hash, ``(seq, entry)`` in
    the order they were appended (only a checkpoint writes a hash, with the position)."""
    rows = conn.execute(
        select(ledger_entries)
        .where(
            ledger_entries.c.tenant_id == tenant_id,
            ledger_entries.c.position.is_(None),
            ledger_entries.c.entry_hash.is_not(None),
            ledger_entries.c.seq > after_seq,
        )
        .order_by(ledger_entries.c.seq)
        .limit(limit)
    ).all()
    return [(int(row.seq), _entry(row)) for row in rows]


def tenants_with_unchecked(conn: Connection, *, limit: int = 1000) -> list[str]:
    """Tenants that have entries no checkpoint covers yet."""
    rows = conn.execute(
        select(ledger_entries.c.tenant_id)
        .where(ledger_entries.c.position.is_(None))
        .group_by(ledger_entries.c.tenant_id)
        .order_by(func.min(ledger_entries.c.seq))
        .limit(limit)
    ).all()
    return [row.tenant_id for row in rows]


class SqlLedgerRepository:
    """:class:`fulfill.ports.repositories.ledger.LedgerRepository` over SQL."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def lock_checkpoints(self, tenant_id: str) -> None:
        lock_checkpoints(self._conn, tenant_id)

    def snapshot(self) -> None:
        snapshot(self._conn)

    def unchecked_entries(self, tenant_id: str, *, limit: int) -> list[StoredEntry]:
        return unchecked_entries(self._conn, tenant_id, limit=limit)

    def last_checkpoint(self, tenant_id: str) -> Checkpoint | None:
        return last_checkpoint(self._conn, tenant_id)

    def checkpoint_page(self, tenant_id: str, after_number: int, *, limit: int) -> list[Checkpoint]:
        return checkpoint_page(self._conn, tenant_id, after_number, limit=limit)

    def checkpoints_after(self, tenant_id: str, since: int, *, limit: int) -> list[Checkpoint]:
        return checkpoints_after(self._conn, tenant_id, since, limit=limit)

    def entries_at(self, tenant_id: str, first: int, last: int) -> list[StoredEntry]:
        return entries_at(self._conn, tenant_id, first, last)

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        return add_checkpoint(self._conn, checkpoint)

    def count_entries(self, tenant_id: str) -> tuple[int, int]:
        return count_entries(self._conn, tenant_id)

    def holds_position(self, tenant_id: str, entry_id: str) -> bool:
        return holds_position(self._conn, tenant_id, entry_id)

    def first_entry_outside(self, tenant_id: str, last: int) -> StoredEntry | None:
        return first_entry_outside(self._conn, tenant_id, last)

    def hashed_unpositioned(
        self, tenant_id: str, after_seq: int, *, limit: int
    ) -> list[tuple[int, StoredEntry]]:
        return hashed_unpositioned(self._conn, tenant_id, after_seq, limit=limit)

    def tenants_with_unchecked(self, *, limit: int = 1000) -> list[str]:
        return tenants_with_unchecked(self._conn, limit=limit)
