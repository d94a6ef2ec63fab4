"""The ledger's chain, pure: RFC 6962 Merkle roots, signed checkpoints chained to each other, keys,
and what verification names for each kind of tampering."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import ValidationError

from fulfill.config import Settings
from fulfill.domain.ledger_chain import (
    GENESIS,
    Anchor,
    ChainVerifier,
    Checkpoint,
    ExportError,
    LedgerKeyError,
    StoredEntry,
    build_checkpoint,
    checkpoint_hash,
    entry_hash,
    export_lines,
    key_id_of,
    keys_from_document,
    leaf_hash,
    load_signing_key,
    merkle_root,
    public_keys_document,
    verify,
    verify_export,
)
from fulfill.domain.models import LedgerEntry

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
KEYS = {key_id_of(KEY.public_key()): KEY.public_key()}


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def entry(n: int, tenant: str = "t1") -> LedgerEntry:
    return LedgerEntry(
        entry_id=f"e{n}",
        event_type="INTENT_REJECTED",
        timestamp=f"2026-12-05T00:00:{n:02d}.000Z",
        tenant_id=tenant,
        account_id="acc-1",
        action_intent_id=f"i{n}",
        attempt=0,
        trace_id="trace",
        data={"n": n, "amount": 1.0},
    )


def ledger(n: int, per_checkpoint: int) -> tuple[list[StoredEntry], list[Checkpoint]]:
    entries = [entry(i) for i in range(1, n + 1)]
    checkpoints: list[Checkpoint] = []
    for start in range(0, n, per_checkpoint):
        batch = entries[start : start + per_checkpoint]
        checkpoints.append(
            build_checkpoint(
                tenant_id="t1",
                previous=checkpoints[-1] if checkpoints else None,
                entries=[(e.entry_id, entry_hash(e)) for e in batch],
                signed_at="2026-12-05T01:00:00.000Z",
                signing_key=KEY,
            )
        )
    stored = [StoredEntry(e, entry_hash(e), i + 1) for i, e in enumerate(entries)]
    return stored, checkpoints


def test_merkle_roots_follow_rfc_6962() -> None:
    a, b, c = h(b"a"), h(b"b"), h(b"c")
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
    assert merkle_root([a]) == a.hex()
    assert merkle_root([a, b]) == h(b"\x01" + a + b).hex()
    # Three leaves split at the largest power of two below 3: (a, b) | c.
    assert merkle_root([a, b, c]) == h(b"\x01" + h(b"\x01" + a + b) + c).hex()
    assert leaf_hash(1, "e1", "ab") == h(b'\x00[1,"e1","ab"]')


def test_the_entry_hash_covers_every_field_and_reads_numbers_canonically() -> None:
    base = entry(1)
    assert entry_hash(base) == entry_hash(base.model_copy(update={"data": {"amount": 1, "n": 1}}))
    for field, value in [("event_type", "X"), ("timestamp", "t"), ("trace_id", "x"), ("attempt", 1)]:
        assert entry_hash(base.model_copy(update={field: value})) != entry_hash(base)


def test_an_untouched_ledger_verifies_and_uncovered_entries_are_counted_apart() -> None:
    stored, checkpoints = ledger(7, 3)
    assert [cp.number for cp in checkpoints] == [1, 2, 3]
    assert checkpoints[0].previous_hash == GENESIS
    assert checkpoints[1].previous_hash == checkpoint_hash(checkpoints[0])
    extra = StoredEntry(entry(8), entry_hash(entry(8)), None)
    result = verify("t1", [*stored, extra], checkpoints, KEYS)
    assert result == {
        "intact": True,
        "entries": 8,
        "verified_entries": 7,
        "unverified_entries": 1,
        "first_bad_entry": None,
        "last_signed_checkpoint": checkpoints[-1].summary(),
    }
    assert result["last_signed_checkpoint"]["last_position"] == 7


def _problem(stored: list[StoredEntry], checkpoints: list[Checkpoint]) -> dict[str, object]:
    result = verify("t1", stored, checkpoints, KEYS)
    assert result["intact"] is False
    assert result["verified_entries"] is None
    bad: dict[str, object] = result["first_bad_entry"]
    return bad


def test_each_kind_of_tampering_is_named_at_the_first_offending_position() -> None:
    stored, checkpoints = ledger(6, 3)
    changed = list(stored)
    forged = stored[4].entry.model_copy(update={"data": {"n": 99}})
    changed[4] = StoredEntry(forged, entry_hash(forged), 5)
    assert _problem(changed, checkpoints) == {
        "entry_id": "e5",
        "position": 5,
        "problem": "changed: its fields no longer match the signed hash",
    }
    removed = stored[:1] + stored[2:]
    assert _problem(removed, checkpoints)["problem"] == "removed: signed in checkpoint 1, missing"
    assert _problem(removed, checkpoints)["entry_id"] == "e2"
    swapped = list(stored)
    swapped[1], swapped[2] = replace(stored[2], position=2), replace(stored[1], position=3)
    assert _problem(swapped, checkpoints) == {
        "entry_id": "e3",
        "position": 2,
        "problem": "moved: signed at another position",
    }
    beyond = [*stored, StoredEntry(entry(9), entry_hash(entry(9)), 7)]
    assert _problem(beyond, checkpoints) == {
        "entry_id": "e9",
        "position": 7,
        "problem": "inserted: a position no signed checkpoint gave",
    }
    unsigned_change = [*stored, StoredEntry(entry(9), entry_hash(entry(8)), None)]
    assert _problem(unsigned_change, checkpoints)["problem"].startswith("changed")


def test_checkpoints_are_bound_by_signature_chain_root_and_tenant() -> None:
    stored, checkpoints = ledger(6, 3)
    first, second = checkpoints
    cases = {
        "checkpoint 1: bad signature": [replace(first, signed_at="2000-01-01T00:00:00.000Z"), second],
        "checkpoint 1: its entries do not match its signed root": [
            replace(first, leaves=(first.leaves[1], first.leaves[0], first.leaves[2])),
            second,
        ],
        "checkpoint 2: checkpoint 1 is missing": [second],
        f"checkpoint 1: signed with unknown key {key_id_of(OTHER.public_key())}": [
            build_checkpoint(
                tenant_id="t1",
                previous=None,
                entries=[(leaf.entry_id, leaf.entry_hash) for leaf in first.leaves],
                signed_at=first.signed_at,
                signing_key=OTHER,
            ),
            second,
        ],
    }
    for problem, tampered in cases.items():
        assert _problem(stored, tampered)["problem"] == problem
    # Another tenant's genuine checkpoint does not verify this tenant's ledger.
    assert (
        verify("t2", [], checkpoints, KEYS)["first_bad_entry"]["problem"]
        == "checkpoint 1: signed for another tenant"
    )
    # The stored document round-trips.
    assert Checkpoint.from_document(first.document()) == first


def test_keys_read_as_pem_or_base64_and_a_bad_one_is_refused_without_quoting_it() -> None:
    seed = KEY.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pem = KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    for text in (base64.b64encode(seed).decode(), base64.urlsafe_b64encode(seed).decode().rstrip("="), pem):
        assert key_id_of(load_signing_key(text).public_key()) == key_id_of(KEY.public_key())
    with pytest.raises(LedgerKeyError) as refused:
        load_signing_key("c2VjcmV0LXRoYXQtaXMtbm90LWEta2V5")
    assert "c2VjcmV0" not in str(refused.value)
    with pytest.raises(ValidationError):
        Settings(ledger_signing_key="not a key")
    with pytest.raises(ValidationError):
        Settings(ledger_public_keys="AAAA")
    document = public_keys_document(KEYS, key_id_of(KEY.public_key()))
    assert keys_from_document(document).keys() == KEYS.keys()
    assert document["keys"][0]["current"] is True


def test_an_export_verifies_from_its_first_checkpoint_and_a_malformed_one_is_refused_by_line() -> None:
    stored, checkpoints = ledger(6, 3)
    lines = export_lines(checkpoints, stored)
    assert [line["kind"] for line in lines] == ["entry"] * 3 + ["checkpoint"] + ["entry"] * 3 + ["checkpoint"]
    assert verify_export(lines, KEYS)["intact"] is True
    resumed = verify_export(lines[4:], KEYS)
    assert (resumed["intact"], resumed["from_checkpoint"], resumed["verified_entries"]) == (True, 2, 3)
    # A resumed export whose first checkpoint claims another past is still bound by its signature.
    forged = [*lines[4:7], {**lines[7], "previous_hash": "f" * 64}]
    assert verify_export(forged, KEYS)["first_bad_entry"]["problem"] == "checkpoint 2: bad signature"
    with pytest.raises(ExportError, match="line 2: neither"):
        verify_export([lines[0], {"kind": "other"}], KEYS)
    with pytest.raises(ExportError, match="line 1: not a ledger export record"):
        verify_export([{"kind": "entry", "position": 1}], KEYS)
    with pytest.raises(ExportError, match="no checkpoint"):
        verify_export(lines[:3], KEYS)


def test_an_export_is_verified_as_it_is_read_and_a_stray_entry_record_is_named() -> None:
    stored, checkpoints = ledger(6, 3)
    lines = export_lines(checkpoints, stored)
    read: list[int] = []

    def records() -> Iterator[dict[str, Any]]:
        for number, line in enumerate(lines):
            read.append(number)
            yield line

    result = verify_export(records(), KEYS)
    assert (result["intact"], result["entries"], result["verified_entries"]) == (True, 6, 6)
    assert read == list(range(len(lines)))  # one pass, in order
    # Entry records after the last checkpoint record: positions no signed checkpoint gave.
    extra = {
        "kind": "entry",
        "position": 7,
        "entry_hash": entry_hash(entry(7)),
        "entry": entry(7).model_dump(),
    }
    trailing = verify_export([*lines, extra], KEYS)
    assert trailing["first_bad_entry"] == {
        "entry_id": "e7",
        "position": 7,
        "problem": "inserted: a position no signed checkpoint gave",
    }
    assert trailing["entries"] == 7
    # An entry record of checkpoint 1 moved into checkpoint 2's block is missing where it was signed.
    shuffled = [*lines[:2], lines[3], lines[2], *lines[4:]]
    assert verify_export(shuffled, KEYS)["first_bad_entry"] == {
        "entry_id": "e3",
        "position": 3,
        "problem": "removed: signed in checkpoint 1, missing",
    }


def test_the_verifier_fed_a_checkpoint_at_a_time_agrees_with_the_whole_ledger_in_memory() -> None:
    stored, checkpoints = ledger(9, 3)
    forged = stored[7].entry.model_copy(update={"data": {"n": 99}})
    changed = [*stored[:7], StoredEntry(forged, stored[7].entry_hash, 8), stored[8]]
    for rows in (stored, changed):
        verifier = ChainVerifier("t1", KEYS, anchor=Anchor())
        for cp in checkpoints:
            in_range = [row for row in rows if cp.first_position <= (row.position or 0) <= cp.last_position]
            if not verifier.add(cp, in_range):
                break
        assert verifier.result(entries=len(rows), unverified=0) == verify("t1", rows, checkpoints, KEYS)
    assert verify("t1", changed, checkpoints, KEYS)["first_bad_entry"]["position"] == 8
