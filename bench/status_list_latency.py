"""Status and list endpoints with many stored executions, at a fixed offered load.

    python -m bench.status_list_latency --executions 100000 --rate 100 --seconds 30

Seeds a SQLite database with ``--executions`` executions of one tenant (most of them in one
account), starts ``fulfill serve`` in its own process, and offers ``--rate`` requests per second
(open loop: requests are sent on schedule whether or not earlier ones have finished; the first three seconds warm up and
are not recorded), half
``GET /executions/{id}/status`` for random executions and half ``GET /accounts/{id}/executions``
pages (first pages, and pages deep in the listing through a cursor). Latency is measured from the
scheduled send time, so a slow server cannot hide its queueing.

It also times single list calls on a small and on the large account, to show that a page costs
the same whatever the number of executions behind it (keyset pagination on an index).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import emit
from fulfill import __version__
from fulfill.client import default_limits
from fulfill.config import Settings
from fulfill.domain.time import iso_from_epoch
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.tables import action_intents, execution_attempts, execution_outcomes
from fulfill.tokens import mint_token

TENANT = "bench"
BIG_ACCOUNT = "acc-big"
SMALL_ACCOUNT = "acc-small"
SECRET = "bench-secret-" * 4


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 0.5), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "mean_ms": round(statistics.fmean(values), 2),
        "max_ms": round(max(values), 2),
    }


def seed(database_url: str, executions: int, small: int) -> list[str]:
    """Bulk-insert executions: 90% SUCCEEDED, 5% FAILED, 5% still PENDING."""
    db = Database(database_url)
    upgrade_to_head(db)
    base = time.time() - executions
    ids: list[str] = []
    intents_rows: list[dict[str, Any]] = []
    attempts_rows: list[dict[str, Any]] = []
    outcomes_rows: list[dict[str, Any]] = []
    for n in range(executions):
        intent_id = f"ai_bench_{n:07d}"
        ids.append(intent_id)
        account = SMALL_ACCOUNT if n < small else BIG_ACCOUNT
        created = iso_from_epoch(base + n)
        finished = iso_from_epoch(base + n + 0.2)
        kind = n % 20
        status = "PENDING" if kind == 0 else "FAILED" if kind == 1 else "SUCCEEDED"
        document = {
            "action_intent_id": intent_id,
            "action_type": "CREATE_INTERNAL_TASK",
            "target": None,
            "parameters": {"title": f"task {n}", "description": "seeded for the benchmark"},
            "parameters_schema_version": None,
            "approved_by": "bench",
            "approval_timestamp": created,
            "approval_status": "APPROVED",
            "execution_policy": {"retry_count": 3, "timeout_seconds": 300, "max_attempts": 1},
            "expires_at": iso_from_epoch(base + n + 30 * 86_400),
            "expires_at_epoch": int(base + n + 30 * 86_400),
            "original_decision_id": None,
            "original_proposal_id": None,
            "supersedes_action_intent_id": None,
            "edited_fields": [],
            "tenant_id": TENANT,
            "account_id": account,
            "trace_id": f"decision-{n}",
            "registry_version": 1,
            "created_at": created,
            "updated_at": created,
        }
        intents_rows.append(
            {
                "tenant_id": TENANT,
                "account_id": account,
                "action_intent_id": intent_id,
                "action_type": "CREATE_INTERNAL_TASK",
                "approval_status": "APPROVED",
                "registry_version": 1,
                "expires_at_epoch": document["expires_at_epoch"],
                "request_hash": "seeded",
                "document": document,
                "created_at": created,
                "updated_at": created,
                "execution_status": status,
                "last_update_at": created if status == "PENDING" else finished,
            }
        )
        if status == "PENDING":
            continue
        attempts_rows.append(
            {
                "tenant_id": TENANT,
                "account_id": account,
                "action_intent_id": intent_id,
                "attempt_count": 1,
                "attempt_id": f"attempt_{n}",
                "workflow_id": f"exec-{intent_id}",
                "status": status,
                "idempotency_key": f"{n:064x}",
                "trace_id": f"trace-{n}",
                "last_error_class": "DOWNSTREAM" if status == "FAILED" else None,
                "started_at": created,
                "updated_at": finished,
                "completed_at": finished,
                "deadline_epoch": base + n + 300,
            }
        )
        outcome = {
            "tenant_id": TENANT,
            "account_id": account,
            "action_intent_id": intent_id,
            "attempt_count": 1,
            "status": status,
            "external_object_refs": (
                [{"system": "INTERNAL", "object_type": "Task", "object_id": f"task_{n:024x}"}]
                if status == "SUCCEEDED"
                else []
            ),
            "error_code": "GATEWAY_HTTP_503" if status == "FAILED" else None,
            "error_class": "DOWNSTREAM" if status == "FAILED" else None,
            "error_message": "the gateway answered HTTP 503" if status == "FAILED" else None,
            "tool_name": "internal.create_task",
            "tool_schema_version": "v1.0",
            "registry_version": 1,
            "tool_run_ref": f"toolrun/trace-{n}/1/internal.create_task",
            "idempotency_key": f"{n:064x}",
            "started_at": created,
            "completed_at": finished,
            "compensation_status": "NONE",
            "compensation_error": None,
            "trace_id": f"trace-{n}",
            "approval_source": None,
            "auto_executed": None,
        }
        outcomes_rows.append(
            {
                "tenant_id": TENANT,
                "account_id": account,
                "action_intent_id": intent_id,
                "attempt_count": 1,
                "status": status,
                "completed_at": finished,
                "document": outcome,
            }
        )
    with db.write() as conn:
        for table, rows in ((action_intents, intents_rows), (execution_attempts, attempts_rows)):
            for start in range(0, len(rows), 5000):
                conn.execute(table.insert(), rows[start : start + 5000])
        for start in range(0, len(outcomes_rows), 5000):
            conn.execute(execution_outcomes.insert(), outcomes_rows[start : start + 5000])
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    db.dispose()
    return ids


def start_service(directory: str, database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": database_url,
        "FULFILL_PORT": str(port),
        "FULFILL_JWT_SECRET": SECRET,
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    log = Path(directory) / "service.log"
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fulfill", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def single_call_ms(client: httpx.Client, path: str, params: dict[str, Any], repeat: int = 200) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(path, params=params).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


def deep_cursors(client: httpx.Client, count: int) -> list[str]:
    """Cursors spread through the big account's listing (walked at the maximum page size)."""
    cursors: list[str] = []
    token: str | None = None
    pages = 0
    while len(cursors) < count:
        params: dict[str, Any] = {"limit": 100}
        if token:
            params["next_token"] = token
        body = client.get(f"/accounts/{BIG_ACCOUNT}/executions", params=params).json()
        token = body["next_token"]
        pages += 1
        if token is None:
            break
        if pages % 9 == 0:
            cursors.append(token)
    return cursors


def offered_load(
    url: str, token: str, ids: list[str], cursors: list[str], rate: float, seconds: float
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"status": [], "list": [], "list_deep": []}
    errors: list[str] = []
    lock = threading.Lock()
    rng = random.Random(7)
    # One client (thread-safe, pooled), created before the clock starts: building clients and
    # connections inside the measured window would measure the load generator, not the service.
    client = httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        limits=default_limits(max_connections=64, max_keepalive_connections=64),
    )
    warmup = int(rate * 3)  # three seconds at the offered rate, not recorded

    def fire(n: int, kind: str, path: str, params: dict[str, Any], scheduled: float) -> None:
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        response = client.get(path, params=params)
        elapsed = (time.perf_counter() - scheduled) * 1000
        with lock:
            if response.status_code != 200:
                errors.append(f"{kind} {response.status_code}")
            if n >= warmup:
                results[kind].append(elapsed)

    total = warmup + int(rate * seconds)
    start = time.perf_counter() + 0.5
    with ThreadPoolExecutor(max_workers=32) as pool:
        for n in range(total):
            scheduled = start + n / rate
            choice = rng.random()
            if choice < 0.5:
                pool.submit(fire, n, "status", f"/executions/{rng.choice(ids)}/status", {}, scheduled)
            elif choice < 0.75 or not cursors:
                pool.submit(fire, n, "list", f"/accounts/{BIG_ACCOUNT}/executions", {"limit": 50}, scheduled)
            else:
                params = {"limit": 50, "next_token": rng.choice(cursors)}
                pool.submit(fire, n, "list_deep", f"/accounts/{BIG_ACCOUNT}/executions", params, scheduled)
    client.close()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[:3]}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000, help="executions in the small account")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second offered")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=18181)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        database_url = f"sqlite:///{directory}/bench.db"
        seeded_at = time.perf_counter()
        ids = seed(database_url, args.executions, args.small)
        seed_seconds = time.perf_counter() - seeded_at
        service = start_service(directory, database_url, args.port)
        url = f"http://127.0.0.1:{args.port}"
        token = mint_token(Settings(jwt_secret=SECRET), tenant_id=TENANT, scopes=["executions:read"])
        try:
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the service did not become ready")
                    time.sleep(0.2)
                cursors = deep_cursors(client, 50)
                single = {
                    "list_small_account_first_page_ms": single_call_ms(
                        client, f"/accounts/{SMALL_ACCOUNT}/executions", {"limit": 50}
                    ),
                    "list_big_account_first_page_ms": single_call_ms(
                        client, f"/accounts/{BIG_ACCOUNT}/executions", {"limit": 50}
                    ),
                    "list_big_account_deep_page_ms": single_call_ms(
                        client,
                        f"/accounts/{BIG_ACCOUNT}/executions",
                        {"limit": 50, "next_token": cursors[-1]},
                    ),
                    "list_big_account_filtered_page_ms": single_call_ms(
                        client, f"/accounts/{BIG_ACCOUNT}/executions", {"limit": 50, "status": "FAILED"}
                    ),
                    "status_ms": single_call_ms(client, f"/executions/{ids[-1]}/status", {}),
                }
            loaded = offered_load(url, token, ids, cursors, args.rate, args.seconds)
        finally:
            service.terminate()
            service.wait(timeout=30)
    result = {
        "fulfill_version": __version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} CPUs",
        "executions": args.executions,
        "small_account_executions": args.small,
        "seed_seconds": round(seed_seconds, 1),
        "offered_rate_per_second": args.rate,
        "seconds": args.seconds,
        "single_call_median": single,
        "under_load": {kind: summary(values) for kind, values in loaded.items()},
        "under_load_all": summary([v for values in loaded.values() for v in values]),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
