"""CPU of the engine's HTTP client to its gateway per request, with many requests in flight: the
gateway's connections in one pool against :class:`fulfill.gateway.client.ConnectionPools`.

    python -m bench.client_pools --concurrency 64 --hold 1.0 --seconds 8 --rounds 3
    python -m bench.client_pools --concurrency 64 --hold 0.02 --seconds 8 --rounds 3

A server in another process (uvicorn on 127.0.0.1) holds each request ``--hold`` seconds, then
answers a small JSON-RPC result. This process keeps ``--concurrency`` POSTs in flight for
``--seconds`` (after the same time to open every connection, not counted), first through one
``httpx2`` pool of ``--concurrency`` connections (what a worker used before), then through
``ConnectionPools(--concurrency)``, in turn for ``--rounds`` rounds. Reported: this process's CPU
per request (``time.process_time``; the server's is not counted) and the requests made, each way
and round, and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

from bench.common import emit
from fulfill.gateway.client import KEEPALIVE_EXPIRY_SECONDS, ConnectionPools
from fulfill_tools.launch import free_port

SERVER = r"""
import asyncio, sys, uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await asyncio.sleep(float(sys.argv[2]))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"jsonrpc":"2.0","id":1,"result":{}}'})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", loop="asyncio")
"""

Client = httpx2.AsyncClient | ConnectionPools


def one_pool(concurrency: int) -> httpx2.AsyncClient:
    """The engine's client before: one pool with a connection for each request in flight."""
    limits = httpx2.Limits(
        max_connections=concurrency,
        max_keepalive_connections=concurrency,
        keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
    )
    return httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(limits=limits))


async def _keep_busy(client: Client, url: str, concurrency: int, seconds: float) -> int:
    """``concurrency`` requests in flight until ``seconds`` pass; the number made."""
    made = 0
    stop = time.monotonic() + seconds

    async def one_after_another() -> None:
        nonlocal made
        while time.monotonic() < stop:
            response = await client.post(url, content=b"{}", headers={"Content-Type": "application/json"})
            if response.status_code != 200:
                raise RuntimeError(f"the server answered {response.status_code}")
            made += 1

    await asyncio.gather(*(one_after_another() for _ in range(concurrency)))
    return made


async def _measure(make: Callable[[], Client], url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    client = make()
    try:
        await _keep_busy(client, url, concurrency, seconds)  # every connection opened and warm
        began = time.process_time()
        made = await _keep_busy(client, url, concurrency, seconds)
        spent = time.process_time() - began
    finally:
        await client.aclose()
    return {"cpu_ms_per_request": round(spent * 1000 / made, 4), "requests": made}


def _wait_for_server(url: str, deadline: float) -> None:
    while True:
        try:
            httpx2.post(url, content=b"{}", timeout=5)
            return
        except httpx2.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run(concurrency: int, hold: float, seconds: float, rounds: int) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(hold)])
    url = f"http://127.0.0.1:{port}/mcp"
    ways: dict[str, Callable[[], Client]] = {
        "one_pool": lambda: one_pool(concurrency),
        "connection_pools": lambda: ConnectionPools(concurrency),
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in ways}
    try:
        _wait_for_server(url, time.monotonic() + 30)
        for _ in range(rounds):
            for name, make in ways.items():
                results[name].append(asyncio.run(_measure(make, url, concurrency, seconds)))
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {
        "concurrency": concurrency,
        "hold_s": hold,
        "seconds": seconds,
        "rounds": results,
        "median_cpu_ms_per_request": {
            name: statistics.median(r["cpu_ms_per_request"] for r in rows) for name, rows in results.items()
        },
        "pool_sizes": ConnectionPools(concurrency).sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--hold", type=float, default=1.0, help="seconds the server holds each request")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    emit(run(args.concurrency, args.hold, args.seconds, args.rounds), args.json)


if __name__ == "__main__":
    main()
