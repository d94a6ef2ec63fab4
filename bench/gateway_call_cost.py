"""What one tool call over HTTP (``FULFILL_GATEWAY_URL``) costs: HTTP requests, and CPU on both
sides of the hop.

    python -m bench.gateway_call_cost --calls 500 --rounds 3

Starts ``fulfill serve --role api`` on a temporary SQLite database (it serves the gateway at
``/mcp``; no engine runs in it) and makes, in rounds, ``--calls`` calls of the internal connector's
``internal.create_task`` with the engine's own MCP client (``McpToolGateway``, each call with its
own service token), ``--concurrency`` at a time from as many threads, as a worker does. Reported
per call, as the median round: the HTTP requests the client sent, its own CPU time (this process:
the client's event loop and the calling threads) and the api process's (``/proc``, its idle CPU
over the same time subtracted). CPU times, unlike latencies, move little with what else the
machine runs. A warm-up round (the tool list, connections, imports) is not counted.

    python -m bench.gateway_call_cost --calls 500 --rounds 3 --target

calls a remote target's tool instead: a stateless MCP target in this process
(``bench.target_call_cost.CountingTarget``, one tool ``echo(title)`` that answers at once) is
registered with the api as ``bench`` and every call is ``bench.echo``, so the gateway's figure
covers its guard (the arguments checked against the target's schema) and the forwarded call. The
client's figure then includes the target's CPU too (it runs in this process).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import emit, own_cpu_seconds
from bench.target_call_cost import CountingTarget
from fulfill.config import Settings
from fulfill.domain.scopes import USER_SCOPES
from fulfill.gateway.client import McpToolGateway
from fulfill.tokens import ServiceTokens, mint_token
from fulfill_tools.launch import ServiceGroup, free_port, wait_ready
from fulfill_tools.loadtest import cpu_seconds


class CountingGateway(McpToolGateway):
    """The engine's client, counting the HTTP requests it sends (on its pools' transports)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests = 0
        for client in self._http._clients:
            self._count_on(client._transport)

    def _count_on(self, transport: Any) -> None:
        send = transport.handle_async_request

        async def counted(request: Any) -> Any:
            self.requests += 1
            return await send(request)

        transport.handle_async_request = counted


def _arguments(index: int) -> dict[str, Any]:
    return {
        "title": f"gateway call cost {index}",
        "tenant_id": "bench-cost",
        "account_id": "acc-cost",
        "action_intent_id": f"ai_cost_{index}",
        "idempotency_key": secrets.token_hex(32),
    }


INTERNAL_TOOL = "internal.create_task"
TARGET_TOOL = "bench.echo"


def _calls(gateway: CountingGateway, first: int, count: int, concurrency: int, tool: str) -> None:
    def call(index: int) -> None:
        arguments = _arguments(index)
        outcome = gateway.call_tool(
            tenant_id="bench-cost", tool_name=tool, arguments=arguments, timeout_seconds=60
        )
        if not outcome.success:
            raise RuntimeError(f"the call failed: {outcome.error}")

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(call, range(first, first + count)))


def register_target(url: str, secret: str, target_url: str) -> None:
    """The target, registered as ``bench`` by an administrator of the benchmark's tenant."""
    token = mint_token(
        Settings(jwt_secret=secret), tenant_id="bench-cost", scopes=[str(s) for s in USER_SCOPES]
    )
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as admin:
        admin.post("/admin/gateway/targets", json={"name": "bench", "url": target_url}).raise_for_status()


def run(
    url: str, pid: int, secret: str, calls: int, rounds: int, concurrency: int, tool: str = INTERNAL_TOOL
) -> dict[str, Any]:
    gateway = CountingGateway(
        f"{url}/mcp", ServiceTokens(Settings(jwt_secret=secret)), max_connections=concurrency
    )
    results: dict[str, list[float]] = {"requests": [], "client": [], "gateway": [], "calls_per_s": []}
    try:
        _calls(gateway, 0, 50, concurrency, tool)
        for index in range(rounds):
            time.sleep(1.0)
            idle0, idle_t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(1.0)
            idle_per_s = (cpu_seconds(pid) - idle0) / (time.monotonic() - idle_t0)
            sent0, own0, api0, t0 = gateway.requests, own_cpu_seconds(), cpu_seconds(pid), time.monotonic()
            _calls(gateway, 1000 * (index + 1), calls, concurrency, tool)
            sent1, own1, api1, t1 = gateway.requests, own_cpu_seconds(), cpu_seconds(pid), time.monotonic()
            results["requests"].append((sent1 - sent0) / calls)
            results["client"].append((own1 - own0) / calls * 1000)
            results["gateway"].append(max(0.0, (api1 - api0) - idle_per_s * (t1 - t0)) / calls * 1000)
            results["calls_per_s"].append(calls / (t1 - t0))
    finally:
        gateway.close()
    return {
        "tool": tool,
        "http_requests_per_call": round(statistics.median(results["requests"]), 2),
        "client_cpu_ms_per_call": round(statistics.median(results["client"]), 2),
        "gateway_cpu_ms_per_call": round(statistics.median(results["gateway"]), 2),
        "calls_per_s": round(statistics.median(results["calls_per_s"]), 1),
        "rounds": {name: [round(v, 2) for v in values] for name, values in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=500, help="calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--target",
        action="store_true",
        help=f"call a remote target's tool ({TARGET_TOOL}), not {INTERNAL_TOOL}",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
    secret = secrets.token_urlsafe(48)
    workdir = Path(tempfile.mkdtemp(prefix="fulfill-gateway-cost-"))
    extra = {"FULFILL_GATEWAY_EGRESS_ALLOW": "127.0.0.1"} if args.target else {}
    group = ServiceGroup(f"sqlite:///{workdir / 'fulfill.db'}", 0, secret, workdir, extra_env=extra)
    url = group._spawn("api", "api", free_port())
    target = CountingTarget() if args.target else None
    try:
        wait_ready(url, group.processes)
        tool = INTERNAL_TOOL
        if target is not None:
            register_target(url, secret, target.url)
            tool = TARGET_TOOL
        result = run(url, group.pids()["api"], secret, args.calls, args.rounds, args.concurrency, tool)
    finally:
        group.stop()
        if target is not None:
            target.stop()
    result["command"] = (
        f"python -m bench.gateway_call_cost --calls {args.calls} --rounds {args.rounds} "
        f"--concurrency {args.concurrency}" + (" --target" if args.target else "")
    )
    emit(result, args.json)


if __name__ == "__main__":
    main()
