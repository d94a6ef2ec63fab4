"""Signals leave through the transactional outbox (signed, retried, at least once). The
reconciler's tests are in test_reconciler.py."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from fulfill.store import outbox
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import WebhookSink, wait_for


def test_signal_reaches_the_webhook_signed_after_refusals(tmp_path: Path) -> None:
    sink = WebhookSink(refuse=2)
    harness = Harness(make_settings(tmp_path, webhook_urls=[sink.url], webhook_secret="hook-secret")).start()
    try:
        with harness.client() as client:
            status = harness.run_task(client)
        intent_id = status["action_intent_id"]
        wait_for(lambda: sink.deliveries, timeout=20)
        [delivery] = sink.deliveries
        assert sink.refused == 2
        body = json.loads(delivery.body)
        assert body["eventType"] == "SIGNAL_CREATED"
        assert body["payload"]["signalId"] == f"exec-{intent_id}-acc-1-ACTION_EXECUTED"
        assert body["signal"]["signalType"] == "ACTION_EXECUTED"
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        expected = hmac.new(
            b"hook-secret", headers["x-fulfill-timestamp"].encode() + b"." + delivery.body, hashlib.sha256
        ).hexdigest()
        assert headers["x-fulfill-signature"] == f"sha256={expected}"
        assert headers["x-fulfill-event-id"] == f"signal:t1/{body['payload']['signalId']}"

        def delivered() -> dict[str, Any] | None:
            # The sink records the request before the relay has read its answer and marked the row.
            with harness.db.read() as conn:
                [row] = outbox.deliveries_for(conn, headers["x-fulfill-event-id"])
            return row if row["status"] == "DELIVERED" else None

        row = wait_for(delivered, timeout=20)
        assert row["attempts"] == 3
    finally:
        harness.stop()
        sink.close()
