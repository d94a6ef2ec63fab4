"""What one Salesforce write costs the connector, next to a bare httpx request of the same write.

    python -m bench.salesforce_call_cost --calls 500 --rounds 3

The local Salesforce (``fulfill dev salesforce``) runs in this process on a thread of its own; the
connector (``SalesforceConnector``, on a migrated SQLite database, with client credentials) makes
``--calls`` ``crm.create_task`` calls one after another, each with its own idempotency key: a
reservation, the POST, the commit of the record's id. The floor, in the same round: the same POST
made ``--calls`` times with a bare ``httpx.Client`` (the connector's token, the same body, the
answer's JSON read), which is what the request costs without the connector around it.

Reported per call, as the median round: CPU-milliseconds of this process less the server
thread's (read from ``/proc/self/task``), for the connector and for the floor, their ratio, and the
connections the server saw per call.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx

from bench.common import emit, median_round, own_cpu_seconds, thread_cpu_seconds
from fulfill.clock import SystemClock
from fulfill.config import Settings
from fulfill.connectors.salesforce import SalesforceConnector
from fulfill.domain.credentials import ClientCredentialsInput
from fulfill.service import credential_vault
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from fulfill_tools.dev.salesforce import DevSalesforce, DevSalesforceServer

TENANT, ACCOUNT = "t1", "acc-1"


class _Measured:
    """CPU of this process less the server thread's, over a block of calls."""

    def __init__(self, server_thread: int) -> None:
        self._server_thread = server_thread

    def __call__(self, calls: int, make: Any) -> float:
        process_before, server_before = own_cpu_seconds(), thread_cpu_seconds(self._server_thread)
        for index in range(calls):
            make(index)
        used = (own_cpu_seconds() - process_before) - (
            thread_cpu_seconds(self._server_thread) - server_before
        )
        return used * 1000 / calls


def run(calls: int, rounds: int) -> dict[str, Any]:
    dev = DevSalesforce()
    server = DevSalesforceServer(dev).start()
    [server_thread] = [t.native_id for t in threading.enumerate() if t.name == "dev-salesforce"]
    assert server_thread is not None
    measured = _Measured(server_thread)
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            database_url=f"sqlite:///{directory}/bench.db",
            secrets_key="YmVuY2gtc2VjcmV0cy1rZXktMDEyMzQ1Njc4OWFiY2Q=",  # base64 of 32 made-up bytes
            salesforce_login_url=server.url,
            gateway_egress_allow=["127.0.0.1"],
            salesforce_login_http_hosts=["127.0.0.1"],
            log_level="WARNING",
        )
        db = Database(settings.database_url)
        upgrade_to_head(db)
        clock = SystemClock()
        connector = SalesforceConnector(
            SqlStore(db), clock, settings, vault=credential_vault(db, settings, clock)
        )
        connector.vault.put(
            TENANT,
            None,
            "salesforce",
            ClientCredentialsInput.model_validate(
                {
                    "type": "client_credentials",
                    "client_id": dev.config.client_id,
                    "client_secret": dev.config.client_secret,
                    "login_url": server.url,
                }
            ),
        )
        token = connector.tokens.token(TENANT, ACCOUNT)
        bare = httpx.Client(trust_env=False)
        url = f"{token.instance_url}/services/data/{settings.salesforce_api_version}/sobjects/Task/"
        headers = {"Authorization": f"Bearer {token.value}", "Accept": "application/json"}
        failed = 0
        serial = 0

        def connector_call(index: int) -> None:
            nonlocal failed, serial
            serial += 1
            result = connector.create_task(
                title=f"Call {serial}",
                tenant_id=TENANT,
                account_id=ACCOUNT,
                action_intent_id=f"ai_{serial}",
                idempotency_key=f"{serial:064x}",
            )
            failed += bool(result.is_error)

        def bare_call(index: int) -> None:
            nonlocal failed
            response = bare.post(url, json={"Subject": f"Bare {index}"}, headers=headers)
            failed += response.status_code != 201 or "id" not in response.json()

        try:
            measured(min(calls, 50), connector_call)  # warm-up
            measured(min(calls, 50), bare_call)
            per_round: list[dict[str, Any]] = []
            for _ in range(rounds):
                # client_ports is newer than the connector's bounded reads: 0 on older code.
                ports_before = len(dev.client_ports) if hasattr(dev, "client_ports") else 0
                connector_ms = measured(calls, connector_call)
                ports_after = len(dev.client_ports) if hasattr(dev, "client_ports") else 0
                floor_ms = measured(calls, bare_call)
                per_round.append(
                    {
                        "connector_cpu_ms_per_call": round(connector_ms, 3),
                        "bare_httpx_cpu_ms_per_call": round(floor_ms, 3),
                        "ratio": round(connector_ms / floor_ms, 2),
                        "new_connections_per_connector_call": round((ports_after - ports_before) / calls, 3),
                    }
                )
        finally:
            bare.close()
            connector.close()
            db.dispose()
            server.stop()
    median, spread = median_round(per_round, "connector_cpu_ms_per_call")
    return {
        "calls": calls,
        "failed": failed,
        "rounds": per_round,
        "median_round": median,
        "connector_cpu_ms_per_call_spread": spread,
        "bare_httpx_cpu_ms_per_call_median": statistics.median(
            r["bare_httpx_cpu_ms_per_call"] for r in per_round
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    emit(run(args.calls, args.rounds), args.json)


if __name__ == "__main__":
    main()
