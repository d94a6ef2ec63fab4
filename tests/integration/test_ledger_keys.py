"""The ledger's signing keys: rotation keeps old checkpoints verifiable (and a forgotten key is
named), the service starts on a ledger that fails verification, and without a key nothing is signed.
Each test runs services of its own (one at a time per process), apart from test_ledger_chain.py's."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import update

from fulfill.domain.ledger_chain import key_id_of, verify_export
from fulfill.engine.ledger_checkpoints import export_to_directory
from fulfill.store.tables import ledger_entries
from fulfill.usecases.ledger import public_keys
from tests.integration.test_ledger_chain import (
    KEY_A,
    KEY_B,
    checkpoint,
    pem,
    propose,
    public_b64,
    seed_b64,
    verify,
)
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for


def test_key_rotation_keeps_old_checkpoints_verifiable_and_the_service_starts_on_a_bad_ledger(
    tmp_path: Path,
) -> None:
    tenant = "ledger-rotation"
    first = Harness(make_settings(tmp_path, ledger_signing_key=seed_b64(KEY_A), ledger_checkpoint_seconds=0))
    first.start()
    with first.client(tenant) as client:
        propose(first, client, 2)
        assert checkpoint(client).json()["key_id"] == key_id_of(KEY_A.public_key())
    first.server.stop()  # not Harness.stop(): the database stays, for the restart
    first.service.db.dispose()

    rotated = first.settings.model_copy(
        update={"ledger_signing_key": SecretStr(pem(KEY_B)), "ledger_public_keys": public_b64(KEY_A)}
    )
    second = Harness(rotated).start()
    try:
        keys = httpx.get(f"{second.url}/.well-known/fulfill-ledger-keys.json").json()
        assert {(k["key_id"], k["current"]) for k in keys["keys"]} == {
            (key_id_of(KEY_A.public_key()), False),
            (key_id_of(KEY_B.public_key()), True),
        }
        assert {k["public_key"] for k in keys["keys"]} == {public_b64(KEY_A), public_b64(KEY_B)}
        with second.client(tenant) as client:
            propose(second, client, 2)
            made = checkpoint(client).json()
            assert (made["number"], made["key_id"]) == (2, key_id_of(KEY_B.public_key()))
            result = verify(client)
            assert result["intact"] is True
            assert result["last_signed_checkpoint"]["number"] == 2
            # Now the ledger is tampered with; the service still starts on it, and says so when asked.
            with second.db.write() as conn:
                conn.execute(
                    update(ledger_entries)
                    .where(ledger_entries.c.tenant_id == tenant, ledger_entries.c.position == 1)
                    .values(event_type="FORGED")
                )
    finally:
        second.server.stop()
        second.service.db.dispose()

    # Without the old key published, the old checkpoint no longer verifies: the key is named.
    forgotten = first.settings.model_copy(
        update={"ledger_signing_key": SecretStr(pem(KEY_B)), "ledger_public_keys": ""}
    )
    third = Harness(forgotten).start()
    try:
        with third.client(tenant) as client:
            assert client.get("/readyz").status_code == 200
            result = verify(client)
            assert result["intact"] is False
            assert result["first_bad_entry"]["problem"] == (
                f"checkpoint 1: signed with unknown key {key_id_of(KEY_A.public_key())}"
            )
            # An intent is still proposed and the ledger still appended to.
            propose(third, client, 1)
    finally:
        third.stop()


def test_without_a_signing_key_nothing_is_signed_and_verify_counts_the_entries_as_unverified(
    harness: Harness,
) -> None:
    with harness.client("ledger-unsigned") as client:
        propose(harness, client, 1)
        refused = checkpoint(client)
        assert refused.status_code == 409
        assert refused.json()["code"] == "LEDGER_SIGNING_KEY_MISSING"
        result = verify(client)
        assert result["intact"] is True
        assert result["last_signed_checkpoint"] is None
        assert result["unverified_entries"] == result["entries"] > 0
    assert httpx.get(f"{harness.url}/.well-known/fulfill-ledger-keys.json").json()["keys"] == []


def test_workers_checkpoint_and_export_every_tenant_on_the_schedule(tmp_path: Path) -> None:
    harness = Harness(
        make_settings(
            tmp_path,
            ledger_signing_key=seed_b64(KEY_A),
            ledger_checkpoint_seconds=0.2,
            ledger_export_dir=str(tmp_path / "exports"),
        )
    ).start()
    try:
        with harness.client("ledger-schedule-a") as a, harness.client("ledger-schedule-b") as b:
            propose(harness, a, 2)
            propose(harness, b, 1)

            def signed(client: httpx.Client) -> dict[str, Any] | None:
                result = verify(client)
                return (
                    result if result["unverified_entries"] == 0 and result["last_signed_checkpoint"] else None
                )

            for client in (a, b):
                result = wait_for(lambda client=client: signed(client), timeout=15)
                assert result["intact"] is True
                assert result["verified_entries"] == result["entries"] > 0
            # The schedule exported each tenant's checkpoints to its file; more entries, more records.
            propose(harness, a, 1)
            exported = tmp_path / "exports" / "ledger-schedule-a.jsonl"

            def all_exported() -> dict[str, Any] | None:
                lines = (
                    [json.loads(line) for line in exported.read_text().splitlines()]
                    if exported.exists()
                    else []
                )
                entries = [line for line in lines if line["kind"] == "entry"]
                return (
                    verify_export(lines, public_keys(harness.settings))
                    if len(entries) == verify(a)["entries"]
                    else None
                )

            offline = wait_for(all_exported, timeout=15)
            assert offline["intact"] is True
            assert offline["from_checkpoint"] == 1
            assert (tmp_path / "exports" / "ledger-schedule-b.jsonl").exists()
            # Exporting again, from several threads at once, adds nothing: nothing new, no duplicate.
            with ThreadPoolExecutor(3) as pool:
                again = list(
                    pool.map(
                        lambda _: export_to_directory(harness.service.store, tmp_path / "exports", []),
                        range(3),
                    )
                )
            assert again == [0, 0, 0]
    finally:
        harness.stop()
