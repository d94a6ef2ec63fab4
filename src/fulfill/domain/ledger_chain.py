"""The tamper-evident ledger: entry hashes, Merkle checkpoints chained and signed, and verification.

Appending never waits for another writer, and costs what it did before the chain: an entry is
inserted as it always was. Its hash (:func:`entry_hash`, SHA-256 over the canonical JSON of its
fields) and its place in the tenant's sequence come from a **checkpoint**: one checkpointer at a
time per tenant takes the entries appended since the last checkpoint, in the order they were
appended (the store's ``seq``), gives them the next positions, builds an RFC 6962 Merkle tree over
their leaves (:func:`leaf_hash`: the position, the entry id and the entry hash), and signs, with
Ed25519, a body that names the tenant, the checkpoint's number, its first position and size, the
tree's root, the previous checkpoint's hash (:func:`checkpoint_hash`) and the time. So the
checkpoints form a chain, as a Certificate Transparency log's signed tree heads do, and every
covered entry is bound to one position under one signature. (A hash stored beside an entry before
any signature covers it would protect nothing: whoever can change the row can rewrite the hash.)

:func:`verify` is pure: given the tenant's entries, its checkpoints and the public keys, it says
whether the ledger is intact and names the first entry that was changed, inserted, removed or
moved. Entries no checkpoint covers yet are counted as such, never as verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fulfill.domain.idempotency import canonical_json
from fulfill.domain.models import LedgerEntry

CHAIN_VERSION = 1
GENESIS = "0" * 64  # the "previous checkpoint hash" of a tenant's first checkpoint
ALGORITHM = "Ed25519"

# The problems verification names (``first_bad_entry.problem`` starts with one of these words).
CHANGED = "changed"
INSERTED = "inserted"
REMOVED = "removed"
MOVED = "moved"
BAD_CHECKPOINT = "checkpoint"


# --- hashes -------------------------------------------------------------------------------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def entry_material(entry: LedgerEntry) -> dict[str, Any]:
    """What an entry's hash covers: every field of the entry (``data`` as stored)."""
    return {"chain": CHAIN_VERSION, **entry.model_dump(mode="json")}


def entry_hash(entry: LedgerEntry) -> str:
    """SHA-256 (hex) over the canonical JSON of the entry's fields; computed once, when appended."""
    return hashlib.sha256(canonical_json(entry_material(entry)).encode()).hexdigest()


def leaf_hash(position: int, entry_id: str, hash_hex: str) -> bytes:
    """RFC 6962 leaf: ``H(0x00 || canonical([position, entry_id, entry_hash]))``; the position is
    part of what is signed, so an entry moved to another place no longer matches."""
    return _sha256(b"\x00" + canonical_json([position, entry_id, hash_hex]).encode())


def merkle_root(leaves: Sequence[bytes]) -> str:
    """RFC 6962 Merkle tree hash (hex) of leaf hashes: split at the largest power of two smaller
    than n; ``node = H(0x01 || left || right)``; the empty tree's root is ``H("")``."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    return _mth(list(leaves)).hex()


def _mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


# --- checkpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One entry as a checkpoint recorded it."""

    entry_id: str
    entry_hash: str


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint; ``leaves`` (in position order, from ``first_position``) are stored with
    it so that verification can name the entry that differs, and are bound by ``root``."""

    tenant_id: str
    number: int  # 1, 2, …
    first_position: int  # 1-based
    size: int
    root: str
    previous_hash: str
    signed_at: str
    key_id: str
    signature: str  # base64
    leaves: tuple[Leaf, ...] = field(default=())

    @property
    def last_position(self) -> int:
        return self.first_position + self.size - 1

    def body(self) -> dict[str, Any]:
        """What the signature covers."""
        return {
            "chain": CHAIN_VERSION,
            "tenant_id": self.tenant_id,
            "number": self.number,
            "first_position": self.first_position,
            "size": self.size,
            "root": self.root,
            "previous_hash": self.previous_hash,
            "signed_at": self.signed_at,
            "key_id": self.key_id,
        }

    def summary(self) -> dict[str, Any]:
        """The checkpoint as the API answers it (without its leaves)."""
        return {
            **self.body(),
            "last_position": self.last_position,
            "hash": checkpoint_hash(self),
            "algorithm": ALGORITHM,
            "signature": self.signature,
        }

    def document(self) -> dict[str, Any]:
        """The whole checkpoint, leaves included (stored; exported)."""
        return {**self.summary(), "leaves": [[leaf.entry_id, leaf.entry_hash] for leaf in self.leaves]}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Checkpoint:
        return cls(
            tenant_id=str(doc["tenant_id"]),
            number=int(doc["number"]),
            first_position=int(doc["first_position"]),
            size=int(doc["size"]),
            root=str(doc["root"]),
            previous_hash=str(doc["previous_hash"]),
            signed_at=str(doc["signed_at"]),
            key_id=str(doc["key_id"]),
            signature=str(doc["signature"]),
            leaves=tuple(Leaf(str(i), str(h)) for i, h in doc.get("leaves", [])),
        )


def signed_message(body: Mapping[str, Any]) -> bytes:
    return canonical_json(dict(body)).encode()


def checkpoint_hash(checkpoint: Checkpoint) -> str:
    """What the next checkpoint chains to: SHA-256 over the signed body and its signature."""
    return hashlib.sha256(
        canonical_json({"body": checkpoint.body(), "signature": checkpoint.signature}).encode()
    ).hexdigest()


# --- keys -----------------------------------------------------------------------------------------


class LedgerKeyError(ValueError):
    """A signing or public key that cannot be read (the message never quotes the key)."""


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """A key's id: the first 16 hex digits of SHA-256 over its raw 32 bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_signing_key(text: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) Ed25519 private key, or its raw 32-byte seed in base64."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(_b64_32(text))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise LedgerKeyError(
            "the ledger signing key is neither an Ed25519 PEM key nor 32 bytes of base64"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerKeyError("the ledger signing key is not an Ed25519 key")
    return key


def load_public_key(text: str) -> Ed25519PublicKey:
    """A PEM (SubjectPublicKeyInfo) Ed25519 public key, or its raw 32 bytes in base64."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(_b64_32(text))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise LedgerKeyError(
            "a ledger public key is neither an Ed25519 PEM key nor 32 bytes of base64"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise LedgerKeyError("a ledger public key is not an Ed25519 key")
    return key


def _b64_32(text: str) -> bytes:
    raw = base64.b64decode(
        text + "=" * (-len(text) % 4), altchars=b"-_" if ("-" in text or "_" in text) else None
    )
    if len(raw) != 32:
        raise ValueError("not 32 bytes")
    return raw


def split_public_keys(text: str) -> list[Ed25519PublicKey]:
    """``FULFILL_LEDGER_PUBLIC_KEYS``: comma-separated keys, each base64 or PEM."""
    return [load_public_key(item) for item in text.split(",") if item.strip()]


def public_keys_document(keys: Mapping[str, Ed25519PublicKey], current: str | None) -> dict[str, Any]:
    """``/.well-known/fulfill-ledger-keys.json``."""
    return {
        "algorithm": ALGORITHM,
        "keys": [
            {
                "key_id": kid,
                "algorithm": ALGORITHM,
                "public_key": public_key_b64(key),
                "current": kid == current,
            }
            for kid, key in sorted(keys.items())
        ],
    }


def keys_from_document(doc: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The keys of a ``fulfill-ledger-keys.json`` document, by key id (each id checked)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for item in doc.get("keys", []):
        key = load_public_key(str(item["public_key"]))
        keys[key_id_of(key)] = key
    return keys


# --- building a checkpoint ------------------------------------------------------------------------


def build_checkpoint(
    *,
    tenant_id: str,
    previous: Checkpoint | None,
    entries: Sequence[tuple[str, str]],
    signed_at: str,
    signing_key: Ed25519PrivateKey,
) -> Checkpoint:
    """The next checkpoint of ``tenant_id`` over ``entries`` (``(entry_id, entry_hash)`` in the
    order they take their positions), chained to ``previous`` and signed."""
    first = previous.last_position + 1 if previous else 1
    leaves = tuple(Leaf(entry_id, h) for entry_id, h in entries)
    root = merkle_root(
        [leaf_hash(first + i, leaf.entry_id, leaf.entry_hash) for i, leaf in enumerate(leaves)]
    )
    unsigned = Checkpoint(
        tenant_id=tenant_id,
        number=previous.number + 1 if previous else 1,
        first_position=first,
        size=len(leaves),
        root=root,
        previous_hash=checkpoint_hash(previous) if previous else GENESIS,
        signed_at=signed_at,
        key_id=key_id_of(signing_key.public_key()),
        signature="",
        leaves=leaves,
    )
    signature = base64.b64encode(signing_key.sign(signed_message(unsigned.body()))).decode()
    return replace(unsigned, signature=signature)


# --- verification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEntry:
    """An entry as read back: its fields, the hash stored at append and the position (or None)."""

    entry: LedgerEntry
    entry_hash: str | None
    position: int | None


@dataclass(frozen=True)
class Anchor:
    """Where a verification starts when it does not start at the tenant's first checkpoint (an
    export resumed after checkpoint ``number``): that checkpoint's number, last position and hash."""

    number: int = 0
    last_position: int = 0
    checkpoint_hash: str = GENESIS


class ChainVerifier:
    """Verification one checkpoint at a time, with memory bounded by one checkpoint's entries.

    Feed it the tenant's checkpoints in number order, each with the stored entries whose positions
    lie in its range (:meth:`add`); then the first entry at a position beyond every checkpoint, if
    any (:meth:`beyond`); then the entries without a position that carry a hash (:meth:`unpositioned`).
    ``locate(entry_id)`` says whether an entry holds a position anywhere (asked only when a signed
    position is empty: moved or removed). The first problem found stops verification."""

    def __init__(
        self,
        tenant_id: str,
        public_keys: Mapping[str, Ed25519PublicKey],
        *,
        anchor: Anchor | None = None,
        locate: Callable[[str], bool] = lambda entry_id: False,
    ) -> None:
        self.tenant_id = tenant_id
        self._keys = public_keys
        self._locate = locate
        self.problem: dict[str, Any] | None = None
        self.last_good: Checkpoint | None = None
        self.covered = 0
        self._fed = 0
        self._anchor = anchor
        if anchor is not None:
            self._start(anchor)

    def _start(self, anchor: Anchor) -> None:
        self._anchor = anchor
        self._previous = anchor.checkpoint_hash
        self._first = anchor.last_position + 1
        self._number = anchor.number

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def next_position(self) -> int:
        """The first position no verified checkpoint gave."""
        return self._first if self._anchor is not None else 1

    def add(self, cp: Checkpoint, entries: Iterable[StoredEntry]) -> bool:
        """Check one checkpoint and its entries; False once a problem is found."""
        if self.problem is not None:
            return False
        if self._anchor is None:  # an export resumed after checkpoint N starts from N's hash
            self._start(
                Anchor(cp.number - 1, cp.first_position - 1, cp.previous_hash) if cp.number > 1 else Anchor()
            )
        by_position: dict[int, list[StoredEntry]] = {}
        for row in entries:
            if row.position is not None:
                by_position.setdefault(row.position, []).append(row)
        self._fed += 1
        self.problem = _checkpoint_problem(
            self.tenant_id, cp, self._number + self._fed, self._first, self._previous, self._keys
        )
        if self.problem is None:
            self.problem = _entries_problem(cp, by_position, self._locate)
        if self.problem is not None:
            return False
        self.covered += cp.size
        self.last_good = cp
        self._previous = checkpoint_hash(cp)
        self._first = cp.last_position + 1
        return True

    def beyond(self, row: StoredEntry | None) -> None:
        """The first entry (by position) at a position no checkpoint gave: past the last verified
        checkpoint, or below 1. No checkpointer wrote it there."""
        if self.problem is None and row is not None:
            self.problem = _bad(
                row.entry.entry_id, row.position, f"{INSERTED}: a position no signed checkpoint gave"
            )

    def unpositioned(self, row: StoredEntry) -> None:
        """An entry no checkpoint covers yet: it is only checked against a hash it carries."""
        if self.problem is None and row.entry_hash is not None and row.entry_hash != entry_hash(row.entry):
            self.problem = _bad(row.entry.entry_id, None, f"{CHANGED}: its fields no longer match its hash")

    def result(self, *, entries: int, unverified: int) -> dict[str, Any]:
        return {
            "intact": self.problem is None,
            "entries": entries,
            "verified_entries": self.covered if self.problem is None else None,
            "unverified_entries": unverified,
            "first_bad_entry": self.problem,
            "last_signed_checkpoint": self.last_good.summary() if self.last_good else None,
        }


def verify(
    tenant_id: str,
    entries: Iterable[StoredEntry],
    checkpoints: Sequence[Checkpoint],
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    anchor: Anchor = Anchor(),
) -> dict[str, Any]:
    """``{"intact", "entries", "verified_entries", "unverified_entries", "first_bad_entry",
    "last_signed_checkpoint"}``: the first problem in position order, or intact up to the last
    signed checkpoint; entries no checkpoint covers are counted as unverified. (Everything in
    memory: :class:`ChainVerifier` is the same check a checkpoint at a time.)"""
    rows = list(entries)
    by_position: dict[int, list[StoredEntry]] = {}
    unpositioned = [row for row in rows if row.position is None]
    for row in rows:
        if row.position is not None:
            by_position.setdefault(row.position, []).append(row)
    positioned_ids = {row.entry.entry_id for row in rows if row.position is not None}
    verifier = ChainVerifier(tenant_id, public_keys, anchor=anchor, locate=positioned_ids.__contains__)
    for cp in sorted(checkpoints, key=lambda c: c.number):
        in_range = [
            row for p in range(cp.first_position, cp.last_position + 1) for row in by_position.get(p, [])
        ]
        if not verifier.add(cp, in_range):
            break
    beyond = sorted(p for p in by_position if p >= verifier.next_position or p < 1)
    verifier.beyond(by_position[beyond[0]][0] if beyond else None)
    for row in unpositioned:
        verifier.unpositioned(row)
    return verifier.result(entries=len(rows), unverified=len(unpositioned))


def _bad(entry_id: str | None, position: int | None, problem: str) -> dict[str, Any]:
    return {"entry_id": entry_id, "position": position, "problem": problem}


def _checkpoint_problem(
    tenant_id: str,
    cp: Checkpoint,
    number: int,
    first: int,
    previous: str,
    public_keys: Mapping[str, Ed25519PublicKey],
) -> dict[str, Any] | None:
    first_leaf = cp.leaves[0].entry_id if cp.leaves else None

    def bad(what: str) -> dict[str, Any]:
        return _bad(first_leaf, cp.first_position, f"{BAD_CHECKPOINT} {cp.number}: {what}")

    if cp.tenant_id != tenant_id:
        return bad("signed for another tenant")
    if cp.number != number:
        return bad(f"checkpoint {number} is missing")
    if cp.first_position != first or cp.previous_hash != previous:
        return bad("does not follow the previous checkpoint")
    key = public_keys.get(cp.key_id)
    if key is None:
        return bad(f"signed with unknown key {cp.key_id}")
    try:
        key.verify(base64.b64decode(cp.signature), signed_message(cp.body()))
    except (InvalidSignature, ValueError, binascii.Error):
        return bad("bad signature")
    if len(cp.leaves) != cp.size:
        return bad("its list of entries has the wrong length")
    leaves = [
        leaf_hash(cp.first_position + i, leaf.entry_id, leaf.entry_hash) for i, leaf in enumerate(cp.leaves)
    ]
    if merkle_root(leaves) != cp.root:
        return bad("its entries do not match its signed root")
    return None


def _entries_problem(
    cp: Checkpoint, by_position: Mapping[int, list[StoredEntry]], locate: Callable[[str], bool]
) -> dict[str, Any] | None:
    for i, leaf in enumerate(cp.leaves):
        position = cp.first_position + i
        found = by_position.get(position, [])
        match = next((row for row in found if row.entry.entry_id == leaf.entry_id), None)
        others = [row for row in found if row is not match]
        if others:
            row = others[0]
            if row.entry.entry_id in cp_ids(cp):
                return _bad(row.entry.entry_id, position, f"{MOVED}: signed at another position")
            return _bad(row.entry.entry_id, position, f"{INSERTED}: not in the signed checkpoint {cp.number}")
        if match is None:
            if locate(leaf.entry_id):
                return _bad(leaf.entry_id, position, f"{MOVED}: no longer at its signed position")
            return _bad(leaf.entry_id, position, f"{REMOVED}: signed in checkpoint {cp.number}, missing")
        if entry_hash(match.entry) != leaf.entry_hash:
            return _bad(leaf.entry_id, position, f"{CHANGED}: its fields no longer match the signed hash")
    return None


def cp_ids(cp: Checkpoint) -> set[str]:
    return {leaf.entry_id for leaf in cp.leaves}


# --- export ---------------------------------------------------------------------------------------


def export_lines(checkpoints: Sequence[Checkpoint], entries: Iterable[StoredEntry]) -> list[dict[str, Any]]:
    """JSON Lines records of whole checkpoints: each covered entry (``kind: entry``, with its
    position and hash, in position order), then the checkpoint itself (``kind: checkpoint``, with
    its leaves). Enough to verify offline with the public keys only (:func:`verify_export`)."""
    by_position = {row.position: row for row in entries if row.position is not None}
    lines: list[dict[str, Any]] = []
    for cp in sorted(checkpoints, key=lambda c: c.number):
        for position in range(cp.first_position, cp.last_position + 1):
            row = by_position.get(position)
            if row is not None:
                lines.append(
                    {
                        "kind": "entry",
                        "position": position,
                        "entry_hash": row.entry_hash,
                        "entry": row.entry.model_dump(mode="json"),
                    }
                )
        lines.append({"kind": "checkpoint", **cp.document()})
    return lines


class ExportError(ValueError):
    """An export file that cannot be read as one (the message names the line)."""


def verify_export(
    lines: Iterable[Mapping[str, Any]], public_keys: Mapping[str, Ed25519PublicKey]
) -> dict[str, Any]:
    """Verify exported records (one export, or several resumed ones in order) with the public keys
    only. An export that starts after checkpoint N is verified from N's hash, which it names.

    The records are read once, in order, and only the entries since the last checkpoint record are
    held: an export is entries followed by the checkpoint that covers them, so memory is bounded
    by one checkpoint's entries whatever the length of the file. An entry record not followed by
    the checkpoint that gave its position is named as inserted."""
    verifier: ChainVerifier | None = None
    tenant_id = ""
    first_number = 0
    pending: list[StoredEntry] = []  # the entry records since the last checkpoint record
    count = 0

    def pending_holds(entry_id: str) -> bool:
        return any(row.entry.entry_id == entry_id for row in pending)

    for number, line in enumerate(lines, start=1):
        kind = line.get("kind")
        if kind not in ("entry", "checkpoint"):
            raise ExportError(f"line {number}: neither an entry nor a checkpoint")
        try:
            if kind == "entry":
                row = StoredEntry(
                    LedgerEntry.model_validate(line["entry"]), line.get("entry_hash"), int(line["position"])
                )
                count += 1
                if verifier is None or verifier.ok:
                    pending.append(row)
                continue
            cp = Checkpoint.from_document(line)
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"line {number}: not a ledger export record ({type(exc).__name__})") from None
        if verifier is None:
            tenant_id, first_number = cp.tenant_id, cp.number
            verifier = ChainVerifier(tenant_id, public_keys, locate=pending_holds)
        if verifier.ok:
            verifier.add(
                cp, [row for row in pending if cp.first_position <= (row.position or 0) <= cp.last_position]
            )
            strays = sorted(
                (row for row in pending if not cp.first_position <= (row.position or 0) <= cp.last_position),
                key=lambda row: row.position or 0,
            )
            verifier.beyond(strays[0] if strays else None)
        pending.clear()
    if verifier is None:
        raise ExportError("no checkpoint in the export")
    verifier.beyond(min(pending, key=lambda row: row.position or 0) if pending else None)
    return {
        "tenant_id": tenant_id,
        "from_checkpoint": first_number,
        **verifier.result(entries=count, unverified=0),
    }
