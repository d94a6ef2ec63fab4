"""The tamper-evident ledger: checkpoints (on demand and on a schedule), verification, the public keys.

Appending is untouched by all of this (``uow.executions.append_ledger`` stores each entry as it
always did). :func:`checkpoint` is the only writer of hashes and positions: it reads the entries
appended since the last checkpoint in the order they were appended, hashes them and builds and
signs the next checkpoint (``domain/ledger_chain.build_checkpoint``) outside any write
transaction, then, in a short one where it is the tenant's only checkpointer
(``uow.ledger.lock_checkpoints``), stores it if the last checkpoint is still the one it built on. :func:`verify` reads the tenant's
entries and checkpoints a checkpoint at a time and hands them to the pure
``domain/ledger_chain.ChainVerifier``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fulfill.config import Settings
from fulfill.domain import ledger_chain
from fulfill.domain.ledger_chain import Checkpoint, entry_hash
from fulfill.domain.scopes import Scope
from fulfill.domain.time import iso_from_epoch
from fulfill.ports.store import Store
from fulfill.tokens import Principal
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import Conflict, Forbidden

# The most entries one checkpoint covers: bounds how long a checkpoint holds its transaction (on
# SQLite, the write lock). A larger backlog is covered by consecutive checkpoints.
MAX_ENTRIES_PER_CHECKPOINT = 5000
# A checkpointer that finds another one's checkpoint written meanwhile reads again, this many times.
_TRIES = 5


@functools.lru_cache(maxsize=8)
def _keys(signing: str, published: str) -> tuple[Ed25519PrivateKey | None, dict[str, Ed25519PublicKey]]:
    key = ledger_chain.load_signing_key(signing) if signing.strip() else None
    public = {ledger_chain.key_id_of(k): k for k in ledger_chain.split_public_keys(published)}
    if key is not None:
        public[ledger_chain.key_id_of(key.public_key())] = key.public_key()
    return key, public


def signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    return _keys(settings.ledger_signing_key.get_secret_value(), settings.ledger_public_keys)[0]


def public_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """Every key a checkpoint may be signed with: the current one and the earlier ones, by id."""
    return _keys(settings.ledger_signing_key.get_secret_value(), settings.ledger_public_keys)[1]


def keys_document(settings: Settings) -> dict[str, Any]:
    """``/.well-known/fulfill-ledger-keys.json``."""
    key = signing_key(settings)
    current = ledger_chain.key_id_of(key.public_key()) if key else None
    return ledger_chain.public_keys_document(public_keys(settings), current)


def ledger_tenant(principal: Principal, tenant_id: str | None) -> str:
    """The tenant whose ledger a request names: the token's own (scope ``admin``), or, with
    ``platform:admin``, any tenant named by ``tenant_id``."""
    if tenant_id is None or tenant_id == principal.tenant_id:
        if principal.has_scope(Scope.ADMIN) or principal.has_scope(Scope.PLATFORM_ADMIN):
            return principal.tenant_id
        raise Forbidden(f"the ledger needs the scope '{Scope.ADMIN.value}'", code="MISSING_SCOPE")
    if principal.has_scope(Scope.PLATFORM_ADMIN):
        return tenant_id
    raise Forbidden(
        f"another tenant's ledger needs the scope '{Scope.PLATFORM_ADMIN.value}'", code="MISSING_SCOPE"
    )


def checkpoint(ctx: UseCaseContext, tenant_id: str) -> tuple[Checkpoint, bool]:
    """Sign the tenant's entries appended since its last checkpoint: ``(checkpoint, True)``; or, with
    nothing new, ``(the last checkpoint, False)`` (a tenant's first checkpoint may cover nothing)."""
    return checkpoint_store(ctx.store, ctx.settings, tenant_id, now_epoch=ctx.clock.now())


def checkpoint_store(
    store: Store, settings: Settings, tenant_id: str, *, now_epoch: float
) -> tuple[Checkpoint, bool]:
    """:func:`checkpoint` on a store (the CLI's ``--db``)."""
    key = signing_key(settings)
    if key is None:
        raise Conflict(
            "no ledger signing key is configured (FULFILL_LEDGER_SIGNING_KEY)",
            code="LEDGER_SIGNING_KEY_MISSING",
        )
    for _ in range(_TRIES):
        # Read, hash, build and sign outside the write transaction (on SQLite, the write lock)...
        with store.read() as uow:
            previous = uow.ledger.last_checkpoint(tenant_id)
            rows = uow.ledger.unchecked_entries(tenant_id, limit=MAX_ENTRIES_PER_CHECKPOINT)
        if not rows and previous is not None:
            return previous, False
        made = ledger_chain.build_checkpoint(
            tenant_id=tenant_id,
            previous=previous,
            entries=[(row.entry.entry_id, entry_hash(row.entry)) for row in rows],
            signed_at=iso_from_epoch(now_epoch),
            signing_key=key,
        )
        # ...then store it if no other checkpointer got there first (compare-and-set on the number).
        with store.write() as uow:
            uow.ledger.lock_checkpoints(tenant_id)
            current = uow.ledger.last_checkpoint(tenant_id)
            if _number(current) == _number(previous) and uow.ledger.add_checkpoint(made):
                return made, True
    raise Conflict(
        "other checkpoints of this ledger kept being written meanwhile", code="LEDGER_CHECKPOINT_RACE"
    )


def _number(checkpoint: Checkpoint | None) -> int:
    return checkpoint.number if checkpoint else 0


def checkpoint_all(ctx: UseCaseContext, *, limit: int = 1000) -> list[str]:
    """The scheduled pass: checkpoint every tenant with entries no checkpoint covers; returns the
    tenants it wrote checkpoints for. A tenant whose checkpointers keep racing is left for the next
    pass; the others are not held up by it."""
    if signing_key(ctx.settings) is None:
        return []
    with ctx.store.read() as uow:
        tenants = uow.ledger.tenants_with_unchecked(limit=limit)
    written: list[str] = []
    for tenant_id in tenants:
        try:
            while True:
                made, created = checkpoint(ctx, tenant_id)
                if created and tenant_id not in written:
                    written.append(tenant_id)
                if not created or made.size < MAX_ENTRIES_PER_CHECKPOINT:
                    break
        except Conflict:
            continue
    return written


def verify(ctx: UseCaseContext, tenant_id: str) -> dict[str, Any]:
    """``{"intact", "entries", "first_bad_entry", "last_signed_checkpoint", …}`` of the tenant's ledger."""
    return verify_store(ctx.store, ctx.settings, tenant_id)


def export(ctx: UseCaseContext, tenant_id: str, since: int) -> tuple[int, Iterator[dict[str, Any]]]:
    """``(next_since, records)``: the tenant's signed checkpoints that cover positions after
    ``since`` and were written before this call, whole, with their entries
    (``domain/ledger_chain.export_lines``), read a page at a time as the records are consumed.
    Resume with ``since`` = ``next_since`` (the last record's ``last_position``): nothing is
    skipped and nothing repeated."""
    with ctx.store.read() as uow:
        last = uow.ledger.last_checkpoint(tenant_id)
    until = max(since, last.last_position) if last else since
    return until, iter_export(ctx.store, tenant_id, since, until=until)


def export_store(store: Store, tenant_id: str, since: int) -> list[dict[str, Any]]:
    """Every record of an export on a store, in memory (tests; the CLI and the API stream them)."""
    return list(iter_export(store, tenant_id, since))


# Checkpoints read per query when exporting: an export holds this page of checkpoints (their
# leaves) and one checkpoint's entries (at most MAX_ENTRIES_PER_CHECKPOINT) in memory at once.
EXPORT_PAGE = 10


def iter_export(
    store: Store, tenant_id: str, since: int, *, until: int | None = None
) -> Iterator[dict[str, Any]]:
    """The records of :func:`export`, a page of checkpoints at a time, each checkpoint's entries
    read by position as its records are consumed; with ``until``, only checkpoints that end at or
    before that position. A checkpoint and its entries' positions are written in one transaction
    and never change afterwards, so the reads need no common snapshot."""
    while True:
        with store.read() as uow:
            page = uow.ledger.checkpoints_after(tenant_id, since, limit=EXPORT_PAGE)
        within = [cp for cp in page if until is None or cp.last_position <= until]
        for cp in within:
            with store.read() as uow:
                entries = uow.ledger.entries_at(tenant_id, cp.first_position, cp.last_position)
            yield from ledger_chain.export_lines([cp], entries)
            since = cp.last_position
        if len(page) < EXPORT_PAGE or len(within) < len(page):
            return


# Checkpoints read per query when verifying: verification holds one page of checkpoints (their
# leaves) and one checkpoint's entries at a time, whatever the length of the ledger.
VERIFY_PAGE = 4
_UNPOSITIONED_PAGE = 1000


def verify_store(store: Store, settings: Settings, tenant_id: str) -> dict[str, Any]:
    """:func:`verify` on a store (the CLI's ``--db``): checkpoint by checkpoint, in one read
    snapshot, so that memory does not grow with the ledger."""
    with store.read() as uow:
        uow.ledger.snapshot()
        entries, unverified = uow.ledger.count_entries(tenant_id)
        verifier = ledger_chain.ChainVerifier(
            tenant_id,
            public_keys(settings),
            anchor=ledger_chain.Anchor(),
            locate=lambda entry_id: uow.ledger.holds_position(tenant_id, entry_id),
        )
        after = 0
        while verifier.ok:
            page = uow.ledger.checkpoint_page(tenant_id, after, limit=VERIFY_PAGE)
            for cp in page:
                rows = uow.ledger.entries_at(tenant_id, cp.first_position, cp.last_position)
                if not verifier.add(cp, rows):
                    break
                after = cp.number
            if len(page) < VERIFY_PAGE:
                break
        if verifier.ok:
            verifier.beyond(uow.ledger.first_entry_outside(tenant_id, verifier.next_position - 1))
        seq = 0
        while verifier.ok:
            hashed = uow.ledger.hashed_unpositioned(tenant_id, seq, limit=_UNPOSITIONED_PAGE)
            for _, row in hashed:
                verifier.unpositioned(row)
            seq = hashed[-1][0] if hashed else seq
            if len(hashed) < _UNPOSITIONED_PAGE:
                break
    return {"tenant_id": tenant_id, **verifier.result(entries=entries, unverified=unverified)}
