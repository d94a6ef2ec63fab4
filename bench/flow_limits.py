"""Flow control under load: N executions against a slow target with a rate limit.

A latency-injecting proxy (``bench.slow_tools.DelayingProxy``) sits in front of the gateway and
holds every ``tools/call`` for L seconds, as a slow external system would, and records when each
call arrived. The target is the internal connector behind that proxy (the connector's name is
``internal``). ``fulfill serve`` runs in its own process(es); the benchmark sets the connector's
limit (``PUT /admin/connectors/internal/limits``), creates N intents, approves them all at once,
and reports:

* the most calls the target saw in any one-second window (``[t, t + 1 s)``, every t), and the
  most the gate recorded as sent in any window of one second plus its margin;
* the total time: first call to last call at the target, and first approval to last outcome;
* duplicates: tool calls the target saw beyond one per intent, and intents that wrote more than
  one task (or none).

    python -m bench.flow_limits --intents 1000 --latency 0.3 --rate 10
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import create_engine, func, select

from bench.common import emit
from bench.slow_tools import DelayingProxy, create_and_approve_at_once, first_approval_epoch
from fulfill.client import FulfillClient
from fulfill.config import Settings
from fulfill.domain.scopes import INTENT_CLIENT_SCOPES, Scope
from fulfill.domain.time import epoch_from_iso
from fulfill.store.tables import connector_calls, execution_attempts, internal_tasks
from fulfill.tokens import mint_token
from fulfill_tools.launch import ServiceGroup, free_port

SECRET = "bench-secret-0123456789abcdef0123456789"
SCOPES = [*INTENT_CLIENT_SCOPES, Scope.PLATFORM_ADMIN]


def most_in_any_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    best = end = 0
    for start, first in enumerate(ordered):
        while end < len(ordered) and ordered[end] < first + window:
            end += 1
        best = max(best, end - start)
    return best


def run(
    intents: int,
    latency: float,
    rate: float,
    concurrency: int | None,
    database_url: str | None,
    workers: int,
    margin: float | None,
) -> dict[str, Any]:
    proxy = DelayingProxy(latency)
    proxy_port = free_port()
    server = uvicorn.Server(uvicorn.Config(proxy, host="127.0.0.1", port=proxy_port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    extra = {
        "FULFILL_GATEWAY_URL": f"http://127.0.0.1:{proxy_port}/mcp",
        "FULFILL_GATEWAY_CALL_TIMEOUT_SECONDS": str(max(30.0, latency * 10)),
    }
    if margin is not None:
        extra["FULFILL_CONNECTOR_RATE_MARGIN_SECONDS"] = str(margin)
    work = Path(tempfile.mkdtemp(prefix="fulfill-flow-limits-"))
    url = database_url or f"sqlite:///{work / 'fulfill.db'}"
    group = ServiceGroup(
        database_url=url, workers=workers, secret=SECRET, directory=work, extra_env=extra
    ).start()
    proxy.upstream = f"{group.api_url}/mcp"
    base = group.api_url
    token = mint_token(Settings(jwt_secret=SECRET), tenant_id="bench", scopes=SCOPES)
    client = FulfillClient(base, token, timeout=60)
    try:
        limits = {"rate_per_second": rate, "concurrency": concurrency}
        client.put_connector_limits("internal", limits)
        approver = mint_token(
            Settings(jwt_secret=SECRET), tenant_id="bench", scopes=SCOPES, subject="bench-approver"
        )
        ids = create_and_approve_at_once(client, intents, account="acc-flow", approver_token=approver)
        engine = create_engine(url)
        deadline = time.monotonic() + intents / rate * 2 + 120
        finished = 0
        while time.monotonic() < deadline:
            group.check_alive()
            with engine.connect() as conn:
                finished = conn.execute(
                    select(func.count())
                    .select_from(execution_attempts)
                    .where(execution_attempts.c.status.notin_(["QUEUED", "RUNNING"]))
                ).scalar_one()
            if finished >= intents:
                break
            time.sleep(1)
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    select(execution_attempts.c.status, func.count()).group_by(execution_attempts.c.status)
                ).all()
            )
            writes = dict(
                conn.execute(
                    select(internal_tasks.c.action_intent_id, func.count()).group_by(
                        internal_tasks.c.action_intent_id
                    )
                ).all()
            )
            sends = [
                float(value)
                for value in conn.execute(
                    select(connector_calls.c.dispatched_epoch).where(
                        connector_calls.c.name == "internal", connector_calls.c.dispatched_epoch.is_not(None)
                    )
                ).scalars()
            ]
            completed = [
                epoch_from_iso(value)
                for value in conn.execute(
                    select(execution_attempts.c.completed_at).where(
                        execution_attempts.c.completed_at.is_not(None)
                    )
                ).scalars()
            ]
        engine.dispose()
        first_approval = first_approval_epoch(client, ids[:50])
        arrivals = list(proxy.arrivals)
        margin_used = margin if margin is not None else Settings().connector_rate_margin_seconds
        span = (max(arrivals) - min(arrivals)) if arrivals else float("nan")
        ideal = (intents - 1) / rate
        return {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {_cpus()} CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}",
            "database": "postgresql" if url.startswith("postgresql") else "sqlite",
            "processes": "all" if workers <= 0 else f"api + {workers} workers",
            "intents": intents,
            "tool_latency_s": latency,
            "rate_per_second": rate,
            "concurrency": concurrency,
            "rate_margin_s": margin_used,
            "statuses": statuses,
            "max_calls_in_any_1s_window_at_target": most_in_any_window(arrivals, 1.0),
            "max_sends_in_any_window_of_1s_plus_margin_at_gate": most_in_any_window(sends, 1.0 + margin_used),
            "tool_calls_seen": len(arrivals),
            "max_tool_calls_in_flight": proxy.max_in_flight,
            "first_to_last_call_s": round(span, 2),
            "ideal_first_to_last_call_s": round(ideal, 2),
            "over_ideal_pct": round((span / ideal - 1) * 100, 1) if arrivals else None,
            "first_approval_to_last_outcome_s": round(max(completed) - first_approval, 2)
            if completed
            else None,
            "duplicate_tool_calls": max(0, len(arrivals) - intents),
            "intents_with_more_than_one_write": sum(1 for count in writes.values() if count > 1),
            "intents_without_a_write": intents - len(writes),
        }
    finally:
        client.close()
        group.stop()
        server.should_exit = True


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intents", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds every tools/call is held")
    parser.add_argument("--rate", type=float, default=10.0, help="the connector's rate_per_second")
    parser.add_argument("--concurrency", type=int, default=None, help="the connector's concurrency")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite database")
    parser.add_argument("--workers", type=int, default=0, help="0: one 'all' process; N: api + N workers")
    parser.add_argument("--margin", type=float, default=None, help="FULFILL_CONNECTOR_RATE_MARGIN_SECONDS")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(
        args.intents, args.latency, args.rate, args.concurrency, args.database_url, args.workers, args.margin
    )
    emit(result, args.json)


if __name__ == "__main__":
    main()
