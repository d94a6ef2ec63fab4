"""Slow tools: N intents whose tool call takes L seconds, approved at once.

A latency-injecting proxy (an ASGI app on 127.0.0.1) sits in front of the gateway
(``FULFILL_GATEWAY_URL``) and holds every ``tools/call`` for L seconds before forwarding it, as a
slow external system would. ``fulfill serve`` runs in its own process on a temporary SQLite
database. The benchmark creates N intents, approves them all at once, and reports the time from
the first approval to the last recorded outcome (the service's own timestamps), the most tool
calls in flight at once (seen by the proxy), and the service's resident memory idle and at peak.

    python -m bench.slow_tools --intents 1000 --latency 1.0 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from fulfill.client import AsyncFulfillClient, FulfillClient
from fulfill.config import Settings
from fulfill.domain.scopes import INTENT_CLIENT_SCOPES
from fulfill.domain.time import epoch_from_iso
from fulfill.tokens import mint_token
from fulfill_tools.launch import ServiceGroup, free_port

SECRET = "bench-secret-0123456789abcdef0123456789"
SCOPES = list(INTENT_CLIENT_SCOPES)


class DelayingProxy:
    """Holds every ``tools/call`` for ``latency`` seconds, then forwards it; counts calls in flight."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.upstream = ""
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[float] = []  # when each tools/call arrived (time.time())
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
                    self._client = httpx.AsyncClient(timeout=120, limits=limits)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        is_call = b'"tools/call"' in body
        if is_call:
            self.arrivals.append(time.time())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            await asyncio.sleep(self.latency)
        try:
            headers = {
                k.decode(): v.decode()
                for k, v in scope["headers"]
                if k.decode().lower() not in ("host", "content-length")
            }
            assert self._client is not None
            answer = await self._client.request(scope["method"], self.upstream, content=body, headers=headers)
        finally:
            if is_call:
                self.in_flight -= 1
        out_headers = [
            (k.encode(), v.encode())
            for k, v in answer.headers.items()
            if k.lower() in ("content-type", "mcp-session-id")
        ]
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out_headers})
        await send({"type": "http.response.body", "body": answer.content})


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def create_and_approve_at_once(
    client: FulfillClient, count: int, *, account: str, approver_token: str
) -> list[str]:
    """Create ``count`` internal-task intents one by one, then approve them all at once as the
    holder of ``approver_token`` (nobody approves their own proposal; approving is idempotent: a
    reset connection is retried). Returns their ids."""
    ids = []
    for index in range(count):
        created = client.create_intent(
            {
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": account,
                "parameters": {"title": f"{account} {index}"},
            }
        )
        ids.append(created.value.action_intent_id)

    async def approve_all() -> None:
        limits = httpx.Limits(max_connections=64)
        async with AsyncFulfillClient(client.base_url, approver_token, timeout=60, limits=limits) as aclient:

            async def approve(intent_id: str) -> None:
                for _ in range(5):
                    try:
                        await aclient.approve(intent_id)
                        return
                    except httpx.TransportError:
                        await asyncio.sleep(0.5)
                raise RuntimeError(f"could not approve {intent_id}")

            await asyncio.gather(*(approve(i) for i in ids))

    asyncio.run(approve_all())
    return ids


def first_approval_epoch(client: FulfillClient, ids: list[str]) -> float:
    """When the first of these intents was approved, by the service's clock."""
    return min(epoch_from_iso(client.get_intent(i).approval_timestamp or "") for i in ids)


def run(intents: int, latency: float, concurrency: int | None) -> dict[str, Any]:
    proxy = DelayingProxy(latency)
    proxy_port = free_port()
    server = uvicorn.Server(uvicorn.Config(proxy, host="127.0.0.1", port=proxy_port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    extra = {
        "FULFILL_GATEWAY_URL": f"http://127.0.0.1:{proxy_port}/mcp",
        "FULFILL_GATEWAY_CALL_TIMEOUT_SECONDS": str(max(30.0, latency * 10)),
    }
    if concurrency is not None:
        extra["FULFILL_WORKER_CONCURRENCY"] = str(concurrency)
    work = Path(tempfile.mkdtemp(prefix="fulfill-slow-tools-"))
    group = ServiceGroup(
        database_url=f"sqlite:///{work / 'fulfill.db'}",
        workers=0,
        secret=SECRET,
        directory=work,
        extra_env=extra,
    ).start()
    proxy.upstream = f"{group.api_url}/mcp"
    pid = group.pids()["all"]
    base = group.api_url
    token = mint_token(Settings(jwt_secret=SECRET), tenant_id="bench", scopes=SCOPES)
    client = FulfillClient(base, token, timeout=60)
    try:
        time.sleep(2)
        idle_mb = _rss_mb(pid)
        approver = mint_token(
            Settings(jwt_secret=SECRET), tenant_id="bench", scopes=SCOPES, subject="bench-approver"
        )
        ids = create_and_approve_at_once(client, intents, account="acc-slow", approver_token=approver)
        peak_mb = idle_mb
        done: dict[str, float] = {}
        deadline = time.monotonic() + max(120.0, intents * latency / 4)
        while len(done) < intents and time.monotonic() < deadline:
            peak_mb = max(peak_mb, _rss_mb(pid))
            token_next: str | None = None
            while True:
                page = client.list_executions(
                    "acc-slow", limit=100, status="SUCCEEDED", next_token=token_next
                )
                for item in page.executions:
                    assert item.completed_at is not None  # a SUCCEEDED execution has completed
                    done[item.action_intent_id] = epoch_from_iso(item.completed_at)
                token_next = page.next_token
                if not token_next:
                    break
            time.sleep(0.5)
        first_approval = first_approval_epoch(client, ids[:50])
        peak_mb = max(peak_mb, _rss_mb(pid, "VmHWM"))
        elapsed = (max(done.values()) - first_approval) if done else float("nan")
        return {
            "intents": intents,
            "tool_latency_s": latency,
            "worker_concurrency": concurrency or "default",
            "succeeded": len(done),
            "first_approval_to_last_outcome_s": round(elapsed, 2),
            "max_tool_calls_in_flight": proxy.max_in_flight,
            "service_rss_idle_mb": round(idle_mb, 1),
            "service_rss_peak_mb": round(peak_mb, 1),
        }
    finally:
        client.close()
        group.stop()
        server.should_exit = True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intents", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds every tools/call is held")
    parser.add_argument("--concurrency", type=int, default=None, help="FULFILL_WORKER_CONCURRENCY")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.intents, args.latency, args.concurrency)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
