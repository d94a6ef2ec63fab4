"""The outbox's lanes: engine messages (compensation starts, reruns) never wait behind webhooks, a
hanging webhook destination holds only its own deliveries (at most its concurrency at once), and a
delivery refused on every try ends DEAD_LETTER, counted, until someone redelivers it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.store import outbox
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import HangingSink, WebhookSink, wait_for
from tests.support.metrics import scrape, value

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


def test_a_hanging_destination_holds_only_its_own_deliveries(tmp_path: Path) -> None:
    hanging, healthy = HangingSink(), WebhookSink()
    harness = Harness(
        make_settings(
            tmp_path,
            webhook_urls=[hanging.url, healthy.url],
            webhook_timeout_seconds=10.0,
            outbox_destination_concurrency=2,
        )
    ).start()
    try:
        with harness.client("t1") as client:
            for _ in range(5):
                assert harness.run_task(client)["status"] == "SUCCEEDED"
        # One relay in line took 10 s for each hanging delivery before the healthy one's turn.
        wait_for(lambda: len(healthy.deliveries) == 5, timeout=15)
        assert hanging.arrived >= 2
        assert hanging.max_in_flight <= 2  # its lane's concurrency in this process
    finally:
        harness.stop()
        hanging.close()
        healthy.close()


def _dead(harness: Harness, message_id: str) -> bool:
    with harness.db.read() as conn:
        return any(row["status"] == outbox.DEAD_LETTER for row in outbox.deliveries_for(conn, message_id))


def _signal_message(harness: Harness, intent_id: str, tenant: str = "t1") -> str:
    return f"signal:{tenant}/exec-{intent_id}-acc-1-ACTION_EXECUTED"


def test_a_refused_delivery_ends_dead_letter_counted_and_only_its_tenant_redelivers_it(
    tmp_path: Path,
) -> None:
    sink = WebhookSink(refuse=3)
    harness = Harness(
        make_settings(tmp_path, webhook_urls=[sink.url], outbox_max_attempts=3, metrics_cache_seconds=0)
    ).start()
    try:
        start = scrape(harness.url)
        # Present from start-up, before any delivery was given up.
        assert ("fulfill_outbox_dead_letters", frozenset({("kind", "webhook")})) in start
        assert ("fulfill_outbox_dead_lettered_total", frozenset({("kind", "webhook")})) in start
        assert value(start, "fulfill_outbox_dead_letters", kind="webhook") == 0
        with harness.client("t1") as client:
            intent_id = harness.run_task(client)["action_intent_id"]
        message_id = _signal_message(harness, intent_id)
        wait_for(lambda: _dead(harness, message_id))
        time.sleep(0.5)  # ten backoffs of the test's base: no try after the last one
        assert (sink.refused, sink.deliveries) == (3, [])
        dead = scrape(harness.url)
        assert value(dead, "fulfill_outbox_dead_letters", kind="webhook") == 1
        assert (
            value(dead, "fulfill_outbox_dead_lettered_total", kind="webhook")
            - value(start, "fulfill_outbox_dead_lettered_total", kind="webhook")
            == 1
        )

        own = "/admin/tenants/t1/outbox/dead-letters"
        with harness.client("t2", scopes=["admin"]) as other:
            assert other.get("/admin/tenants/t2/outbox/dead-letters").json() == {"dead_letters": []}
            assert other.get(own).status_code == 404
            refused = other.post(
                "/admin/tenants/t2/outbox/dead-letters/redeliver", json={"message_id": message_id}
            )
            assert refused.status_code == 404, refused.text
            assert refused.json()["code"] == "DEAD_LETTER_NOT_FOUND"
            assert other.get("/admin/outbox/dead-letters").status_code == 403
        with harness.client("ops", scopes=["platform:admin"]) as platform:
            [listed] = platform.get("/admin/outbox/dead-letters").json()["dead_letters"]
            assert (listed["tenant_id"], listed["destination"]) == ("t1", sink.url)
            assert platform.get(own).status_code == 403
        with harness.client("t1", scopes=["admin"]) as admin:
            [mine] = admin.get(own).json()["dead_letters"]
            assert mine["message_id"] == message_id
            assert (mine["destination"], mine["destination_kind"], mine["attempts"]) == (None, "webhook", 3)
            assert "payload" not in mine
            named = admin.post(f"{own}/redeliver", json={"destination": sink.url})
            assert named.status_code == 422, named.text
            again = admin.post(f"{own}/redeliver", json={"message_id": message_id})
            assert again.status_code == 200, again.text
            assert [d["message_id"] for d in again.json()["redelivered"]] == [message_id]
            wait_for(lambda: len(sink.deliveries) == 1)
            assert admin.post(f"{own}/redeliver", json={"message_id": message_id}).status_code == 404

        def delivered() -> bool:
            with harness.db.read() as conn:
                [row] = outbox.deliveries_for(conn, message_id)
            return bool(row["status"] == outbox.DELIVERED)

        wait_for(delivered)
        assert value(scrape(harness.url), "fulfill_outbox_dead_letters", kind="webhook") == 0
    finally:
        harness.stop()
        sink.close()


def test_platform_admins_and_the_command_line_redeliver_any_tenants_dead_letters(tmp_path: Path) -> None:
    sink = WebhookSink(refuse=2)
    harness = Harness(make_settings(tmp_path, webhook_urls=[sink.url], outbox_max_attempts=1)).start()
    try:
        messages = []
        for tenant in ("t1", "t2"):
            with harness.client(tenant) as client:
                intent_id = harness.run_task(client)["action_intent_id"]
            messages.append(_signal_message(harness, intent_id, tenant))
            wait_for(lambda: _dead(harness, messages[-1]))
        with harness.client("ops", scopes=["platform:admin"]) as platform:
            answer = platform.post("/admin/outbox/dead-letters/redeliver", json={"message_id": messages[0]})
            assert answer.status_code == 200, answer.text
            assert [d["tenant_id"] for d in answer.json()["redelivered"]] == ["t1"]
        wait_for(lambda: len(sink.deliveries) == 1)

        runner = CliRunner()
        database = ["--db", harness.settings.database_url]
        listed = runner.invoke(app, ["outbox", "dead-letters", "--json", *database])
        assert listed.exit_code == 0, listed.output
        [letter] = json.loads(listed.stdout)["dead_letters"]
        assert (letter["message_id"], letter["destination"]) == (messages[1], sink.url)
        nothing_named = runner.invoke(app, ["outbox", "redeliver", *database])
        assert nothing_named.exit_code == 2
        redelivered = runner.invoke(app, ["outbox", "redeliver", "--destination", sink.url, *database])
        assert redelivered.exit_code == 0, redelivered.output
        assert "redelivered 1 deliveries" in redelivered.stdout
        wait_for(lambda: len(sink.deliveries) == 2)
        assert {json.loads(d.body)["tenantId"] for d in sink.deliveries} == {"t1", "t2"}
    finally:
        harness.stop()
        sink.close()
