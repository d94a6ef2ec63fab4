"""The outbox's lanes: engine messages (compensation starts, reruns) never wait behind webhooks, a
hanging webhook destination holds only its own deliveries (at most its concurrency at once), and a
delivery refused on every try ends DEAD_LETTER, counted, until someone redelivers it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import HangingSink, wait_for

HANGING_WEBHOOKS = 10


def _compensated(client: httpx.Client, intent_id: str) -> dict[str, Any] | None:
    body = client.get(f"/executions/{intent_id}/status").json()
    return dict(body) if body.get("compensation_status") == "COMPLETED" else None


def test_a_cancel_is_compensated_while_another_tenants_webhooks_hang(tmp_path: Path) -> None:
    hanging = HangingSink()
    # The default webhook timeout: ten hanging deliveries hold one relay for 10 x 5 s.
    harness = Harness(
        make_settings(tmp_path, webhook_urls=[hanging.url], webhook_timeout_seconds=5.0)
    ).start()
    try:
        with harness.client("t2") as other:
            for _ in range(HANGING_WEBHOOKS):
                assert harness.run_task(other)["status"] == "SUCCEEDED"
        wait_for(lambda: hanging.arrived >= 1)
        with harness.client("t1") as client:
            intent_id = harness.run_task(client)["action_intent_id"]
            cancelled_at = time.monotonic()
            assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
            # Behind the webhooks this took 50 s and more; on its own lane, about a second.
            compensated = wait_for(lambda: _compensated(client, intent_id), timeout=25)
            latency = time.monotonic() - cancelled_at
        print(
            f"\ncompensation completed {latency:.2f} s after the cancel, behind {HANGING_WEBHOOKS} hanging webhooks"
        )
        assert compensated["status"] == "SUCCEEDED"
    finally:
        harness.stop()
        hanging.close()
