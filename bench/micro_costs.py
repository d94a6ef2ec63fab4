"""CPU of the small operations the docs quote for this round's changes, each in this process's
thread CPU time (``time.thread_time``), the median of ``--rounds`` rounds.

    python -m bench.micro_costs --rounds 5

* ``quick_check_usual_us``: a quick check (``UntrustedSchema.errors``) of the MCP SDK's listing of
  ``create_ticket(title, priority)`` against ``{"title": ..., "priority": ...}``;
* ``quick_check_worst_ms``: the worst a quick check may cost: a schema whose ``items`` require 42
  names, against as many empty objects as ``QUICK_CHECK_BUDGET`` lets through (every check fails);
* ``json_body_parse_ms``: ``json.loads`` of a 0.85 MB ``tools/call`` body, for comparison;
* ``ssl_context_build_ms`` and ``email_tls_context_us``: ``ssl.create_default_context()`` built, and
  ``fulfill.tls.email_context()`` found again;
* ``httpx_client_build_ms``: an ``httpx.Client()`` built and closed (its SSL context included).
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import emit
from fulfill.domain.schemas import QUICK_CHECK_BUDGET, UntrustedSchema, quick_schema_nodes
from fulfill.tls import email_context

# What the MCP SDK lists for ``create_ticket(title: str, priority: str = "normal")``.
SDK_TOOL = {
    "type": "object",
    "title": "create_ticketArguments",
    "properties": {
        "title": {"title": "Title", "type": "string"},
        "priority": {"title": "Priority", "type": "string", "default": "normal"},
    },
    "required": ["title"],
}


def _cpu_per_call(work: Callable[[], Any], calls: int, rounds: int) -> float:
    """Median over rounds of the thread CPU seconds per call."""
    samples = []
    for _ in range(rounds):
        began = time.thread_time()
        for _ in range(calls):
            work()
        samples.append((time.thread_time() - began) / calls)
    return statistics.median(samples)


def worst_quick_check() -> tuple[UntrustedSchema, list[dict[str, Any]]]:
    """A quick schema and a value at the budget that fails every check it meets."""
    schema = {"type": "array", "items": {"type": "object", "required": [f"p{i}" for i in range(42)]}}
    nodes = quick_schema_nodes(schema)
    assert nodes is not None
    value: list[dict[str, Any]] = [{} for _ in range(QUICK_CHECK_BUDGET // nodes - 1)]
    validator = UntrustedSchema(schema)
    assert validator.is_quick_for(value)
    return validator, value


def run(rounds: int) -> dict[str, Any]:
    usual = UntrustedSchema(SDK_TOOL)
    worst, value = worst_quick_check()
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "x", "arguments": {"items": [{"a": "x" * 20, "b": i} for i in range(20_000)]}},
        }
    )
    email_context()

    def client() -> None:
        httpx.Client().close()

    return {
        "quick_check_usual_us": round(
            _cpu_per_call(lambda: usual.errors({"title": "x", "priority": "high"}), 2000, rounds) * 1e6, 1
        ),
        "quick_check_worst_ms": round(_cpu_per_call(lambda: worst.errors(value), 3, rounds) * 1e3, 2),
        "quick_check_worst_errors": len(worst.errors(value)),
        "json_body_mb": round(len(body) / 1e6, 2),
        "json_body_parse_ms": round(_cpu_per_call(lambda: json.loads(body), 3, rounds) * 1e3, 2),
        "ssl_context_build_ms": round(_cpu_per_call(ssl.create_default_context, 5, rounds) * 1e3, 2),
        "email_tls_context_us": round(_cpu_per_call(email_context, 2000, rounds) * 1e6, 1),
        "httpx_client_build_ms": round(_cpu_per_call(client, 5, rounds) * 1e3, 2),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.rounds)
    result["command"] = f"python -m bench.micro_costs --rounds {args.rounds}"
    emit(result, args.json)


if __name__ == "__main__":
    main()
