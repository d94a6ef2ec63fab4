"""The ledger's signing keys: rotation keeps old checkpoints verifiable (and a forgotten key is
named), the service starts on a ledger that fails verification, and without a key nothing is signed.
Each test runs services of its own (one at a time per process), apart from test_ledger_chain.py's."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import update
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.domain.ledger_chain import key_id_of, verify_export
from fulfill.domain.models import LedgerEntry
from fulfill.engine.ledger_checkpoints import export_to_directory
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
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
from tests.support import plain_http
from tests.support.harness import TEST_SECRET, Harness, make_settings
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
        keys = plain_http.get(f"{second.url}/.well-known/fulfill-ledger-keys.json").json()
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
    assert plain_http.get(f"{harness.url}/.well-known/fulfill-ledger-keys.json").json()["keys"] == []


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


def test_the_documented_key_rotation_works_with_the_cli_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/OPERATIONS.md "Key rotation", step by step: new-key, sign, rotate (the new key signs, the
    old public half goes to FULFILL_LEDGER_PUBLIC_KEYS), sign again; both checkpoints verify, and an
    export verifies offline with the published keys."""
    tenant = "ledger-cli-rotation"
    database = Database(make_settings(tmp_path).database_url)
    upgrade_to_head(database)
    store = SqlStore(database)
    runner = CliRunner()
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("FULFILL_DATABASE_URL", database.url)
    monkeypatch.delenv("FULFILL_URL", raising=False)
    monkeypatch.delenv("FULFILL_LEDGER_PUBLIC_KEYS", raising=False)

    def new_key() -> tuple[str, str, str]:
        made = runner.invoke(app, ["ledger", "new-key"])
        assert made.exit_code == 0, made.output
        found = re.fullmatch(r"key id (\w+), public key (\S+)\s*", made.stderr)
        assert found is not None, made.stderr
        return made.stdout.strip(), found.group(1), found.group(2)

    def append(first: int, count: int) -> None:
        with store.write() as uow:
            for n in range(first, first + count):
                uow.executions.append_ledger(
                    LedgerEntry(
                        entry_id=f"{tenant}-{n}",
                        event_type="INTENT_REJECTED",
                        timestamp="2026-12-05T01:00:00.000Z",
                        tenant_id=tenant,
                        account_id="acc-1",
                        action_intent_id=f"ai_{n}",
                        attempt=0,
                        trace_id="0af7651916cd43dd8448eb211c80319c",
                        data={"n": n},
                    )
                )

    def signed() -> dict[str, Any]:
        ran = runner.invoke(app, ["ledger", "checkpoint", "--tenant", tenant])
        assert ran.exit_code == 0, ran.output
        made: dict[str, Any] = json.loads(ran.stdout)
        return made

    try:
        old_seed, old_id, old_public = new_key()
        monkeypatch.setenv("FULFILL_LEDGER_SIGNING_KEY", old_seed)
        append(0, 3)
        assert signed()["key_id"] == old_id
        new_seed, new_id, _ = new_key()
        assert new_id != old_id
        monkeypatch.setenv("FULFILL_LEDGER_SIGNING_KEY", new_seed)
        monkeypatch.setenv("FULFILL_LEDGER_PUBLIC_KEYS", old_public)
        append(3, 2)
        second = signed()
        assert (second["number"], second["key_id"]) == (2, new_id)
        verified = runner.invoke(app, ["ledger", "verify", "--tenant", tenant])
        assert verified.exit_code == 0, verified.output
        result = json.loads(verified.stdout)
        assert (result["intact"], result["verified_entries"], result["entries"]) == (True, 5, 5)
        exported = tmp_path / "rotated.jsonl"
        assert (
            runner.invoke(app, ["ledger", "export", "--tenant", tenant, "--out", str(exported)]).exit_code
            == 0
        )
        offline = runner.invoke(app, ["ledger", "verify", "--file", str(exported)])
        assert offline.exit_code == 0, offline.output
        # The step the docs warn against: dropping the old public key leaves checkpoint 1 unverifiable.
        monkeypatch.setenv("FULFILL_LEDGER_PUBLIC_KEYS", "")
        dropped = runner.invoke(app, ["ledger", "verify", "--tenant", tenant])
        assert dropped.exit_code == 1
        assert json.loads(dropped.stdout)["first_bad_entry"]["problem"] == (
            f"checkpoint 1: signed with unknown key {old_id}"
        )
    finally:
        database.dispose()
