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
    store: SqlStore, run: str, per_writer: int, during: Callable[[], None] | None, rate: float = 0.0
) -> tuple[float, list[float]]:
    """Appends per second, and each append's transaction time (ms). ``rate`` > 0: the 4 writers
    together append that many a second, on a schedule (a burst's pace), instead of at full speed."""
    stop = threading.Event()
    latencies: list[float] = []
    began = time.perf_counter()

    def write(writer: int) -> None:
        for n in range(per_writer):
            if rate > 0:
                due = began + (n * WRITERS + writer) / rate
                time.sleep(max(0.0, due - time.perf_counter()))
            start = time.perf_counter()
            with store.write() as uow:
                uow.executions.append_ledger(entry(run, writer, n))
            latencies.append((time.perf_counter() - start) * 1000)

    def background() -> None:
        assert during is not None
        while not stop.wait(0):
            during()

    side = threading.Thread(target=background) if during else None
    if side:
        side.start()
    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(write, range(WRITERS)))
    elapsed = time.perf_counter() - began
    stop.set()
    if side:
        side.join()
    return WRITERS * per_writer / elapsed, latencies


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
    parser.add_argument("--rate", type=float, default=0.0, help="appends a second in all (0: full speed)")
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

    # Paired rounds, the order alternating, so that a loaded machine's drift hits both alike.
    results: dict[str, list[float]] = {"appends alone": [], "appends + checkpoints": []}
    latencies: dict[str, list[float]] = {label: [] for label in results}
    stamp = int(time.time())
    for round_ in range(args.rounds):
        labels = list(results) if round_ % 2 == 0 else list(reversed(results))
        for label in labels:
            run = f"bench-{stamp}-{round_}-{len(label)}"
            during = None
            if label.endswith("checkpoints"):

                def during(run: str = run) -> None:
                    checkpoint_store(store, settings, run, now_epoch=time.time())
                    time.sleep(args.every)

            achieved, each = appends_per_second(store, run, args.per_writer, during, args.rate)
            results[label].append(achieved)
            latencies[label].extend(each)
    pace = f"at {args.rate:g}/s" if args.rate > 0 else "at full speed"
    for label, rates in results.items():
        each = latencies[label]
        print(
            f"{label} ({pace}): {statistics.median(rates):.0f} appends/s (median of {len(rates)}: "
            f"{[round(r) for r in rates]}); append p50 {_p(each, 0.5):.2f} ms, p95 {_p(each, 0.95):.2f} ms, "
            f"mean {statistics.fmean(each):.2f} ms"
        )
    ratios = [c / a for a, c in zip(results["appends alone"], results["appends + checkpoints"], strict=True)]
    alone, with_checkpoints = (statistics.fmean(latencies[label]) for label in results)
    print(
        f"with checkpoints every {args.every:g} s: {100 * (1 - statistics.median(ratios)):+.1f}% fewer appends/s, "
        f"mean append time {100 * (with_checkpoints / alone - 1):+.1f}%"
    )

    run = f"bench-{stamp}-checkpoint"
    appends_per_second(store, run, args.entries // WRITERS, None)
    # The checkpoint in its two parts: reading, hashing, building and signing (no write lock),
    # then the short write transaction (on SQLite the one writer: what appenders can wait for).
    began = time.perf_counter()
    with store.read() as uow:
        rows = uow.ledger.unchecked_entries(run, limit=args.entries)
    built = ledger_chain.build_checkpoint(
        tenant_id=run,
        previous=None,
        entries=[(row.entry.entry_id, ledger_chain.entry_hash(row.entry)) for row in rows],
        signed_at="2026-12-05T01:00:00.000Z",
        signing_key=key,
    )
    prepared = time.perf_counter()
    with store.write() as uow:
        uow.ledger.lock_checkpoints(run)
        uow.ledger.add_checkpoint(built)
    stored = time.perf_counter()
    print(
        f"one checkpoint of {built.size} entries: {(prepared - began) * 1000:.0f} ms to read, hash and sign, "
        f"{(stored - prepared) * 1000:.0f} ms in its write transaction"
    )
    began = time.perf_counter()
    from fulfill.usecases.ledger import verify_store

    result = verify_store(store, settings, run)
    print(
        f"verifying {result['entries']} entries: {(time.perf_counter() - began) * 1000:.0f} ms, intact={result['intact']}"
    )
    database.dispose()


if __name__ == "__main__":
    main()
