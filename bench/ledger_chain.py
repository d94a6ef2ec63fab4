"""What the tamper-evident ledger costs writers: appends by 4 concurrent writers to one tenant's
ledger at full speed (a harder case than any burst of executions, which append a few entries each
among many other writes), alone and with a checkpointer signing that tenant's new entries every
``--every`` seconds meanwhile. Appending itself is unchanged by the chain (no hash, no lock); what a
writer can feel is the checkpointer's short write transaction (on SQLite, the single writer).

    python -m bench.ledger_chain                                   # SQLite in a temporary file
    python -m bench.ledger_chain --database-url postgresql+psycopg://…/db   # an empty database

Also: what hashing one entry costs (the checkpointer's work), and how long a checkpoint of
``--entries`` entries and a verification of them take.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretStr

from fulfill.config import Settings
from fulfill.domain import ledger_chain
from fulfill.domain.models import LedgerEntry
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from fulfill.usecases.ledger import checkpoint_store

WRITERS = 4


def entry(run: str, writer: int, n: int) -> LedgerEntry:
    return LedgerEntry(
        entry_id=f"{run}-{writer}-{n}",
        event_type="TOOL_CALL_SUCCEEDED",
        timestamp="2026-12-05T01:00:00.000Z",
        tenant_id=run,
        account_id="acc-1",
        action_intent_id=f"ai_{writer}_{n}",
        attempt=1,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        data={"tool_name": "internal.create_task", "external_object_refs": [{"id": f"task-{n}"}], "ms": 12.5},
    )


def appends_per_second(
    store: SqlStore, run: str, per_writer: int, during: Callable[[], None] | None
) -> float:
    stop = threading.Event()

    def write(writer: int) -> None:
        for n in range(per_writer):
            with store.write() as uow:
                uow.executions.append_ledger(entry(run, writer, n))

    def background() -> None:
        assert during is not None
        while not stop.wait(0):
            during()

    side = threading.Thread(target=background) if during else None
    began = time.perf_counter()
    if side:
        side.start()
    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(write, range(WRITERS)))
    elapsed = time.perf_counter() - began
    stop.set()
    if side:
        side.join()
    return WRITERS * per_writer / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--per-writer", type=int, default=500, help="appends by each of the 4 writers per run"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=float, default=0.2, help="seconds between checkpoints during a run")
    parser.add_argument("--entries", type=int, default=5000, help="entries in the timed checkpoint")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'ledger-bench.db'}"
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

    sample = entry("x", 0, 0)
    began = time.perf_counter()
    for _ in range(20_000):
        ledger_chain.entry_hash(sample)
    print(f"hashing one entry: {(time.perf_counter() - began) / 20_000 * 1e6:.1f} µs")

    results: dict[str, list[float]] = {"appends alone": [], "appends + checkpoints": []}
    stamp = int(time.time())
    for round_ in range(args.rounds):
        for label in results:
            run = f"bench-{stamp}-{round_}-{len(label)}"
            during = None
            if label.endswith("checkpoints"):

                def during(run: str = run) -> None:
                    checkpoint_store(store, settings, run, now_epoch=time.time())
                    time.sleep(args.every)

            results[label].append(appends_per_second(store, run, args.per_writer, during))
    base = statistics.median(results["appends alone"])
    for label, rates in results.items():
        median = statistics.median(rates)
        print(
            f"{label}: {median:.0f} appends/s (median of {len(rates)}; {100 * (base - median) / base:+.1f}% slower)"
        )

    run = f"bench-{stamp}-checkpoint"
    with ThreadPoolExecutor(WRITERS) as pool:
        list(
            pool.map(
                lambda w: [store_append(store, entry(run, w, n)) for n in range(args.entries // WRITERS)],
                range(WRITERS),
            )
        )
    began = time.perf_counter()
    made, _ = checkpoint_store(store, settings, run, now_epoch=time.time())
    print(f"one checkpoint of {made.size} entries: {(time.perf_counter() - began) * 1000:.0f} ms")
    began = time.perf_counter()
    from fulfill.usecases.ledger import verify_store

    result = verify_store(store, settings, run)
    print(
        f"verifying {result['entries']} entries: {(time.perf_counter() - began) * 1000:.0f} ms, intact={result['intact']}"
    )
    database.dispose()


def store_append(store: SqlStore, item: LedgerEntry) -> None:
    with store.write() as uow:
        uow.executions.append_ledger(item)


if __name__ == "__main__":
    main()
