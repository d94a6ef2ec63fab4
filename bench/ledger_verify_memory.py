"""Memory and time of verifying and exporting one tenant's long ledger, the whole ledger in memory
(as verification and the API's export worked before) against a checkpoint at a time (as they work
now), in the same run on the same database.

A tenant gets ``--entries`` ledger entries, all covered by signed checkpoints (5000 entries each).
Then, each way: verification on the database, the export's JSON Lines body, and the offline
verification of that export read from a file. Time is measured without tracing allocations; the
peak of Python allocations (``tracemalloc``) in a second run of the same work.

    python -m bench.ledger_verify_memory --entries 200000
    python -m bench.ledger_verify_memory --database-url postgresql+psycopg://…/empty_db
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretStr

from bench.ledger_chain import entry
from fulfill.config import Settings
from fulfill.domain import ledger_chain
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from fulfill.usecases.ledger import checkpoint_store, iter_export, public_keys, verify_store

TENANT = "bench-ledger"


def fill(store: SqlStore, settings: Settings, entries: int) -> None:
    for start in range(0, entries, 5000):
        with store.write() as uow:
            for n in range(start, min(entries, start + 5000)):
                uow.executions.append_ledger(entry(TENANT, 0, n).model_copy(update={"tenant_id": TENANT}))
    while True:
        _, created = checkpoint_store(store, settings, TENANT, now_epoch=time.time())
        if not created:
            return


def verify_in_memory(store: SqlStore, settings: Settings) -> dict[str, Any]:
    """The previous way: every checkpoint and every entry read into lists, then verified."""
    with store.read() as uow:
        uow.ledger.snapshot()
        checkpoints = uow.ledger.checkpoint_page(TENANT, 0, limit=10**9)
        last = checkpoints[-1].last_position if checkpoints else 0
        rows = uow.ledger.entries_at(TENANT, 1, last)
    return ledger_chain.verify(TENANT, rows, checkpoints, public_keys(settings))


def export_in_memory(store: SqlStore) -> int:
    """The previous API export: every record in a list, then one body string."""
    lines = list(iter_export(store, TENANT, 0))
    body = "".join(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n" for line in lines)
    return len(body)


def export_streamed(store: SqlStore) -> int:
    """The API's export now: each record encoded as it is sent."""
    size = 0
    for line in iter_export(store, TENANT, 0):
        size += len(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
    return size


def file_in_memory(path: Path, settings: Settings) -> dict[str, Any]:
    """The previous ``fulfill ledger verify --file``: the file's records in a list, then verified."""
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return ledger_chain.verify_export(lines, public_keys(settings))


def file_streamed(path: Path, settings: Settings) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return ledger_chain.verify_export(
            (json.loads(line) for line in handle if line.strip()), public_keys(settings)
        )


def measure(work: Callable[[], object]) -> tuple[float, float]:
    """(seconds, peak MiB of Python allocations)."""
    began = time.perf_counter()
    work()
    seconds = time.perf_counter() - began
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default="", help="an empty database (default: SQLite in a temp file)"
    )
    parser.add_argument("--entries", type=int, default=200_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp())
    url = args.database_url or f"sqlite:///{workdir / 'ledger-verify.db'}"
    database = Database(url)
    upgrade_to_head(database)
    store = SqlStore(database)
    key = Ed25519PrivateKey.generate()
    settings = Settings(
        database_url=url,
        ledger_signing_key=SecretStr(
            key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
        ),
    )
    began = time.perf_counter()
    fill(store, settings, args.entries)
    print(f"{args.entries} entries appended and checkpointed in {time.perf_counter() - began:.1f} s")
    export = workdir / "export.jsonl"
    with export.open("w", encoding="utf-8") as handle:
        for line in iter_export(store, TENANT, 0):
            handle.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"export file: {os.path.getsize(export) / 2**20:.1f} MiB")
    expected = verify_store(store, settings, TENANT)
    assert expected["verified_entries"] == args.entries, expected
    assert verify_in_memory(store, settings)["intact"]
    assert file_streamed(export, settings)["verified_entries"] == args.entries
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        (
            "verify on the database",
            lambda: verify_in_memory(store, settings),
            lambda: verify_store(store, settings, TENANT),
        ),
        ("export body (API)", lambda: export_in_memory(store), lambda: export_streamed(store)),
        (
            "verify --file",
            lambda: file_in_memory(export, settings),
            lambda: file_streamed(export, settings),
        ),
    ]
    print(f"{'':24} {'whole ledger: s':>16} {'peak MiB':>9} {'per checkpoint: s':>18} {'peak MiB':>9}")
    for name, before, after in cases:
        b_seconds, b_peak = measure(before)
        a_seconds, a_peak = measure(after)
        print(f"{name:24} {b_seconds:16.1f} {b_peak:9.1f} {a_seconds:18.1f} {a_peak:9.1f}")


if __name__ == "__main__":
    main()
