"""What one ``tools/call`` forwarded by the gateway to a remote MCP target costs the gateway.

    python -m bench.target_call_cost --calls 500 --concurrency 16 --rounds 3

A target (an ``MCPServer`` under uvicorn, stateless, JSON answers, one tool that answers at once,
or after ``--hold`` seconds) runs in this process on a thread of its own; the gateway's client for
targets (``gateway/remote.RemoteTargets``, as the gateway forwards every call of a target's tool)
calls it ``--calls`` times, ``--concurrency`` at a time, on one event loop, in rounds after a
warm-up round.
Reported per call, as the median round: the HTTP requests the target received (by method), the new
TCP connections it accepted, and CPU-milliseconds of the gateway's side (this process's CPU less
the target thread's, read from ``/proc/self/task``) and of the target's side.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from bench.common import emit, median_round, own_cpu_seconds, thread_cpu_seconds
from fulfill.domain.egress import EgressAllowList
from fulfill.domain.targets import TargetAuthView
from fulfill.gateway.remote import RemoteTargets, TargetEndpoint
from fulfill_tools.launch import free_port


class CountingTarget:
    """A stateless MCP target with one tool (``echo``), counting the HTTP requests and the
    connections it receives; it runs on one thread, whose CPU time is read apart."""

    def __init__(self, hold: float = 0.0) -> None:
        self.requests: Counter[str] = Counter()
        self.connections = 0
        self.thread_id: int | None = None
        server = MCPServer("counting-target", log_level="WARNING")

        @server.tool(name="echo", description="Answers with a reference to what it was given.")
        async def echo(title: str) -> dict[str, list[dict[str, str]]]:
            if hold > 0:
                await asyncio.sleep(hold)
            return {"external_object_refs": [{"object_type": "Echo", "object_id": title}]}

        app = server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        seen_clients: set[tuple[str, int]] = set()

        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.requests[scope["method"]] += 1
                client = scope.get("client")
                if client and tuple(client) not in seen_clients:
                    seen_clients.add(tuple(client))
                    self.connections += 1
            await app(scope, receive, send)

        self.port = free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(counted, host="127.0.0.1", port=self.port, log_level="warning", backlog=4096)
        )
        threading.Thread(target=self._run, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self) -> None:
        self.thread_id = threading.get_native_id()
        self._server.run()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def cpu_seconds(self) -> float:
        assert self.thread_id is not None
        return thread_cpu_seconds(self.thread_id)

    def stop(self) -> None:
        self._server.should_exit = True


async def _calls(remote: RemoteTargets, target: TargetEndpoint, calls: int, concurrency: int) -> int:
    limit = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(index: int) -> None:
        nonlocal failed
        async with limit:
            result = await remote.call(
                target, "echo", {"title": f"t{index}"}, idempotency_key=f"k{index}", timeout=30
            )
            failed += bool(result.is_error)

    await asyncio.gather(*(one(index) for index in range(calls)))
    return failed


def run(calls: int, concurrency: int, rounds: int, hold: float = 0.0) -> dict[str, Any]:
    target = CountingTarget(hold)
    remote = RemoteTargets(EgressAllowList.parse(["127.0.0.1"]))
    endpoint = TargetEndpoint(name="bench", url=target.url, auth=TargetAuthView())
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_calls(remote, endpoint, concurrency, concurrency))  # warm-up
        per_round: list[dict[str, Any]] = []
        for _ in range(rounds):
            requests_before = Counter(target.requests)
            connections_before = target.connections
            process_before, target_before = own_cpu_seconds(), target.cpu_seconds()
            began = time.perf_counter()
            failed = loop.run_until_complete(_calls(remote, endpoint, calls, concurrency))
            elapsed = time.perf_counter() - began
            process_used = own_cpu_seconds() - process_before
            target_used = target.cpu_seconds() - target_before
            per_round.append(
                {
                    "failed": failed,
                    "calls_per_s": round(calls / elapsed, 1),
                    "gateway_cpu_ms_per_call": round((process_used - target_used) * 1000 / calls, 3),
                    "target_cpu_ms_per_call": round(target_used * 1000 / calls, 3),
                    "requests_per_call": {
                        method: round((count - requests_before[method]) / calls, 2)
                        for method, count in sorted(target.requests.items())
                    },
                    "connections_per_call": round((target.connections - connections_before) / calls, 2),
                }
            )
    finally:
        loop.close()
        target.stop()
    median, spread = median_round(per_round, "gateway_cpu_ms_per_call")
    return {
        "calls": calls,
        "concurrency": concurrency,
        "hold_s": hold,
        "rounds": per_round,
        "median_round": median,
        "gateway_cpu_ms_per_call_spread": spread,
        "target_cpu_ms_per_call_median": statistics.median(r["target_cpu_ms_per_call"] for r in per_round),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds the target holds each call")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    emit(run(args.calls, args.concurrency, args.rounds, args.hold), args.json)


if __name__ == "__main__":
    main()
