"""Signals on an EventBridge bus, as the reference publishes them (spec §10.2), through the outbox.

The bus is moto's server on 127.0.0.1; a rule copies what arrives on it into an SQS queue, where
the tests read each event as a rule target would receive it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from fulfill.engine.outbox_relay import OutboxRelay
from fulfill.engine.runtime import Runtime
from fulfill.logging_setup import configure_logging
from fulfill.store import outbox
from fulfill.store.tables import execution_signals
from tests.support.eventbridge import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    LocalEventBridge,
    use_test_credentials,
)
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import WebhookSink, wait_for
from tests.support.relay_runtime import relay_runtime
from tests.support.tcp_proxy import TcpProxy

BUS = "cc-native-events"
DETAIL_KEYS = ["eventType", "source", "payload", "traceId", "tenantId", "ts"]


@pytest.fixture(scope="module")
def local_bus() -> Iterator[LocalEventBridge]:
    server = LocalEventBridge()
    yield server
    server.close()


@pytest.fixture
def aws(local_bus: LocalEventBridge, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalEventBridge:
    use_test_credentials(monkeypatch, tmp_path)
    local_bus.reset()
    return local_bus


def eventbridge_settings(aws: LocalEventBridge, **overrides: Any) -> dict[str, Any]:
    return {
        "eventbridge_bus": BUS,
        "eventbridge_region": REGION,
        "eventbridge_endpoint_url": aws.url,
        **overrides,
    }


def stored_signal(harness: Harness, intent_id: str) -> dict[str, Any]:
    with harness.db.read() as conn:
        row = conn.execute(
            execution_signals.select().where(execution_signals.c.action_intent_id == intent_id)
        ).one()
    return dict(row.document)


def test_signal_arrives_on_the_bus_in_the_reference_shape(aws: LocalEventBridge, tmp_path: Path) -> None:
    aws.create_bus(BUS)
    sink = WebhookSink()
    settings = make_settings(tmp_path, webhook_urls=[sink.url], **eventbridge_settings(aws))
    harness = Harness(settings).start()
    try:
        with harness.client() as client:
            status = harness.run_task(client)
        intent_id = status["action_intent_id"]
        [event] = wait_for(lambda: aws.received(BUS), timeout=20)
        signal = stored_signal(harness, intent_id)
        assert event["source"] == "cc-native.perception"
        assert event["detail-type"] == "SIGNAL_CREATED"
        assert event["detail"] == {
            "eventType": "SIGNAL_CREATED",
            "source": "perception",
            "payload": {
                "signalId": f"exec-{intent_id}-acc-1-ACTION_EXECUTED",
                "signalType": "ACTION_EXECUTED",
                "accountId": "acc-1",
            },
            "traceId": signal["traceId"],
            "tenantId": "t1",
            "ts": signal["createdAt"],
        }
        assert list(event["detail"]) == DETAIL_KEYS
        # The webhook gets its own body as before, beside the bus.
        wait_for(lambda: sink.deliveries, timeout=20)
        body = json.loads(sink.deliveries[0].body)
        assert body["source"] == "fulfill"
        assert body["signal"]["signalId"] == signal["signalId"]
        message_id = f"signal:t1/{signal['signalId']}"

        def settled() -> list[dict[str, Any]] | None:
            with harness.service.store.read() as uow:
                rows = uow.outbox.deliveries_for(message_id)
            return rows if all(row["status"] == outbox.DELIVERED for row in rows) else None

        rows = wait_for(settled, timeout=20)
        assert {row["destination"]: row["attempts"] for row in rows} == {
            sink.url: 1,
            f"eventbridge:{BUS}": 1,
        }
        assert aws.received(BUS) == []  # once
    finally:
        harness.stop()
        sink.close()


def test_puts_to_a_missing_bus_are_retried_and_delivered_once_it_exists(
    aws: LocalEventBridge, tmp_path: Path
) -> None:
    sink = WebhookSink()
    # The service reaches the bus through a relay that the test cuts while it creates the bus: the
    # bus, its rule and the rule's target are three calls, and a retried put landing between the
    # first and the last would be accepted and routed nowhere.
    host, port = aws.url.removeprefix("http://").rsplit(":", 1)
    relay = TcpProxy(host, int(port))
    settings = make_settings(
        tmp_path,
        webhook_urls=[sink.url],
        outbox_backoff_max_seconds=0.5,
        **eventbridge_settings(aws, eventbridge_endpoint_url=f"http://127.0.0.1:{relay.port}"),
    )
    harness = Harness(settings).start()
    try:
        with harness.client() as client:
            intent_ids = [harness.run_task(client)["action_intent_id"] for _ in range(3)]
        message_ids = [f"signal:t1/exec-{intent_id}-acc-1-ACTION_EXECUTED" for intent_id in intent_ids]

        def bus_rows() -> list[dict[str, Any]]:
            with harness.service.store.read() as uow:
                return [
                    row
                    for message_id in message_ids
                    for row in uow.outbox.deliveries_for(message_id)
                    if row["destination"] == f"eventbridge:{BUS}"
                ]

        wait_for(lambda: all(row["attempts"] >= 2 for row in bus_rows()), timeout=20)
        for row in bus_rows():
            assert row["status"] == outbox.PENDING
            assert row["last_error"] == "EventBridge refused PutEvents: ResourceNotFoundException (HTTP 400)"
        # The webhook is not held up by the bus.
        wait_for(lambda: len(sink.deliveries) == 3, timeout=20)

        relay.cut()
        refused = {row["message_id"]: row["attempts"] for row in bus_rows()}
        # Each row has failed once more since the cut: no put is on its way to the bus any more.
        wait_for(lambda: all(row["attempts"] > refused[row["message_id"]] for row in bus_rows()), timeout=20)
        aws.create_bus(BUS)
        relay.restore()
        wait_for(lambda: all(row["status"] == outbox.DELIVERED for row in bus_rows()), timeout=20)
        # The bus hands each event to its rule's queue on its own time: read until all three have
        # arrived, then once more, and compare exactly (a duplicate would show).
        events: list[dict[str, Any]] = []
        wait_for(lambda: events.extend(aws.received(BUS)) or len(events) >= len(message_ids), timeout=20)
        events.extend(aws.received(BUS))
        assert Counter(event["detail"]["payload"]["signalId"] for event in events) == Counter(
            message_id.removeprefix("signal:t1/") for message_id in message_ids
        )
    finally:
        harness.stop()
        sink.close()
        relay.close()


# --- the relay alone, on a migrated database, with a clock the test moves ---------------------


@pytest.fixture
def runtime(aws: LocalEventBridge, tmp_path: Path) -> Iterator[Runtime]:
    settings = make_settings(
        tmp_path,
        outbox_backoff_base_seconds=10.0,
        outbox_backoff_max_seconds=300.0,
        **eventbridge_settings(aws),
    )
    with relay_runtime(settings) as runtime:
        yield runtime


def enqueue_signal(rt: Runtime, number: int, destination: str) -> str:
    message_id = f"signal:t1/exec-ai-{number}-acc-1-ACTION_EXECUTED"
    with rt.store.write() as uow:
        uow.outbox.enqueue(
            message_id=message_id,
            topic="SIGNAL_CREATED",
            tenant_id="t1",
            payload={
                "eventType": "SIGNAL_CREATED",
                "source": "fulfill",
                "payload": {
                    "signalId": message_id.removeprefix("signal:t1/"),
                    "signalType": "ACTION_EXECUTED",
                    "accountId": "acc-1",
                },
                "traceId": f"trace-{number}",
                "tenantId": "t1",
                "ts": "2026-01-02T03:04:05.678Z",
                "signal": {"signalId": message_id.removeprefix("signal:t1/")},
            },
            destinations=[destination],
            now=rt.clock.now_iso(),
            now_epoch=rt.clock.now(),
        )
    return message_id


def only_row(rt: Runtime, message_id: str) -> dict[str, Any]:
    with rt.store.read() as uow:
        [row] = uow.outbox.deliveries_for(message_id)
    return row


def test_relay_backs_off_exponentially_while_the_bus_is_missing(
    aws: LocalEventBridge, runtime: Runtime
) -> None:
    bus_arn = f"arn:aws:events:{REGION}:123456789012:event-bus/{BUS}"
    message_ids = [enqueue_signal(runtime, number, f"eventbridge:{bus_arn}") for number in range(3)]
    relay = OutboxRelay(runtime)
    try:
        for attempt, delay in enumerate([10.0, 20.0, 40.0], start=1):
            before = runtime.clock.now()
            assert relay.deliver_due() == 3
            after = runtime.clock.now()
            for message_id in message_ids:
                row = only_row(runtime, message_id)
                assert (row["status"], row["attempts"]) == (outbox.PENDING, attempt)
                assert "ResourceNotFoundException" in row["last_error"]
                assert before + delay <= row["next_attempt_epoch"] <= after + delay
            assert relay.deliver_due() == 0  # not due before its backoff
            runtime.clock.advance(delay)
        aws.create_bus(BUS)  # the ARN names this bus of moto's default account
        assert relay.deliver_due() == 3
        for message_id in message_ids:
            row = only_row(runtime, message_id)
            assert (row["status"], row["attempts"], row["lease_owner"]) == (outbox.DELIVERED, 4, None)
        events = aws.received(BUS)
        assert sorted(event["detail"]["traceId"] for event in events) == ["trace-0", "trace-1", "trace-2"]
        assert all(event["detail"]["ts"] == "2026-01-02T03:04:05.678Z" for event in events)
    finally:
        relay._eventbridge.close()


def test_a_failed_entry_is_a_failed_delivery(aws: LocalEventBridge, runtime: Runtime) -> None:
    aws.create_bus(BUS)
    message_id = enqueue_signal(runtime, 1, f"eventbridge:{BUS}")
    relay = OutboxRelay(runtime)
    client = relay._eventbridge.client_for(BUS)
    try:
        with Stubber(client) as stub:
            stub.add_response(
                "put_events",
                {
                    "FailedEntryCount": 1,
                    "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}],
                },
            )
            assert relay.deliver_due() == 1
            stub.assert_no_pending_responses()
        row = only_row(runtime, message_id)
        assert (row["status"], row["attempts"]) == (outbox.PENDING, 1)
        assert row["last_error"] == "EventBridge failed the entry: InternalFailure"
        assert aws.received(BUS) == []
        runtime.clock.advance(10.0)
        assert relay.deliver_due() == 1  # the real bus this time
        assert only_row(runtime, message_id)["status"] == outbox.DELIVERED
        [event] = aws.received(BUS)
        assert event["detail"]["payload"]["signalId"] == "exec-ai-1-acc-1-ACTION_EXECUTED"
    finally:
        relay._eventbridge.close()


def test_no_credential_reaches_the_log_or_the_outbox(aws: LocalEventBridge, runtime: Runtime) -> None:
    """At the most verbose level the service allows, what a put logs and records names no key
    (botocore's own debug lines, which carry signed request headers, stay off)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in ("boto3", "botocore", "urllib3")}
    configure_logging("DEBUG")
    root.addHandler(Keep(level=logging.DEBUG))
    relay = OutboxRelay(runtime)
    try:
        message_id = enqueue_signal(runtime, 1, f"eventbridge:{BUS}")
        assert relay.deliver_due() == 1  # refused: no such bus
        aws.create_bus(BUS)
        runtime.clock.advance(10.0)
        assert relay.deliver_due() == 1
    finally:
        relay._eventbridge.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
    row = only_row(runtime, message_id)
    assert row["status"] == outbox.DELIVERED
    text = "\n".join(record.getMessage() for record in records)
    assert "EventBridge delivery of" in text  # the refusal was logged
    for secret in (ACCESS_KEY_ID, SECRET_ACCESS_KEY):
        assert secret not in text
        assert secret not in row["last_error"]
