"""CPU the API spends per request on the path a client takes: create an intent, approve it, read
its status.

    python -m bench.api_request_cost --requests 600 --rounds 3

Starts ``fulfill serve --role api`` on a temporary SQLite database (no engine in the process: an
approved intent waits in the queue, so the process's CPU is the API's alone) and sends, in rounds,
``--requests`` of each kind with ``--concurrency`` in flight. The figure is the api process's own
CPU time (user + system, from ``/proc``) per request, which, unlike a latency, does not move much
with what else the machine runs; its idle CPU over the same time is measured and subtracted.
Each round alternates the kinds; the table gives the median round. The load generator runs in this
process, apart from the one measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from fulfill.client import AsyncFulfillClient
from fulfill.config import Settings
from fulfill.domain.scopes import INTENT_CLIENT_SCOPES
from fulfill.tokens import mint_token
from fulfill_tools.launch import ServiceGroup, free_port, wait_ready
from fulfill_tools.loadtest import cpu_seconds


async def _run(
    url: str, tokens: tuple[str, str], requests: int, rounds: int, concurrency: int
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(120, connect=30, pool=120)
    proposer, approver = tokens
    results: dict[str, list[float]] = {"create": [], "approve": [], "status": [], "idle": []}
    wall: dict[str, list[float]] = {"create": [], "approve": [], "status": []}
    async with (
        AsyncFulfillClient(url, proposer, timeout=timeout, limits=limits) as client,
        AsyncFulfillClient(url, approver, timeout=timeout, limits=limits) as approving,
    ):
        return await _rounds(client, approving, requests, rounds, concurrency, results, wall)


async def _rounds(
    client: AsyncFulfillClient,
    approving: AsyncFulfillClient,
    requests: int,
    rounds: int,
    concurrency: int,
    results: dict[str, list[float]],
    wall: dict[str, list[float]],
) -> dict[str, Any]:
    pid = _PID[0]
    semaphore = asyncio.Semaphore(concurrency)

    async def bounded(call: Any) -> Any:
        async with semaphore:
            return await call

    # Warm-up: first requests build caches (routes, the token's verification, statements).
    warm = await asyncio.gather(
        *(
            bounded(
                client.create_intent(
                    {
                        "action_type": "CREATE_INTERNAL_TASK",
                        "account_id": "warm",
                        "parameters": {"title": "w"},
                    }
                )
            )
            for _ in range(20)
        )
    )
    await asyncio.gather(*(bounded(approving.approve(c.value.action_intent_id)) for c in warm))
    for round_index in range(rounds):
        account = f"cost-{round_index}"
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        created = await asyncio.gather(
            *(
                bounded(
                    client.create_intent(
                        {
                            "action_type": "CREATE_INTERNAL_TASK",
                            "account_id": account,
                            "parameters": {"title": f"cost {index}"},
                        }
                    )
                )
                for index in range(requests)
            )
        )
        ids = [c.value.action_intent_id for c in created]
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        await asyncio.gather(*(bounded(approving.approve(intent)) for intent in ids))
        cpu2, t2 = cpu_seconds(pid), time.monotonic()
        await asyncio.gather(*(bounded(client.execution_status(intent)) for intent in ids))
        cpu3, t3 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(2.0)
        cpu4, t4 = cpu_seconds(pid), time.monotonic()
        idle_per_s = (cpu4 - cpu3) / (t4 - t3)
        for name, (c0, c1, w0, w1) in {
            "create": (cpu0, cpu1, t0, t1),
            "approve": (cpu1, cpu2, t1, t2),
            "status": (cpu2, cpu3, t2, t3),
        }.items():
            results[name].append(max(0.0, (c1 - c0) - idle_per_s * (w1 - w0)) / requests * 1000)
            wall[name].append(requests / (w1 - w0))
        results["idle"].append(idle_per_s * 1000)
    return {
        "cpu_ms_per_request": {name: round(statistics.median(values), 2) for name, values in results.items()},
        "cpu_ms_per_request_rounds": {
            name: [round(v, 2) for v in values] for name, values in results.items()
        },
        "requests_per_s": {name: round(statistics.median(values), 1) for name, values in wall.items()},
    }


_PID: list[int] = [0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
    secret = secrets.token_urlsafe(48)
    workdir = Path(tempfile.mkdtemp(prefix="fulfill-api-cost-"))
    group = ServiceGroup(f"sqlite:///{workdir / 'fulfill.db'}", 0, secret, workdir)
    url = group._spawn("api", "api", free_port())
    try:
        wait_ready(url, group.processes)
        _PID[0] = group.pids()["api"]
        settings = Settings(jwt_secret=secret)
        tokens = (
            mint_token(settings, tenant_id="bench-cost", scopes=list(INTENT_CLIENT_SCOPES)),
            mint_token(
                settings, tenant_id="bench-cost", scopes=list(INTENT_CLIENT_SCOPES), subject="bench-approver"
            ),
        )
        result = asyncio.run(_run(url, tokens, args.requests, args.rounds, args.concurrency))
    finally:
        group.stop()
    result["command"] = f"python -m bench.api_request_cost --requests {args.requests} --rounds {args.rounds}"
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
