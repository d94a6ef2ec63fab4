"""The tamper-evident ledger over HTTP and SQL: checkpoints while four writers append, tampering
with a checkpointed row (changed, inserted, removed, moved) caught and named, key rotation,
and tenant isolation of every route (key rotation, a service without a key and one that starts on
a ledger that fails verification: test_ledger_keys.py)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import delete, insert, select, update
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.domain.ledger_chain import entry_hash, key_id_of
from fulfill.domain.models import LedgerEntry
from fulfill.domain.scopes import TENANT_SCOPES
from fulfill.store.sql_store import SqlStore
from fulfill.store.tables import ledger_checkpoints, ledger_entries
from fulfill.usecases.ledger import iter_export, verify_store
from tests.support import plain_http
from tests.support.harness import TEST_SECRET, Harness, make_settings

KEY_A = Ed25519PrivateKey.generate()
KEY_B = Ed25519PrivateKey.generate()


def seed_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()


def public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path_factory.mktemp("ledger"), ledger_signing_key=pem(KEY_A), ledger_checkpoint_seconds=0
    )
    running = Harness(settings).start()
    yield running
    running.stop()


def propose(harness: Harness, client: httpx.Client, n: int) -> list[str]:
    """``n`` intents proposed and withdrawn: each withdrawal appends a ledger entry."""
    ids = [harness.create_intent(client)["action_intent_id"] for _ in range(n)]
    for intent_id in ids:
        harness.api(client).reject(intent_id)
    return ids


def checkpoint(client: httpx.Client, **params: str) -> httpx.Response:
    return client.post("/admin/ledger/checkpoint", params=params)


def verify(client: httpx.Client, **params: str) -> dict[str, Any]:
    answer = client.get("/admin/ledger/verify", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert {"intact", "entries", "first_bad_entry", "last_signed_checkpoint"} <= set(body)
    return body


def rows(harness: Harness, tenant: str) -> list[dict[str, Any]]:
    with harness.db.read() as conn:
        found = conn.execute(
            select(ledger_entries)
            .where(ledger_entries.c.tenant_id == tenant)
            .order_by(ledger_entries.c.position.is_(None), ledger_entries.c.position)
        ).all()
    return [dict(row._mapping) for row in found]


def test_an_untouched_ledger_verifies_with_four_writers_appending_while_checkpoints_are_taken(
    keyed: Harness,
) -> None:
    tenant = "ledger-writers"
    done = threading.Event()
    taken: list[int] = []

    def write(_: int) -> list[str]:
        with keyed.client(tenant) as client:
            return propose(keyed, client, 8)

    def checkpoints() -> None:
        with keyed.client(tenant) as client:
            while not done.is_set():
                answer = checkpoint(client)
                assert answer.status_code in (200, 201), answer.text
                taken.append(answer.json()["number"])

    checkpointer = threading.Thread(target=checkpoints)
    checkpointer.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            written = [intent for batch in pool.map(write, range(4)) for intent in batch]
    finally:
        done.set()
        checkpointer.join()
    assert len(set(written)) == 32
    with keyed.client(tenant) as client:
        before = verify(client)
        assert before["intact"] is True
        assert before["verified_entries"] + before["unverified_entries"] == before["entries"]
        final = checkpoint(client)
        assert final.status_code in (200, 201)
        after = verify(client)
        assert after["intact"] is True
        assert after["first_bad_entry"] is None
        assert after["entries"] == after["verified_entries"] == len(rows(keyed, tenant)) >= 32
        assert after["unverified_entries"] == 0
        signed = after["last_signed_checkpoint"]
        assert signed["key_id"] == key_id_of(KEY_A.public_key())
        assert signed["signature"]
        assert signed["last_position"] == after["entries"]
        # Positions are 1..N, each once; nothing new → the same checkpoint again, 200.
        assert [row["position"] for row in rows(keyed, tenant)] == list(range(1, after["entries"] + 1))
        again = checkpoint(client)
        assert again.status_code == 200
        assert again.json() == signed
        # An entry appended after the last checkpoint is reported as not yet verified.
        propose(keyed, client, 1)
        pending = verify(client)
        assert pending["intact"] is True
        assert pending["unverified_entries"] >= 1
        assert pending["verified_entries"] == after["entries"] < pending["entries"]


def _tamper_change(conn: Any, tenant: str, target: dict[str, Any]) -> str:
    # A careful forger rewrites the row's stored hash too: the signed leaf still differs.
    changed = {**target, "data": {**target["data"], "forged": True}}
    fields = {k: changed[k] for k in LedgerEntry.model_fields}
    conn.execute(
        update(ledger_entries)
        .where(ledger_entries.c.seq == target["seq"])
        .values(data=changed["data"], entry_hash=entry_hash(LedgerEntry.model_validate(fields)))
    )
    return str(target["entry_id"])


def _tamper_insert(conn: Any, tenant: str, target: dict[str, Any]) -> str:
    later = conn.execute(
        select(ledger_entries.c.seq, ledger_entries.c.position)
        .where(ledger_entries.c.tenant_id == tenant, ledger_entries.c.position >= target["position"])
        .order_by(ledger_entries.c.position.desc())
    ).all()
    for row in later:
        conn.execute(
            update(ledger_entries).where(ledger_entries.c.seq == row.seq).values(position=row.position + 1)
        )
    forged = LedgerEntry.model_validate(
        {
            **{k: target[k] for k in LedgerEntry.model_fields},
            "entry_id": "forged-entry",
            "data": {"forged": True},
        }
    )
    conn.execute(
        insert(ledger_entries).values(
            **forged.model_dump(mode="json"), entry_hash=entry_hash(forged), position=target["position"]
        )
    )
    return "forged-entry"


def _tamper_delete(conn: Any, tenant: str, target: dict[str, Any]) -> str:
    conn.execute(delete(ledger_entries).where(ledger_entries.c.seq == target["seq"]))
    return str(target["entry_id"])


def _tamper_reorder(conn: Any, tenant: str, target: dict[str, Any]) -> str:
    following = conn.execute(
        select(ledger_entries.c.seq).where(
            ledger_entries.c.tenant_id == tenant, ledger_entries.c.position == target["position"] + 1
        )
    ).scalar_one()
    conn.execute(update(ledger_entries).where(ledger_entries.c.seq == target["seq"]).values(position=-1))
    conn.execute(
        update(ledger_entries).where(ledger_entries.c.seq == following).values(position=target["position"])
    )
    conn.execute(
        update(ledger_entries)
        .where(ledger_entries.c.seq == target["seq"])
        .values(position=target["position"] + 1)
    )
    # What is at the target's position now is the entry that was signed one place later.
    return str(
        conn.execute(select(ledger_entries.c.entry_id).where(ledger_entries.c.seq == following)).scalar_one()
    )


TAMPERING = {
    "changed": _tamper_change,
    "inserted": _tamper_insert,
    "removed": _tamper_delete,
    "moved": _tamper_reorder,
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_a_checkpointed_row_changed_inserted_removed_or_moved_in_the_database_is_caught_and_named(
    keyed: Harness, how: str
) -> None:
    tenant = f"ledger-tamper-{how}"
    with keyed.client(tenant) as client:
        propose(keyed, client, 3)
        assert checkpoint(client).status_code == 201
        propose(keyed, client, 1)  # not yet checkpointed: reported as such, never blamed
        assert verify(client)["intact"] is True
        target = rows(keyed, tenant)[1]  # position 2
        assert target["position"] == 2
        with keyed.db.write() as conn:
            named = TAMPERING[how](conn, tenant, target)
        result = verify(client)
    assert result["intact"] is False
    bad = result["first_bad_entry"]
    assert (bad["entry_id"], bad["position"]) == (named, 2), bad
    assert bad["problem"].startswith(how), bad
    assert result["verified_entries"] is None
    assert result["last_signed_checkpoint"] is None  # the only checkpoint is the broken one


def test_a_changed_checkpoint_or_a_removed_tail_checkpoint_is_caught(keyed: Harness) -> None:
    tenant = "ledger-checkpoint-tamper"
    with keyed.client(tenant) as client:
        propose(keyed, client, 2)
        assert checkpoint(client).status_code == 201
        propose(keyed, client, 2)
        second = checkpoint(client)
        assert second.status_code == 201
        with keyed.db.write() as conn:
            conn.execute(
                update(ledger_checkpoints)
                .where(ledger_checkpoints.c.tenant_id == tenant, ledger_checkpoints.c.number == 1)
                .values(signed_at="2000-01-01T00:00:00.000Z")
            )
        broken = verify(client)
        assert broken["intact"] is False
        assert broken["first_bad_entry"]["position"] == 1
        assert broken["first_bad_entry"]["problem"] == "checkpoint 1: bad signature"


def test_every_ledger_route_keeps_tenants_apart(keyed: Harness) -> None:
    tenant_scopes = [str(scope) for scope in TENANT_SCOPES]
    with (
        keyed.client("ledger-iso-a", scopes=tenant_scopes) as a,
        keyed.client("ledger-iso-b", scopes=tenant_scopes) as b,
    ):
        propose(keyed, a, 2)
        propose(keyed, b, 1)
        assert checkpoint(b).status_code == 201
        assert {row["position"] is None for row in rows(keyed, "ledger-iso-a")} == {True}
        mine = verify(b)
        assert mine["tenant_id"] == "ledger-iso-b"
        assert mine["entries"] == len(rows(keyed, "ledger-iso-b"))
        # A tenant's admin names no other tenant, for either route.
        for answer in (
            b.get("/admin/ledger/verify", params={"tenant_id": "ledger-iso-a"}),
            checkpoint(b, tenant_id="ledger-iso-a"),
        ):
            assert answer.status_code == 403
            assert answer.json()["code"] == "MISSING_SCOPE"
        assert {row["position"] is None for row in rows(keyed, "ledger-iso-a")} == {True}
    with keyed.client("ops", scopes=["platform:admin"]) as platform:
        theirs = verify(platform, tenant_id="ledger-iso-a")
        assert theirs["tenant_id"] == "ledger-iso-a"
        assert theirs["unverified_entries"] == theirs["entries"] > 0
        assert checkpoint(platform, tenant_id="ledger-iso-a").status_code == 201
    for scopes in (["intents:read", "executions:read", "intents:write"], ["intents:approve"]):
        with keyed.client("ledger-iso-a", scopes=scopes) as other:
            assert other.get("/admin/ledger/verify").status_code == 403
            assert checkpoint(other).status_code == 403
    assert plain_http.get(f"{keyed.url}/admin/ledger/verify").status_code == 401
    assert plain_http.post(f"{keyed.url}/admin/ledger/checkpoint").status_code == 401
    assert plain_http.get(f"{keyed.url}/.well-known/fulfill-ledger-keys.json").status_code == 200


def test_the_cli_verifies_checkpoints_and_exports_through_the_api_and_on_the_database(
    keyed: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tenant = "ledger-cli"
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("FULFILL_DATABASE_URL", keyed.settings.database_url)
    monkeypatch.setenv("FULFILL_LEDGER_SIGNING_KEY", pem(KEY_A))
    monkeypatch.delenv("FULFILL_URL", raising=False)
    with keyed.client(tenant) as client:
        propose(keyed, client, 2)
    runner = CliRunner()
    on_api = ["--tenant", tenant, "--url", keyed.url]
    made = runner.invoke(app, ["ledger", "checkpoint", *on_api])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["number"] == 1
    with keyed.client(tenant) as client:
        propose(keyed, client, 1)
    on_db = runner.invoke(app, ["ledger", "checkpoint", "--tenant", tenant])
    assert on_db.exit_code == 0, on_db.output
    assert json.loads(on_db.stdout)["number"] == 2
    for where in (on_api, ["--tenant", tenant]):
        verified = runner.invoke(app, ["ledger", "verify", *where])
        assert verified.exit_code == 0, verified.output
        result = json.loads(verified.stdout)
        assert result["intact"] is True
        assert result["verified_entries"] == result["entries"] == len(rows(keyed, tenant))
    # Export in two goes (API, then the database) into one file, resumed where the first ended.
    exported = tmp_path / "ledger.jsonl"
    first = runner.invoke(app, ["ledger", "export", *on_api, "--out", str(exported)])
    assert first.exit_code == 0, first.output
    whole = len(rows(keyed, tenant))
    assert f"next export: --since {whole}" in first.stderr
    with keyed.client(tenant) as client:
        propose(keyed, client, 1)
        checkpoint(client)
    second = runner.invoke(
        app, ["ledger", "export", "--tenant", tenant, "--since", str(whole), "--out", str(exported)]
    )
    assert second.exit_code == 0, second.output
    offline = runner.invoke(app, ["ledger", "verify", "--file", str(exported)])
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout)["verified_entries"] == len(rows(keyed, tenant))
    with keyed.db.write() as conn:
        conn.execute(
            update(ledger_entries)
            .where(ledger_entries.c.tenant_id == tenant, ledger_entries.c.position == 3)
            .values(trace_id="forged")
        )
    for where in (on_api, ["--tenant", tenant]):
        broken = runner.invoke(app, ["ledger", "verify", *where])
        assert broken.exit_code == 1
        assert json.loads(broken.stdout)["first_bad_entry"]["position"] == 3
        assert "NOT INTACT" in broken.stderr
    key = runner.invoke(app, ["ledger", "new-key"])
    assert key.exit_code == 0
    assert len(base64.b64decode(key.stdout.strip())) == 32


def export(client: httpx.Client, since: int, **params: str) -> tuple[list[dict[str, Any]], int]:
    answer = client.get("/admin/ledger/export", params={"since": since, **params})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.text.splitlines()]
    return lines, int(answer.headers["x-fulfill-ledger-next-since"])


def test_an_export_resumes_without_gaps_or_duplicates_and_verifies_offline_unless_tampered(
    keyed: Harness, tmp_path: Path
) -> None:
    tenant = "ledger-export"
    with keyed.client(tenant, scopes=[str(scope) for scope in TENANT_SCOPES]) as client:
        propose(keyed, client, 3)
        checkpoint(client)
        first, resume = export(client, 0)
        propose(keyed, client, 2)
        checkpoint(client)
        propose(keyed, client, 1)  # not checkpointed: not exported
        second, end = export(client, resume)
        whole, whole_end = export(client, 0)
        assert export(client, end) == ([], end)
        # Another tenant's export is not this token's to take.
        assert client.get("/admin/ledger/export", params={"tenant_id": "ledger-writers"}).status_code == 403
    assert first + second == whole
    assert end == whole_end == resume + len([line for line in second if line["kind"] == "entry"])
    positions = [line["position"] for line in whole if line["kind"] == "entry"]
    assert positions == list(range(1, end + 1))
    assert {line["entry"]["tenant_id"] for line in whole if line["kind"] == "entry"} == {tenant}

    keys = tmp_path / "keys.json"
    keys.write_text(plain_http.get(f"{keyed.url}/.well-known/fulfill-ledger-keys.json").text)
    runner = CliRunner()

    def offline(lines: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        path = tmp_path / "export.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        ran = runner.invoke(app, ["ledger", "verify", "--file", str(path), "--keys", str(keys)])
        return ran.exit_code, json.loads(ran.stdout)

    code, result = offline(first + second)
    assert code == 0
    assert (result["intact"], result["verified_entries"], result["from_checkpoint"]) == (True, end, 1)
    code, result = offline(second)  # a resumed export alone verifies from its first checkpoint
    assert code == 0
    assert (result["intact"], result["from_checkpoint"]) == (True, 2)

    changed = [dict(line) for line in whole]
    target = next(line for line in changed if line["kind"] == "entry" and line["position"] == 2)
    target["entry"] = {**target["entry"], "data": {"forged": True}}
    code, result = offline(changed)
    assert code == 1
    assert result["first_bad_entry"]["position"] == 2
    assert result["first_bad_entry"]["problem"].startswith("changed")
    dropped = [line for line in whole if not (line["kind"] == "entry" and line["position"] == 4)]
    code, result = offline(dropped)
    assert code == 1
    assert (result["first_bad_entry"]["position"], result["first_bad_entry"]["problem"][:7]) == (4, "removed")
    # Without the signer's public key nothing verifies.
    keys.write_text(json.dumps({"keys": [{"public_key": public_b64(KEY_B)}]}))
    code, result = offline(whole)
    assert code == 1
    assert "unknown key" in result["first_bad_entry"]["problem"]


def test_an_empty_ledger_answers_the_four_keys_on_the_api_and_the_cli(
    keyed: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = "ledger-empty"
    expected = {
        "intact": True,
        "entries": 0,
        "verified_entries": 0,
        "unverified_entries": 0,
        "first_bad_entry": None,
        "last_signed_checkpoint": None,
    }
    with keyed.client(tenant) as client:
        assert verify(client) == {"tenant_id": tenant, **expected}
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("FULFILL_DATABASE_URL", keyed.settings.database_url)
    monkeypatch.setenv("FULFILL_LEDGER_SIGNING_KEY", pem(KEY_A))
    monkeypatch.delenv("FULFILL_URL", raising=False)
    runner = CliRunner()
    for where in (["--url", keyed.url], []):
        ran = runner.invoke(app, ["ledger", "verify", "--tenant", tenant, *where])
        assert ran.exit_code == 0, ran.output
        assert json.loads(ran.stdout) == {"tenant_id": tenant, **expected}


def _three_checkpoints(harness: Harness, tenant: str) -> None:
    with harness.client(tenant) as client:
        for _ in range(3):
            propose(harness, client, 2)
            assert checkpoint(client).status_code == 201


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        ("removed", "removed: signed in checkpoint 3, missing"),
        ("moved", "moved: no longer at its signed position"),
    ],
)
def test_verification_reads_one_checkpoint_at_a_time_and_still_names_the_row(
    keyed: Harness, monkeypatch: pytest.MonkeyPatch, how: str, problem: str
) -> None:
    monkeypatch.setattr("fulfill.usecases.ledger.VERIFY_PAGE", 1)
    tenant = f"ledger-paged-{how}"
    _three_checkpoints(keyed, tenant)
    store = SqlStore(keyed.db)
    settings = keyed.settings
    whole = verify_store(store, settings, tenant)
    assert (whole["intact"], whole["verified_entries"], whole["last_signed_checkpoint"]["number"]) == (
        True,
        whole["entries"],
        3,
    )
    target = next(row for row in rows(keyed, tenant) if row["position"] == whole["entries"] - 1)
    with keyed.db.write() as conn:
        if how == "removed":
            conn.execute(delete(ledger_entries).where(ledger_entries.c.seq == target["seq"]))
        else:  # moved far beyond every checkpoint: the entry is still there, not where it was signed
            conn.execute(
                update(ledger_entries).where(ledger_entries.c.seq == target["seq"]).values(position=10**6)
            )
    result = verify_store(store, settings, tenant)
    assert result["first_bad_entry"] == {
        "entry_id": target["entry_id"],
        "position": target["position"],
        "problem": problem,
    }
    assert result["last_signed_checkpoint"]["number"] == 2  # verified up to the one before


def test_a_row_given_a_position_no_checkpoint_gave_is_caught_after_the_last_checkpoint(
    keyed: Harness,
) -> None:
    tenant = "ledger-beyond"
    _three_checkpoints(keyed, tenant)
    with keyed.client(tenant) as client:
        propose(keyed, client, 1)
        unchecked = next(row for row in rows(keyed, tenant) if row["position"] is None)
        with keyed.db.write() as conn:
            conn.execute(
                update(ledger_entries).where(ledger_entries.c.seq == unchecked["seq"]).values(position=0)
            )
        result = verify(client)
    assert result["first_bad_entry"] == {
        "entry_id": unchecked["entry_id"],
        "position": 0,
        "problem": "inserted: a position no signed checkpoint gave",
    }
    assert result["last_signed_checkpoint"]["number"] == 3


def test_an_export_reads_page_by_page_and_stops_at_the_checkpoint_it_was_asked_until(
    keyed: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = "ledger-export-pages"
    _three_checkpoints(keyed, tenant)
    store = SqlStore(keyed.db)
    whole = list(iter_export(store, tenant, 0))
    monkeypatch.setattr("fulfill.usecases.ledger.EXPORT_PAGE", 1)
    assert list(iter_export(store, tenant, 0)) == whole
    checkpoints = [line for line in whole if line["kind"] == "checkpoint"]
    until = checkpoints[1]["last_position"]
    partial = list(iter_export(store, tenant, 0, until=until))
    assert partial == whole[: whole.index(checkpoints[1]) + 1]
    # The API's answer names where it stopped, and the checkpoints signed later are the next export's.
    with keyed.client(tenant) as client:
        lines, next_since = export(client, until)
    assert lines == whole[whole.index(checkpoints[1]) + 1 :]
    assert next_since == checkpoints[2]["last_position"]
