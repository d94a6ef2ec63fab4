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

    python -m bench.api_request_cost --requests 300 --rounds 6 --against ../before/src

compares two versions of the code on the same machine at the same time: a second api process (its
own database) imports ``fulfill`` from the given ``src`` directory (another checkout, e.g. a
``git worktree`` of the commit before a change), and each kind of request goes to one process and
then to the other, the order swapped every round. ``against.ratio`` is the median over rounds of
its CPU per request over this checkout's (below 1: the other code costs less); a load that comes
and goes on the machine then moves both figures of a round alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import emit
from fulfill.client import AsyncFulfillClient, default_limits
from fulfill.config import Settings
from fulfill.domain.scopes import INTENT_CLIENT_SCOPES
from fulfill.tokens import mint_token
from fulfill_tools.launch import ServiceGroup, free_port, wait_ready
from fulfill_tools.loadtest import cpu_seconds

KINDS = ("create", "approve", "status")


class _Target:
    """One api process under measurement, and the clients that speak to it."""

    def __init__(self, name: str, url: str, pid: int, tokens: tuple[str, str], concurrency: int) -> None:
        limits = default_limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        timeout = httpx.Timeout(120, connect=30, pool=120)
        self.name, self.pid = name, pid
        self.client = AsyncFulfillClient(url, tokens[0], timeout=timeout, limits=limits)
        self.approving = AsyncFulfillClient(url, tokens[1], timeout=timeout, limits=limits)
        self.ids: list[str] = []
        self.cpu: dict[str, list[float]] = {name: [] for name in (*KINDS, "idle")}
        self.wall: dict[str, list[float]] = {name: [] for name in KINDS}

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.approving.aclose()


def _intent(account: str, index: int) -> dict[str, Any]:
    return {
        "action_type": "CREATE_INTERNAL_TASK",
        "account_id": account,
        "parameters": {"title": f"cost {index}"},
    }


async def _run(
    processes: list[tuple[str, str, int]],
    tokens: tuple[str, str],
    requests: int,
    rounds: int,
    concurrency: int,
) -> dict[str, Any]:
    targets = [_Target(name, url, pid, tokens, concurrency) for name, url, pid in processes]
    try:
        await _rounds(targets, requests, rounds, concurrency)
    finally:
        for target in targets:
            await target.aclose()
    result = _figures(targets[0])
    if len(targets) > 1:
        this, other = targets
        result["against"] = _figures(other)
        # Per round and kind, the other process's CPU per request over this one's (same round,
        # same machine): below 1, the other code costs less.
        result["against"]["ratio_rounds"] = {
            kind: [
                round(b / a, 3) if a else None for a, b in zip(this.cpu[kind], other.cpu[kind], strict=True)
            ]
            for kind in KINDS
        }
        result["against"]["ratio"] = {
            kind: round(statistics.median(r for r in ratios if r is not None), 3)
            for kind, ratios in result["against"]["ratio_rounds"].items()
            if any(r is not None for r in ratios)
        }
    return result


def _figures(target: _Target) -> dict[str, Any]:
    return {
        "cpu_ms_per_request": {
            name: round(statistics.median(values), 2) for name, values in target.cpu.items()
        },
        "cpu_ms_per_request_rounds": {
            name: [round(v, 2) for v in values] for name, values in target.cpu.items()
        },
        "requests_per_s": {name: round(statistics.median(values), 1) for name, values in target.wall.items()},
    }


async def _rounds(targets: list[_Target], requests: int, rounds: int, concurrency: int) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def bounded(call: Any) -> Any:
        async with semaphore:
            return await call

    async def send(target: _Target, kind: str, account: str) -> None:
        if kind == "create":
            created = await asyncio.gather(
                *(bounded(target.client.create_intent(_intent(account, index))) for index in range(requests))
            )
            target.ids = [c.value.action_intent_id for c in created]
        elif kind == "approve":
            await asyncio.gather(*(bounded(target.approving.approve(intent)) for intent in target.ids))
        else:
            await asyncio.gather(*(bounded(target.client.execution_status(intent)) for intent in target.ids))

    # Warm-up: first requests build caches (routes, the token's verification, statements).
    for target in targets:
        warm = await asyncio.gather(
            *(bounded(target.client.create_intent(_intent("warm", i))) for i in range(20))
        )
        await asyncio.gather(*(bounded(target.approving.approve(c.value.action_intent_id)) for c in warm))
    for round_index in range(rounds):
        # With two processes, each kind goes to one then the other, first one first, then the other.
        order = targets if round_index % 2 == 0 else targets[::-1]
        spans: dict[tuple[str, str], tuple[float, float, float, float]] = {}
        for kind in KINDS:
            for target in order:
                cpu0, t0 = cpu_seconds(target.pid), time.monotonic()
                await send(target, kind, f"cost-{round_index}")
                spans[target.name, kind] = (cpu0, cpu_seconds(target.pid), t0, time.monotonic())
        idle: dict[str, tuple[float, float]] = {
            t.name: (cpu_seconds(t.pid), time.monotonic()) for t in targets
        }
        await asyncio.sleep(2.0)
        for target in targets:
            cpu3, t3 = idle[target.name]
            idle_per_s = (cpu_seconds(target.pid) - cpu3) / (time.monotonic() - t3)
            for kind in KINDS:
                c0, c1, w0, w1 = spans[target.name, kind]
                target.cpu[kind].append(max(0.0, (c1 - c0) - idle_per_s * (w1 - w0)) / requests * 1000)
                target.wall[kind].append(requests / (w1 - w0))
            target.cpu["idle"].append(idle_per_s * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        metavar="SRC",
        help="also measure an api process running the fulfill package in SRC (another checkout's "
        "src directory), in the same rounds, and give its CPU per request over this one's",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.against is not None and not (args.against / "fulfill" / "__init__.py").is_file():
        parser.error(f"--against: {args.against} holds no fulfill package (give a checkout's src directory)")
    os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
    secret = secrets.token_urlsafe(48)
    groups: list[ServiceGroup] = []
    try:
        processes: list[tuple[str, str, int]] = []
        for name, source in (("this", None), ("against", args.against)):
            if name == "against" and source is None:
                continue
            workdir = Path(tempfile.mkdtemp(prefix="fulfill-api-cost-"))
            group = ServiceGroup(f"sqlite:///{workdir / 'fulfill.db'}", 0, secret, workdir)
            if source is not None:
                path = os.pathsep.join(p for p in (str(source.resolve()), os.environ.get("PYTHONPATH")) if p)
                group.extra_env["PYTHONPATH"] = path
            groups.append(group)
            url = group._spawn("api", "api", free_port())
            wait_ready(url, group.processes)
            processes.append((name, url, group.pids()["api"]))
        settings = Settings(jwt_secret=secret)
        tokens = (
            mint_token(settings, tenant_id="bench-cost", scopes=list(INTENT_CLIENT_SCOPES)),
            mint_token(
                settings, tenant_id="bench-cost", scopes=list(INTENT_CLIENT_SCOPES), subject="bench-approver"
            ),
        )
        result = asyncio.run(_run(processes, tokens, args.requests, args.rounds, args.concurrency))
    finally:
        for group in groups:
            group.stop()
    against = f" --against {args.against}" if args.against is not None else ""
    result["command"] = (
        f"python -m bench.api_request_cost --requests {args.requests} --rounds {args.rounds}{against}"
    )
    emit(result, args.json)


if __name__ == "__main__":
    main()
