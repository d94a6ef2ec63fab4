"""Slow tools: N intents whose remote tool takes L seconds, approved at once; the calls in flight.

A remote MCP target (an ``MCPServer`` under uvicorn on 127.0.0.1, in this process) serves one tool,
``slow.wait``, which sleeps L seconds and counts how many calls it holds at once. It is registered
as a gateway target and an action type is mapped to it, so every execution's call goes
engine → gateway → target:

* ``--gateway memory``: one ``fulfill serve`` (every role) whose engine calls its own gateway in
  memory (the default deployment);
* ``--gateway http``: an ``api`` process serving the gateway at ``/mcp`` and one ``worker``
  process that reaches it over HTTP (``FULFILL_GATEWAY_URL``), on one SQLite database.

Two phases in the same run on the same service: first N intents with the tool answering at once
(the burst rate: intents per second from the first approval to the last outcome, the service's
own timestamps; ``--burst-rate`` skips it), then N intents with the tool taking L seconds. The aim:
the slow phase ends within ``N / burst rate + 2 s`` (the calls in flight are never the bound),
with the service's peak resident memory ≤ 400 MB. Reported: both phases' times, the bound, the
most calls in flight at once (seen by the target), and each process's resident memory idle and at
its peak (``VmHWM``), and each phase's CPU per intent in the service's processes (from the
approvals to the last outcome, and the system time within it), so that what a call held 1 s adds
to an execution shows. The benchmark waits for the outcomes as the load benchmark does: every
0.5 s it reads the account's changes since a moment (every tenth poll back to the approvals, the
others only the newest changes), and reports its polls and the pages they read.

    python -m bench.slow_tools --intents 1000 --latency 1.0 --gateway memory
    python -m bench.slow_tools --intents 1000 --latency 1.0 --gateway http
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from bench.common import emit
from bench.pg_cpu import process_cpu_split
from fulfill.client import AsyncFulfillClient, FulfillClient, default_limits
from fulfill.config import Settings
from fulfill.domain.scopes import USER_SCOPES
from fulfill.domain.time import epoch_from_iso
from fulfill.tokens import mint_token
from fulfill_tools.launch import ServiceGroup, free_port
from fulfill_tools.loadtest import changes_since, poll_since

SECRET = "bench-secret-0123456789abcdef0123456789"
SECRETS_KEY = "YmVuY2gtc2VjcmV0cy1rZXktMDEyMzQ1Njc4OWFiY2Q="
SCOPES = [str(scope) for scope in USER_SCOPES]
ACTION_TYPE = "SLOW_CALL"
MEMORY_AIM_MB = 400.0


class SlowTarget:
    """A remote MCP server whose one tool, ``wait``, sleeps ``latency`` seconds; counts the calls
    it holds at once."""

    def __init__(self) -> None:
        self.latency = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        server = MCPServer("slow-target", log_level="WARNING")

        @server.tool(name="wait", description="Waits, as a slow external system does, then answers.")
        async def wait(title: str) -> dict[str, list[dict[str, str]]]:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.latency)
            finally:
                self.in_flight -= 1
            return {"external_object_refs": [{"object_type": "Wait", "object_id": title}]}

        app = server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.port = free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", backlog=4096)
        )
        threading.Thread(target=self._server.run, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def reset(self, latency: float) -> None:
        self.latency = latency
        self.max_in_flight = self.in_flight

    def stop(self) -> None:
        self._server.should_exit = True


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
                    limits = default_limits(max_connections=4096, max_keepalive_connections=4096)
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


def register_target(client: httpx.Client, url: str) -> None:
    """The target, and an action type mapped to its tool (platform administration)."""
    added = client.post("/admin/gateway/targets", json={"name": "slow", "url": url})
    added.raise_for_status()
    mapped = client.post(
        "/admin/registry",
        json={
            "action_type": ACTION_TYPE,
            "tool_name": "slow.wait",
            "parameter_mapping": {"title": {"toolParam": "title", "required": True}},
        },
    )
    mapped.raise_for_status()


def create_and_approve_at_once(
    client: FulfillClient,
    count: int,
    *,
    account: str,
    approver_token: str,
    action_type: str = "CREATE_INTERNAL_TASK",
    before_approvals: Callable[[], None] | None = None,
) -> list[str]:
    """Create ``count`` intents one by one, then approve them all at once as the holder of
    ``approver_token`` (nobody approves their own proposal; approving is idempotent: a reset
    connection is retried); ``before_approvals`` is called between the two. Returns their ids."""
    ids = []
    for index in range(count):
        created = client.create_intent(
            {"action_type": action_type, "account_id": account, "parameters": {"title": f"{account} {index}"}}
        )
        ids.append(created.value.action_intent_id)
    if before_approvals is not None:
        before_approvals()

    async def approve_all() -> None:
        limits = default_limits(max_connections=64, max_keepalive_connections=None)
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


def _phase(
    client: FulfillClient,
    approver: str,
    intents: int,
    account: str,
    peaks: dict[str, float],
    pids: dict[str, int],
    timeout: float,
) -> dict[str, Any]:
    """N intents approved at once; seconds from the first approval to the last outcome, and the
    CPU the service's processes spent per intent from the approvals to the last outcome (the
    creations left out; the benchmark's reads of the outcomes, every 0.5 s, counted in)."""
    cpu_before: dict[str, tuple[float, float]] = {}
    approvals_from: list[float] = []

    def read_cpu() -> None:
        cpu_before.update({name: process_cpu_split(pid) for name, pid in pids.items()})
        approvals_from.append(time.time())

    ids = create_and_approve_at_once(
        client,
        intents,
        account=account,
        approver_token=approver,
        action_type=ACTION_TYPE,
        before_approvals=read_cpu,
    )
    done: dict[str, float] = {}
    ended: set[str] = set()
    wanted = set(ids)
    # Each poll reads the account's changes since a moment, as the load benchmark's do
    # (``poll_since``): every tenth back to the approvals, the others only the newest changes, so
    # the benchmark's own reads do not grow with the phase (a sweep of every execution every
    # 0.5 s was 20 pages a second of 1,000 intents, in the service's CPU figures).
    newest: float | None = None
    polls = pages = 0
    deadline = time.monotonic() + timeout
    while len(done) + len(ended) < intents and time.monotonic() < deadline:
        for name, pid in pids.items():
            peaks[name] = max(peaks.get(name, 0.0), _rss_mb(pid))
        since = poll_since(approvals_from[0], newest, polls)
        seen, read = changes_since(client, account, since, wanted, done, ended)
        polls, pages = polls + 1, pages + read
        newest = seen if newest is None or seen is None else max(newest, seen)
        if len(done) + len(ended) < intents:
            time.sleep(0.5)
    cpu_after = {name: process_cpu_split(pid) for name, pid in pids.items()}
    system_ms = {name: round((cpu_after[name][1] - cpu_before[name][1]) * 1000 / intents, 2) for name in pids}
    cpu_ms = {
        name: round((sum(cpu_after[name]) - sum(cpu_before[name])) * 1000 / intents, 2) for name in pids
    }
    first = first_approval_epoch(client, ids[:50])
    elapsed = (max(done.values()) - first) if done else float("nan")
    return {
        "succeeded": len(done),
        "failed": len(ended),
        "outcome_polls": polls,
        "outcome_pages_read": pages,
        "first_approval_to_last_outcome_s": round(elapsed, 2),
        "per_second": round(len(done) / elapsed, 1) if done and elapsed > 0 else 0.0,
        "service_cpu_ms_per_intent": {**cpu_ms, "total": round(sum(cpu_ms.values()), 2)},
        "service_system_cpu_ms_per_intent": system_ms,
    }


def run(
    intents: int,
    latency: float,
    *,
    gateway: str = "memory",
    concurrency: int | None = None,
    burst_rate: float | None = None,
) -> dict[str, Any]:
    target = SlowTarget()
    extra = {
        "FULFILL_GATEWAY_EGRESS_ALLOW": "127.0.0.1",
        "FULFILL_SECRETS_KEY": SECRETS_KEY,
        "FULFILL_GATEWAY_CALL_TIMEOUT_SECONDS": str(max(30.0, latency * 10)),
    }
    if concurrency is not None:
        extra["FULFILL_WORKER_CONCURRENCY"] = str(concurrency)
    work = Path(tempfile.mkdtemp(prefix="fulfill-slow-tools-"))
    group = ServiceGroup(
        database_url=f"sqlite:///{work / 'fulfill.db'}",
        workers=1 if gateway == "http" else 0,
        secret=SECRET,
        directory=work,
        extra_env=extra,
        workers_call_api_gateway=gateway == "http",
    ).start()
    pids = group.pids()
    settings = Settings(jwt_secret=SECRET)
    token = mint_token(settings, tenant_id="bench", scopes=SCOPES)
    approver = mint_token(settings, tenant_id="bench", scopes=SCOPES, subject="bench-approver")
    client = FulfillClient(group.api_url, token, timeout=60)
    try:
        with httpx.Client(base_url=group.api_url, headers={"Authorization": f"Bearer {token}"}) as admin:
            register_target(admin, target.url)
        time.sleep(2)
        idle = {name: round(_rss_mb(pid), 1) for name, pid in pids.items()}
        peaks: dict[str, float] = {}
        timeout = max(180.0, intents * max(latency, 0.1))
        burst: dict[str, Any] | None = None
        if burst_rate is None:
            target.reset(0.0)
            burst = _phase(client, approver, intents, "acc-burst", peaks, pids, timeout)
            burst_rate = float(burst["per_second"])
        target.reset(latency)
        slow = _phase(client, approver, intents, "acc-slow", peaks, pids, timeout)
        slow["max_tool_calls_in_flight"] = target.max_in_flight
        peak_mb = {
            name: round(max(peaks.get(name, 0.0), _rss_mb(pid, "VmHWM")), 1) for name, pid in pids.items()
        }
        bound = intents / burst_rate + 2.0 if burst_rate else float("nan")
        return {
            "intents": intents,
            "tool_latency_s": latency,
            "gateway": gateway,
            "worker_concurrency": concurrency or "default",
            "burst": burst if burst is not None else {"per_second": burst_rate, "given": True},
            "slow": slow,
            "aim_bound_s": round(bound, 2),
            "aim_met": slow["succeeded"] == intents
            and slow["first_approval_to_last_outcome_s"] <= bound
            and max(peak_mb.values()) <= MEMORY_AIM_MB,
            "rss_idle_mb": idle,
            "rss_peak_mb": peak_mb,
        }
    finally:
        client.close()
        group.stop()
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intents", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds every tools/call is held")
    parser.add_argument(
        "--gateway", choices=("memory", "http"), default="memory", help="how the engine reaches its gateway"
    )
    parser.add_argument("--concurrency", type=int, default=None, help="FULFILL_WORKER_CONCURRENCY")
    parser.add_argument(
        "--burst-rate", type=float, default=None, help="intents/s to bound by (default: measured first)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(
        args.intents,
        args.latency,
        gateway=args.gateway,
        concurrency=args.concurrency,
        burst_rate=args.burst_rate,
    )
    emit(result, args.json)


if __name__ == "__main__":
    main()
